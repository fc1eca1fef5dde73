//! ESMTP parameters of MAIL FROM (SIZE, BODY, RET, ENVID, SMTPUTF8; RFC
//! 1870, 6152, 3461, 6531) and RCPT TO (NOTIFY, ORCPT; RFC 3461), with the
//! reply Postfix gives for each malformed one.

use crate::reply::Reply;

/// BODY=: the content type the client declared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Body {
    #[default]
    Unspecified,
    SevenBit,
    EightBitMime,
}

/// RET=: what a DSN returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ret {
    Full,
    Hdrs,
}

/// What MAIL FROM carried besides the address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MailParams {
    pub size: Option<u64>,
    pub body: Body,
    pub ret: Option<Ret>,
    /// ENVID, decoded from xtext.
    pub envid: Option<String>,
    pub smtputf8: bool,
}

/// NOTIFY= flags (RFC 3461 §4.1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Notify {
    pub never: bool,
    pub success: bool,
    pub failure: bool,
    pub delay: bool,
}

/// What RCPT TO carried besides the address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RcptParams {
    pub notify: Option<Notify>,
    /// ORCPT as `type;address`, the address decoded from xtext.
    pub orcpt: Option<(String, String)>,
}

/// Which optional extensions the session offers.
#[derive(Debug, Clone, Copy)]
pub struct Offered {
    pub dsn: bool,
    pub smtputf8: bool,
}

fn unsupported(param: &str) -> Reply {
    Reply::new(555, "5.5.4", format!("Unsupported option: {param}"))
}

/// Parses MAIL FROM's parameters (whitespace-separated `KEY[=VALUE]`).
pub fn parse_mail(text: &str, offered: Offered) -> Result<MailParams, Reply> {
    let mut params = MailParams::default();
    for word in text.split_ascii_whitespace() {
        mail_param(word, offered, &mut params)?;
    }
    Ok(params)
}

fn mail_param(word: &str, offered: Offered, params: &mut MailParams) -> Result<(), Reply> {
    let (key, value) = split_param(word);
    match key.to_ascii_uppercase().as_str() {
        "SIZE" => params.size = Some(parse_size(value)?),
        "BODY" => params.body = parse_body(value).ok_or_else(|| unsupported(word))?,
        "RET" if offered.dsn => params.ret = Some(parse_ret(value)?),
        "ENVID" if offered.dsn => {
            let bad = || Reply::new(501, "5.5.4", "Bad ENVID parameter syntax");
            params.envid = Some(xtext_decode(value.ok_or_else(bad)?).ok_or_else(bad)?);
        }
        "SMTPUTF8" if offered.smtputf8 && value.is_none() => params.smtputf8 = true,
        _ => return Err(unsupported(word)),
    }
    Ok(())
}

fn split_param(word: &str) -> (&str, Option<&str>) {
    match word.split_once('=') {
        Some((k, v)) => (k, Some(v)),
        None => (word, None),
    }
}

fn parse_size(value: Option<&str>) -> Result<u64, Reply> {
    let bad = || Reply::new(501, "5.5.4", "Bad message size syntax");
    let digits = value
        .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(bad)?;
    // Postfix treats an absurd number as "too large", not as bad syntax.
    Ok(digits.parse().unwrap_or(u64::MAX))
}

fn parse_body(value: Option<&str>) -> Option<Body> {
    match value?.to_ascii_uppercase().as_str() {
        "7BIT" => Some(Body::SevenBit),
        "8BITMIME" => Some(Body::EightBitMime),
        _ => None,
    }
}

fn parse_ret(value: Option<&str>) -> Result<Ret, Reply> {
    match value.map(str::to_ascii_uppercase).as_deref() {
        Some("FULL") => Ok(Ret::Full),
        Some("HDRS") => Ok(Ret::Hdrs),
        _ => Err(Reply::new(501, "5.5.4", "Bad RET parameter syntax")),
    }
}

/// Parses RCPT TO's parameters.
pub fn parse_rcpt(text: &str, offered: Offered) -> Result<RcptParams, Reply> {
    let mut params = RcptParams::default();
    for word in text.split_ascii_whitespace() {
        let (key, value) = split_param(word);
        match key.to_ascii_uppercase().as_str() {
            "NOTIFY" if offered.dsn => params.notify = Some(parse_notify(value)?),
            "ORCPT" if offered.dsn => params.orcpt = Some(parse_orcpt(value)?),
            _ => return Err(unsupported(word)),
        }
    }
    Ok(params)
}

