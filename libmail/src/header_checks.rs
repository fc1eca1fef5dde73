//! header_checks(5) and body_checks: looking a header field or a body
//! line up in a pattern table and turning the table's answer into a typed
//! action. Shared by cleanup (header_checks, body_checks) and later the
//! smtp client (smtp_header_checks). No I/O besides the table lookups;
//! what an action does to a message is the caller's business.

use thiserror::Error;

use crate::tables::{LookupError, Maps, OpenOptions, TableError};

/// What is being inspected; the log calls it by this name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Header,
    Body,
}

impl Class {
    pub fn name(self) -> &'static str {
        match self {
            Class::Header => "header",
            Class::Body => "body",
        }
    }
}

/// A table's answer, parsed (Postfix's cleanup_act()).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Refuse the message: `enhanced` is 4.x.x (try again) or 5.x.x.
    Reject { enhanced: String, text: String },
    /// Log and go on.
    Warn(String),
    /// Log as information and go on.
    Info(String),
    /// Accept, log, and throw away.
    Discard(String),
    /// Put the message in the hold queue.
    Hold(String),
    /// `transport:destination` for the whole message.
    Filter(String),
    /// Deliver to this address instead of the recipients.
    Redirect(String),
    /// Also deliver to this address.
    Bcc(String),
    /// Insert this text (a header field, or a body line) before the input.
    Prepend(String),
    /// Replace the input with this text.
    Replace(String),
    /// Delete the input.
    Ignore,
    /// Leave the input alone (DUNNO, OK).
    Dunno,
}

/// A table answer that is not a usable action; the caller warns and
/// goes on as with DUNNO, as Postfix does.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ActionError {
    #[error("unknown command in {map} map: {value}")]
    Unknown { map: String, value: String },
    #[error("{action} action without text in {map} map")]
    MissingText { map: String, action: &'static str },
    #[error("bad FILTER command {text} in {map} -- need transport:destination")]
    BadFilter { map: String, text: String },
    #[error("bad REDIRECT target \"{text}\" in {map} map -- need user@domain")]
    BadRedirect { map: String, text: String },
    #[error("bad BCC address \"{text}\" in {map} map -- need user@domain")]
    BadBcc { map: String, text: String },
    #[error(
        "bad {action} header text \"{text}\" in {map} map -- need \"headername: headervalue\""
    )]
    BadHeaderText {
        map: String,
        action: &'static str,
        text: String,
    },
}

/// The reply when REJECT gives no text of its own.
pub const DEFAULT_REJECT_DSN: &str = "5.7.1";
pub const DEFAULT_REJECT_TEXT: &str = "message content rejected";

/// Parses a table's answer. `map` names the parameter (`header_checks`)
/// for messages.
pub fn parse_action(value: &str, class: Class, map: &str) -> Result<Action, ActionError> {
    let value = value.trim();
    let (command, text) = match value.split_once([' ', '\t']) {
        Some((command, rest)) => (command, rest.trim_start()),
        None => (value, ""),
    };
    let need = |action: &'static str| -> Result<String, ActionError> {
        if text.is_empty() {
            return Err(ActionError::MissingText {
                map: map.to_string(),
                action,
            });
        }
        Ok(text.to_string())
    };
    let header_text = |action: &'static str| -> Result<String, ActionError> {
        let text = need(action)?;
        if class == Class::Header && !is_header(&text) {
            return Err(ActionError::BadHeaderText {
                map: map.to_string(),
                action,
                text,
            });
        }
        Ok(text)
    };
    Ok(match command.to_ascii_uppercase().as_str() {
        "REJECT" => reject(text),
        "WARN" => Action::Warn(text.to_string()),
        "INFO" => Action::Info(text.to_string()),
        "DISCARD" => Action::Discard(text.to_string()),
        "HOLD" => Action::Hold(text.to_string()),
        "FILTER" => {
            let target = need("FILTER")?;
            if !target.contains(':') {
                return Err(ActionError::BadFilter {
                    map: map.to_string(),
                    text: target,
                });
            }
            Action::Filter(target)
        }
        "REDIRECT" => {
            if !text.contains('@') {
                return Err(ActionError::BadRedirect {
                    map: map.to_string(),
                    text: text.to_string(),
                });
            }
            Action::Redirect(text.to_string())
        }
        "BCC" => {
            if !text.contains('@') {
                return Err(ActionError::BadBcc {
                    map: map.to_string(),
                    text: text.to_string(),
                });
            }
            Action::Bcc(text.to_string())
        }
        "PREPEND" => Action::Prepend(header_text("PREPEND")?),
        "REPLACE" => Action::Replace(header_text("REPLACE")?),
        // Optional text after these is allowed and ignored.
        "IGNORE" => Action::Ignore,
        "DUNNO" | "OK" => Action::Dunno,
        _ => {
            return Err(ActionError::Unknown {
                map: map.to_string(),
                value: value.to_string(),
            })
        }
    })
}

