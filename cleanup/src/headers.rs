//! The primary header section: lines gathered into header fields
//! (continuation lines included, excess text beyond header_size_limit
//! dropped), which fields hold addresses, the addresses in them, and the
//! fields cleanup adds when they are missing.

use std::time::SystemTime;

use libmail::header_checks::header_name_len;

use crate::addresses::spans;

/// What a line did to the header section.
#[derive(Debug, PartialEq, Eq)]
pub enum Fed {
    /// The line belongs to a field still being gathered.
    Pending,
    /// The line starts a new field; the previous one is complete.
    Field(Vec<u8>),
    /// The header section is over; the previous field (if any) is
    /// complete and the line is the first of the body.
    End(Option<Vec<u8>>),
}

/// Gathers header fields line by line.
#[derive(Debug)]
pub struct Gatherer {
    field: Vec<u8>,
    limit: usize,
    /// Text was dropped from the current field.
    truncated: bool,
}

impl Gatherer {
    pub fn new(limit: usize) -> Gatherer {
        Gatherer {
            field: Vec::new(),
            limit,
            truncated: false,
        }
    }

    /// Takes one line (without its line end).
    pub fn feed(&mut self, line: &[u8]) -> Fed {
        let continuation = matches!(line.first(), Some(b' ' | b'\t'));
        if continuation && !self.field.is_empty() {
            self.append(b"\n");
            self.append(line);
            return Fed::Pending;
        }
        if !continuation && header_name_len(line).is_some() {
            let done = self.take();
            self.append(line);
            return match done {
                Some(field) => Fed::Field(field),
                None => Fed::Pending,
            };
        }
        Fed::End(self.take())
    }

    /// The field being gathered, at the end of the content.
    pub fn take(&mut self) -> Option<Vec<u8>> {
        self.truncated = false;
        (!self.field.is_empty()).then(|| std::mem::take(&mut self.field))
    }

    /// Appends up to the limit; the rest is discarded, as Postfix does.
    fn append(&mut self, text: &[u8]) {
        let room = self.limit.saturating_sub(self.field.len());
        if text.len() > room {
            self.truncated = true;
        }
        self.field.extend_from_slice(&text[..text.len().min(room)]);
    }
}

/// The lower-case name of a header field and where its value starts.
pub fn name_and_value(field: &[u8]) -> Option<(String, &[u8])> {
    let name_len = header_name_len(field)?;
    let colon = field.iter().position(|&b| b == b':')?;
    let name = String::from_utf8_lossy(&field[..name_len]).to_ascii_lowercase();
    Some((name, &field[colon + 1..]))
}

/// Headers whose addresses are senders or recipients (Postfix's
/// HDR_OPT_SENDER and HDR_OPT_RECIP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressKind {
    Sender,
    Recipient,
}

pub fn address_kind(name: &str) -> Option<AddressKind> {
    match name {
        "from" | "sender" | "reply-to" | "errors-to" | "return-receipt-to" | "resent-from"
        | "resent-sender" | "resent-reply-to" => Some(AddressKind::Sender),
        "to" | "cc" | "bcc" | "apparently-to" | "resent-to" | "resent-cc" | "resent-bcc" => {
            Some(AddressKind::Recipient)
        }
        _ => None,
    }
}

/// The addresses in an address header's value, in order.
pub fn addresses(value: &str) -> Vec<String> {
    spans(value)
        .into_iter()
        .map(|span| value[span].to_string())
        .collect()
}

/// Rewrites each address in place, keeping display names, comments and
/// folding as they were. `None`: nothing changed.
pub fn rewrite_addresses<E>(
    value: &str,
    mut rewrite: impl FnMut(&str) -> Result<String, E>,
) -> Result<Option<String>, E> {
    let mut out = String::with_capacity(value.len() + 32);
    let mut cursor = 0;
    for span in spans(value) {
        let old = &value[span.clone()];
        let new = rewrite(old)?;
        if new != old {
            out.push_str(&value[cursor..span.start]);
            out.push_str(&new);
            cursor = span.end;
        }
    }
    if cursor == 0 {
        return Ok(None);
    }
    out.push_str(&value[cursor..]);
    Ok(Some(out))
}

/// `Message-Id: <YYYYMMDDHHMMSS.QUEUEID@myhostname>`'s value, in UTC at
/// the queue file's creation, as Postfix makes it.
pub fn message_id(created: SystemTime, queue_id: &str, myhostname: &str) -> String {
    let utc: chrono::DateTime<chrono::Utc> = created.into();
    format!("<{}.{queue_id}@{myhostname}>", utc.format("%Y%m%d%H%M%S"))
}

