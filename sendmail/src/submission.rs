//! The envelope of one locally submitted message, as the cleanup requests
//! that sendmail writes to postdrop, ahead of the content.

use libmail::cleanup::{Flags, Request};
use libmail::queue::{attr, Recipient};

/// What the command line and the user's identity say about the message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Submission {
    pub extract: bool,
    pub sender: String,
    pub full_name: Option<String>,
    /// Each command-line word's addresses; a word without any gives one
    /// empty recipient, which cleanup reports, as in Postfix.
    pub recipients: Vec<String>,
    pub dsn_notify: u8,
    pub dsn_ret: u8,
    pub dsn_envid: Option<String>,
    pub rewrite_context: String,
    pub encoding: Option<String>,
}

impl Submission {
    /// The recipients of the command-line words.
    pub fn recipients_of(words: &[String]) -> Vec<String> {
        let mut out = Vec::new();
        for word in words {
            let found = crate::address::address_list(word);
            match found.is_empty() {
                true => out.push(String::new()),
                false => out.extend(found),
            }
        }
        out
    }

    /// The first request: it opens the maildrop file.
    pub fn open(&self) -> Request {
        Request::Open(Flags {
            extract: self.extract,
            ..Flags::default()
        })
    }

    /// Everything between the open and the content.
    pub fn envelope(&self) -> Vec<Request> {
        let mut out = Vec::new();
        if let Some(envid) = &self.dsn_envid {
            out.push(Request::DsnEnvid(envid.clone()));
        }
        if self.dsn_ret != 0 {
            out.push(Request::DsnRet(self.dsn_ret));
        }
        out.push(Request::Attribute(
            attr::REWRITE_CONTEXT.to_string(),
            self.rewrite_context.clone(),
        ));
        if let Some(name) = &self.full_name {
            out.push(Request::Fullname(name.clone()));
        }
        out.push(Request::Sender(self.sender.clone()));
        if let Some(encoding) = &self.encoding {
            out.push(Request::Attribute(
                attr::ENCODING.to_string(),
                encoding.clone(),
            ));
        }
        for address in &self.recipients {
            out.push(Request::Recipient(Recipient {
                dsn_notify: self.dsn_notify,
                ..Recipient::new(address)
            }));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use libmail::queue::{notify, ret};

    #[test]
    fn envelope_carries_every_option() {
        let s = Submission {
            extract: true,
            sender: "joe@example.com".into(),
            full_name: Some("Joe User".into()),
            recipients: vec!["a@x".into(), "b@y".into()],
            dsn_notify: notify::SUCCESS | notify::FAILURE,
            dsn_ret: ret::HDRS,
            dsn_envid: Some("env-1".into()),
            rewrite_context: "local".into(),
            encoding: Some("8bit".into()),
        };
        assert_eq!(
            s.open(),
            Request::Open(Flags {
                extract: true,
                filter: false,
                map: false
            })
        );
        let rcpt = |a: &str| {
            Request::Recipient(Recipient {
                dsn_notify: notify::SUCCESS | notify::FAILURE,
                ..Recipient::new(a)
            })
        };
        assert_eq!(
            s.envelope(),
            vec![
                Request::DsnEnvid("env-1".into()),
                Request::DsnRet(ret::HDRS),
                Request::Attribute("rewrite_context".into(), "local".into()),
                Request::Fullname("Joe User".into()),
                Request::Sender("joe@example.com".into()),
                Request::Attribute("encoding".into(), "8bit".into()),
                rcpt("a@x"),
                rcpt("b@y"),
            ]
        );
    }

    #[test]
    fn plain_submission_is_short() {
        let s = Submission {
            sender: "joe".into(),
            recipients: vec!["bob".into()],
            rewrite_context: "local".into(),
            ..Submission::default()
        };
        assert_eq!(s.open(), Request::Open(Flags::default()));
        assert_eq!(
            s.envelope(),
            vec![
                Request::Attribute("rewrite_context".into(), "local".into()),
                Request::Sender("joe".into()),
                Request::Recipient(Recipient::new("bob")),
            ]
        );
    }

    #[test]
    fn command_line_words_become_recipients() {
        let words = vec!["a@x, Bob <b@y>".to_string(), "(nobody)".to_string()];
        assert_eq!(Submission::recipients_of(&words), ["a@x", "b@y", ""]);
    }
}
