//! A delivery agent's side of a request, the same for local, error and
//! discard: the connection loop with qmgr, the queue file held under a
//! shared lock while the recipients are handled, each recipient's status
//! line and result, and marking the finished ones done in the file.
//!
//! Also the answer of the transports whose nexthop is a reason (error,
//! retry, discard), which qmgr gives itself for the stock service names.

use std::os::unix::net::UnixStream;
use std::time::{Duration, SystemTime};

use crate::deliver::{
    read_request, send_reply, DeliveryReply, DeliveryRequest, RecipientResult, Status,
};
use crate::ipc::{Decoder, IpcError};
use crate::log::delivery::{Delays, RecipientStatus};
use crate::msg;
use crate::queue::lock::{LockKind, LockedFile};
use crate::queue::{
    mark_locked_recipients_done, Content, Queue, QueueError, QueueFile, QueueId, Recipient,
};
use crate::server::{Client, Server};

/// How long qmgr may take to send the next request before the
/// connection is given up.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(3600);

/// What becomes of a recipient, before it is logged and answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub status: Status,
    /// The enhanced status code, `2.0.0`, `5.1.1`.
    pub dsn: String,
    pub reason: String,
}

impl Verdict {
    pub fn new(status: Status, dsn: &str, reason: &str) -> Verdict {
        Verdict {
            status,
            dsn: dsn.to_string(),
            reason: reason.to_string(),
        }
    }
}

/// What an agent does with qmgr's requests. A closure over a request is
/// one; an agent with work of its own between requests (smtp closing
/// cached connections) says when it wants to be woken.
pub trait Handler {
    fn handle(&mut self, request: &DeliveryRequest) -> DeliveryReply;

    /// How long the agent may wait for the next request before `idle`
    /// is due; `None`: as long as qmgr takes.
    fn idle_after(&self) -> Option<Duration> {
        None
    }

    /// Called when `idle_after` has passed without a request.
    fn idle(&mut self) {}
}

impl<F: FnMut(&DeliveryRequest) -> DeliveryReply> Handler for F {
    fn handle(&mut self, request: &DeliveryRequest) -> DeliveryReply {
        self(request)
    }
}

/// An agent's life under master: each qmgr connection served with
/// `serve_client`, until max_use, max_idle or master going away.
pub fn serve(server: Server, handler: &mut impl Handler) {
    server.serve(|_config, client| match client {
        Client::Unix(stream) => serve_client(stream, handler),
        Client::Tcp(_) => msg::warning("unexpected TCP client ignored"),
        Client::Trigger(_) => msg::warning("unexpected trigger request ignored"),
    });
}

/// Serves one qmgr connection: requests until qmgr hangs up, each
/// answered with what the handler returns.
pub fn serve_client(mut stream: UnixStream, handler: &mut impl Handler) {
    let mut decoder = Decoder::new();
    // Without a limit, a qmgr that hangs keeps the agent forever. The
    // socket option is set only when the wait changes, not per request.
    let mut timeout = None;
    loop {
        let wait = handler
            .idle_after()
            .map_or(CLIENT_TIMEOUT, |d| d.max(Duration::from_millis(10)));
        if timeout != Some(wait) {
            let _ = stream.set_read_timeout(Some(wait));
            timeout = Some(wait);
        }
        let request = match read_request(&mut stream, &mut decoder) {
            Ok(Some(request)) => request,
            Ok(None) => return,
            Err(IpcError::Io(e)) if is_timeout(&e) && handler.idle_after().is_some() => {
                handler.idle();
                continue;
            }
            Err(err) => return msg::warning(format!("delivery request: {err}")),
        };
        let reply = handler.handle(&request);
        if let Err(err) = send_reply(&mut stream, &reply) {
            return msg::warning(format!("{}: reply to qmgr: {err}", request.queue_id));
        }
    }
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// One request being worked on. The queue file stays locked (shared)
/// until `finish` has marked the finished recipients done, so that
/// postsuper, which locks it exclusively, never acts on a message halfway
/// through a delivery and sees what was delivered.
pub struct Delivery<'a> {
    pub request: &'a DeliveryRequest,
    /// `relay=` in the status lines: `local`, `none`.
    relay: &'a str,
    /// When the agent took the request: the end of the queue manager's
    /// part of the delays.
    pub started: SystemTime,
    locked: LockedFile,
}

