//! The delivery protocol between qmgr and the delivery agents (local,
//! virtual, smtp, ...), over libmail::ipc on the agent's UNIX socket
//! `$queue_directory/private/TRANSPORT`.
//!
//! ```text
//! qmgr                                            agent
//!   request  queue_id, sender, nexthop, recipients ─►
//!                                                  delivers, logs each
//!                                                  recipient's to=<…> line
//!                                              ◄─  one result per recipient
//!   request ...                                ─►  (the connection is kept
//!                                                   for the next request)
//! ```
//!
//! The agent reads the content from the queue file itself (by queue name
//! and ID), so a request is small whatever the message size. It does not
//! touch the queue file's recipient records: qmgr records the outcome
//! (DESIGN.md §4), and for a message that is finished it simply removes
//! the file, which saves a write and an fsync per message.
//!
//! A recipient is identified in the reply by the offset of its record in
//! the queue file (`queue::Recipient::offset`), unique within a message.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::ipc::{self, Decoder, IpcError, Message};
use crate::queue::Recipient;

/// How long qmgr waits for an agent's answer before it gives up on the
/// request (Postfix's ipc_timeout; the agents have their own, shorter,
/// limits such as command_time_limit).
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(3600);

/// One delivery request: one message, one nexthop, some of its
/// recipients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRequest {
    /// The queue the file is in (`active`).
    pub queue_name: String,
    pub queue_id: String,
    /// When the message arrived (the queue file's arrival time).
    pub arrival_time: SystemTime,
    /// When qmgr moved the message into the active queue: the end of the
    /// first of the four delays (`delays=a/b/c/d`).
    pub active_time: SystemTime,
    /// The envelope sender, empty for the null sender.
    pub sender: String,
    /// Where the transport sends it (a domain, `[host]:port`, or for
    /// local delivery the recipient domain).
    pub nexthop: String,
    pub dsn_envid: Option<String>,
    /// `queue::ret::*`, 0 when not given.
    pub dsn_ret: u8,
    pub recipients: Vec<Recipient>,
}

/// What happened to one recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Delivered (or forwarded, or relayed): done.
    Sent,
    /// Try again later.
    Deferred,
    /// Failed for good: a non-delivery notification is due.
    Bounced,
}

impl Status {
    /// The word in `status=` log fields.
    pub fn name(self) -> &'static str {
        match self {
            Status::Sent => "sent",
            Status::Deferred => "deferred",
            Status::Bounced => "bounced",
        }
    }

    fn parse(text: &str) -> Result<Status, IpcError> {
        match text {
            "sent" => Ok(Status::Sent),
            "deferred" => Ok(Status::Deferred),
            "bounced" => Ok(Status::Bounced),
            other => Err(bad_value("status", format!("unknown status {other}"))),
        }
    }
}

/// The outcome for one recipient of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipientResult {
    /// The recipient record's offset, as in the request.
    pub offset: u64,
    pub status: Status,
    /// The enhanced status code, `2.0.0`, `4.4.1`, `5.1.1`.
    pub dsn: String,
    /// Why, as logged in parentheses and quoted in notifications:
    /// `delivered to maildir`, `unknown user: "x"`.
    pub reason: String,
    /// Where it went (`local`, `mx.example.com[192.0.2.1]:25`), for
    /// notifications; `none` when it never left.
    pub relay: String,
}

/// The agent's answer to a request: one result per recipient, in any
/// order. A recipient missing from it is treated as deferred by qmgr.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryReply {
    pub results: Vec<RecipientResult>,
}

/// The socket of the agent for `transport` under `queue_directory`.
pub fn agent_path(queue_directory: &Path, transport: &str) -> PathBuf {
    queue_directory.join("private").join(transport)
}

