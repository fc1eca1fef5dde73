//! The destinations in an alias value, a .forward file or an :include:
//! file: addresses, `|command`, `/file` (`/dir/` for a Maildir),
//! `:include:/path` and `\user`, separated by commas or white space, with
//! double quotes keeping a destination with spaces in one piece
//! (`"|/usr/bin/vacation -a alias user"`).

/// One destination of a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A mail address, local (no `@`, or a local domain) or not.
    Address(String),
    /// `|command`: the message on the command's standard input.
    Command(String),
    /// `/path`: appended in mbox format; `/path/` is a Maildir.
    File(String),
    /// `:include:/path`: more destinations from that file.
    Include(String),
    /// `\user`: that user's own mailbox, with no further aliasing or
    /// forwarding.
    Mailbox(String),
}

/// Splits `text` into destinations.
pub fn parse(text: &str) -> Vec<Target> {
    tokens(text).iter().filter_map(|t| classify(t)).collect()
}

/// A .forward or :include: file: one or more lines of destinations,
/// `#` comment lines skipped.
pub fn parse_file(text: &str) -> Vec<Target> {
    text.lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .flat_map(parse)
        .collect()
}

/// Words separated by commas or white space; inside double quotes
/// neither separates, and `\` quotes the next character.
fn tokens(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                current.push(c);
                if let Some(next) = chars.next() {
                    current.push(next);
                }
            }
            '"' => {
                quoted = !quoted;
                current.push(c);
            }
            ',' | ' ' | '\t' | '\r' | '\n' if !quoted => {
                if !current.is_empty() {
                    out.push(std::mem::take(&mut current));
                }
            }
            _ => current.push(c),
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// A token wholly in quotes loses them (and its `\` escapes); `<addr>`
/// loses its angle brackets.
fn unquote(token: &str) -> String {
    let inner = match token.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
        Some(inner) if token.len() >= 2 => inner,
        _ => {
            let bare = token
                .strip_prefix('<')
                .and_then(|t| t.strip_suffix('>'))
                .unwrap_or(token);
            return bare.to_string();
        }
    };
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.extend(chars.next()),
            _ => out.push(c),
        }
    }
    out
}

fn classify(token: &str) -> Option<Target> {
    // `\user` keeps its backslash meaning only outside quotes.
    if let Some(user) = token.strip_prefix('\\') {
        return (!user.is_empty()).then(|| Target::Mailbox(unquote(user)));
    }
    let text = unquote(token);
    if text.is_empty() {
        return None;
    }
    if let Some(command) = text.strip_prefix('|') {
        return Some(Target::Command(command.trim().to_string()));
    }
    if text.len() >= 9 && text.is_char_boundary(9) && text[..9].eq_ignore_ascii_case(":include:") {
        let path = text[9..].trim();
        return (!path.is_empty()).then(|| Target::Include(path.to_string()));
    }
    if text.starts_with('/') {
        return Some(Target::File(text));
    }
    Some(Target::Address(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(a: &str) -> Target {
        Target::Address(a.to_string())
    }

    #[test]
    fn separators_and_quotes() {
        assert_eq!(
            parse("root, bob\tcarol@example.com ,,  \"john doe\"@example.com"),
            [
                address("root"),
                address("bob"),
                address("carol@example.com"),
                address("\"john doe\"@example.com"),
            ]
        );
        assert_eq!(parse("<dave@example.com>"), [address("dave@example.com")]);
        assert_eq!(parse("  ,  "), []);
    }

    #[test]
    fn commands_files_and_includes() {
        assert_eq!(
            parse("\"|/usr/bin/vacation -a x bob\", |/bin/true, /var/log/mail.all, /srv/box/, :include:/etc/mail/list, :INCLUDE:/x"),
            [
                Target::Command("/usr/bin/vacation -a x bob".into()),
                Target::Command("/bin/true".into()),
                Target::File("/var/log/mail.all".into()),
                Target::File("/srv/box/".into()),
                Target::Include("/etc/mail/list".into()),
                Target::Include("/x".into()),
            ]
        );
        assert_eq!(
            parse("\"|echo \\\"hi\\\"\""),
            [Target::Command("echo \"hi\"".into())]
        );
    }

    #[test]
    fn own_mailbox_and_files() {
        assert_eq!(
            parse_file("# forward\n\\bob, alice@example.com\n\n# end\n"),
            [Target::Mailbox("bob".into()), address("alice@example.com")]
        );
    }
}
