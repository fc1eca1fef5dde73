//! The cleanup service's protocol, shared by its clients (smtpd, pickup,
//! and later the bounce and sendmail paths) and by cleanup itself.
//!
//! A client connects to `$queue_directory/public/$cleanup_service_name`
//! and speaks libmail::ipc messages:
//!
//! ```text
//! client                                   cleanup
//!   open  flags=filter,map                 ─►
//!                                          ◄─  status=ok queue_id=4F9D1C2A3B
//!   sender, attr, recipient..., content..., end  ─►   (no replies in between)
//!                                          ◄─  status=ok|reject|tempfail ...
//! ```
//!
//! Everything between `open`'s reply and `end` goes one way, so a client
//! buffers it and a small message costs the client two writes and two
//! reads. cleanup commits the queue file durably before it says
//! `status=ok`; only then may smtpd say `250 … queued as`.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use thiserror::Error;

use crate::config::{Config, ConfigError};
use crate::ipc::{self, Decoder, IpcError, Message};
use crate::queue::Recipient;

/// Requests are collected up to this size before they are written.
const SEND_AT: usize = 64 * 1024;
/// How long a client waits for cleanup's answers (Postfix's ipc_timeout).
const REPLY_TIMEOUT: Duration = Duration::from_secs(3600);

/// What the client asks of cleanup for this message (Postfix's
/// CLEANUP_FLAG_*).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flags {
    /// Apply header_checks and body_checks.
    pub filter: bool,
    /// Apply canonical, masquerade and virtual alias mapping.
    pub map: bool,
    /// Take the recipients from To:, Cc: and Bcc: (`sendmail -t`).
    pub extract: bool,
}

impl Flags {
    /// What smtpd and pickup ask for.
    pub fn standard() -> Flags {
        Flags {
            filter: true,
            map: true,
            extract: false,
        }
    }

    fn encode(&self) -> String {
        let names = [
            (self.filter, "filter"),
            (self.map, "map"),
            (self.extract, "extract"),
        ];
        let set: Vec<&str> = names
            .iter()
            .filter(|(on, _)| *on)
            .map(|(_, n)| *n)
            .collect();
        set.join(",")
    }

    fn decode(text: &str) -> Result<Flags, IpcError> {
        let mut flags = Flags::default();
        for word in text.split(',').filter(|w| !w.is_empty()) {
            match word {
                "filter" => flags.filter = true,
                "map" => flags.map = true,
                "extract" => flags.extract = true,
                _ => return Err(bad_value("flags", format!("unknown flag {word}"))),
            }
        }
        Ok(flags)
    }
}

/// What a client's restrictions decided besides delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    Hold(String),
    Discard(String),
    /// `transport:nexthop` for the whole message.
    Filter(String),
    Redirect(String),
}

/// One request from client to cleanup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Open(Flags),
    /// The envelope sender, empty for `<>`, as the client gave it.
    Sender(String),
    /// The sender's full name (`sendmail -F`).
    Fullname(String),
    /// A named attribute (`queue::attr`).
    Attribute(String, String),
    Recipient(Recipient),
    DsnEnvid(String),
    DsnRet(u8),
    /// Seconds since the epoch when the message arrived (pickup keeps the
    /// maildrop file's time).
    Arrival(u64),
    Disposition(Disposition),
    /// Message bytes, headers then body, with CRLF or LF line ends.
    Content(Vec<u8>),
    End,
}

impl Request {
    pub fn to_message(&self) -> Message {
        let m = |kind: &str| Message::new().with("request", kind);
        match self {
            Request::Open(flags) => m("open").with("flags", flags.encode()),
            Request::Sender(address) => m("sender").with("address", address),
            Request::Fullname(name) => m("fullname").with("name", name),
            Request::Attribute(name, value) => m("attr").with("name", name).with("value", value),
            Request::Recipient(r) => m("recipient")
                .with("address", &r.address)
                .with("orig", &r.orig_recipient)
                .with("orcpt", &r.dsn_orcpt)
                .with("notify", r.dsn_notify.to_string()),
            Request::DsnEnvid(envid) => m("envid").with("value", envid),
            Request::DsnRet(flags) => m("ret").with("value", flags.to_string()),
            Request::Arrival(seconds) => m("arrival").with("value", seconds.to_string()),
            Request::Disposition(d) => {
                let (action, text) = match d {
                    Disposition::Hold(t) => ("hold", t),
                    Disposition::Discard(t) => ("discard", t),
                    Disposition::Filter(t) => ("filter", t),
                    Disposition::Redirect(t) => ("redirect", t),
                };
                m("disposition").with("action", action).with("value", text)
            }
            Request::Content(bytes) => m("content").with("data", bytes),
            Request::End => m("end"),
        }
    }