impl<'a> Delivery<'a> {
    /// Locks the request's queue file. When that fails, the error is the
    /// whole reply: for a file that is gone (deleted, held or requeued by
    /// postsuper) nothing is logged per recipient, for any other failure
    /// every recipient is deferred.
    pub fn begin(
        queue: &Queue,
        request: &'a DeliveryRequest,
        relay: &'a str,
    ) -> Result<Delivery<'a>, DeliveryReply> {
        let started = SystemTime::now();
        match lock_queue_file(queue, request) {
            Ok(locked) => Ok(Delivery {
                request,
                relay,
                started,
                locked,
            }),
            Err(err) => Err(read_failure(request, relay, started, &err)),
        }
    }

    /// The message content; when it cannot be read the error is the
    /// whole reply, as for `begin`.
    pub fn content(&self) -> Result<Content, DeliveryReply> {
        self.queue_file()?
            .content()
            .map_err(|err| read_failure(self.request, self.relay, self.started, &err))
    }

    /// The queue file itself, for an agent that needs the envelope too
    /// (its size, body type, SMTPUTF8 flag); errors as for `content`.
    pub fn queue_file(&self) -> Result<QueueFile, DeliveryReply> {
        QueueFile::read_locked(&self.locked)
            .map_err(|err| read_failure(self.request, self.relay, self.started, &err))
    }

    /// Logs the recipient's status line and makes its result.
    pub fn report(&self, rcpt: &Recipient, verdict: &Verdict) -> RecipientResult {
        let at = Reached {
            relay: self.relay,
            connected: self.started,
        };
        report(self.request, &at, self.started, rcpt, verdict)
    }

    /// `report` for an agent that went somewhere else for this recipient
    /// (smtp: `mx.example.com[192.0.2.1]:25`, connected at some moment).
    pub fn report_via(
        &self,
        rcpt: &Recipient,
        verdict: &Verdict,
        relay: &str,
        connected: SystemTime,
    ) -> RecipientResult {
        let at = Reached { relay, connected };
        report(self.request, &at, self.started, rcpt, verdict)
    }

    /// The same verdict for every recipient of the request, each logged.
    pub fn report_all(&self, verdict: &Verdict) -> Vec<RecipientResult> {
        let rcpts = &self.request.recipients;
        rcpts
            .iter()
            .map(|rcpt| self.report(rcpt, verdict))
            .collect()
    }

    /// Marks the recipients that are finished (sent or bounced) done in
    /// the queue file, lets go of the lock and makes the reply.
    pub fn finish(self, results: Vec<RecipientResult>) -> DeliveryReply {
        let finished: Vec<u64> = results
            .iter()
            .filter(|r| r.status != Status::Deferred)
            .map(|r| r.offset)
            .collect();
        if let Err(err) = mark_locked_recipients_done(&self.locked, &finished) {
            msg::warning(format!("{}: {err}", self.request.queue_id));
        }
        DeliveryReply { results }
    }
}

/// Gives every recipient of the request the same verdict (error, retry,
/// discard): each logged, the finished ones marked done.
pub fn answer_all(queue: &Queue, request: &DeliveryRequest, verdict: &Verdict) -> DeliveryReply {
    match Delivery::begin(queue, request, "none") {
        Ok(delivery) => {
            let results = delivery.report_all(verdict);
            delivery.finish(results)
        }
        Err(reply) => reply,
    }
}

/// The queue file named by the request, locked for delivery.
fn lock_queue_file(queue: &Queue, request: &DeliveryRequest) -> Result<LockedFile, QueueError> {
    let id = QueueId::parse(&request.queue_id)
        .ok_or_else(|| QueueError::BadId(request.queue_id.clone()))?;
    if !crate::queue::is_queue_name(&request.queue_name) {
        return Err(QueueError::BadQueueName(request.queue_name.clone()));
    }
    LockedFile::open(&queue.path(&request.queue_name, &id), LockKind::Shared)
}