fn parse_notify(value: Option<&str>) -> Result<Notify, Reply> {
    let bad = || Reply::new(501, "5.5.4", "Error: Bad NOTIFY parameter syntax");
    let mut notify = Notify::default();
    for word in value.ok_or_else(bad)?.split(',') {
        match word.to_ascii_uppercase().as_str() {
            "NEVER" => notify.never = true,
            "SUCCESS" => notify.success = true,
            "FAILURE" => notify.failure = true,
            "DELAY" => notify.delay = true,
            _ => return Err(bad()),
        }
    }
    let others = notify.success || notify.failure || notify.delay;
    match notify.never && others {
        true => Err(bad()),
        false => Ok(notify),
    }
}

fn parse_orcpt(value: Option<&str>) -> Result<(String, String), Reply> {
    let bad = || Reply::new(501, "5.5.4", "Error: Bad ORCPT parameter syntax");
    let (kind, addr) = value.and_then(|v| v.split_once(';')).ok_or_else(bad)?;
    let kind_ok = !kind.is_empty() && kind.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    let addr = xtext_decode(addr)
        .filter(|a| kind_ok && !a.is_empty())
        .ok_or_else(bad)?;
    Ok((kind.to_string(), addr))
}

/// Decodes RFC 3461 xtext (`+XX` hex escapes, printable ASCII otherwise).
pub fn xtext_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => {
                let hex = text.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b @ 33..=126 if b != b'=' => {
                out.push(b);
                i += 1;
            }
            _ => return None,
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: Offered = Offered {
        dsn: true,
        smtputf8: true,
    };

    fn err(r: Result<impl std::fmt::Debug, Reply>) -> String {
        r.expect_err("expected an error").text()
    }

    #[test]
    fn mail_params() {
        let p = parse_mail(" SIZE=100 BODY=8bitmime RET=hdrs ENVID=x+2By SMTPUTF8", ALL).unwrap();
        assert_eq!(p.size, Some(100));
        assert_eq!(p.body, Body::EightBitMime);
        assert_eq!(p.ret, Some(Ret::Hdrs));
        assert_eq!(p.envid.as_deref(), Some("x+y"));
        assert!(p.smtputf8);
    }

    #[test]
    fn mail_param_errors() {
        assert_eq!(
            err(parse_mail("FOO=bar", ALL)),
            "555 5.5.4 Unsupported option: FOO=bar"
        );
        assert_eq!(
            err(parse_mail("SIZE=abc", ALL)),
            "501 5.5.4 Bad message size syntax"
        );
        assert_eq!(
            err(parse_mail("SIZE=", ALL)),
            "501 5.5.4 Bad message size syntax"
        );
        assert_eq!(
            err(parse_mail("BODY=FOO", ALL)),
            "555 5.5.4 Unsupported option: BODY=FOO"
        );
        assert_eq!(
            err(parse_mail("RET=FOO", ALL)),
            "501 5.5.4 Bad RET parameter syntax"
        );
        assert_eq!(
            err(parse_mail("ENVID=a+zz", ALL)),
            "501 5.5.4 Bad ENVID parameter syntax"
        );
        assert_eq!(
            err(parse_mail("SMTPUTF8=yes", ALL)),
            "555 5.5.4 Unsupported option: SMTPUTF8=yes"
        );
        let none = Offered {
            dsn: false,
            smtputf8: false,
        };
        assert_eq!(
            err(parse_mail("RET=FULL", none)),
            "555 5.5.4 Unsupported option: RET=FULL"
        );
        assert_eq!(
            err(parse_mail("SMTPUTF8", none)),
            "555 5.5.4 Unsupported option: SMTPUTF8"
        );
    }

    #[test]
    fn huge_size_is_too_large_not_bad() {
        assert_eq!(
            parse_mail("SIZE=999999999999999999999999", ALL)
                .unwrap()
                .size,
            Some(u64::MAX)
        );
    }

    #[test]
    fn rcpt_params() {
        let p = parse_rcpt("NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a+40b", ALL).unwrap();
        assert_eq!(
            p.notify,
            Some(Notify {
                success: true,
                failure: true,
                ..Notify::default()
            })
        );
        assert_eq!(p.orcpt, Some(("rfc822".into(), "a@b".into())));
        assert_eq!(
            err(parse_rcpt("NOTIFY=FOO", ALL)),
            "501 5.5.4 Error: Bad NOTIFY parameter syntax"
        );
        assert_eq!(
            err(parse_rcpt("NOTIFY=NEVER,DELAY", ALL)),
            "501 5.5.4 Error: Bad NOTIFY parameter syntax"
        );
        assert_eq!(
            err(parse_rcpt("ORCPT=bad", ALL)),
            "501 5.5.4 Error: Bad ORCPT parameter syntax"
        );
        assert_eq!(
            err(parse_rcpt("FOO=1", ALL)),
            "555 5.5.4 Unsupported option: FOO=1"
        );
    }
}