    pub fn from_message(message: &Message) -> Result<Request, IpcError> {
        let text = |name: &str| message.text(name).map(str::to_string);
        Ok(match message.text("request")? {
            "open" => Request::Open(Flags::decode(message.text("flags")?)?),
            "sender" => Request::Sender(text("address")?),
            "fullname" => Request::Fullname(text("name")?),
            "attr" => Request::Attribute(text("name")?, text("value")?),
            "recipient" => Request::Recipient(Recipient {
                address: text("address")?,
                orig_recipient: text("orig")?,
                dsn_orcpt: text("orcpt")?,
                dsn_notify: small_number(message, "notify")?,
                ..Recipient::default()
            }),
            "envid" => Request::DsnEnvid(text("value")?),
            "ret" => Request::DsnRet(small_number(message, "value")?),
            "arrival" => Request::Arrival(message.number("value")?),
            "disposition" => Request::Disposition(match message.text("action")? {
                "hold" => Disposition::Hold(text("value")?),
                "discard" => Disposition::Discard(text("value")?),
                "filter" => Disposition::Filter(text("value")?),
                "redirect" => Disposition::Redirect(text("value")?),
                other => return Err(bad_value("action", other.to_string())),
            }),
            "content" => Request::Content(
                message
                    .get("data")
                    .ok_or_else(|| IpcError::Missing("data".to_string()))?
                    .to_vec(),
            ),
            "end" => Request::End,
            other => return Err(bad_value("request", other.to_string())),
        })
    }
}

fn small_number(message: &Message, name: &str) -> Result<u8, IpcError> {
    u8::try_from(message.number(name)?).map_err(|_| bad_value(name, "out of range".to_string()))
}

fn bad_value(name: &str, reason: String) -> IpcError {
    IpcError::BadValue {
        name: name.to_string(),
        reason,
    }
}

/// cleanup's answer at the end of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Committed to the queue (or discarded on purpose, which the client
    /// reports as success, as Postfix does).
    Queued,
    /// Refused for good (header_checks REJECT, too big): the SMTP reply.
    Rejected {
        code: u16,
        enhanced: String,
        text: String,
    },
    /// Could not be queued now; try again later.
    Failed(String),
}

impl Outcome {
    pub fn to_message(&self, queue_id: &str) -> Message {
        let m = Message::new().with("queue_id", queue_id);
        match self {
            Outcome::Queued => m.with("status", "ok"),
            Outcome::Rejected {
                code,
                enhanced,
                text,
            } => m
                .with("status", "reject")
                .with("code", code.to_string())
                .with("enhanced", enhanced)
                .with("text", text),
            Outcome::Failed(text) => m.with("status", "tempfail").with("text", text),
        }
    }

    pub fn from_message(message: &Message) -> Result<Outcome, IpcError> {
        Ok(match message.text("status")? {
            "ok" => Outcome::Queued,
            "reject" => Outcome::Rejected {
                code: u16::try_from(message.number("code")?)
                    .map_err(|_| bad_value("code", "out of range".to_string()))?,
                enhanced: message.text("enhanced")?.to_string(),
                text: message.text("text")?.to_string(),
            },
            "tempfail" => Outcome::Failed(message.text("text")?.to_string()),
            other => return Err(bad_value("status", other.to_string())),
        })
    }
}

