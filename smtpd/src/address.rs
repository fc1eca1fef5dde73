//! Envelope addresses as MAIL FROM and RCPT TO carry them (RFC 5321 §4.1.2,
//! RFC 6531): `<>`, `<local@domain>`, unbracketed `local@domain` (Postfix
//! accepts it), quoted local parts, address literals, and source routes
//! `<@a,@b:u@c>` whose route is dropped. As in Postfix, the domain follows
//! the LAST `@`, so `u@x@y` has the local part `u@x` (a routing attempt the
//! relay check refuses), and a bare IPv4 domain (`u@127.0.0.1`) is an
//! error: literals need brackets. Input is never trusted: every malformed
//! form is an `AddressError`, never a panic.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use thiserror::Error;

/// RFC 5321 §4.5.3.1.2: a domain has at most 255 octets.
pub const MAX_DOMAIN: usize = 255;
/// RFC 1035: a label has at most 63 octets.
pub const MAX_LABEL: usize = 63;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum AddressError {
    #[error("missing closing '>'")]
    Unbalanced,
    #[error("text after '>'")]
    Trailing,
    #[error("bad local part")]
    LocalPart,
    #[error("bad domain")]
    Domain,
    #[error("bad address literal")]
    Literal,
    #[error("bad source route")]
    Route,
    #[error("null address not allowed")]
    Null,
}

/// The part after `@`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Domain {
    Name(String),
    V4(Ipv4Addr),
    V6(Ipv6Addr),
    /// `[tag:content]`, RFC 5321's General-address-literal.
    General(String),
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Domain::Name(n) => f.write_str(n),
            Domain::V4(a) => write!(f, "[{a}]"),
            Domain::V6(a) => write!(f, "[IPv6:{a}]"),
            Domain::General(g) => write!(f, "[{g}]"),
        }
    }
}

/// A mailbox: the local part as sent (quotes kept) and an optional domain
/// (Postfix accepts unqualified `postmaster`). A domain name given with a
/// trailing dot (`u@example.com.`) is stored without it and `trailing_dot`
/// set: `Display` and `reply_name()` echo it as given, `internal()` (the
/// lookup and queue-file form) leaves it off, as Postfix's trivial-rewrite
/// does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    pub local: String,
    pub domain: Option<Domain>,
    pub trailing_dot: bool,
}

impl Address {
    /// The local part without quotes and backslash escapes.
    pub fn unquoted_local(&self) -> String {
        let Some(inner) = self
            .local
            .strip_prefix('"')
            .and_then(|l| l.strip_suffix('"'))
        else {
            return self.local.clone();
        };
        let mut out = String::new();
        let mut escaped = false;
        for c in inner.chars() {
            if !escaped && c == '\\' {
                escaped = true;
                continue;
            }
            escaped = false;
            out.push(c);
        }
        out
    }

    /// The form lookups and the queue file use: quotes and escapes
    /// removed (`"a b"@x` is `a b@x`), as Postfix's internal form, and
    /// without a trailing dot on the domain (`u@x.` is `u@x`), as
    /// Postfix's address resolver and canonicalization strip it.
    pub fn internal(&self) -> String {
        match &self.domain {
            Some(domain) => format!("{}@{domain}", self.unquoted_local()),
            None => self.unquoted_local(),
        }
    }

    /// Postfix's `reply_name`, what its smtpd replies echo: the internal
    /// form (quotes removed) with the domain exactly as given, trailing
    /// dot included (`<"u@x"@y.>` is `u@x@y.`).
    pub fn reply_name(&self) -> String {
        let mut name = self.internal();
        if self.trailing_dot {
            name.push('.');
        }
        name
    }

    /// Whether any part is non-ASCII (needs SMTPUTF8).
    pub fn is_utf8(&self) -> bool {
        !self.to_string().is_ascii()
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.domain {
            Some(d) => write!(f, "{}@{}", self.local, d)?,
            None => f.write_str(&self.local)?,
        }
        match self.trailing_dot {
            true => f.write_str("."),
            false => Ok(()),
        }
    }
}

