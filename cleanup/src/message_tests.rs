//! The message state machine against a temporary queue directory: what
//! lands in the queue file for each kind of input, read back with
//! libmail::queue::QueueFile.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use libmail::cleanup::{Disposition, Flags, Outcome, Request};
use libmail::config::Config;
use libmail::queue::{
    Content, Envelope, Queue, QueueFile, QueueSettings, Recipient, HOLD, INCOMING,
};

use super::{Finished, Service};

/// A fresh queue directory with incoming/ and hold/.
fn temp_queue() -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("cleanup-test-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    for queue in [INCOMING, HOLD] {
        std::fs::create_dir_all(dir.join(queue)).unwrap();
    }
    dir
}

struct Setup {
    dir: PathBuf,
    service: Service,
}

fn setup(main_cf: &str) -> Setup {
    let dir = temp_queue();
    let text = format!(
        "myhostname = mail.example.com\nmydomain = example.com\nqueue_directory = {}\n\
         inet_interfaces = loopback-only\n{main_cf}",
        dir.display()
    );
    let config = Config::from_text(&dir, &text).unwrap();
    let queue = Queue::new(QueueSettings::new(&dir)).unwrap();
    let service = Service::with_queue(&config, queue).unwrap();
    Setup { dir, service }
}

fn smtp_attributes() -> Vec<Request> {
    [
        ("rewrite_context", "remote"),
        ("log_message_origin", "localhost[127.0.0.1]"),
        ("log_protocol_name", "ESMTP"),
        ("log_helo_name", "client.example"),
    ]
    .iter()
    .map(|(n, v)| Request::Attribute(n.to_string(), v.to_string()))
    .collect()
}

impl Setup {
    fn run(&mut self, flags: Flags, requests: Vec<Request>) -> Finished {
        let mut message = self.service.open(flags).unwrap();
        for request in requests {
            message.handle(request).unwrap();
        }
        message.finish().unwrap()
    }

    /// A message from an SMTP client (remote header rewriting context)
    /// from `sender` to `recipients` with `content`.
    fn send(&mut self, flags: Flags, sender: &str, recipients: &[&str], content: &str) -> Finished {
        let mut requests = vec![Request::Sender(sender.into())];
        requests.extend(smtp_attributes());
        requests.extend(
            recipients
                .iter()
                .map(|r| Request::Recipient(Recipient::new(r))),
        );
        requests.push(Request::Content(content.as_bytes().to_vec()));
        self.run(flags, requests)
    }

    fn files(&self, queue: &str) -> Vec<(Envelope, Content)> {
        let q = Queue::new(QueueSettings::new(&self.dir)).unwrap();
        q.scan(queue)
            .unwrap()
            .iter()
            .map(|id| {
                let file = QueueFile::open(&q.path(queue, id)).unwrap();
                (file.envelope().clone(), file.content().unwrap())
            })
            .collect()
    }