#[derive(Debug, Error)]
pub enum CleanupError {
    #[error("connect to {}: {source}", path.display())]
    Connect {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cleanup service: {0}")]
    Ipc(#[from] IpcError),
    #[error("cleanup service: {0}")]
    Config(#[from] ConfigError),
    #[error("cleanup service: {0}")]
    Refused(String),
}

/// Where the cleanup service listens, from main.cf.
pub fn service_path(config: &Config) -> Result<PathBuf, ConfigError> {
    let queue = config.string("queue_directory")?;
    let name = config.string("cleanup_service_name")?;
    Ok(Path::new(&queue).join("public").join(name))
}

/// One message on its way into the queue through cleanup.
pub struct CleanupClient {
    stream: UnixStream,
    decoder: Decoder,
    pending: Vec<u8>,
    queue_id: String,
}

impl CleanupClient {
    /// Connects, opens a queue file and learns its ID.
    pub fn connect(path: &Path, flags: Flags) -> Result<CleanupClient, CleanupError> {
        let connect_error = |source| CleanupError::Connect {
            path: path.to_path_buf(),
            source,
        };
        let mut stream = UnixStream::connect(path).map_err(connect_error)?;
        stream
            .set_read_timeout(Some(REPLY_TIMEOUT))
            .map_err(connect_error)?;
        ipc::send(&mut stream, &Request::Open(flags).to_message())?;
        let mut decoder = Decoder::new();
        let reply = ipc::receive(&mut stream, &mut decoder)?;
        if reply.text("status")? != "ok" {
            let text = reply.text("text").unwrap_or("queue file create error");
            return Err(CleanupError::Refused(text.to_string()));
        }
        let queue_id = reply.text("queue_id")?.to_string();
        Ok(CleanupClient {
            stream,
            decoder,
            pending: Vec::with_capacity(SEND_AT + 1024),
            queue_id,
        })
    }

    pub fn queue_id(&self) -> &str {
        &self.queue_id
    }

    /// Queues a request; it is written when enough have gathered.
    pub fn send(&mut self, request: &Request) -> Result<(), CleanupError> {
        self.pending
            .extend_from_slice(&request.to_message().encode()?);
        if self.pending.len() >= SEND_AT {
            self.flush()?;
        }
        Ok(())
    }

    /// Content in frames no larger than the send buffer.
    pub fn content(&mut self, bytes: &[u8]) -> Result<(), CleanupError> {
        for piece in bytes.chunks(SEND_AT) {
            self.send(&Request::Content(piece.to_vec()))?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), CleanupError> {
        self.stream
            .write_all(&self.pending)
            .map_err(IpcError::from)?;
        self.pending.clear();
        Ok(())
    }

    /// Ends the message and waits for cleanup's verdict.
    pub fn finish(mut self) -> Result<Outcome, CleanupError> {
        self.send(&Request::End)?;
        self.flush()?;
        let reply = ipc::receive(&mut self.stream, &mut self.decoder)?;
        Ok(Outcome::from_message(&reply)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(request: Request) {
        let frame = request.to_message().encode().unwrap();
        let mut decoder = Decoder::new();
        decoder.push(&frame);
        let message = decoder.next_message().unwrap().unwrap();
        assert_eq!(Request::from_message(&message).unwrap(), request);
    }

    #[test]
    fn every_request_round_trips() {
        let recipient = Recipient {
            address: "b@example.com".into(),
            orig_recipient: "B@Example.com".into(),
            dsn_orcpt: "rfc822;B@Example.com".into(),
            dsn_notify: 3,
            ..Recipient::default()
        };
        for request in [
            Request::Open(Flags::standard()),
            Request::Open(Flags::default()),
            Request::Sender(String::new()),
            Request::Fullname("Alice Q".into()),
            Request::Attribute("client_name".into(), "localhost".into()),
            Request::Recipient(recipient),
            Request::DsnEnvid("xyz".into()),
            Request::DsnRet(2),
            Request::Arrival(1_700_000_000),
            Request::Disposition(Disposition::Hold("held".into())),
            Request::Disposition(Disposition::Redirect("x@y".into())),
            Request::Content(vec![0, 0xff, b'\r', b'\n']),
            Request::End,
        ] {
            round_trip(request);
        }
    }

    #[test]
    fn outcomes_round_trip() {
        for outcome in [
            Outcome::Queued,
            Outcome::Failed("queue file write error".into()),
            Outcome::Rejected {
                code: 550,
                enhanced: "5.7.1".into(),
                text: "no thanks".into(),
            },
        ] {
            let message = outcome.to_message("ABC");
            assert_eq!(Outcome::from_message(&message).unwrap(), outcome);
        }
    }

    #[test]
    fn unknown_requests_and_flags_are_errors() {
        let bogus = Message::new().with("request", "launch");
        assert!(Request::from_message(&bogus).is_err());
        let flags = Message::new()
            .with("request", "open")
            .with("flags", "filter,fly");
        assert!(Request::from_message(&flags).is_err());
        let no_data = Message::new().with("request", "content");
        assert!(Request::from_message(&no_data).is_err());
    }
}