/// A reverse or forward path: the null path `<>` or a mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Path {
    Null,
    Mailbox(Address),
}

impl fmt::Display for Path {
    /// The form Postfix logs between `<` and `>` (empty for the null path).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Path::Null => Ok(()),
            Path::Mailbox(a) => a.fmt(f),
        }
    }
}

/// Splits `<path> params...` (or `path params...`) into the path text and
/// the rest. Brackets, quotes and backslashes are honoured, so
/// `<"a b"@c> SIZE=1` splits after `>`.
pub fn split_path(arg: &str) -> Result<(&str, &str), AddressError> {
    let arg = arg.trim_start_matches([' ', '\t']);
    let end = if arg.starts_with('<') {
        bracket_end(arg)?
    } else {
        word_end(arg)
    };
    let (path, rest) = arg.split_at(end);
    if !rest.is_empty() && !rest.starts_with([' ', '\t']) {
        return Err(AddressError::Trailing);
    }
    Ok((path, rest))
}

/// The index just past the `>` that closes the leading `<`.
fn bracket_end(arg: &str) -> Result<usize, AddressError> {
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in arg.char_indices().skip(1) {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => quoted = !quoted,
            '>' if !quoted => return Ok(i + 1),
            _ => {}
        }
    }
    Err(AddressError::Unbalanced)
}

/// The index of the first blank outside quotes.
fn word_end(arg: &str) -> usize {
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in arg.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => quoted = !quoted,
            ' ' | '\t' if !quoted => return i,
            _ => {}
        }
    }
    arg.len()
}

/// Parses a path as `split_path` returned it. `utf8` allows non-ASCII
/// (smtputf8_enable).
pub fn parse_path(text: &str, utf8: bool) -> Result<Path, AddressError> {
    let inner = match text.strip_prefix('<') {
        Some(t) => t.strip_suffix('>').ok_or(AddressError::Unbalanced)?,
        None => text,
    };
    if inner.is_empty() {
        return Ok(Path::Null);
    }
    let mailbox = strip_route(inner, utf8)?;
    parse_mailbox(mailbox, utf8).map(Path::Mailbox)
}

/// Drops an RFC 5321 source route `@a,@b:`, checking its domains.
fn strip_route(text: &str, utf8: bool) -> Result<&str, AddressError> {
    if !text.starts_with('@') {
        return Ok(text);
    }
    let (route, rest) = text.split_once(':').ok_or(AddressError::Route)?;
    for hop in route.split(',') {
        let name = hop.strip_prefix('@').ok_or(AddressError::Route)?;
        parse_route_domain(name, utf8).map_err(|_| AddressError::Route)?;
    }
    Ok(rest)
}

/// `local@domain` or a bare local part.
fn parse_mailbox(text: &str, utf8: bool) -> Result<Address, AddressError> {
    let (local, domain_text) = split_mailbox(text)?;
    check_local(local, utf8)?;
    let (domain, trailing_dot) = match domain_text {
        None => (None, false),
        Some(name) => {
            let domain = parse_domain(name, utf8)?;
            let dot = matches!(domain, Domain::Name(_)) && name.ends_with('.');
            (Some(domain), dot)
        }
    };
    Ok(Address {
        local: local.to_string(),
        domain,
        trailing_dot,
    })
}

/// The local part and the text after its `@`, if any. A quoted local part
/// ends at its closing quote; an unquoted one at the last `@` (Postfix
/// splits `u@x@y` as `u@x` and `y`), or at the `@[` that starts an address
/// literal, whose content may itself hold `@`.
fn split_mailbox(text: &str) -> Result<(&str, Option<&str>), AddressError> {
    let local_end = match text.starts_with('"') {
        true => quoted_end(text)?,
        false if text.ends_with(']') => match text.rfind("@[") {
            Some(at) => at,
            None => text.rfind('@').unwrap_or(text.len()),
        },
        false => text.rfind('@').unwrap_or(text.len()),
    };
    let (local, rest) = text.split_at(local_end);
    match rest {
        "" => Ok((local, None)),
        _ => {
            let name = rest.strip_prefix('@').ok_or(AddressError::LocalPart)?;
            Ok((local, Some(name)))
        }
    }
}

