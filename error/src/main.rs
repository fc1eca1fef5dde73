#![forbid(unsafe_code)]
//! error(8): the error and retry delivery agent. Under the master.cf
//! service name `error` every recipient of a request bounces, under
//! `retry` it is deferred, with the nexthop as the reason (`5.1.1 gone`:
//! an enhanced status code, then text). Like Postfix's, it refuses to run
//! under any other service name. qmgr answers both services itself, so
//! this agent serves a qmgr that does not (an older one, or Postfix's).

use libmail::agent::{self, Verdict};
use libmail::deliver::{DeliveryReply, DeliveryRequest, Status};
use libmail::msg;
use libmail::queue::Queue;
use libmail::server::Server;

/// What the service does with every recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Bounce,
    Defer,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("bad error service name: {0}")]
struct BadServiceName(String);

impl Mode {
    /// The service name says which: error(8) knows only these two.
    fn of_service(service: &str) -> Result<Mode, BadServiceName> {
        match service {
            "error" => Ok(Mode::Bounce),
            "retry" => Ok(Mode::Defer),
            other => Err(BadServiceName(other.to_string())),
        }
    }

    fn verdict(self, nexthop: &str) -> Verdict {
        match self {
            Mode::Bounce => agent::nexthop_verdict(Status::Bounced, "5.0.0", nexthop),
            Mode::Defer => agent::nexthop_verdict(Status::Deferred, "4.0.0", nexthop),
        }
    }
}

fn handle(queue: &Queue, mode: Mode, request: &DeliveryRequest) -> DeliveryReply {
    agent::answer_all(queue, request, &mode.verdict(&request.nexthop))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let server = Server::start("error", &args).unwrap_or_else(|err| msg::fatal(err));
    let mode = Mode::of_service(&server.args.service).unwrap_or_else(|err| msg::fatal(err));
    let queue = Queue::from_config(&server.config).unwrap_or_else(|err| msg::fatal(err));
    agent::serve(server, &mut |request: &DeliveryRequest| {
        handle(&queue, mode, request)
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::time::SystemTime;

    use libmail::queue::{QueueFile, QueueId, QueueSettings, Recipient, ACTIVE};

    fn scratch(tag: &str) -> (PathBuf, Queue) {
        let dir = std::env::temp_dir().join(format!("error-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join(ACTIVE)).unwrap();
        let queue = Queue::new(QueueSettings::new(dir.clone())).unwrap();
        (dir, queue)
    }

    fn request(queue: &Queue, nexthop: &str) -> DeliveryRequest {
        let mut w = queue.create(ACTIVE).unwrap();
        w.sender("alice@example.com").unwrap();
        for r in ["bob@example.com", "carol@example.com"] {
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
            nexthop: nexthop.into(),
            dsn_envid: None,
            dsn_ret: 0,
            recipients: file.envelope().recipients.clone(),
        }
    }

    fn pending(queue: &Queue, request: &DeliveryRequest) -> usize {
        let id = QueueId::parse(&request.queue_id).unwrap();
        let file = QueueFile::open(&queue.path(ACTIVE, &id)).unwrap();
        file.envelope().pending().count()
    }

    #[test]
    fn the_service_name_decides() {
        assert_eq!(Mode::of_service("retry"), Ok(Mode::Defer));
        assert_eq!(Mode::of_service("error"), Ok(Mode::Bounce));
        let err = Mode::of_service("myerr").unwrap_err();
        assert_eq!(err.to_string(), "bad error service name: myerr");
    }

    #[test]
    fn error_bounces_every_recipient_with_the_nexthop_as_reason() {
        let (dir, queue) = scratch("bounce");
        let req = request(&queue, "5.1.1 gone");
        let reply = handle(&queue, Mode::Bounce, &req);
        assert_eq!(reply.results.len(), 2);
        for (result, rcpt) in reply.results.iter().zip(&req.recipients) {
            assert_eq!(result.offset, rcpt.offset);
            assert_eq!(result.status, Status::Bounced);
            assert_eq!(
                (result.dsn.as_str(), result.reason.as_str()),
                ("5.1.1", "gone")
            );
            assert_eq!(result.relay, "none");
        }
        assert_eq!(pending(&queue, &req), 0);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn retry_defers_and_keeps_the_recipients() {
        let (dir, queue) = scratch("defer");
        let req = request(&queue, "try later");
        let reply = handle(&queue, Mode::Defer, &req);
        assert!(reply.results.iter().all(|r| r.status == Status::Deferred));
        assert_eq!(reply.results[0].dsn, "4.0.0");
        assert_eq!(reply.results[0].reason, "try later");
        assert_eq!(pending(&queue, &req), 2);
        let _ = std::fs::remove_dir_all(dir);
    }
}
