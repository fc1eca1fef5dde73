//! Socket-level tests of the daemon: a temporary queue, messages written
//! with the queue writer, and fake delivery agents on UNIX sockets that
//! answer as a test tells them.

use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use libmail::deliver::{read_request, send_reply, DeliveryReply, RecipientResult};
use libmail::ipc::Decoder;
use libmail::queue::{CORRUPT, HOLD};

use super::*;

fn scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("qmgr-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    for queue in [
        INCOMING, ACTIVE, DEFERRED, HOLD, CORRUPT, "defer", "private",
    ] {
        std::fs::create_dir_all(dir.join(queue)).unwrap();
    }
    dir
}

fn daemon(dir: &Path, extra: &str) -> Daemon {
    let text = format!(
        "queue_directory = {}\nmyhostname = mail.example.com\nmydestination = example.com\n\
         inet_interfaces = loopback-only\n{extra}",
        dir.display()
    );
    let config = Config::from_text(dir, &text).unwrap();
    let (events, receiver) = mpsc::channel();
    Daemon::new(config, None, events, receiver).unwrap()
}

/// What the fake agent answers for a recipient.
type Answer = dyn Fn(&str) -> Status + Send + Sync;

/// A fake agent for `transport`; returns the recipient lists it saw.
fn agent(dir: &Path, transport: &str, answer: Arc<Answer>) -> Arc<Mutex<Vec<Vec<String>>>> {
    let listener = UnixListener::bind(dir.join("private").join(transport)).unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let (answer, log) = (Arc::clone(&answer), Arc::clone(&log));
            std::thread::spawn(move || {
                let mut decoder = Decoder::new();
                while let Ok(Some(request)) = read_request(&mut stream, &mut decoder) {
                    let rcpts = request
                        .recipients
                        .iter()
                        .map(|r| r.address.clone())
                        .collect();
                    log.lock().unwrap().push(rcpts);
                    let results = request
                        .recipients
                        .iter()
                        .map(|r| {
                            let status = answer(&r.address);
                            let (dsn, reason) = match status {
                                Status::Sent => ("2.0.0", "delivered to mailbox"),
                                Status::Deferred => ("4.2.0", "mailbox busy"),
                                Status::Bounced => ("5.1.1", "unknown user"),
                            };
                            RecipientResult {
                                offset: r.offset,
                                status,
                                dsn: dsn.into(),
                                reason: reason.into(),
                                relay: "local".into(),
                            }
                        })
                        .collect();
                    if send_reply(&mut stream, &DeliveryReply { results }).is_err() {
                        return;
                    }
                }
            });
        }
    });
    seen
}

fn write_message(d: &Daemon, filter: Option<&str>, rcpts: &[&str]) -> QueueId {
    let mut w = d.queue.create(INCOMING).unwrap();
    w.sender("alice@example.org").unwrap();
    if let Some(filter) = filter {
        w.content_filter(filter).unwrap();
    }
    for rcpt in rcpts {
        w.recipient(&Recipient::new(rcpt)).unwrap();
    }
    w.header(b"Subject: test\n").unwrap();
    w.body(b"\nhello\n").unwrap();
    w.commit().unwrap().id
}

/// Runs the daemon until `done` holds (or fails after 10 s).
fn run_until(d: &mut Daemon, done: impl Fn(&Daemon) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done(d) {
        assert!(Instant::now() < deadline, "qmgr did not get there in time");
        assert!(d.step());
    }
}

fn queue_is_empty(d: &Daemon, queue: &str) -> bool {
    d.queue.scan(queue).unwrap().is_empty()
}

fn settled(d: &Daemon) -> bool {
    queue_is_empty(d, INCOMING) && queue_is_empty(d, ACTIVE) && d.messages.is_empty()
}