impl DeliveryRequest {
    pub fn encode(&self) -> Message {
        let mut m = Message::new()
            .with("request", "deliver")
            .with("queue_name", &self.queue_name)
            .with("queue_id", &self.queue_id)
            .with("arrival_time", micros(self.arrival_time).to_string())
            .with("active_time", micros(self.active_time).to_string())
            .with("sender", &self.sender)
            .with("nexthop", &self.nexthop)
            .with("ret", self.dsn_ret.to_string());
        if let Some(envid) = &self.dsn_envid {
            m.push("envid", envid);
        }
        for rcpt in &self.recipients {
            m.push("rcpt", &rcpt.address);
            m.push("orig_rcpt", &rcpt.orig_recipient);
            m.push("orcpt", &rcpt.dsn_orcpt);
            m.push("notify", rcpt.dsn_notify.to_string());
            m.push("offset", rcpt.offset.to_string());
        }
        m
    }

    pub fn decode(m: &Message) -> Result<DeliveryRequest, IpcError> {
        if m.text("request")? != "deliver" {
            return Err(bad_value("request", "not a delivery request".into()));
        }
        let mut request = DeliveryRequest {
            queue_name: m.text("queue_name")?.to_string(),
            queue_id: m.text("queue_id")?.to_string(),
            arrival_time: from_micros(m.number("arrival_time")?),
            active_time: from_micros(m.number("active_time")?),
            sender: m.text("sender")?.to_string(),
            nexthop: m.text("nexthop")?.to_string(),
            dsn_envid: m
                .get("envid")
                .map(|v| String::from_utf8_lossy(v).into_owned()),
            dsn_ret: small(m.number("ret")?, "ret")?,
            recipients: Vec::new(),
        };
        for (name, value) in &m.attributes {
            let text = || utf8(name, value);
            match name.as_str() {
                "rcpt" => request.recipients.push(Recipient::new(text()?)),
                "orig_rcpt" => current(&mut request)?.orig_recipient = text()?.to_string(),
                "orcpt" => current(&mut request)?.dsn_orcpt = text()?.to_string(),
                "notify" => current(&mut request)?.dsn_notify = small(number(name, value)?, name)?,
                "offset" => current(&mut request)?.offset = number(name, value)?,
                _ => {}
            }
        }
        Ok(request)
    }
}

impl DeliveryReply {
    pub fn encode(&self) -> Message {
        let mut m = Message::new().with("status", "done");
        for r in &self.results {
            m.push("offset", r.offset.to_string());
            m.push("rcpt_status", r.status.name());
            m.push("dsn", &r.dsn);
            m.push("reason", &r.reason);
            m.push("relay", &r.relay);
        }
        m
    }

    pub fn decode(m: &Message) -> Result<DeliveryReply, IpcError> {
        if m.text("status")? != "done" {
            return Err(bad_value("status", "not a delivery reply".into()));
        }
        let mut reply = DeliveryReply::default();
        for (name, value) in &m.attributes {
            if name == "offset" {
                reply.results.push(RecipientResult {
                    offset: number(name, value)?,
                    status: Status::Deferred,
                    dsn: String::new(),
                    reason: String::new(),
                    relay: String::new(),
                });
                continue;
            }
            if !matches!(name.as_str(), "rcpt_status" | "dsn" | "reason" | "relay") {
                continue;
            }
            let result = reply.results.last_mut().ok_or_else(|| missing(name))?;
            let text = String::from_utf8_lossy(value).into_owned();
            match name.as_str() {
                "rcpt_status" => result.status = Status::parse(&text)?,
                "dsn" => result.dsn = text,
                "reason" => result.reason = text,
                _ => result.relay = text,
            }
        }
        Ok(reply)
    }
}

/// qmgr's end of an agent connection, kept open across requests.
pub struct DeliveryClient {
    stream: UnixStream,
    decoder: Decoder,
}

impl DeliveryClient {
    /// Connects to the agent socket at `path` (from `agent_path`).
    pub fn connect(path: &Path) -> Result<DeliveryClient, IpcError> {
        let stream = UnixStream::connect(path)?;
        stream.set_read_timeout(Some(REPLY_TIMEOUT))?;
        Ok(DeliveryClient {
            stream,
            decoder: Decoder::new(),
        })
    }