    fn only(&self, queue: &str) -> (Envelope, String) {
        let mut files = self.files(queue);
        assert_eq!(files.len(), 1, "one file in {queue}");
        let (envelope, content) = files.remove(0);
        (envelope, String::from_utf8(content.text()).unwrap())
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn queued() -> Outcome {
    Outcome::Queued
}

fn addresses(envelope: &Envelope) -> Vec<(String, String)> {
    envelope
        .recipients
        .iter()
        .map(|r| (r.address.clone(), r.orig_recipient.clone()))
        .collect()
}

#[test]
fn qualify_canonical_virtual_and_duplicates() {
    let mut s = setup(
        "canonical_maps = inline:{ {root@mail.example.com = admin@example.com} }\n\
         virtual_alias_maps = inline:{ {list@example.com = a@example.com, b@example.com} }\n",
    );
    let done = s.send(
        Flags::standard(),
        "root",
        &["list@example.com", "c", "c@mail.example.com", "C"],
        "Subject: x\r\n\r\nhi\r\n",
    );
    assert_eq!(done.outcome, queued());
    assert_eq!(done.queue.as_deref(), Some(INCOMING));
    let (envelope, _) = s.only(INCOMING);
    assert_eq!(envelope.sender, "admin@example.com");
    assert_eq!(
        addresses(&envelope),
        [
            ("a@example.com".to_string(), "list@example.com".to_string()),
            ("b@example.com".to_string(), "list@example.com".to_string()),
            ("c@mail.example.com".to_string(), "c".to_string()),
            (
                "c@mail.example.com".to_string(),
                "c@mail.example.com".to_string()
            ),
            ("C@mail.example.com".to_string(), "C".to_string()),
        ]
    );
    // The same recipient twice is kept once.
    let mut s = setup("");
    s.send(Flags::standard(), "", &["x@y.example", "x@y.example"], "\n");
    let (envelope, _) = s.only(INCOMING);
    assert_eq!(envelope.recipients.len(), 1);
    assert_eq!(envelope.sender, "");
}

#[test]
fn without_map_flag_only_qualification() {
    let mut s = setup("canonical_maps = inline:{ {root@mail.example.com = admin@example.com} }\n");
    let flags = Flags {
        map: false,
        ..Flags::standard()
    };
    s.send(flags, "root", &["bob"], "\n");
    let (envelope, _) = s.only(INCOMING);
    assert_eq!(envelope.sender, "root@mail.example.com");
    assert_eq!(envelope.recipients[0].address, "bob@mail.example.com");
}

#[test]
fn crlf_split_across_chunks_and_folding_are_kept() {
    let mut s = setup("");
    let mut requests = vec![Request::Sender("a@x.example".into())];
    requests.extend(smtp_attributes());
    requests.push(Request::Recipient(Recipient::new("b@y.example")));
    for chunk in [
        "Subject: one\r",
        "\n\ttwo\r\n",
        "X-A: 1\r\n\r",
        "\nbody\r\nlast",
    ] {
        requests.push(Request::Content(chunk.as_bytes().to_vec()));
    }
    assert_eq!(s.run(Flags::standard(), requests).outcome, queued());
    let (envelope, text) = s.only(INCOMING);
    assert_eq!(text, "Subject: one\n\ttwo\nX-A: 1\n\nbody\nlast\n");
    assert_eq!(envelope.attribute("rewrite_context"), Some("remote"));
}

#[test]
fn header_size_limit_discards_excess() {
    let mut s = setup("header_size_limit = 20\n");
    s.send(
        Flags::standard(),
        "a@x.example",
        &["b@y.example"],
        "Subject: 0123456789abcdef\n\nb\n",
    );
    let (_, text) = s.only(INCOMING);
    assert!(text.starts_with("Subject: 0123456789a\n"), "{text}");
}

#[test]
fn too_many_hops_is_rejected() {
    let mut s = setup("hopcount_limit = 3\n");
    let content = "Received: a\nReceived: b\nReceived: c\n\nbody\n";
    let done = s.send(Flags::standard(), "a@x.example", &["b@y.example"], content);
    assert_eq!(
        done.outcome,
        Outcome::Rejected {
            code: 554,
            enhanced: "5.4.0".into(),
            text: "Error: too many hops".into()
        }
    );
    assert!(s.files(INCOMING).is_empty());
    let content = "Received: a\nReceived: b\n\nbody\n";
    let done = s.send(Flags::standard(), "a@x.example", &["b@y.example"], content);
    assert_eq!(done.outcome, queued());
}

#[test]
fn message_size_limit() {
    let mut s = setup("message_size_limit = 1000\n");
    let big = format!("Subject: big\n\n{}\n", "x".repeat(2000));
    let done = s.send(Flags::standard(), "a@x.example", &["b@y.example"], &big);
    assert_eq!(
        done.outcome,
        Outcome::Rejected {
            code: 552,
            enhanced: "5.3.4".into(),
            text: "Error: message file too big".into()
        }
    );
    assert!(s.files(INCOMING).is_empty());
}

fn checks_setup() -> Setup {
    setup(
        "header_checks = inline:{ {Subject: reject=REJECT}, {Subject: reject text=REJECT go away}, \
         {Subject: discard=DISCARD}, {Subject: hold=HOLD held}, {Subject: warn=WARN}, \
         {X-Ignore: 1=IGNORE}, {Subject: prepend=PREPEND X-Tag: yes}, \
         {Subject: replace=REPLACE Subject: replaced}, {Subject: redirect=REDIRECT r@z.example}, \
         {Subject: filter=FILTER smtp:[127.0.0.1]:10025}, {Subject: defer=REJECT 4.7.1 later} }\n\
         body_checks = inline:{ {bad body=REJECT}, {drop me=IGNORE}, {fix me=REPLACE fixed}, \
         {copy me=BCC copy@z.example}, {tag me=PREPEND before} }\n",
    )
}

fn with_subject(s: &mut Setup, subject: &str) -> Finished {
    let mut requests = vec![Request::Sender("a@x.example".into())];
    requests.extend(smtp_attributes());
    requests.push(Request::Recipient(Recipient::new("b@y.example")));
    let content = format!("Subject: {subject}\nX-Ignore: 1\n\nbody\n");
    requests.push(Request::Content(content.into_bytes()));
    s.run(Flags::standard(), requests)
}

#[test]
fn header_check_actions() {
    let mut s = checks_setup();
    let rejected = |text: &str| Outcome::Rejected {
        code: 550,
        enhanced: "5.7.1".into(),
        text: text.into(),
    };
    assert_eq!(
        with_subject(&mut s, "reject").outcome,
        rejected("message content rejected")
    );
    assert_eq!(
        with_subject(&mut s, "reject text").outcome,
        rejected("go away")
    );
    assert_eq!(
        with_subject(&mut s, "defer").outcome,
        Outcome::Rejected {
            code: 451,
            enhanced: "4.7.1".into(),
            text: "later".into()
        }
    );
    let discarded = with_subject(&mut s, "discard");
    assert_eq!(
        discarded,
        Finished {
            outcome: queued(),
            queue: None
        }
    );
    assert!(s.files(INCOMING).is_empty() && s.files(HOLD).is_empty());

    assert_eq!(with_subject(&mut s, "hold").queue.as_deref(), Some(HOLD));
    let (_, text) = s.only(HOLD);
    assert!(text.starts_with("Subject: hold\n\n"), "{text}");

    assert_eq!(with_subject(&mut s, "warn").outcome, queued());
    let (_, text) = s.only(INCOMING);
    assert_eq!(text, "Subject: warn\n\nbody\n", "X-Ignore is ignored");
}

#[test]
fn header_check_edits_and_envelope_actions() {
    let cases = [
        ("prepend", "X-Tag: yes\nSubject: prepend\n\nbody\n"),
        ("replace", "Subject: replaced\n\nbody\n"),
    ];
    for (subject, expected) in cases {
        let mut s = checks_setup();
        with_subject(&mut s, subject);
        assert_eq!(s.only(INCOMING).1, expected);
    }
    let mut s = checks_setup();
    with_subject(&mut s, "redirect");
    assert_eq!(
        s.only(INCOMING).0.redirect_to.as_deref(),
        Some("r@z.example")
    );
    let mut s = checks_setup();
    with_subject(&mut s, "filter");
    assert_eq!(
        s.only(INCOMING).0.content_filter.as_deref(),
        Some("smtp:[127.0.0.1]:10025")
    );
}

#[test]
fn body_check_actions() {
    let mut s = checks_setup();
    let body = "Subject: b\n\nfine\ndrop me\nfix me\ncopy me\ntag me\n";
    assert_eq!(
        s.send(Flags::standard(), "a@x.example", &["b@y.example"], body)
            .outcome,
        queued()
    );
    let (envelope, text) = s.only(INCOMING);
    assert_eq!(text, "Subject: b\n\nfine\nfixed\ncopy me\nbefore\ntag me\n");
    assert_eq!(
        addresses(&envelope)
            .iter()
            .map(|(a, _)| a.as_str())
            .collect::<Vec<_>>(),
        ["b@y.example", "copy@z.example"]
    );
    let done = s.send(
        Flags::standard(),
        "a@x.example",
        &["b@y.example"],
        "S: x\n\nbad body\n",
    );
    assert!(matches!(done.outcome, Outcome::Rejected { code: 550, .. }));
    // Without the filter flag no checks apply.
    let flags = Flags {
        filter: false,
        ..Flags::standard()
    };
    let mut s = checks_setup();
    assert_eq!(
        s.send(flags, "a@x.example", &["b@y.example"], "S: x\n\nbad body\n")
            .outcome,
        queued()
    );
}

#[test]
fn missing_headers_for_local_mail_only() {
    let mut s = setup("undisclosed_recipients_header = To: undisclosed-recipients:;\n");
    let requests = vec![
        Request::Sender("alice".into()),
        Request::Fullname("Alice Q".into()),
        Request::Attribute("rewrite_context".into(), "local".into()),
        Request::Recipient(Recipient::new("bob@y.example")),
        Request::Content(b"Subject: hi\nCc: carol\n\nbody\n".to_vec()),
    ];
    let done = s.run(Flags::standard(), requests);
    assert_eq!(done.outcome, queued());
    let (envelope, text) = s.only(INCOMING);
    assert_eq!(envelope.sender, "alice@mail.example.com");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "Subject: hi");
    assert_eq!(
        lines[1], "Cc: carol@mail.example.com",
        "header addresses qualified"
    );
    assert!(lines[2].starts_with("Message-Id: <") && lines[2].ends_with("@mail.example.com>"));
    assert!(lines[3].starts_with("Date: "));
    assert_eq!(lines[4], "From: Alice Q <alice@mail.example.com>");
    assert_eq!(lines[5], "", "Cc present: no undisclosed-recipients header");

    let mut s = setup("undisclosed_recipients_header = To: undisclosed-recipients:;\n");
    let requests = vec![
        Request::Sender("a@x.example".into()),
        Request::Recipient(Recipient::new("b@y.example")),
        Request::Content(b"Subject: hi\n\nbody\n".to_vec()),
    ];
    s.run(Flags::standard(), requests);
    let (_, text) = s.only(INCOMING);
    assert!(text.contains("\nTo: undisclosed-recipients:;\n"), "{text}");

    let mut s = setup("");
    let mut requests = vec![Request::Sender("a@x.example".into())];
    requests.extend(smtp_attributes());
    requests.push(Request::Recipient(Recipient::new("b@y.example")));
    requests.push(Request::Content(
        b"Subject: hi\nTo: bare\n\nbody\n".to_vec(),
    ));
    s.run(Flags::standard(), requests);
    let (_, text) = s.only(INCOMING);
    assert_eq!(
        text, "Subject: hi\nTo: bare\n\nbody\n",
        "remote mail is left alone"
    );
}

#[test]
fn extract_recipients_and_drop_bcc() {
    let mut s = setup("");
    let flags = Flags {
        extract: true,
        ..Flags::standard()
    };
    let content = "To: Ann <ann@x.example>, bob\nCc: c@x.example\nBcc: secret@x.example\n\nbody\n";
    let requests = vec![
        Request::Sender("me".into()),
        Request::Recipient(Recipient::new("given@x.example")),
        Request::Content(content.as_bytes().to_vec()),
    ];
    assert_eq!(s.run(flags, requests).outcome, queued());
    let (envelope, text) = s.only(INCOMING);
    let got: Vec<String> = envelope
        .recipients
        .iter()
        .map(|r| r.address.clone())
        .collect();
    assert_eq!(
        got,
        [
            "given@x.example",
            "ann@x.example",
            "bob@mail.example.com",
            "c@x.example",
            "secret@x.example"
        ]
    );
    assert!(!text.contains("Bcc"), "{text}");
    assert!(text.starts_with("To: Ann <ann@x.example>, bob@mail.example.com\n"));

    // With Resent- headers, only the Resent- recipients count.
    let mut s = setup("");
    let content = "To: old@x.example\nResent-To: new@x.example\n\nbody\n";
    s.send(flags, "me", &[], content);
    let (envelope, _) = s.only(INCOMING);
    assert_eq!(envelope.recipients[0].address, "new@x.example");
    assert_eq!(envelope.recipients.len(), 1);
}

#[test]
fn hold_disposition_lands_in_hold() {
    let mut s = setup("");
    let requests = vec![
        Request::Sender("a@x.example".into()),
        Request::Recipient(Recipient::new("b@y.example")),
        Request::Disposition(Disposition::Hold("held".into())),
        Request::Content(b"Subject: x\n\nbody\n".to_vec()),
    ];
    let done = s.run(Flags::standard(), requests);
    assert_eq!(done.queue.as_deref(), Some(HOLD));
    assert!(!super::wakes_qmgr(&done));
    assert!(s.files(INCOMING).is_empty());
    s.only(HOLD);
}

#[test]
fn discard_disposition_leaves_nothing() {
    let mut s = setup("");
    let requests = vec![
        Request::Sender("a@x.example".into()),
        Request::Recipient(Recipient::new("b@y.example")),
        Request::Disposition(Disposition::Discard("no".into())),
        Request::Content(b"\nbody\n".to_vec()),
    ];
    assert_eq!(
        s.run(Flags::standard(), requests),
        Finished {
            outcome: queued(),
            queue: None
        }
    );
    assert!(s.files(INCOMING).is_empty());
}

#[test]
fn unfinished_message_leaves_nothing() {
    let mut s = setup("");
    {
        let mut message = s.service.open(Flags::standard()).unwrap();
        message
            .handle(Request::Sender("a@x.example".into()))
            .unwrap();
        message
            .handle(Request::Recipient(Recipient::new("b@y.example")))
            .unwrap();
        message
            .handle(Request::Content(b"Subject: x\n\nbody\n".to_vec()))
            .unwrap();
    }
    assert!(s.files(INCOMING).is_empty());
    assert_eq!(std::fs::read_dir(s.dir.join(INCOMING)).unwrap().count(), 0);
}

#[test]
fn out_of_order_requests_are_protocol_errors() {
    let mut s = setup("");
    let mut message = s.service.open(Flags::standard()).unwrap();
    assert!(message.handle(Request::Content(b"x\n".to_vec())).is_err());
    message
        .handle(Request::Sender("a@x.example".into()))
        .unwrap();
    assert!(message
        .handle(Request::Sender("b@x.example".into()))
        .is_err());
    assert!(message.handle(Request::Open(Flags::standard())).is_err());
}

#[test]
fn table_failure_is_a_temporary_failure() {
    // A database that is down (nothing listens on loopback port 1): a
    // lookup error, not "not found".
    let cf = std::env::temp_dir().join(format!("cleanup-test-{}-mysql.cf", std::process::id()));
    std::fs::write(
        &cf,
        "hosts = 127.0.0.1:1\nuser = u\npassword = p\ndbname = d\nquery = SELECT v FROM t WHERE k='%s'\n",
    )
    .unwrap();
    let mut s = setup(&format!("virtual_alias_maps = mysql:{}\n", cf.display()));
    let done = s.send(
        Flags::standard(),
        "a@x.example",
        &["b@y.example"],
        "\nbody\n",
    );
    let _ = std::fs::remove_file(&cf);
    assert!(
        matches!(done.outcome, Outcome::Failed(_)),
        "{:?}",
        done.outcome
    );
    assert!(s.files(INCOMING).is_empty());
}

#[test]
fn arrival_time_and_smtputf8() {
    let mut s = setup("");
    let requests = vec![
        Request::Sender("a@x.example".into()),
        Request::Arrival(1_600_000_000),
        Request::Attribute("smtputf8".into(), "1".into()),
        Request::Recipient(Recipient::new("b@y.example")),
        Request::Content(b"\nbody\n".to_vec()),
    ];
    s.run(Flags::standard(), requests);
    let (envelope, _) = s.only(INCOMING);
    assert_eq!(
        envelope.arrival_time,
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_600_000_000)
    );
    assert_eq!(envelope.sizes.smtputf8, 1);
    assert!(envelope.attribute("smtputf8").is_none());
}