/// The index just past the quote that closes a leading quoted string.
fn quoted_end(text: &str) -> Result<usize, AddressError> {
    let mut escaped = false;
    for (i, c) in text.char_indices().skip(1) {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => return Ok(i + 1),
            _ => {}
        }
    }
    Err(AddressError::LocalPart)
}

/// A dot-string (leniently: Postfix accepts `a..b` and leading dots) or a
/// quoted string; no controls, no specials outside quotes except `@`
/// between non-empty parts (`u@x`, as in `u@x@y`).
fn check_local(local: &str, utf8: bool) -> Result<(), AddressError> {
    if local.is_empty() || local.chars().any(|c| c.is_control()) {
        return Err(AddressError::LocalPart);
    }
    if !utf8 && !local.is_ascii() {
        return Err(AddressError::LocalPart);
    }
    if local.starts_with('"') {
        return Ok(());
    }
    const SPECIALS: &[char] = &['(', ')', '<', '>', '[', ']', '\\', ',', ';', ':', '"', ' '];
    match local.contains(SPECIALS) || local.split('@').any(str::is_empty) {
        true => Err(AddressError::LocalPart),
        false => Ok(()),
    }
}

/// A host name (letters, digits, `-`, `_`, UTF-8 with SMTPUTF8) or an
/// address literal. One trailing dot is allowed and left off the name.
/// An all-numeric name such as `127.0.0.1` is an error, as Postfix's
/// valid_hostname() has it (resolve_numeric_domain = no): an address
/// literal needs brackets.
pub fn parse_domain(name: &str, utf8: bool) -> Result<Domain, AddressError> {
    let domain = parse_route_domain(name, utf8)?;
    match &domain {
        Domain::Name(n) if n.chars().all(|c| c.is_ascii_digit() || c == '.') => {
            Err(AddressError::Domain)
        }
        _ => Ok(domain),
    }
}

/// `parse_domain` without the all-numeric check: a source-route hop is
/// dropped unresolved, so `@127.0.0.1:u@x` passes as before.
fn parse_route_domain(name: &str, utf8: bool) -> Result<Domain, AddressError> {
    if let Some(lit) = name.strip_prefix('[') {
        let lit = lit.strip_suffix(']').ok_or(AddressError::Literal)?;
        return parse_literal(lit);
    }
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() || name.len() > MAX_DOMAIN {
        return Err(AddressError::Domain);
    }
    for label in name.split('.') {
        check_label(label, utf8)?;
    }
    Ok(Domain::Name(name.to_string()))
}

fn check_label(label: &str, utf8: bool) -> Result<(), AddressError> {
    let ok_char = |c: char| {
        c.is_ascii_alphanumeric()
            || c == '-'
            || c == '_'
            || (utf8 && !c.is_ascii() && !c.is_control())
    };
    if label.is_empty() || label.len() > MAX_LABEL || !label.chars().all(ok_char) {
        return Err(AddressError::Domain);
    }
    Ok(())
}