    /// Sends the request and waits for the agent's reply.
    pub fn deliver(&mut self, request: &DeliveryRequest) -> Result<DeliveryReply, IpcError> {
        ipc::send(&mut self.stream, &request.encode())?;
        self.stream.flush()?;
        let reply = ipc::receive(&mut self.stream, &mut self.decoder)?;
        DeliveryReply::decode(&reply)
    }
}

/// The agent's side: the next request on a connection, `None` when qmgr
/// closed it between requests.
pub fn read_request(
    stream: &mut UnixStream,
    decoder: &mut Decoder,
) -> Result<Option<DeliveryRequest>, IpcError> {
    match ipc::receive(stream, decoder) {
        Ok(m) => DeliveryRequest::decode(&m).map(Some),
        Err(IpcError::Closed) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The agent's side: answers the request just read.
pub fn send_reply(stream: &mut UnixStream, reply: &DeliveryReply) -> Result<(), IpcError> {
    ipc::send(stream, &reply.encode())
}

fn current(request: &mut DeliveryRequest) -> Result<&mut Recipient, IpcError> {
    request.recipients.last_mut().ok_or_else(|| missing("rcpt"))
}

fn micros(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

fn from_micros(micros: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_micros(micros)
}

fn utf8<'a>(name: &str, value: &'a [u8]) -> Result<&'a str, IpcError> {
    std::str::from_utf8(value).map_err(|_| bad_value(name, "not UTF-8".into()))
}

fn number(name: &str, value: &[u8]) -> Result<u64, IpcError> {
    utf8(name, value)?
        .parse()
        .map_err(|_| bad_value(name, "not a number".into()))
}

fn small(value: u64, name: &str) -> Result<u8, IpcError> {
    u8::try_from(value).map_err(|_| bad_value(name, "out of range".into()))
}

fn bad_value(name: &str, reason: String) -> IpcError {
    IpcError::BadValue {
        name: name.to_string(),
        reason,
    }
}

fn missing(name: &str) -> IpcError {
    IpcError::Missing(format!("recipient before {name}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> DeliveryRequest {
        let mut rcpt = Recipient::new("bob@example.com");
        rcpt.orig_recipient = "bob".into();
        rcpt.dsn_orcpt = "rfc822;bob@example.com".into();
        rcpt.dsn_notify = crate::queue::notify::FAILURE;
        rcpt.offset = 321;
        DeliveryRequest {
            queue_name: "active".into(),
            queue_id: "4F9D1C2A3B".into(),
            arrival_time: from_micros(1_700_000_000_123_456),
            active_time: from_micros(1_700_000_001_000_000),
            sender: String::new(),
            nexthop: "example.com".into(),
            dsn_envid: Some("env1".into()),
            dsn_ret: crate::queue::ret::HDRS,
            recipients: vec![rcpt, Recipient::new("carol@example.com")],
        }
    }

    #[test]
    fn request_round_trips() {
        let req = request();
        let bytes = req.encode().encode().unwrap();
        let mut decoder = Decoder::new();
        decoder.push(&bytes);
        let back = DeliveryRequest::decode(&decoder.next_message().unwrap().unwrap()).unwrap();
        assert_eq!(back, req);
    }

    #[test]
    fn reply_round_trips() {
        let reply = DeliveryReply {
            results: vec![
                RecipientResult {
                    offset: 321,
                    status: Status::Bounced,
                    dsn: "5.1.1".into(),
                    reason: "unknown user: \"bob\"".into(),
                    relay: "local".into(),
                },
                RecipientResult {
                    offset: 400,
                    status: Status::Sent,
                    dsn: "2.0.0".into(),
                    reason: "delivered to maildir".into(),
                    relay: "local".into(),
                },
            ],
        };
        assert_eq!(DeliveryReply::decode(&reply.encode()).unwrap(), reply);
    }

    #[test]
    fn malformed_messages_are_errors() {
        let orphan = Message::new().with("status", "done").with("dsn", "2.0.0");
        assert!(DeliveryReply::decode(&orphan).is_err());
        let bad = request().encode().with("offset", "x");
        assert!(DeliveryRequest::decode(&bad).is_err());
        let not_request = Message::new().with("request", "cleanup");
        assert!(DeliveryRequest::decode(&not_request).is_err());
    }
}
