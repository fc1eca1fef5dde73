//! One delivery request: each recipient delivered and answered, with the
//! queue file held by libmail::agent.

use libmail::agent::Delivery;
use libmail::deliver::{DeliveryReply, DeliveryRequest, RecipientResult};

use crate::agent::{Agent, Message};

/// Delivers every recipient of one request, with the queue file locked
/// throughout (libmail::agent::Delivery).
pub fn handle(agent: &mut Agent, request: &DeliveryRequest) -> DeliveryReply {
    let delivery = match Delivery::begin(&agent.queue, request, "local") {
        Ok(delivery) => delivery,
        Err(reply) => return reply,
    };
    let content = match delivery.content() {
        Ok(content) => content,
        Err(reply) => return reply,
    };
    let text = content.text();
    let mut message = Message::new(request, &content.headers, text);
    let results: Vec<RecipientResult> = request
        .recipients
        .iter()
        .map(|rcpt| agent.deliver(&mut message, rcpt))
        .collect();
    delivery.finish(results)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};
    use std::time::SystemTime;

    use libmail::config::Config;
    use libmail::deliver::Status;
    use libmail::queue::{Queue, QueueFile, QueueId, QueueSettings, Recipient, ACTIVE};

    use crate::privileges::Privileges;

    fn scratch(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("local-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("queue").join(ACTIVE)).unwrap();
        std::fs::create_dir_all(dir.join("spool")).unwrap();
        dir
    }

    fn agent(dir: &Path, extra: &str) -> Agent {
        let text = format!(
            "queue_directory = {q}\nmail_spool_directory = {s}/\nforward_path =\n\
             mydestination = localhost\ninet_interfaces = loopback-only\n{extra}",
            q = dir.join("queue").display(),
            s = dir.join("spool").display(),
        );
        let config = Config::from_text(dir, &text).unwrap();
        Agent::new(&config, Privileges::detect(true)).unwrap()
    }

    fn request(dir: &Path, rcpts: &[&str], headers: &[&[u8]]) -> DeliveryRequest {
        let queue = Queue::new(QueueSettings::new(dir.join("queue"))).unwrap();
        let mut w = queue.create(ACTIVE).unwrap();
        w.sender("alice@example.com").unwrap();
        for r in rcpts {
            w.recipient(&Recipient::new(r)).unwrap();
        }
        for h in headers {
            w.header(h).unwrap();
        }
        w.body(b"\nFrom the body\n").unwrap();
        let done = w.commit().unwrap();
        let file = QueueFile::open(&done.path).unwrap();
        let now = SystemTime::now();
        DeliveryRequest {
            queue_name: ACTIVE.into(),
            queue_id: done.id.as_str().to_string(),
            arrival_time: now,
            active_time: now,
            sender: "alice@example.com".into(),
            nexthop: "localhost".into(),
            dsn_envid: None,
            dsn_ret: 0,
            recipients: file.envelope().recipients.clone(),
        }
    }

    fn maildir_files(dir: &Path, user: &str) -> Vec<Vec<u8>> {
        let new = dir.join("spool").join(user).join("new");
        std::fs::read_dir(new)
            .map(|d| {
                d.map(|e| std::fs::read(e.unwrap().path()).unwrap())
                    .collect()
            })
            .unwrap_or_default()
    }

    #[test]
    fn maildir_alias_unknown_user_and_command() {
        let dir = scratch("e2e");
        let out = dir.join("cmd.out");
        let table = dir.join("aliases");
        let text = format!("postmaster root\ntocmd \"|cat > {}\"\n", out.display());
        std::fs::write(&table, text).unwrap();
        let aliases = format!("alias_maps = texthash:{}\n", table.display());
        let mut agent = agent(&dir, &aliases);
        let req = request(
            &dir,
            &[
                "root@localhost",
                "postmaster@localhost",
                "nosuch@localhost",
                "tocmd@localhost",
            ],
            &[b"Subject: hi\n"],
        );
        let reply = handle(&mut agent, &req);
        let status: Vec<(Status, &str)> = reply
            .results
            .iter()
            .map(|r| (r.status, r.dsn.as_str()))
            .collect();
        assert_eq!(
            status,
            [
                (Status::Sent, "2.0.0"),
                (Status::Sent, "2.0.0"),
                (Status::Bounced, "5.1.1"),
                (Status::Sent, "2.0.0")
            ]
        );
        assert_eq!(reply.results[0].reason, "delivered to maildir");
        assert_eq!(reply.results[2].reason, "unknown user: \"nosuch\"");
        assert_eq!(reply.results[0].offset, req.recipients[0].offset);
        // root and postmaster (an alias of root) are one mailbox each time.
        let files = maildir_files(&dir, "root");
        assert_eq!(files.len(), 2);
        let text = String::from_utf8(files[0].clone()).unwrap();
        assert!(
            text.starts_with("Return-Path: <alice@example.com>\nX-Original-To: "),
            "{text}"
        );
        assert!(text.contains("Delivered-To: "), "{text}");
        assert!(text.ends_with("Subject: hi\n\nFrom the body\n"), "{text}");
        let piped = String::from_utf8(std::fs::read(&out).unwrap()).unwrap();
        assert!(piped.starts_with("From alice@example.com  "), "{piped}");
        assert!(piped.contains("Delivered-To: tocmd@localhost\n"), "{piped}");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn loops_and_commands_not_allowed() {
        let dir = scratch("loop");
        let table = dir.join("aliases");
        std::fs::write(&table, "x |true\n").unwrap();
        let settings = format!(
            "alias_maps = texthash:{}\nallow_mail_to_commands = forward\n",
            table.display()
        );
        let mut agent = agent(&dir, &settings);
        let req = request(
            &dir,
            &["root@localhost", "x@localhost"],
            &[b"Delivered-To: Root@localhost\n"],
        );
        let reply = handle(&mut agent, &req);
        assert_eq!(reply.results[0].status, Status::Bounced);
        assert_eq!(reply.results[0].dsn, "5.4.6");
        assert_eq!(
            reply.results[0].reason,
            "mail forwarding loop for root@localhost"
        );
        assert_eq!(reply.results[1].dsn, "5.7.1");
        assert!(maildir_files(&dir, "root").is_empty());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn broken_or_vanished_queue_file_defers() {
        let dir = scratch("broken");
        let mut agent = agent(&dir, "");
        let mut req = request(&dir, &["root@localhost"], &[]);
        let path = agent
            .queue
            .path(ACTIVE, &QueueId::parse(&req.queue_id).unwrap());
        std::fs::write(&path, b"not a queue file").unwrap();
        let reply = handle(&mut agent, &req);
        assert_eq!(reply.results[0].status, Status::Deferred);
        assert_eq!(reply.results[0].reason, "queue file read error");
        // Gone (postsuper -d): nothing is delivered.
        req.queue_id = "ABCDEF123".into();
        let reply = handle(&mut agent, &req);
        assert_eq!(reply.results[0].status, Status::Deferred);
        assert_eq!(reply.results[0].reason, "queue file vanished");
        assert!(maildir_files(&dir, "root").is_empty());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn finished_recipients_are_marked_done_in_the_queue_file() {
        let dir = scratch("marks");
        let mut agent = agent(&dir, "alias_maps =\n");
        let req = request(&dir, &["root@localhost", "nosuch@localhost"], &[]);
        let reply = handle(&mut agent, &req);
        assert_eq!(reply.results[0].status, Status::Sent);
        assert_eq!(reply.results[1].status, Status::Bounced);
        let id = QueueId::parse(&req.queue_id).unwrap();
        let file = QueueFile::open(&agent.queue.path(ACTIVE, &id)).unwrap();
        assert_eq!(file.envelope().pending().count(), 0);
        let _ = std::fs::remove_dir_all(dir);
    }
}
