//! Tests of `send_notice` end to end against a fake cleanup service on a
//! UNIX socket: the requests it sends, in order, and what it makes of
//! cleanup's answers.

use std::fs;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use super::*;
use crate::cleanup::Outcome as Verdict;
use crate::ipc::{self, Decoder, Message};
use crate::queue::{notify, Queue, QueueSettings, INCOMING};

/// A queue directory with `public/` and a main.cf pointing at it.
fn setup(tag: &str, extra: &str) -> (PathBuf, Config) {
    let dir = crate::test_support::temp_dir(&format!("bounce-{tag}"));
    fs::create_dir_all(dir.join("public")).unwrap();
    fs::create_dir_all(dir.join(INCOMING)).unwrap();
    let text = format!(
        "queue_directory = {}\nmyhostname = mail.example.com\n{extra}\n",
        dir.display()
    );
    let config = Config::from_text(&dir, &text).unwrap();
    (dir, config)
}

/// A queued message from `sender` to bob and carol.
fn message(dir: &Path, sender: &str) -> (String, QueueFile) {
    let queue = Queue::new(QueueSettings::new(dir)).unwrap();
    let mut w = queue.create(INCOMING).unwrap();
    w.sender(sender).unwrap();
    w.recipient(&Recipient::new("bob@example.com")).unwrap();
    w.recipient(&Recipient::new("carol@example.com")).unwrap();
    w.header(b"Subject: hello\n").unwrap();
    w.body(b"\nHi.\n").unwrap();
    let done = w.commit().unwrap();
    (done.id.to_string(), QueueFile::open(&done.path).unwrap())
}

fn failed(address: &str, dsn_notify: u8) -> Outcome {
    Outcome {
        recipient: Recipient {
            dsn_notify,
            ..Recipient::new(address)
        },
        action: Action::Failed,
        dsn: "5.1.1".into(),
        reason: "unknown user".into(),
        relay: "local".into(),
    }
}

/// Serves one connection per verdict, each a whole message; returns the
/// requests of each.
fn fake_cleanup(dir: &Path, verdicts: Vec<Verdict>) -> JoinHandle<Vec<Vec<Request>>> {
    let listener = UnixListener::bind(dir.join("public/cleanup")).unwrap();
    std::thread::spawn(move || {
        let mut seen = Vec::new();
        for (n, verdict) in verdicts.into_iter().enumerate() {
            let (mut stream, _) = listener.accept().unwrap();
            let mut decoder = Decoder::new();
            let mut requests = Vec::new();
            loop {
                let message = ipc::receive(&mut stream, &mut decoder).unwrap();
                let request = Request::from_message(&message).unwrap();
                let id = format!("NEW{n}");
                match request {
                    Request::Open(_) => ipc::send(
                        &mut stream,
                        &Message::new().with("status", "ok").with("queue_id", &id),
                    )
                    .unwrap(),
                    Request::End => {
                        ipc::send(&mut stream, &verdict.to_message(&id)).unwrap();
                        requests.push(request);
                        break;
                    }
                    _ => {}
                }
                requests.push(request);
            }
            seen.push(requests);
        }
        seen
    })
}

/// The content requests joined.
fn content_of(requests: &[Request]) -> String {
    let bytes: Vec<u8> = requests
        .iter()
        .filter_map(|r| match r {
            Request::Content(bytes) => Some(bytes.clone()),
            _ => None,
        })
        .flatten()
        .collect();
    String::from_utf8(bytes).unwrap()
}

/// The requests but content, which `content_of` checks.
fn envelope_of(requests: &[Request]) -> Vec<Request> {
    requests
        .iter()
        .filter(|r| !matches!(r, Request::Content(_)))
        .cloned()
        .collect()
}

fn expected_envelope(from: &str, to: &str) -> Vec<Request> {
    vec![
        Request::Open(FLAGS),
        Request::Attribute("rewrite_context".into(), "local".into()),
        Request::Attribute("log_message_origin".into(), "local".into()),
        Request::Sender(from.into()),
        Request::Recipient(Recipient::new(to)),
        Request::End,
    ]
}