/// REJECT's text may start with its own enhanced status code; a 2.x.x
/// code makes no sense for a rejection and becomes 4.x.x, as in Postfix.
fn reject(text: &str) -> Action {
    if text.is_empty() {
        return Action::Reject {
            enhanced: DEFAULT_REJECT_DSN.to_string(),
            text: DEFAULT_REJECT_TEXT.to_string(),
        };
    }
    match split_dsn(text) {
        Some((dsn, rest)) => {
            let mut enhanced = dsn.to_string();
            if !enhanced.starts_with(['4', '5']) {
                enhanced.replace_range(0..1, "4");
            }
            Action::Reject {
                enhanced,
                text: rest.to_string(),
            }
        }
        None => Action::Reject {
            enhanced: DEFAULT_REJECT_DSN.to_string(),
            text: text.to_string(),
        },
    }
}

/// `5.7.1 rest` → (`5.7.1`, `rest`): an RFC 3463 code `D.DDD.DDD` at the
/// start, followed by white space or nothing.
pub fn split_dsn(text: &str) -> Option<(&str, &str)> {
    let end = text.find([' ', '\t']).unwrap_or(text.len());
    let code = &text[..end];
    let parts: Vec<&str> = code.split('.').collect();
    let digits = |s: &str, max: usize| {
        !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_digit())
    };
    let ok = parts.len() == 3
        && matches!(parts[0], "2" | "4" | "5")
        && digits(parts[1], 3)
        && digits(parts[2], 3);
    ok.then(|| (code, text[end..].trim_start()))
}

/// Whether `text` is `name: value` (a field name of printable ASCII
/// without a colon, then a colon).
pub fn is_header(text: &str) -> bool {
    header_name_len(text.as_bytes()).is_some()
}

/// The length of the field name when `line` starts a header field.
pub fn header_name_len(line: &[u8]) -> Option<usize> {
    let colon = line.iter().position(|&b| b == b':')?;
    let name = &line[..colon];
    // Postfix allows white space between the name and the colon.
    let trimmed = name.trim_ascii_end();
    let printable = trimmed.iter().all(|&b| (0x21..=0x7e).contains(&b));
    (!trimmed.is_empty() && printable).then_some(trimmed.len())
}

/// One `*_checks` parameter's tables.
pub struct Checks {
    maps: Maps,
}

impl Checks {
    /// Opens the tables `value` names; `None` when there are none.
    pub fn open(title: &str, value: &str) -> Result<Option<Checks>, TableError> {
        let maps = Maps::open(title, value, OpenOptions::default())?;
        Ok((!maps.dicts.is_empty()).then_some(Checks { maps }))
    }

    /// The parameter name, for messages.
    pub fn title(&self) -> &str {
        &self.maps.title
    }