#[test]
fn delivered_mail_is_removed_one_local_recipient_per_request() {
    let dir = scratch("sent");
    let mut d = daemon(&dir, "");
    let seen = agent(&dir, "local", Arc::new(|_: &str| Status::Sent));
    let first = write_message(&d, None, &["bob@example.com", "carol@example.com"]);
    let second = write_message(&d, None, &["dave@example.com"]);
    d.start();
    run_until(&mut d, settled);
    assert!(queue_is_empty(&d, DEFERRED));
    assert!(!d.queue.path(ACTIVE, &first).exists());
    assert!(!d.queue.path(ACTIVE, &second).exists());
    let mut seen = seen.lock().unwrap().clone();
    seen.sort();
    assert_eq!(
        seen,
        [
            ["bob@example.com"],
            ["carol@example.com"],
            ["dave@example.com"]
        ]
    );
}

#[test]
fn partly_deferred_mail_waits_in_deferred_until_its_retry_time() {
    let dir = scratch("partial");
    let mut d = daemon(&dir, "");
    let busy = Arc::new(AtomicBool::new(true));
    let flag = Arc::clone(&busy);
    agent(
        &dir,
        "local",
        Arc::new(move |rcpt: &str| {
            match rcpt.starts_with("later") && flag.load(Ordering::SeqCst) {
                true => Status::Deferred,
                false => Status::Sent,
            }
        }),
    );
    let id = write_message(&d, None, &["bob@example.com", "later@example.com"]);
    d.start();
    run_until(&mut d, settled);
    let path = d.queue.path(DEFERRED, &id);
    let file = QueueFile::open(&path).unwrap();
    let pending: Vec<&str> = file
        .envelope()
        .pending()
        .map(|r| r.address.as_str())
        .collect();
    assert_eq!(pending, ["later@example.com"]);
    let retry = std::fs::metadata(&path).unwrap().modified().unwrap();
    assert!(retry > SystemTime::now() + Duration::from_secs(250));
    let log = defer_log::read(&d.queue, &id).unwrap().unwrap();
    assert_eq!(log.recipients.len(), 1);
    assert_eq!(log.recipients[0].recipient, "later@example.com");
    assert_eq!(log.recipients[0].dsn, "4.2.0");
    assert_eq!(log.recipients[0].reason, "mailbox busy");

    // Not due: a periodic deferred scan leaves it alone; a flush does not.
    d.scan_deferred(false);
    assert!(d.deferred.is_empty());
    busy.store(false, Ordering::SeqCst);
    d.trigger(trigger::qmgr::SCAN_ALL);
    run_until(&mut d, |d| settled(d) && queue_is_empty(d, DEFERRED));
    assert_eq!(defer_log::read(&d.queue, &id).unwrap(), None);
}

#[test]
fn a_missing_agent_defers_with_mail_transport_unavailable() {
    let dir = scratch("noagent");
    let mut d = daemon(&dir, "");
    let id = write_message(&d, Some("nosuch:[127.0.0.1]:10025"), &["bob@example.com"]);
    d.start();
    run_until(&mut d, settled);
    let log = defer_log::read(&d.queue, &id).unwrap().unwrap();
    assert_eq!(log.recipients[0].dsn, "4.3.0");
    assert_eq!(log.recipients[0].reason, "mail transport unavailable");
    assert!(d.queue.path(DEFERRED, &id).exists());
}

#[test]
fn messages_left_in_active_are_resumed_and_damaged_files_go_to_corrupt() {
    let dir = scratch("resume");
    let mut d = daemon(&dir, "");
    agent(&dir, "local", Arc::new(|_: &str| Status::Sent));
    let id = write_message(&d, None, &["bob@example.com"]);
    d.queue.rename(&id, INCOMING, ACTIVE).unwrap();
    let bad = QueueId::parse("B822221522").unwrap();
    std::fs::write(d.queue.path(INCOMING, &bad), b"not a queue file").unwrap();
    d.start();
    run_until(&mut d, settled);
    assert!(queue_is_empty(&d, DEFERRED));
    assert!(d.queue.path(CORRUPT, &bad).exists());
}