/// `1.2.3.4`, `IPv6:::1`, or `tag:content` (RFC 5321 §4.1.3).
fn parse_literal(lit: &str) -> Result<Domain, AddressError> {
    if let Ok(v4) = lit.parse::<Ipv4Addr>() {
        return Ok(Domain::V4(v4));
    }
    if let Some(v6) = strip_prefix_ignore_case(lit, "IPv6:") {
        return v6
            .parse()
            .map(Domain::V6)
            .map_err(|_| AddressError::Literal);
    }
    let (tag, content) = lit.split_once(':').ok_or(AddressError::Literal)?;
    let tag_ok = !tag.is_empty() && tag.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    let content_ok = !content.is_empty()
        && content
            .bytes()
            .all(|b| (33..=126).contains(&b) && b != b'[' && b != b']' && b != b'\\');
    match tag_ok && content_ok {
        true => Ok(Domain::General(lit.to_string())),
        false => Err(AddressError::Literal),
    }
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(text: &str) -> Result<Path, AddressError> {
        let (p, rest) = split_path(text)?;
        assert!(rest.trim().is_empty(), "rest {rest:?}");
        parse_path(p, true)
    }

    fn mailbox(text: &str) -> Address {
        match path(text) {
            Ok(Path::Mailbox(a)) => a,
            other => panic!("{text}: {other:?}"),
        }
    }

    #[test]
    fn null_path() {
        assert_eq!(path("<>"), Ok(Path::Null));
    }

    #[test]
    fn plain_and_unbracketed() {
        assert_eq!(mailbox("<a@b.example>").to_string(), "a@b.example");
        assert_eq!(mailbox("a@b.example").to_string(), "a@b.example");
        assert_eq!(mailbox("<postmaster>").domain, None);
    }

    #[test]
    fn quoted_local_part() {
        let a = mailbox(r#"<"a b\"c"@x.example>"#);
        assert_eq!(a.local, r#""a b\"c""#);
        assert_eq!(a.unquoted_local(), "a b\"c");
        let at = mailbox(r#"<"u@evil"@x.example>"#);
        assert_eq!(at.unquoted_local(), "u@evil");
        assert_eq!(at.domain, Some(Domain::Name("x.example".into())));
    }

    #[test]
    fn source_route_is_stripped() {
        assert_eq!(
            mailbox("<@a.example,@b.example:u@c.example>").to_string(),
            "u@c.example"
        );
        assert_eq!(path("<@a.example:>"), Err(AddressError::LocalPart));
        assert_eq!(path("<@:u@c>"), Err(AddressError::Route));
        assert_eq!(path("<@a.example u@c>"), Err(AddressError::Route));
    }

    #[test]
    fn literals() {
        assert_eq!(
            mailbox("<u@[1.2.3.4]>").domain,
            Some(Domain::V4(Ipv4Addr::new(1, 2, 3, 4)))
        );
        assert_eq!(
            mailbox("<u@[IPv6:::1]>").domain,
            Some(Domain::V6(Ipv6Addr::LOCALHOST))
        );
        assert!(matches!(
            mailbox("<u@[x-tag:abc]>").domain,
            Some(Domain::General(_))
        ));
        for bad in ["<u@[1.2.3]>", "<u@[IPv6:zz]>", "<u@[1.2.3.4>", "<u@[]>"] {
            assert!(path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn malformed() {
        for bad in [
            "<a@b",
            "<a b@c>",
            "<a@>",
            "<@>",
            "<a@b..c>",
            "<a@@b>",
            "<a,b@c>",
            "<a@b>x",
            "<\"a@b>",
            "<a@-b_c\u{1}>",
        ] {
            assert!(path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn lengths() {
        let label = "a".repeat(64);
        assert!(path(&format!("<u@{label}.example>")).is_err());
        let long = vec!["abcdefghi"; 30].join(".");
        assert!(path(&format!("<u@{long}>")).is_err());
    }

    #[test]
    fn utf8_only_when_enabled() {
        let (p, _) = split_path("<é@exämple.org>").unwrap();
        assert!(parse_path(p, true).is_ok());
        assert!(parse_path(p, false).is_err());
    }

    #[test]
    fn at_in_local_part_splits_at_last_at() {
        let a = mailbox("<user@other.example@test.example>");
        assert_eq!(a.local, "user@other.example");
        assert_eq!(a.domain, Some(Domain::Name("test.example".into())));
        assert_eq!(a.to_string(), "user@other.example@test.example");
        assert_eq!(a.internal(), "user@other.example@test.example");
        assert_eq!(a.reply_name(), "user@other.example@test.example");
        let b = mailbox("a@b@c@d.example");
        assert_eq!(
            (b.local.as_str(), b.to_string()),
            ("a@b@c", "a@b@c@d.example".into())
        );
        let routed = mailbox("<@r.example:user@other.example@test.example>");
        assert_eq!(routed.local, "user@other.example");
        let lit = mailbox("<u@x.example@[1.2.3.4]>");
        assert_eq!(lit.local, "u@x.example");
        assert_eq!(lit.domain, Some(Domain::V4(Ipv4Addr::new(1, 2, 3, 4))));
        let general = mailbox("<u@[x-tag:a@b]>");
        assert_eq!(general.local, "u");
        assert_eq!(general.domain, Some(Domain::General("x-tag:a@b".into())));
        for bad in [
            "<@user@x>",
            "<a@@b>",
            "<a@b@>",
            "<a@b@@c>",
            "<a b@c@d>",
            "<a@[1.2.3.4]@d>",
            "<\"a\"@b@c>",
            "<a\"b@c\"@d>",
            "<a@b@-c_\u{1}>",
            "<a@b@c..d>",
        ] {
            assert!(path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bare_ipv4_domain_is_an_error() {
        for bad in [
            "<user@127.0.0.1>",
            "user@127.0.0.1",
            "<user@127.0.0.1.>",
            "<user@1.2.3>",
            "<user@123>",
            "<u@x@127.0.0.1>",
        ] {
            assert_eq!(path(bad), Err(AddressError::Domain), "{bad}");
        }
        assert!(mailbox("<user@[127.0.0.1]>").domain == Some(Domain::V4(Ipv4Addr::LOCALHOST)));
        for good in ["<u@1.2.3.x>", "<u@123a>", "<u@1-2.example>", "<u@1_2>"] {
            assert!(path(good).is_ok(), "{good}");
        }
        // A source-route hop is dropped unresolved.
        assert_eq!(
            mailbox("<@127.0.0.1:u@x.example>").to_string(),
            "u@x.example"
        );
        assert!(parse_domain("10.0.0.1", false).is_err());
    }

    #[test]
    fn trailing_dot_is_echoed_but_not_looked_up() {
        let a = mailbox("<user@other.example.>");
        assert_eq!(a.domain, Some(Domain::Name("other.example".into())));
        assert!(a.trailing_dot);
        assert_eq!(a.to_string(), "user@other.example.");
        assert_eq!(Path::Mailbox(a.clone()).to_string(), "user@other.example.");
        assert_eq!(a.reply_name(), "user@other.example.");
        assert_eq!(a.internal(), "user@other.example");
        let q = mailbox("<\"a b\"@x.example.>");
        assert_eq!(q.to_string(), "\"a b\"@x.example.");
        assert_eq!(q.reply_name(), "a b@x.example.");
        assert_eq!(q.internal(), "a b@x.example");
        let plain = mailbox("<user@other.example>");
        assert!(!plain.trailing_dot);
        assert_eq!(plain.reply_name(), plain.internal());
        assert!(!mailbox("<postmaster>").trailing_dot);
        for bad in [
            "<u@.>",
            "<u@..>",
            "<u@x..>",
            "<u@x..y>",
            "<u@.x>",
            "<u@x.example..>",
            "<u@[1.2.3.4].>",
            "<u@x@.>",
        ] {
            assert!(path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn params_follow_path() {
        assert_eq!(split_path("<a@b> SIZE=10"), Ok(("<a@b>", " SIZE=10")));
        assert_eq!(split_path("a@b SIZE=10"), Ok(("a@b", " SIZE=10")));
        assert_eq!(
            split_path("<\"x>y\"@b> BODY=8BITMIME"),
            Ok(("<\"x>y\"@b>", " BODY=8BITMIME"))
        );
    }
}
