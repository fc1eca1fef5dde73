#![forbid(unsafe_code)]
//! discard(8): the delivery agent that pretends to deliver. Every
//! recipient of a request is sent, with the nexthop as the reason for
//! discarding the mail (`silently dropped`; it may begin with a 2.X.Y
//! status code). qmgr answers the stock `discard` service itself; this
//! agent serves the other names.

use libmail::agent::{self, Verdict};
use libmail::deliver::{DeliveryReply, DeliveryRequest, Status};
use libmail::msg;
use libmail::queue::Queue;
use libmail::server::Server;

fn verdict(nexthop: &str) -> Verdict {
    agent::nexthop_verdict(Status::Sent, "2.0.0", nexthop)
}

fn handle(queue: &Queue, request: &DeliveryRequest) -> DeliveryReply {
    agent::answer_all(queue, request, &verdict(&request.nexthop))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let server = Server::start("discard", &args).unwrap_or_else(|err| msg::fatal(err));
    let queue = Queue::from_config(&server.config).unwrap_or_else(|err| msg::fatal(err));
    agent::serve(server, &mut |request: &DeliveryRequest| {
        handle(&queue, request)
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    use libmail::queue::{QueueFile, QueueId, QueueSettings, Recipient, ACTIVE};

    #[test]
    fn every_recipient_is_sent_and_marked_done() {
        let dir = std::env::temp_dir().join(format!("discard-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join(ACTIVE)).unwrap();
        let queue = Queue::new(QueueSettings::new(dir.clone())).unwrap();
        let mut w = queue.create(ACTIVE).unwrap();
        w.sender("").unwrap();
        for r in ["bob@example.com", "carol@example.com"] {
            w.recipient(&Recipient::new(r)).unwrap();
        }
        w.body(b"\nhello\n").unwrap();
        let done = w.commit().unwrap();
        let now = SystemTime::now();
        let req = DeliveryRequest {
            queue_name: ACTIVE.into(),
            queue_id: done.id.as_str().to_string(),
            arrival_time: now,
            active_time: now,
            sender: String::new(),
            nexthop: "silently dropped".into(),
            dsn_envid: None,
            dsn_ret: 0,
            recipients: QueueFile::open(&done.path)
                .unwrap()
                .envelope()
                .recipients
                .clone(),
        };
        let reply = handle(&queue, &req);
        assert_eq!(reply.results.len(), 2);
        for r in &reply.results {
            assert_eq!(r.status, Status::Sent);
            assert_eq!(
                (r.dsn.as_str(), r.reason.as_str()),
                ("2.0.0", "silently dropped")
            );
            assert_eq!(r.relay, "none");
        }
        let id = QueueId::parse(&req.queue_id).unwrap();
        let file = QueueFile::open(&queue.path(ACTIVE, &id)).unwrap();
        assert_eq!(file.envelope().pending().count(), 0);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_code_in_the_nexthop_is_kept_when_it_says_success() {
        assert_eq!(verdict("2.7.0 policy").dsn, "2.7.0");
        assert_eq!(verdict("2.7.0 policy").reason, "policy");
        assert_eq!(verdict("5.7.1 policy").dsn, "2.0.0");
        assert_eq!(verdict("example.com").reason, "example.com");
    }
}