    /// Looks `text` up (a whole header field, continuation lines
    /// included, or one body line, without its line end). `Ok(None)`:
    /// nothing matched.
    pub fn check(
        &mut self,
        text: &str,
        class: Class,
    ) -> Result<Option<Result<Action, ActionError>>, LookupError> {
        let Some(value) = self.maps.find(text, false)? else {
            return Ok(None);
        };
        Ok(Some(parse_action(&value, class, &self.maps.title)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(value: &str) -> Result<Action, ActionError> {
        parse_action(value, Class::Header, "header_checks")
    }

    #[test]
    fn reject_with_and_without_text() {
        assert_eq!(
            header("REJECT").unwrap(),
            Action::Reject {
                enhanced: "5.7.1".into(),
                text: "message content rejected".into()
            }
        );
        assert_eq!(
            header("reject no spam please").unwrap(),
            Action::Reject {
                enhanced: "5.7.1".into(),
                text: "no spam please".into()
            }
        );
        assert_eq!(
            header("REJECT 4.7.0 try later").unwrap(),
            Action::Reject {
                enhanced: "4.7.0".into(),
                text: "try later".into()
            }
        );
        assert_eq!(
            header("REJECT 2.0.0 odd").unwrap(),
            Action::Reject {
                enhanced: "4.0.0".into(),
                text: "odd".into()
            }
        );
    }

    #[test]
    fn every_action_parses() {
        assert_eq!(header("WARN spam?").unwrap(), Action::Warn("spam?".into()));
        assert_eq!(header("INFO x").unwrap(), Action::Info("x".into()));
        assert_eq!(header("DISCARD").unwrap(), Action::Discard(String::new()));
        assert_eq!(header("HOLD look").unwrap(), Action::Hold("look".into()));
        assert_eq!(
            header("FILTER smtp:[127.0.0.1]:10025").unwrap(),
            Action::Filter("smtp:[127.0.0.1]:10025".into())
        );
        assert_eq!(
            header("REDIRECT a@b.example").unwrap(),
            Action::Redirect("a@b.example".into())
        );
        assert_eq!(
            header("BCC c@b.example").unwrap(),
            Action::Bcc("c@b.example".into())
        );
        assert_eq!(
            header("PREPEND X-Seen: yes").unwrap(),
            Action::Prepend("X-Seen: yes".into())
        );
        assert_eq!(
            header("REPLACE Subject: clean").unwrap(),
            Action::Replace("Subject: clean".into())
        );
        assert_eq!(header("IGNORE whatever").unwrap(), Action::Ignore);
        assert_eq!(header("DUNNO").unwrap(), Action::Dunno);
        assert_eq!(header("OK").unwrap(), Action::Dunno);
    }

    #[test]
    fn bad_answers_are_errors_with_postfix_wording() {
        let err = header("EXPLODE now").unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown command in header_checks map: EXPLODE now"
        );
        assert!(matches!(
            header("FILTER nocolon"),
            Err(ActionError::BadFilter { .. })
        ));
        assert!(matches!(
            header("REDIRECT nobody"),
            Err(ActionError::BadRedirect { .. })
        ));
        assert!(matches!(
            header("PREPEND not a header"),
            Err(ActionError::BadHeaderText { .. })
        ));
        assert!(matches!(
            header("REPLACE"),
            Err(ActionError::MissingText { .. })
        ));
        // In body_checks, PREPEND text is a body line, not a header.
        assert_eq!(
            parse_action("PREPEND just text", Class::Body, "body_checks").unwrap(),
            Action::Prepend("just text".into())
        );
    }

    #[test]
    fn dsn_and_header_syntax() {
        assert_eq!(split_dsn("5.7.1 go away"), Some(("5.7.1", "go away")));
        assert_eq!(split_dsn("4.2.10"), Some(("4.2.10", "")));
        assert_eq!(split_dsn("5.7 nope"), None);
        assert_eq!(split_dsn("550 5.7.1 x"), None);
        assert!(is_header("Subject: hi"));
        assert!(is_header("X-Empty:"));
        assert!(is_header("Name : spaced"));
        assert!(!is_header(": no name"));
        assert!(!is_header("no colon"));
        assert!(!is_header("two words: x"));
    }

    #[test]
    fn tables_are_consulted_with_the_whole_text() {
        let mut checks = Checks::open(
            "header_checks",
            "inline:{ {subject: buy now=REJECT}, {x-bad: 1=FROBNICATE} }",
        )
        .unwrap()
        .unwrap();
        assert_eq!(checks.title(), "header_checks");
        assert!(matches!(
            checks.check("Subject: BUY NOW", Class::Header).unwrap(),
            Some(Ok(Action::Reject { .. }))
        ));
        assert!(matches!(
            checks.check("X-Bad: 1", Class::Header).unwrap(),
            Some(Err(ActionError::Unknown { .. }))
        ));
        assert_eq!(checks.check("Subject: hi", Class::Header).unwrap(), None);
        assert!(Checks::open("body_checks", "").unwrap().is_none());
    }
}