/// The reply when the queue file cannot be had.
fn read_failure(
    request: &DeliveryRequest,
    relay: &str,
    started: SystemTime,
    err: &QueueError,
) -> DeliveryReply {
    msg::warning(format!("{}: {err}", request.queue_id));
    if err.is_not_found() {
        return vanished(request, relay);
    }
    let verdict = Verdict::new(Status::Deferred, "4.3.0", "queue file read error");
    let at = Reached {
        relay,
        connected: started,
    };
    let results = request
        .recipients
        .iter()
        .map(|rcpt| report(request, &at, started, rcpt, &verdict))
        .collect();
    DeliveryReply { results }
}

/// The reply for a message that is no longer in the queue: every
/// recipient deferred, unlogged, for qmgr, which finds the file gone and
/// forgets the message.
fn vanished(request: &DeliveryRequest, relay: &str) -> DeliveryReply {
    let results = request
        .recipients
        .iter()
        .map(|rcpt| RecipientResult {
            offset: rcpt.offset,
            status: Status::Deferred,
            dsn: "4.3.0".to_string(),
            reason: "queue file vanished".to_string(),
            relay: relay.to_string(),
        })
        .collect();
    DeliveryReply { results }
}

/// Where a recipient's delivery went, and when that connection was
/// ready (the end of the third of the four delays).
struct Reached<'a> {
    relay: &'a str,
    connected: SystemTime,
}

/// `ID: to=<…>, relay=…, delay=…, delays=…, dsn=…, status=… (…)`, and
/// the result qmgr gets for it.
fn report(
    request: &DeliveryRequest,
    at: &Reached,
    started: SystemTime,
    rcpt: &Recipient,
    verdict: &Verdict,
) -> RecipientResult {
    let relay = at.relay;
    let line = RecipientStatus {
        queue_id: &request.queue_id,
        recipient: &rcpt.address,
        orig_recipient: &rcpt.orig_recipient,
        relay,
        delays: Delays {
            arrival: request.arrival_time,
            active: request.active_time,
            agent_start: started,
            connected: at.connected,
            done: SystemTime::now(),
        },
        dsn: &verdict.dsn,
        status: verdict.status.name(),
        reason: &verdict.reason,
    }
    .line();
    msg::info(line);
    RecipientResult {
        offset: rcpt.offset,
        status: verdict.status,
        dsn: verdict.dsn.clone(),
        reason: verdict.reason.clone(),
        relay: relay.to_string(),
    }
}

/// The answer of error (bounce), retry (defer) and discard (sent) for
/// every recipient: the nexthop is the reason, and may begin with its
/// own enhanced status code (`5.1.1 gone`). A code of another class than
/// `default_dsn`'s is dropped for the default, as Postfix's bounce,
/// defer and sent clients do. An empty nexthop is a configuration error
/// (Postfix's agents stop on it): the mail waits.
pub fn nexthop_verdict(status: Status, default_dsn: &str, nexthop: &str) -> Verdict {
    let text = nexthop.trim();
    if text.is_empty() {
        return Verdict::new(Status::Deferred, "4.3.0", "mail transport unavailable");
    }
    let (code, rest) = text.split_once(char::is_whitespace).unwrap_or((text, ""));
    if !is_dsn(code) {
        return Verdict::new(status, default_dsn, text);
    }
    let class = default_dsn.chars().next();
    let dsn = match code.chars().next() == class {
        true => code,
        false => default_dsn,
    };
    Verdict::new(status, dsn, rest.trim_start())
}

