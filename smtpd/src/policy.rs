//! What a session needs from outside, as traits the daemon implements:
//! `Policy` (smtpd_*_restrictions, ETRN's flush service) and `MessageSink`
//! (the cleanup service that writes the queue file). The engine itself does
//! no I/O and no lookups.

use crate::address::{Address, Path};
use crate::params::{MailParams, RcptParams};
use crate::reply::Reply;
use crate::settings::Client;

/// A refusal as a restriction produced it, e.g. `554 5.7.1 <u@x>: Relay
/// access denied`. A 4xx code is a deferral.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: u16,
    pub enhanced: String,
    pub text: String,
}

impl Refusal {
    pub fn new(code: u16, enhanced: &str, text: impl Into<String>) -> Refusal {
        Refusal {
            code,
            enhanced: enhanced.to_string(),
            text: text.into(),
        }
    }

    pub fn reply(&self) -> Reply {
        Reply::new(self.code, &self.enhanced, self.text.clone())
    }
}

/// The outcome of one restriction stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Accept,
    /// Reject (5xx) or defer (4xx) the command.
    Reject(Refusal),
    /// Accept, but discard the message; the text is logged.
    Discard(String),
    /// Accept, but place the message on hold; the text is logged.
    Hold(String),
}

/// What the session knows when a restriction is evaluated.
#[derive(Debug, Clone, Copy)]
pub struct View<'a> {
    pub client: &'a Client,
    pub helo: Option<&'a str>,
    pub sender: Option<&'a Path>,
    pub recipient: Option<&'a Address>,
    /// `SMTP`, `ESMTP`, ...
    pub protocol: &'a str,
    /// The client sent commands before it should have (reject_unauth_pipelining).
    pub improper_pipelining: bool,
    pub recipient_count: usize,
}

/// ETRN's answer from the flush service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Etrn {
    /// The site's mail is on its way: `250 Queuing started`.
    Started,
    /// Not in fast_flush_domains: `459 <site>: service unavailable`.
    Denied,
    /// The service found the request malformed: `458`.
    Bad,
    /// The service could not be reached or failed: `458`.
    Failed,
}

/// smtpd_*_restrictions. Every stage accepts unless overridden.
pub trait Policy {
    fn check_client(&mut self, _view: &View) -> Decision {
        Decision::Accept
    }
    fn check_helo(&mut self, _view: &View) -> Decision {
        Decision::Accept
    }
    fn check_sender(&mut self, _view: &View) -> Decision {
        Decision::Accept
    }
    fn check_recipient(&mut self, _view: &View) -> Decision {
        Decision::Accept
    }
    /// VRFY: the recipient restrictions for the address.
    fn check_vrfy(&mut self, _view: &View) -> Decision {
        Decision::Accept
    }
    fn check_data(&mut self, _view: &View) -> Decision {
        Decision::Accept
    }
    fn check_end_of_data(&mut self, _view: &View) -> Decision {
        Decision::Accept
    }
    /// ETRN: smtpd_etrn_restrictions for the domain.
    fn check_etrn(&mut self, _view: &View, _domain: &str) -> Decision {
        Decision::Accept
    }
    /// ETRN: ask the flush service to deliver mail for a domain.
    fn etrn(&mut self, _view: &View, _domain: &str) -> Etrn {
        Etrn::Denied
    }
    /// What the checks since the last call asked for besides their
    /// decision (PREPEND, REDIRECT, FILTER), each with its log text; the
    /// session takes them after every check.
    fn side_actions(&mut self) -> Vec<(Disposition, String)> {
        Vec::new()
    }
}

/// The envelope given to the sink when the queue file is opened (at the
/// first accepted recipient, as Postfix does).
#[derive(Debug, Clone)]
pub struct Envelope<'a> {
    pub client: &'a Client,
    pub helo: Option<&'a str>,
    pub protocol: &'a str,
    pub sender: &'a Path,
    pub params: &'a MailParams,
}

/// How the sink failed: temporarily (`451 4.3.0 Error: queue file write
/// error`) or with cleanup's own refusal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SinkError {
    #[error("temporary failure: {0}")]
    Temporary(String),
    #[error("rejected: {}", .0.text)]
    Rejected(Refusal),
}

impl SinkError {
    pub fn reply(&self) -> Reply {
        match self {
            SinkError::Temporary(_) => Reply::new(451, "4.3.0", "Error: queue file write error"),
            SinkError::Rejected(r) => r.reply(),
        }
    }
}

/// What the session decided about a message besides delivering it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    Hold(String),
    Discard(String),
    /// Deliver to this address instead of the recipients.
    Redirect(String),
    /// `transport:nexthop` for the whole message.
    Filter(String),
    /// A header field to put before the Received: header.
    Prepend(String),
}

/// The cleanup service, one message at a time. Content arrives with CRLF
/// line ends, dot-unstuffed, the Received: header first.
pub trait MessageSink {
    /// Opens a queue file; returns its queue ID.
    fn begin(&mut self, envelope: &Envelope) -> Result<String, SinkError>;
    fn add_recipient(&mut self, recipient: &Address, params: &RcptParams) -> Result<(), SinkError>;
    fn set_disposition(&mut self, disposition: &Disposition) -> Result<(), SinkError>;
    fn write(&mut self, content: &[u8]) -> Result<(), SinkError>;
    /// Commits the queue file (durably); returns the queue ID.
    fn finish(&mut self) -> Result<String, SinkError>;
    /// Drops the open queue file, if any.
    fn abort(&mut self);
}