/// The From: value for a message without one: the sender (or
/// MAILER-DAEMON for `<>`) with the full name, as header_from_format says.
pub fn from_value(sender: &str, fullname: Option<&str>, obsolete: bool) -> String {
    let address = if sender.is_empty() {
        "MAILER-DAEMON"
    } else {
        sender
    };
    let name = fullname.map(str::trim).filter(|n| !n.is_empty());
    match (name, sender.is_empty()) {
        (Some(name), false) if obsolete => format!("{address} ({})", comment_safe(name)),
        (Some(name), false) => format!("{} <{address}>", phrase(name)),
        _ => address.to_string(),
    }
}

/// A display name as an RFC 5322 phrase: quoted when it has specials.
fn phrase(name: &str) -> String {
    let special = |c: char| "()<>[]:;@\\,.\"".contains(c) || c.is_control();
    if !name.chars().any(special) {
        return name.to_string();
    }
    let mut out = String::from("\"");
    for c in name.chars().filter(|c| !c.is_control()) {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// A full name inside parentheses: unbalanced parentheses escaped.
fn comment_safe(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars().filter(|c| !c.is_control()) {
        if matches!(c, '(' | ')' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gather(lines: &[&str], limit: usize) -> (Vec<String>, Option<String>) {
        let mut g = Gatherer::new(limit);
        let mut fields = Vec::new();
        for line in lines {
            match g.feed(line.as_bytes()) {
                Fed::Pending => {}
                Fed::Field(f) => fields.push(String::from_utf8(f).unwrap()),
                Fed::End(f) => {
                    fields.extend(f.map(|f| String::from_utf8(f).unwrap()));
                    return (fields, Some(line.to_string()));
                }
            }
        }
        fields.extend(g.take().map(|f| String::from_utf8(f).unwrap()));
        (fields, None)
    }

    #[test]
    fn folded_fields_are_one_field() {
        let (fields, end) = gather(
            &["Subject: one", "\ttwo", " three", "To: a@b", "", "body"],
            1000,
        );
        assert_eq!(fields, ["Subject: one\n\ttwo\n three", "To: a@b"]);
        assert_eq!(end.as_deref(), Some(""));
    }

    #[test]
    fn a_non_header_line_ends_the_headers() {
        let (fields, end) = gather(&["X: 1", "not a header", "Y: 2"], 1000);
        assert_eq!(fields, ["X: 1"]);
        assert_eq!(end.as_deref(), Some("not a header"));
        let (fields, end) = gather(&[" leading space"], 1000);
        assert!(fields.is_empty());
        assert_eq!(end.as_deref(), Some(" leading space"));
    }

    #[test]
    fn excess_header_text_is_discarded() {
        let (fields, _) = gather(&["Subject: 0123456789", " more", "X: y"], 12);
        assert_eq!(fields, ["Subject: 012", "X: y"]);
    }

    #[test]
    fn names_and_address_headers() {
        let (name, value) = name_and_value(b"Resent-To : a@b").unwrap();
        assert_eq!(name, "resent-to");
        assert_eq!(value, b" a@b");
        assert_eq!(address_kind("reply-to"), Some(AddressKind::Sender));
        assert_eq!(address_kind("bcc"), Some(AddressKind::Recipient));
        assert_eq!(address_kind("subject"), None);
    }

    #[test]
    fn addresses_of_lists_and_groups() {
        assert_eq!(
            addresses(" Alice <a@x.example>, b@y.example, friends: c@z.example, d;"),
            ["a@x.example", "b@y.example", "c@z.example", "d"]
        );
        assert_eq!(addresses(" undisclosed-recipients:;"), Vec::<String>::new());
    }

    #[test]
    fn rewriting_keeps_everything_but_the_addresses() {
        let qualify = |a: &str| -> Result<String, ()> {
            Ok(if a.contains('@') {
                a.to_string()
            } else {
                format!("{a}@example.com")
            })
        };
        assert_eq!(
            rewrite_addresses(" \"root\" <root>, x@y (Mr X),\n\tbob", qualify).unwrap(),
            Some(" \"root\" <root@example.com>, x@y (Mr X),\n\tbob@example.com".to_string())
        );
        assert_eq!(rewrite_addresses(" a@b.example", qualify).unwrap(), None);
    }

    #[test]
    fn added_headers() {
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        assert_eq!(
            message_id(t, "4A1B2C3D", "mail.example.com"),
            "<20231114221320.4A1B2C3D@mail.example.com>"
        );
        assert!(libmail::mail_date::mail_date(t).contains(" 2023 "));
        assert_eq!(
            from_value("al@x.example", Some("Al Q"), false),
            "Al Q <al@x.example>"
        );
        assert_eq!(
            from_value("al@x.example", Some("Q., Al"), false),
            "\"Q., Al\" <al@x.example>"
        );
        assert_eq!(
            from_value("al@x.example", Some("Al"), true),
            "al@x.example (Al)"
        );
        assert_eq!(from_value("", Some("Al"), false), "MAILER-DAEMON");
        assert_eq!(from_value("al@x.example", None, false), "al@x.example");
    }
}