/// `X.Y.Z`: class 2, 4 or 5, then one to three digits, twice (RFC 3463).
fn is_dsn(text: &str) -> bool {
    let parts: Vec<&str> = text.split('.').collect();
    parts.len() == 3
        && matches!(parts[0], "2" | "4" | "5")
        && parts[1..]
            .iter()
            .all(|p| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::{QueueSettings, ACTIVE};

    fn scratch(tag: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("agent-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join(ACTIVE)).unwrap();
        dir
    }

    fn request(queue: &Queue, rcpts: &[&str]) -> DeliveryRequest {
        let mut w = queue.create(ACTIVE).unwrap();
        w.sender("alice@example.com").unwrap();
        for r in rcpts {
            w.recipient(&Recipient::new(r)).unwrap();
        }
        w.body(b"\nhello\n").unwrap();
        let done = w.commit().unwrap();
        let file = QueueFile::open(&done.path).unwrap();
        let now = SystemTime::now();
        DeliveryRequest {
            queue_name: ACTIVE.into(),
            queue_id: done.id.as_str().to_string(),
            arrival_time: now,
            active_time: now,
            sender: "alice@example.com".into(),
            nexthop: "example.com".into(),
            dsn_envid: None,
            dsn_ret: 0,
            recipients: file.envelope().recipients.clone(),
        }
    }

    #[test]
    fn nexthop_texts() {
        let v = nexthop_verdict(Status::Bounced, "5.0.0", "5.1.1 gone");
        assert_eq!(v, Verdict::new(Status::Bounced, "5.1.1", "gone"));
        let v = nexthop_verdict(Status::Bounced, "5.0.0", "no mail here");
        assert_eq!(v, Verdict::new(Status::Bounced, "5.0.0", "no mail here"));
        let v = nexthop_verdict(Status::Deferred, "4.0.0", "5.1.1 wrong class");
        assert_eq!(v, Verdict::new(Status::Deferred, "4.0.0", "wrong class"));
        let v = nexthop_verdict(Status::Sent, "2.0.0", "silently dropped");
        assert_eq!(v, Verdict::new(Status::Sent, "2.0.0", "silently dropped"));
        let v = nexthop_verdict(Status::Sent, "2.0.0", "5.1.10 x");
        assert_eq!(v.dsn, "2.0.0");
        // Not codes: a domain, too many digits, a missing part.
        let v = nexthop_verdict(Status::Bounced, "5.0.0", "5.1.1234 x");
        assert_eq!((v.dsn.as_str(), v.reason.as_str()), ("5.0.0", "5.1.1234 x"));
        let v = nexthop_verdict(Status::Bounced, "5.0.0", "5.1 x");
        assert_eq!(v.reason, "5.1 x");
        let v = nexthop_verdict(Status::Bounced, "5.0.0", "");
        assert_eq!(v.status, Status::Deferred);
    }

    #[test]
    fn finished_recipients_are_marked_and_deferred_ones_kept() {
        let dir = scratch("marks");
        let queue = Queue::new(QueueSettings::new(dir.clone())).unwrap();
        let req = request(&queue, &["a@example.com", "b@example.com"]);
        let delivery = Delivery::begin(&queue, &req, "none").unwrap();
        assert!(delivery.content().unwrap().text().ends_with(b"hello\n"));
        let sent = Verdict::new(Status::Sent, "2.0.0", "ok");
        let later = Verdict::new(Status::Deferred, "4.0.0", "later");
        let results = vec![
            delivery.report(&req.recipients[0], &sent),
            delivery.report(&req.recipients[1], &later),
        ];
        let reply = delivery.finish(results);
        assert_eq!(reply.results[0].offset, req.recipients[0].offset);
        assert_eq!(reply.results[1].status, Status::Deferred);
        assert_eq!(reply.results[1].relay, "none");
        let id = QueueId::parse(&req.queue_id).unwrap();
        let file = QueueFile::open(&queue.path(ACTIVE, &id)).unwrap();
        let pending: Vec<&str> = file
            .envelope()
            .pending()
            .map(|r| r.address.as_str())
            .collect();
        assert_eq!(pending, ["b@example.com"]);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_vanished_or_broken_file_ends_the_request() {
        let dir = scratch("gone");
        let queue = Queue::new(QueueSettings::new(dir.clone())).unwrap();
        let mut req = request(&queue, &["a@example.com"]);
        let id = QueueId::parse(&req.queue_id).unwrap();
        std::fs::write(queue.path(ACTIVE, &id), b"garbage").unwrap();
        let delivery = Delivery::begin(&queue, &req, "none").unwrap();
        let reply = delivery.content().err().unwrap();
        assert_eq!(reply.results[0].reason, "queue file read error");
        drop(delivery);
        std::fs::remove_file(queue.path(ACTIVE, &id)).unwrap();
        let reply = Delivery::begin(&queue, &req, "none").err().unwrap();
        assert_eq!(reply.results[0].status, Status::Deferred);
        assert_eq!(reply.results[0].reason, "queue file vanished");
        req.queue_id = "not/an/id".into();
        let reply = Delivery::begin(&queue, &req, "none").err().unwrap();
        assert_eq!(reply.results[0].reason, "queue file read error");
        let _ = std::fs::remove_dir_all(dir);
    }
}