#[test]
fn a_bounce_is_submitted_to_the_sender_from_null() {
    let (dir, config) = setup("sender", "");
    let (id, file) = message(&dir, "alice@example.org");
    let server = fake_cleanup(&dir, vec![Verdict::Queued]);
    let outcomes = [
        failed("bob@example.com", 0),
        failed("carol@example.com", notify::NEVER),
    ];
    send_notice(&config, NoticeKind::NonDelivery, &id, &file, &outcomes).unwrap();
    let seen = server.join().unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        envelope_of(&seen[0]),
        expected_envelope("", "alice@example.org")
    );
    let text = content_of(&seen[0]);
    assert!(text.contains("\nSubject: Undelivered Mail Returned to Sender\n"));
    assert!(text.contains(&format!("X-Postfix-Queue-ID: {id}\n")));
    assert!(text.contains("\tid NEW0; "));
    assert!(text.contains("<bob@example.com>: unknown user\n"));
    assert!(!text.contains("carol@example.com"));
    assert!(text.contains("Content-Type: message/rfc822\n\nSubject: hello\n\nHi.\n"));
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn the_bounce_class_adds_a_postmaster_copy_whose_failure_is_only_a_warning() {
    let (dir, config) = setup("copy", "notify_classes = bounce");
    let (id, file) = message(&dir, "alice@example.org");
    let rejected = Verdict::Rejected {
        code: 550,
        enhanced: "5.7.1".into(),
        text: "no".into(),
    };
    let server = fake_cleanup(&dir, vec![Verdict::Queued, rejected]);
    let outcomes = [failed("bob@example.com", 0)];
    send_notice(&config, NoticeKind::NonDelivery, &id, &file, &outcomes).unwrap();
    let seen = server.join().unwrap();
    assert_eq!(seen.len(), 2);
    assert_eq!(
        envelope_of(&seen[1]),
        expected_envelope("double-bounce", "postmaster")
    );
    let copy = content_of(&seen[1]);
    assert!(copy.contains("\nSubject: Postmaster Copy: Undelivered Mail\n"));
    assert!(copy.contains("Content-Type: text/rfc822-headers\n\nSubject: hello\n\n--"));
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn a_refused_bounce_is_an_error() {
    let (dir, config) = setup("refused", "");
    let (id, file) = message(&dir, "alice@example.org");
    let server = fake_cleanup(&dir, vec![Verdict::Failed("queue file write error".into())]);
    let outcomes = [failed("bob@example.com", 0)];
    let err = send_notice(&config, NoticeKind::NonDelivery, &id, &file, &outcomes).unwrap_err();
    assert!(matches!(&err, BounceError::Cleanup(t) if t.contains("queue file write error")));
    server.join().unwrap();
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn no_cleanup_service_is_an_error_and_nothing_due_needs_none() {
    let (dir, config) = setup("absent", "");
    let (id, file) = message(&dir, "alice@example.org");
    let outcomes = [failed("bob@example.com", 0)];
    let err = send_notice(&config, NoticeKind::NonDelivery, &id, &file, &outcomes).unwrap_err();
    assert!(matches!(err, BounceError::Cleanup(_)));
    // NOTIFY=NEVER, and a failed bounce with default notify_classes:
    // nothing is due, so the missing service does not matter.
    let never = [failed("bob@example.com", notify::NEVER)];
    send_notice(&config, NoticeKind::NonDelivery, &id, &file, &never).unwrap();
    let (id, bounce) = message(&dir, "");
    send_notice(&config, NoticeKind::NonDelivery, &id, &bounce, &outcomes).unwrap();
    let (id, double) = message(&dir, "double-bounce@mail.example.com");
    send_notice(&config, NoticeKind::NonDelivery, &id, &double, &outcomes).unwrap();
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn a_failed_bounce_goes_to_the_2bounce_recipient() {
    let (dir, config) = setup(
        "double",
        "notify_classes = 2bounce\n2bounce_notice_recipient = hostmaster",
    );
    let (id, file) = message(&dir, "");
    let server = fake_cleanup(&dir, vec![Verdict::Queued]);
    let outcomes = [failed("bob@example.com", 0)];
    send_notice(&config, NoticeKind::NonDelivery, &id, &file, &outcomes).unwrap();
    let seen = server.join().unwrap();
    assert_eq!(
        envelope_of(&seen[0]),
        expected_envelope("double-bounce", "hostmaster")
    );
    let text = content_of(&seen[0]);
    assert!(text.contains("Content-Type: message/rfc822\n\nSubject: hello\n\nHi.\n"));
    let _ = fs::remove_dir_all(&dir);
}