#[test]
fn an_unsendable_bounce_keeps_the_recipient() {
    // The notice goes through cleanup, which is not running here: the
    // bounced recipient must stay in the queue rather than be forgotten.
    let dir = scratch("bounce");
    let mut d = daemon(&dir, "");
    agent(&dir, "local", Arc::new(|_: &str| Status::Bounced));
    let id = write_message(&d, None, &["nobody@example.com"]);
    d.start();
    run_until(&mut d, settled);
    let file = QueueFile::open(&d.queue.path(DEFERRED, &id)).unwrap();
    assert_eq!(file.envelope().pending().count(), 1);
}

#[test]
fn error_transport_texts() {
    let v = error_verdict(Status::Bounced, "5.0.0", "5.1.1 user unknown");
    assert_eq!(
        (v.dsn.as_str(), v.reason.as_str()),
        ("5.1.1", "user unknown")
    );
    let v = error_verdict(Status::Bounced, "5.0.0", "no mail here");
    assert_eq!(
        (v.dsn.as_str(), v.reason.as_str()),
        ("5.0.0", "no mail here")
    );
    let v = error_verdict(Status::Deferred, "4.0.0", "5.1.1 wrong class");
    assert_eq!(v.dsn, "4.0.0");
    assert_eq!(
        parse_filter("smtp:[127.0.0.1]:10025"),
        Some(("smtp".into(), "[127.0.0.1]:10025".into()))
    );
    assert_eq!(parse_filter("scan"), Some(("scan".into(), String::new())));
    assert_eq!(parse_filter(":x"), None);
}

#[test]
fn site_failures_are_deferrals_that_never_reached_a_server() {
    let v = |status, relay: &str| Verdict {
        relay: relay.into(),
        ..Verdict::by_qmgr(status, "4.4.1", "x")
    };
    assert!(site_failed(&[(0, v(Status::Deferred, "none"))]));
    assert!(!site_failed(&[(0, v(Status::Deferred, "local"))]));
    assert!(!site_failed(&[
        (0, v(Status::Deferred, "none")),
        (1, v(Status::Sent, "none"))
    ]));
    assert!(!site_failed(&[]));
}

#[test]
fn a_force_expired_message_is_not_delivered() {
    // postsuper -e set the flag: qmgr returns the message (here the notice
    // cannot go out, cleanup is not running, so it stays) and never calls
    // the agent.
    use std::os::unix::fs::PermissionsExt;
    let dir = scratch("expire");
    let mut d = daemon(&dir, "");
    let seen = agent(&dir, "local", Arc::new(|_: &str| Status::Sent));
    let id = write_message(&d, None, &["bob@example.com"]);
    let path = d.queue.path(INCOMING, &id);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o710)).unwrap();
    // Nothing is dispatched, so no event would end a step: activate only.
    d.start();
    d.activate_waiting();
    assert!(settled(&d));
    assert!(
        seen.lock().unwrap().is_empty(),
        "an expired message went out"
    );
    let file = QueueFile::open(&d.queue.path(DEFERRED, &id)).unwrap();
    assert_eq!(file.envelope().pending().count(), 1);
}

#[test]
fn a_message_taken_away_during_delivery_is_forgotten() {
    // postsuper -d (or -h) while the agent works: qmgr leaves no defer
    // log and no deferred file behind.
    let dir = scratch("vanish");
    let mut d = daemon(&dir, "");
    let queue_dir = dir.clone();
    agent(
        &dir,
        "local",
        Arc::new(move |_: &str| {
            for entry in std::fs::read_dir(queue_dir.join(ACTIVE)).unwrap() {
                std::fs::rename(entry.unwrap().path(), queue_dir.join(HOLD).join("taken")).unwrap();
            }
            Status::Deferred
        }),
    );
    let id = write_message(&d, None, &["bob@example.com"]);
    d.start();
    run_until(&mut d, settled);
    assert!(queue_is_empty(&d, DEFERRED));
    assert_eq!(defer_log::read(&d.queue, &id).unwrap(), None);
    assert!(dir.join(HOLD).join("taken").exists());
}
