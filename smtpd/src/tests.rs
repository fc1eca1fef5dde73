//! Whole-session transcripts against a mock policy and sink: exact reply
//! bytes, log lines, and what reaches the queue file.

use std::collections::HashMap;
use std::time::Duration;

use chrono::DateTime;

use crate::params::RcptParams;
use crate::policy::{
    Decision, Disposition, Envelope, Etrn, MessageSink, Policy, Refusal, SinkError, View,
};
use crate::reply::Action;
use crate::session::Session;
use crate::settings::{BareNewline, Client, Settings, Stamp};
use crate::Address;

fn fixed_clock() -> Stamp {
    Stamp {
        time: DateTime::parse_from_rfc3339("2026-11-21T10:00:00+00:00").unwrap(),
        zone: Some("UTC".into()),
    }
}

fn settings() -> Settings {
    let client = Client::new("localhost", "127.0.0.1", 41816);
    let mut s = Settings::new("mx.example.com", client);
    s.error_sleep_time = Duration::ZERO;
    s.clock = fixed_clock;
    s
}

/// Relays only to `localhost`; per-recipient decisions by address.
#[derive(Default)]
struct MockPolicy {
    client: Option<Decision>,
    rcpt: HashMap<String, Decision>,
    end_of_data: Option<Decision>,
    /// smtpd_etrn_restrictions' decision.
    etrn: Option<Decision>,
}

impl Policy for MockPolicy {
    fn check_client(&mut self, _view: &View) -> Decision {
        self.client.clone().unwrap_or(Decision::Accept)
    }
    fn check_recipient(&mut self, view: &View) -> Decision {
        let Some(rcpt) = view.recipient else {
            return Decision::Accept;
        };
        let key = rcpt.to_string();
        if let Some(d) = self.rcpt.get(&key) {
            return d.clone();
        }
        match key.ends_with("@localhost") {
            true => Decision::Accept,
            false => Decision::Reject(Refusal::new(
                554,
                "5.7.1",
                format!("<{key}>: Relay access denied"),
            )),
        }
    }
    fn check_end_of_data(&mut self, _view: &View) -> Decision {
        self.end_of_data.clone().unwrap_or(Decision::Accept)
    }
    fn check_etrn(&mut self, _view: &View, _domain: &str) -> Decision {
        self.etrn.clone().unwrap_or(Decision::Accept)
    }
    fn etrn(&mut self, _view: &View, domain: &str) -> Etrn {
        match domain {
            "flush.example" | "[192.0.2.1]" => Etrn::Started,
            "bad.example" => Etrn::Bad,
            "down.example" => Etrn::Failed,
            _ => Etrn::Denied,
        }
    }
}

/// One message as the sink saw it.
#[derive(Debug, Default, Clone)]
struct Message {
    sender: String,
    recipients: Vec<String>,
    content: Vec<u8>,
    disposition: Option<Disposition>,
}

#[derive(Default)]
struct MockSink {
    open: Option<Message>,
    queued: Vec<Message>,
    aborted: usize,
    next_id: u32,
    fail_write: bool,
}

impl MessageSink for MockSink {
    fn begin(&mut self, envelope: &Envelope) -> Result<String, SinkError> {
        self.next_id += 1;
        self.open = Some(Message {
            sender: envelope.sender.to_string(),
            ..Message::default()
        });
        Ok(format!("4C0FFEE{:04}", self.next_id))
    }
    fn add_recipient(
        &mut self,
        recipient: &Address,
        _params: &RcptParams,
    ) -> Result<(), SinkError> {
        self.open
            .as_mut()
            .expect("open")
            .recipients
            .push(recipient.to_string());
        Ok(())
    }
    fn set_disposition(&mut self, disposition: &Disposition) -> Result<(), SinkError> {
        self.open.as_mut().expect("open").disposition = Some(disposition.clone());
        Ok(())
    }
    fn write(&mut self, content: &[u8]) -> Result<(), SinkError> {
        if self.fail_write {
            return Err(SinkError::Temporary("disk full".into()));
        }
        self.open
            .as_mut()
            .expect("open")
            .content
            .extend_from_slice(content);
        Ok(())
    }
    fn finish(&mut self) -> Result<String, SinkError> {
        let msg = self.open.take().expect("open");
        self.queued.push(msg);
        Ok(format!("4C0FFEE{:04}", self.next_id))
    }
    fn abort(&mut self) {
        self.open = None;
        self.aborted += 1;
    }
}

/// A session's outcome: the reply bytes, log lines, sleeps and whether it closed.
struct Run {
    replies: String,
    logs: Vec<String>,
    sleeps: Vec<Duration>,
    closed: bool,
    sink: MockSink,
}

fn collect(actions: Vec<Action>, run: &mut Run) {
    for a in actions {
        match a {
            Action::Reply(b) => run.replies.push_str(&String::from_utf8_lossy(&b)),
            Action::Log(l) => run.logs.push(l),
            Action::Sleep(d) => run.sleeps.push(d),
            Action::Close => {
                assert!(!run.closed, "closed twice");
                run.closed = true;
            }
        }
    }
}

/// Feeds `input` in pieces of `step` bytes (0: all at once).
fn session_with(settings: Settings, policy: &mut dyn Policy, input: &[u8], step: usize) -> Run {
    let mut session = Session::new(settings);
    let mut run = Run {
        replies: String::new(),
        logs: Vec::new(),
        sleeps: Vec::new(),
        closed: false,
        sink: MockSink::default(),
    };
    collect(session.greeting(policy), &mut run);
    let step = if step == 0 { input.len().max(1) } else { step };
    for piece in input.chunks(step) {
        collect(session.receive(piece, policy, &mut run.sink), &mut run);
    }
    run
}

fn session(input: &[u8]) -> Run {
    session_with(settings(), &mut MockPolicy::default(), input, 0)
}

/// The replies without the banner.
fn replies(input: &[u8]) -> String {
    let run = session(input);
    run.replies
        .strip_prefix("220 mx.example.com ESMTP Postfix\r\n")
        .expect("banner")
        .to_string()
}

const EHLO: &str = "250-mx.example.com\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-VRFY\r\n250-ETRN\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-DSN\r\n250-SMTPUTF8\r\n250 CHUNKING\r\n";

#[test]
fn a_whole_session() {
    let run = session(b"EHLO client.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<u@localhost>\r\nDATA\r\nSubject: hi\r\n\r\nbody\r\n.\r\nQUIT\r\n");
    let expected = format!(
        "220 mx.example.com ESMTP Postfix\r\n{EHLO}250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n250 2.0.0 Ok: queued as 4C0FFEE0001\r\n221 2.0.0 Bye\r\n"
    );
    assert_eq!(run.replies, expected);
    assert!(run.closed);
    let logs: Vec<_> = run
        .logs
        .iter()
        .filter(|l| !l.starts_with("improper"))
        .collect();
    assert_eq!(
        logs,
        [
            "connect from localhost[127.0.0.1]",
            "4C0FFEE0001: client=localhost[127.0.0.1]",
            "disconnect from localhost[127.0.0.1] ehlo=1 mail=1 rcpt=1 data=1 quit=1 commands=5",
        ]
    );
    let msg = &run.sink.queued[0];
    assert_eq!(msg.sender, "a@b.example");
    assert_eq!(msg.recipients, ["u@localhost"]);
    let content = String::from_utf8(msg.content.clone()).unwrap();
    assert_eq!(
        content,
        "Received: from client.example (localhost [127.0.0.1])\r\n\tby mx.example.com (Postfix) with ESMTP id 4C0FFEE0001\r\n\tfor <u@localhost>; Sat, 21 Nov 2026 10:00:00 +0000 (UTC)\r\nSubject: hi\r\n\r\nbody\r\n"
    );
}

#[test]
fn received_without_for_when_several_recipients_and_smtp_without_helo() {
    let run = session(
        b"MAIL FROM:<>\r\nRCPT TO:<u@localhost>\r\nRCPT TO:<v@localhost>\r\nDATA\r\nx\r\n.\r\n",
    );
    let content = String::from_utf8(run.sink.queued[0].content.clone()).unwrap();
    assert!(content.starts_with(
        "Received: from localhost (localhost [127.0.0.1])\r\n\tby mx.example.com (Postfix) with SMTP id 4C0FFEE0001;\r\n\tSat, 21 Nov 2026 10:00:00 +0000 (UTC)\r\nx\r\n"
    ));
    assert_eq!(run.sink.queued[0].sender, "");
}

#[test]
fn ipv6_client_in_received() {
    let mut set = settings();
    set.client.addr = "::1".into();
    let run = session_with(
        set,
        &mut MockPolicy::default(),
        b"HELO h\r\nMAIL FROM:<a@b>\r\nRCPT TO:<u@localhost>\r\nDATA\r\n.\r\n",
        0,
    );
    let content = String::from_utf8(run.sink.queued[0].content.clone()).unwrap();
    assert!(
        content.starts_with("Received: from h (localhost [IPv6:::1])\r\n"),
        "{content}"
    );
}

#[test]
fn pipelined_batch_is_answered_in_order() {
    let got = replies(b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<u@localhost>\r\nRCPT TO:<x@other.example>\r\nDATA\r\n");
    assert_eq!(
        got,
        format!("{EHLO}250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n554 5.7.1 <x@other.example>: Relay access denied\r\n354 End data with <CR><LF>.<CR><LF>\r\n")
    );
}

/// The same input, split every possible small way, gives the same replies
/// and the same messages.
#[test]
fn byte_at_a_time_equals_whole() {
    let input: &[u8] = b"EHLO c\r\nMAIL FROM:<a@b> SIZE=20\r\nRCPT TO:<u@localhost>\r\nDATA\r\n..dot\r\nline\n.\nx\r\n.\r\nNOOP\r\nMAIL FROM:<a@b>\r\nRCPT TO:<v@localhost>\r\nBDAT 5\r\nab\r\ncBDAT 3 LAST\r\nxyzBOGUS\r\nRSET\r\nQUIT\r\n";
    let whole = session(input);
    for step in [1, 2, 3, 5, 7, 13] {
        let split = session_with(settings(), &mut MockPolicy::default(), input, step);
        assert_eq!(split.replies, whole.replies, "step {step}");
        let contents: Vec<_> = split
            .sink
            .queued
            .iter()
            .map(|m| m.content.clone())
            .collect();
        let expected: Vec<_> = whole
            .sink
            .queued
            .iter()
            .map(|m| m.content.clone())
            .collect();
        assert_eq!(contents, expected, "step {step}");
    }
    assert_eq!(whole.sink.queued.len(), 2);
    assert!(whole.closed);
}

#[test]
fn sequence_errors() {
    let got = replies(b"RCPT TO:<a@b>\r\nDATA\r\nMAIL FROM:<a@b>\r\nDATA\r\nMAIL FROM:<a@b>\r\nRSET x\r\nRSET\r\n");
    assert_eq!(
        got,
        "503 5.5.1 Error: need MAIL command\r\n503 5.5.1 Error: need RCPT command\r\n250 2.1.0 Ok\r\n554 5.5.1 Error: no valid recipients\r\n503 5.5.1 Error: nested MAIL command\r\n501 5.5.4 Syntax: RSET\r\n250 2.0.0 Ok\r\n"
    );
}

#[test]
fn syntax_errors() {
    let got = replies(
        b"HELO\r\nEHLO\r\nMAIL\r\nMAIL FROM:\r\nMAIL FROM:<a@b\r\nMAIL FROM:<a@b> FOO=bar\r\nMAIL FROM:<a@b> SIZE=abc\r\nMAIL FROM:<a@b> SIZE=99999999999\r\nMAIL FROM:<a@b> RET=X\r\nMAIL FROM:<a@b>\r\nRCPT\r\nRCPT TO:<>\r\nRCPT TO:<a b@c>\r\nRCPT TO:<a@localhost> NOTIFY=FOO\r\nRCPT TO:<a@localhost> ORCPT=bad\r\nDATA x\r\n",
    );
    let expected = [
        "501 Syntax: HELO hostname",
        "501 Syntax: EHLO hostname",
        "501 5.5.4 Syntax: MAIL FROM:<address>",
        "501 5.5.4 Syntax: MAIL FROM:<address>",
        "501 5.1.7 Bad sender address syntax",
        "555 5.5.4 Unsupported option: FOO=bar",
        "501 5.5.4 Bad message size syntax",
        "552 5.3.4 Message size exceeds fixed limit",
        "501 5.5.4 Bad RET parameter syntax",
        "250 2.1.0 Ok",
        "501 5.5.4 Syntax: RCPT TO:<address>",
        "501 5.1.3 Bad recipient address syntax",
        "501 5.1.3 Bad recipient address syntax",
        "501 5.5.4 Error: Bad NOTIFY parameter syntax",
        "501 5.5.4 Error: Bad ORCPT parameter syntax",
        "554 5.5.1 Error: no valid recipients",
    ];
    assert_eq!(got, expected.map(|l| format!("{l}\r\n")).concat());
}

#[test]
fn size_reject_is_logged() {
    let run = session(b"EHLO h\r\nMAIL FROM:<a@b> SIZE=10240001\r\n");
    assert!(run.logs.contains(&"NOQUEUE: reject: MAIL from localhost[127.0.0.1]: 552 5.3.4 Message size exceeds fixed limit; from=<a@b> proto=ESMTP helo=<h>".to_string()));
}

#[test]
fn unknown_and_unimplemented_commands() {
    let got = replies(b"EXPN x\r\nSTARTTLS\r\nAUTH PLAIN\r\nno\x00op\r\n\r\nNOOP whatever\r\n");
    assert_eq!(
        got,
        "500 5.5.2 Error: command not recognized\r\n502 5.5.1 Error: command not implemented\r\n503 5.5.1 Error: authentication not enabled\r\n500 5.5.2 Error: command not recognized\r\n500 5.5.2 Error: bad syntax\r\n250 2.0.0 Ok\r\n"
    );
}

#[test]
fn relay_denied_log_line() {
    let run = session(b"EHLO h\r\nMAIL FROM:<a@b>\r\nRCPT TO:<x@y>\r\nQUIT\r\n");
    assert!(run
        .replies
        .contains("554 5.7.1 <x@y>: Relay access denied\r\n"));
    assert!(run.logs.contains(&"NOQUEUE: reject: RCPT from localhost[127.0.0.1]: 554 5.7.1 <x@y>: Relay access denied; from=<a@b> to=<x@y> proto=ESMTP helo=<h>".to_string()));
    assert_eq!(
        run.logs.last().unwrap(),
        "disconnect from localhost[127.0.0.1] ehlo=1 mail=1 rcpt=0/1 quit=1 commands=3/4"
    );
}

#[test]
fn delayed_client_reject_comes_at_rcpt() {
    let refusal = Refusal::new(
        554,
        "5.7.1",
        "<localhost[127.0.0.1]>: Client host rejected: Access denied",
    );
    let mut policy = MockPolicy {
        client: Some(Decision::Reject(refusal)),
        ..MockPolicy::default()
    };
    let run = session_with(
        settings(),
        &mut policy,
        b"HELO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@localhost>\r\nDATA\r\nQUIT\r\n",
        0,
    );
    assert_eq!(
        run.replies,
        "220 mx.example.com ESMTP Postfix\r\n250 mx.example.com\r\n250 2.1.0 Ok\r\n554 5.7.1 <localhost[127.0.0.1]>: Client host rejected: Access denied\r\n554 5.5.1 Error: no valid recipients\r\n221 2.0.0 Bye\r\n"
    );
    assert!(run.logs.contains(&"NOQUEUE: reject: RCPT from localhost[127.0.0.1]: 554 5.7.1 <localhost[127.0.0.1]>: Client host rejected: Access denied; from=<a@b> to=<c@localhost> proto=SMTP helo=<x>".to_string()));
    assert_eq!(
        run.logs.last().unwrap(),
        "disconnect from localhost[127.0.0.1] helo=1 mail=1 rcpt=0/1 data=0/1 quit=1 commands=3/5"
    );
}

#[test]
fn undelayed_client_reject_replaces_banner() {
    let refusal = Refusal::new(
        554,
        "5.7.1",
        "<localhost[127.0.0.1]>: Client host rejected: Access denied",
    );
    let mut policy = MockPolicy {
        client: Some(Decision::Reject(refusal)),
        ..MockPolicy::default()
    };
    let mut set = settings();
    set.delay_reject = false;
    let run = session_with(
        set,
        &mut policy,
        b"EHLO x\r\nMAIL FROM:<a@b>\r\nQUIT\r\n",
        0,
    );
    assert_eq!(
        run.replies,
        "554 5.7.1 <localhost[127.0.0.1]>: Client host rejected: Access denied\r\n503 5.7.0 Error: access denied for localhost[127.0.0.1]\r\n503 5.7.0 Error: access denied for localhost[127.0.0.1]\r\n221 2.0.0 Bye\r\n"
    );
}

#[test]
fn hold_and_discard_are_logged_and_passed_on() {
    let mut policy = MockPolicy::default();
    policy.rcpt.insert(
        "hold@localhost".into(),
        Decision::Hold("<hold@localhost>: Recipient address triggers HOLD action".into()),
    );
    let run = session_with(
        settings(),
        &mut policy,
        b"EHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<hold@localhost>\r\nDATA\r\n.\r\n",
        0,
    );
    assert!(run.logs.contains(&"NOQUEUE: hold: RCPT from localhost[127.0.0.1]: <hold@localhost>: Recipient address triggers HOLD action; from=<a@b> to=<hold@localhost> proto=ESMTP helo=<x>".to_string()));
    assert!(matches!(
        run.sink.queued[0].disposition,
        Some(Disposition::Hold(_))
    ));
}

#[test]
fn dot_stuffing_and_eight_bit_content() {
    let run = session(b"EHLO x\r\nMAIL FROM:<a@b> BODY=8BITMIME\r\nRCPT TO:<u@localhost>\r\nDATA\r\n..\r\n...x\r\n.y\r\n\xc3\xa9\xff\x00\r\n.\r\n");
    let content = &run.sink.queued[0].content;
    assert!(
        content.ends_with(b"\r\n.\r\n..x\r\ny\r\n\xc3\xa9\xff\x00\r\n"),
        "{content:?}"
    );
}

/// Every smuggling form stays inside the one message; nothing after it is
/// taken as a command or a second message.
#[test]
fn smuggling_variants_never_make_a_second_message() {
    let forms: [&[u8]; 6] = [
        b"\n.\n", b"\r.\r", b"\n.\r\n", b"\r\n.\n", b"\r\n.\r", b"\r.\r\n",
    ];
    for mode in [BareNewline::Normalize, BareNewline::Reject] {
        for form in forms {
            let mut input =
                b"EHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<u@localhost>\r\nDATA\r\nhead".to_vec();
            input.extend_from_slice(form);
            input.extend_from_slice(
                b"MAIL FROM:<evil@b>\r\nRCPT TO:<v@localhost>\r\nDATA\r\nsmuggled\r\n.\r\n",
            );
            let mut set = settings();
            set.forbid_bare_newline = mode;
            let run = session_with(set.clone(), &mut MockPolicy::default(), &input, 0);
            let bytewise = session_with(set, &mut MockPolicy::default(), &input, 1);
            assert_eq!(run.replies, bytewise.replies, "{mode:?} {form:?}");
            let ends =
                run.replies.matches("queued as").count() + run.replies.matches("bare <LF>").count();
            assert_eq!(ends, 1, "{mode:?} {form:?}: {}", run.replies);
            assert!(run.sink.queued.len() <= 1);
            let mails = run.replies.matches("2.1.0").count();
            assert_eq!(mails, 1, "{mode:?} {form:?}: MAIL ran");
            if let Some(msg) = run.sink.queued.first() {
                assert_eq!(msg.recipients, ["u@localhost"]);
                assert!(msg.content.windows(8).any(|w| w == b"smuggled"));
            }
        }
    }
}

#[test]
fn legacy_mode_ends_at_bare_lf_dot() {
    let mut set = settings();
    set.forbid_bare_newline = BareNewline::No;
    let run = session_with(
        set,
        &mut MockPolicy::default(),
        b"MAIL FROM:<a@b>\r\nRCPT TO:<u@localhost>\r\nDATA\r\nx\n.\nNOOP\r\n",
        0,
    );
    assert!(run
        .replies
        .ends_with("queued as 4C0FFEE0001\r\n250 2.0.0 Ok\r\n"));
}

#[test]
fn bare_lf_reject_in_data_continues_unless_521() {
    let mut set = settings();
    set.forbid_bare_newline = BareNewline::Reject;
    let input =
        b"EHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<u@localhost>\r\nDATA\r\na\nb\r\n.\r\nRSET\r\nQUIT\r\n";
    let run = session_with(set.clone(), &mut MockPolicy::default(), input, 0);
    assert!(run.replies.ends_with("354 End data with <CR><LF>.<CR><LF>\r\n550 5.5.2 mx.example.com Error: bare <LF> received\r\n250 2.0.0 Ok\r\n221 2.0.0 Bye\r\n"));
    assert!(run.logs.contains(&"4C0FFEE0001: reject: END-OF-MESSAGE from localhost[127.0.0.1]: bare <LF> received; from=<a@b> to=<u@localhost> proto=ESMTP helo=<x>".to_string()));
    assert_eq!(run.sink.aborted, 1);
    assert!(run.sink.queued.is_empty());
    assert!(
        run.logs
            .last()
            .unwrap()
            .ends_with("ehlo=1 mail=1 rcpt=1 data=0/1 rset=1 quit=1 commands=5/6"),
        "{:?}",
        run.logs
    );
    set.bare_newline_reject_code = 521;
    let run = session_with(set, &mut MockPolicy::default(), input, 0);
    assert!(run
        .replies
        .ends_with("521 5.5.2 mx.example.com Error: bare <LF> received\r\n"));
    assert!(run.closed);
}

#[test]
fn bare_lf_reject_in_commands_disconnects() {
    let mut set = settings();
    set.forbid_bare_newline = BareNewline::Reject;
    let run = session_with(set, &mut MockPolicy::default(), b"NOOP\nNOOP\r\n", 0);
    assert_eq!(run.replies, "220 mx.example.com ESMTP Postfix\r\n550 5.5.2 mx.example.com Error: bare <LF> received\r\n");
    assert!(run.closed);
    assert_eq!(
        run.logs[1..],
        [
            "NOQUEUE: reject: CONNECT from localhost[127.0.0.1]: bare <LF> received; proto=SMTP",
            "disconnect from localhost[127.0.0.1] commands=0/0"
        ]
    );
}

#[test]
fn bare_lf_normalized_by_default() {
    let run = session(b"EHLO x\nMAIL FROM:<a@b>\nRCPT TO:<u@localhost>\nDATA\na\nb\r\n.\r\n");
    assert!(run.replies.ends_with("queued as 4C0FFEE0001\r\n"));
    assert!(run.sink.queued[0].content.ends_with(b"(UTC)\r\na\r\nb\r\n"));
}

#[test]
fn bdat_chunks() {
    let got = replies(b"EHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<u@localhost>\r\nBDAT 5\r\nab\r\ncDATA\r\nMAIL FROM:<a@b>\r\nBDAT 0 LAST\r\n");
    assert_eq!(
        got,
        format!("{EHLO}250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.0.0 Ok: 5 bytes\r\n503 5.5.1 Error: DATA after BDAT\r\n503 5.5.1 Error: MAIL after BDAT\r\n250 2.0.0 Ok: 7 bytes queued as 4C0FFEE0001\r\n")
    );
}

#[test]
fn bdat_content_is_not_unstuffed_and_gets_a_final_line_end() {
    let run = session(
        b"EHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<u@localhost>\r\nBDAT 9 LAST\r\n.\r\n..\nabc",
    );
    assert!(
        run.replies
            .ends_with("250 2.0.0 Ok: 12 bytes queued as 4C0FFEE0001\r\n"),
        "{}",
        run.replies
    );
    assert!(run.sink.queued[0]
        .content
        .ends_with(b"(UTC)\r\n.\r\n..\r\nabc\r\n"));
}

#[test]
fn bdat_errors_discard_the_chunk() {
    let got = replies(b"BDAT 5\r\n12345MAIL FROM:<a@b>\r\nRCPT TO:<u@localhost>\r\nBDAT 10\r\nSubject: xBDAT 4 LAST\r\nhi\r\nMAIL FROM:<a@b>\r\n");
    assert_eq!(
        got,
        "503 5.5.1 Error: need RCPT command\r\n503 5.5.1 Error: MAIL after BDAT\r\n503 5.5.1 Error: need MAIL command\r\n551 5.0.0 Discarded 10 bytes after earlier error\r\n551 5.0.0 Discarded 4 bytes after earlier error\r\n250 2.1.0 Ok\r\n"
    );
}

#[test]
fn bdat_chunk_over_size_limit() {
    let got = replies(b"MAIL FROM:<a@b>\r\nRCPT TO:<u@localhost>\r\nBDAT 20000000\r\n");
    assert_eq!(got, "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n");
    let mut input = b"MAIL FROM:<a@b>\r\nRCPT TO:<u@localhost>\r\nBDAT 20000000\r\n".to_vec();
    input.resize(input.len() + 20_000_000, b'x');
    let got = replies(&input);
    assert_eq!(
        got,
        "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n552 5.3.4 Chunk exceeds message size limit\r\n"
    );
}

#[test]
fn malformed_bdat_disconnects() {
    let run = session(b"BDAT\r\nNOOP\r\n");
    assert!(run
        .replies
        .ends_with("521 5.5.4 Syntax: BDAT count [LAST]\r\n"));
    assert!(run.closed);
    assert!(run.logs.contains(
        &"warning: NOQUEUE: malformed BDAT command syntax from localhost[127.0.0.1]: BDAT"
            .to_string()
    ));
    for bad in [
        &b"BDAT x\r\n"[..],
        b"BDAT 3 foo\r\n",
        b"BDAT 99999999999999999999999\r\n",
        b"BDAT 1 LAST x\r\n",
    ] {
        assert!(session(bad).closed, "{bad:?}");
    }
}

#[test]
fn message_size_limit_while_receiving() {
    let mut set = settings();
    set.message_size_limit = 100;
    let mut input = b"MAIL FROM:<a@b>\r\nRCPT TO:<u@localhost>\r\nDATA\r\n".to_vec();
    for _ in 0..10 {
        input.extend_from_slice(b"0123456789012345678\r\n");
    }
    input.extend_from_slice(b".\r\nNOOP\r\n");
    let run = session_with(set, &mut MockPolicy::default(), &input, 0);
    assert!(run.replies.ends_with("354 End data with <CR><LF>.<CR><LF>\r\n552 5.3.4 Error: message file too big\r\n250 2.0.0 Ok\r\n"));
    assert!(run.sink.queued.is_empty());
    assert_eq!(run.sink.aborted, 1);
}

#[test]
fn ten_thousand_recipients() {
    let mut input = b"EHLO x\r\nMAIL FROM:<a@b>\r\n".to_vec();
    for i in 0..10_000 {
        input.extend_from_slice(format!("RCPT TO:<u{i}@localhost>\r\n").as_bytes());
    }
    let run = session(&input);
    assert_eq!(run.replies.matches("250 2.1.5 Ok").count(), 1000);
    assert_eq!(
        run.replies
            .matches("452 4.5.3 Error: too many recipients")
            .count(),
        1020
    );
    assert!(run
        .replies
        .ends_with("421 4.7.0 mx.example.com Error: too many errors\r\n"));
    assert!(run.closed);
    assert!(run
        .logs
        .contains(&"too many errors after RCPT from localhost[127.0.0.1]".to_string()));
    assert_eq!(run.sink.aborted, 1);
    // As Postfix 3.7 logs the same session.
    assert_eq!(
        run.logs.last().unwrap(),
        "disconnect from localhost[127.0.0.1] ehlo=1 mail=1 rcpt=2000/2020 commands=2002/2022"
    );
}

#[test]
fn garbage_hits_the_hard_error_limit() {
    let mut input = Vec::new();
    for i in 0..50u8 {
        input.extend_from_slice(&[b'x', i, 0, 0xff, b'\r', b'\n']);
    }
    let mut set = settings();
    set.error_sleep_time = Duration::from_secs(1);
    let run = session_with(set, &mut MockPolicy::default(), &input, 0);
    assert_eq!(run.replies.matches("500 5.5.2 Error: ").count(), 20);
    assert!(run
        .replies
        .ends_with("421 4.7.0 mx.example.com Error: too many errors\r\n"));
    assert!(run.closed);
    // One second before each of the first 10 errors, then the error count.
    let expected: Vec<Duration> = (0..10)
        .map(|_| 1)
        .chain(10..=20)
        .map(Duration::from_secs)
        .collect();
    assert_eq!(run.sleeps, expected);
}

#[test]
fn successful_delivery_resets_the_error_count() {
    let mut input = Vec::new();
    for _ in 0..15 {
        input.extend_from_slice(b"BOGUS\r\n");
    }
    input.extend_from_slice(b"MAIL FROM:<a@b>\r\nRCPT TO:<u@localhost>\r\nDATA\r\n.\r\n");
    for _ in 0..15 {
        input.extend_from_slice(b"BOGUS\r\n");
    }
    let run = session(&input);
    assert!(!run.closed);
}

#[test]
fn overlong_command_lines_are_truncated() {
    let mut input = b"NOOP ".to_vec();
    input.resize(5000, b'x');
    input.extend_from_slice(b"\r\nEHLO ");
    input.resize(input.len() + 3000, b'y');
    input.extend_from_slice(b"\r\nQUIT\r\n");
    let run = session(&input);
    assert!(run
        .replies
        .contains("\r\n250 2.0.0 Ok\r\n250-mx.example.com\r\n"));
    assert!(run.replies.ends_with("221 2.0.0 Bye\r\n"));
}

#[test]
fn overlong_data_lines_pass_whole() {
    let mut input = b"MAIL FROM:<a@b>\r\nRCPT TO:<u@localhost>\r\nDATA\r\n.".to_vec();
    input.resize(input.len() + 10_000, b'z');
    input.extend_from_slice(b"\r\n.\r\n");
    let run = session(&input);
    let content = &run.sink.queued[0].content;
    assert!(content.ends_with(&[&[b'z'; 10_000][..], b"\r\n"].concat()));
}

#[test]
fn forbidden_commands_disconnect() {
    for line in [
        &b"GET / HTTP/1.0\r\n"[..],
        b"Subject: x\r\n",
        b"1NOOP\r\n",
        b"post /\r\n",
    ] {
        let run = session(line);
        assert!(
            run.replies
                .ends_with("221 2.7.0 Error: I can break rules, too. Goodbye.\r\n"),
            "{line:?}"
        );
        assert!(run.closed);
        assert_eq!(
            run.logs.last().unwrap(),
            "disconnect from localhost[127.0.0.1] unknown=0/1 commands=0/1"
        );
    }
}

#[test]
fn vrfy_and_etrn() {
    let got = replies(b"VRFY\r\nVRFY u\r\nVRFY <u@localhost>\r\nETRN\r\nETRN flush.example\r\nETRN other.example\r\nMAIL FROM:<a@b>\r\nETRN flush.example\r\n");
    assert_eq!(
        got,
        "501 5.5.4 Syntax: VRFY address [SMTPUTF8]\r\n252 2.0.0 u\r\n252 2.0.0 <u@localhost>\r\n500 Syntax: ETRN domain\r\n250 Queuing started\r\n459 <other.example>: service unavailable\r\n250 2.1.0 Ok\r\n503 Error: MAIL transaction in progress\r\n"
    );
    let mut set = settings();
    set.disable_vrfy_command = true;
    let run = session_with(set, &mut MockPolicy::default(), b"VRFY u\r\nEHLO x\r\n", 0);
    assert!(run
        .replies
        .contains("502 5.5.1 VRFY command is disabled\r\n"));
    assert!(!run.replies.contains("250-VRFY"));
}

#[test]
fn discarded_ehlo_keywords() {
    let mut set = settings();
    set.discard_ehlo_keywords = vec!["chunking".into(), "dsn".into(), "pipelining".into()];
    let run = session_with(
        set,
        &mut MockPolicy::default(),
        b"EHLO x\r\nMAIL FROM:<a@b> RET=FULL\r\nBDAT 1 LAST\r\n",
        0,
    );
    assert!(run.replies.contains("250-mx.example.com\r\n250-SIZE 10240000\r\n250-VRFY\r\n250-ETRN\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n"));
    assert!(run
        .replies
        .contains("555 5.5.4 Unsupported option: RET=FULL\r\n"));
    assert!(run
        .replies
        .ends_with("502 5.5.1 Error: command not implemented\r\n"));
}

#[test]
fn smtputf8() {
    let run = session("EHLO x\r\nMAIL FROM:<é@exämple.org> SMTPUTF8\r\nRCPT TO:<ü@localhost>\r\nDATA\r\nSubject: ü\r\n.\r\n".as_bytes());
    assert!(
        run.replies.ends_with("queued as 4C0FFEE0001\r\n"),
        "{}",
        run.replies
    );
    let content = String::from_utf8(run.sink.queued[0].content.clone()).unwrap();
    assert!(content.contains("with UTF8SMTP id 4C0FFEE0001\r\n\tfor <ü@localhost>;"));
    let mut set = settings();
    set.smtputf8_enable = false;
    let run = session_with(
        set,
        &mut MockPolicy::default(),
        "EHLO x\r\nMAIL FROM:<a@b> SMTPUTF8\r\nMAIL FROM:<é@b>\r\n".as_bytes(),
        0,
    );
    assert!(!run.replies.contains("250-SMTPUTF8"));
    assert!(
        run.replies.ends_with(
            "555 5.5.4 Unsupported option: SMTPUTF8\r\n501 5.1.7 Bad sender address syntax\r\n"
        ),
        "{}",
        run.replies
    );
}

#[test]
fn lost_connection_mid_data() {
    let mut session = Session::new(settings());
    let mut policy = MockPolicy::default();
    let mut sink = MockSink::default();
    session.greeting(&mut policy);
    session.receive(
        b"MAIL FROM:<a@b>\r\nRCPT TO:<u@localhost>\r\nDATA\r\nabc\r\n",
        &mut policy,
        &mut sink,
    );
    let mut run = Run {
        replies: String::new(),
        logs: Vec::new(),
        sleeps: Vec::new(),
        closed: false,
        sink: MockSink::default(),
    };
    collect(session.lost_connection(&mut sink), &mut run);
    assert_eq!(
        run.logs,
        [
            "lost connection after DATA (5 bytes) from localhost[127.0.0.1]",
            "disconnect from localhost[127.0.0.1] mail=1 rcpt=1 data=0/1 commands=2/3"
        ]
    );
    assert_eq!(sink.aborted, 1);
    assert!(sink.queued.is_empty());
    assert!(session
        .receive(b"QUIT\r\n", &mut policy, &mut sink)
        .is_empty());
}

#[test]
fn timeout_reply() {
    let mut session = Session::new(settings());
    let mut sink = MockSink::default();
    let actions = session.timeout(&mut sink);
    assert!(actions.contains(&Action::Reply(
        b"421 4.4.2 mx.example.com Error: timeout exceeded\r\n".to_vec()
    )));
    assert_eq!(actions.last(), Some(&Action::Close));
}

#[test]
fn improper_pipelining_is_logged_and_optionally_refused() {
    let run = session(b"HELO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<u@localhost>\r\n");
    assert!(run.logs.contains(&"improper command pipelining after HELO from localhost[127.0.0.1]: MAIL FROM:<a@b>\\r\\nRCPT TO:<u@localhost>\\r\\n".to_string()));
    let mut set = settings();
    set.forbid_unauth_pipelining = true;
    let run = session_with(
        set.clone(),
        &mut MockPolicy::default(),
        b"EHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<u@localhost>\r\nDATA\r\nx\r\n.\r\n",
        0,
    );
    assert!(run
        .replies
        .ends_with("554 5.5.0 Error: SMTP protocol synchronization\r\n"));
    assert!(run.closed);
    // Correct pipelining (a group ending in DATA) is fine.
    let mut session = Session::new(set);
    let (mut policy, mut sink) = (MockPolicy::default(), MockSink::default());
    session.greeting(&mut policy);
    session.receive(b"EHLO x\r\n", &mut policy, &mut sink);
    session.receive(
        b"MAIL FROM:<a@b>\r\nRCPT TO:<u@localhost>\r\nDATA\r\n",
        &mut policy,
        &mut sink,
    );
    let actions = session.receive(b"x\r\n.\r\n", &mut policy, &mut sink);
    assert!(actions.contains(&Action::Reply(
        b"250 2.0.0 Ok: queued as 4C0FFEE0001\r\n".to_vec()
    )));
}

#[test]
fn sink_failure_is_a_temporary_error() {
    let mut session = Session::new(settings());
    let mut policy = MockPolicy::default();
    let mut sink = MockSink {
        fail_write: true,
        ..MockSink::default()
    };
    session.greeting(&mut policy);
    let actions = session.receive(
        b"MAIL FROM:<a@b>\r\nRCPT TO:<u@localhost>\r\nDATA\r\nx\r\n.\r\n",
        &mut policy,
        &mut sink,
    );
    assert_eq!(
        actions.last(),
        Some(&Action::Reply(
            b"451 4.3.0 Error: queue file write error\r\n".to_vec()
        ))
    );
    assert_eq!(sink.aborted, 1);
}

#[test]
fn end_of_data_reject() {
    let mut policy = MockPolicy {
        end_of_data: Some(Decision::Reject(Refusal::new(
            550,
            "5.7.1",
            "Message content rejected",
        ))),
        ..MockPolicy::default()
    };
    let run = session_with(
        settings(),
        &mut policy,
        b"EHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<u@localhost>\r\nDATA\r\nx\r\n.\r\n",
        0,
    );
    assert!(run
        .replies
        .ends_with("550 5.7.1 Message content rejected\r\n"));
    assert!(run.logs.contains(&"4C0FFEE0001: reject: END-OF-MESSAGE from localhost[127.0.0.1]: 550 5.7.1 Message content rejected; from=<a@b> to=<u@localhost> proto=ESMTP helo=<x>".to_string()));
}

/// Random bytes never panic, and the session always ends in a known state.
#[test]
fn binary_garbage_never_panics() {
    let mut seed: u32 = 12345;
    for round in 0..200 {
        let mut input = Vec::new();
        for _ in 0..(round * 7 % 900) {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let b = (seed >> 16) as u8;
            input.push(match b % 7 {
                0 => b'\n',
                1 => b'\r',
                2 => b'.',
                _ => b,
            });
        }
        let mut prefixed =
            b"EHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<u@localhost>\r\nDATA\r\n".to_vec();
        prefixed.extend_from_slice(&input);
        session(&input);
        session(&prefixed);
        let bdat = [
            &b"EHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<u@localhost>\r\nBDAT 100\r\n"[..],
            &input,
        ]
        .concat();
        session(&bdat);
    }
}

#[test]
fn rcpt_after_bdat_and_helo_resets() {
    let got = replies(b"EHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<u@localhost>\r\nBDAT 3\r\nabcRCPT TO:<u@localhost>\r\nHELO y\r\nRCPT TO:<u@localhost>\r\n");
    assert!(got.ends_with("250 2.0.0 Ok: 3 bytes\r\n503 5.5.1 Error: RCPT after BDAT\r\n250 mx.example.com\r\n503 5.5.1 Error: need MAIL command\r\n"), "{got}");
}

#[test]
fn pipelining_log_shows_at_most_100_bytes() {
    let mut input = b"NOOP\r\n".to_vec();
    input.resize(400, b'x');
    input.extend_from_slice(b"\r\n");
    let run = session(&input);
    let line = run.logs.iter().find(|l| l.starts_with("improper")).unwrap();
    assert_eq!(
        line,
        &format!(
            "improper command pipelining after NOOP from localhost[127.0.0.1]: {}",
            "x".repeat(100)
        )
    );
}

#[test]
fn etrn_arguments_and_answers() {
    let run = session(
        b"EHLO c\r\nETRN @flush.example\r\nETRN #flush.example\r\nETRN [192.0.2.1]\r\n\
          ETRN a b\r\nETRN bad..example\r\nETRN @@flush.example\r\nETRN 1.2.3.4\r\n\
          ETRN bad.example\r\nETRN down.example\r\nETRN other.example\r\n",
    );
    let got = run.replies.split_once(EHLO).expect("ehlo").1;
    assert_eq!(
        got,
        "250 Queuing started\r\n250 Queuing started\r\n250 Queuing started\r\n\
         500 Syntax: ETRN domain\r\n501 Error: invalid parameter syntax\r\n\
         501 Error: invalid parameter syntax\r\n501 Error: invalid parameter syntax\r\n\
         458 Unable to queue messages\r\n458 Unable to queue messages\r\n\
         459 <other.example>: service unavailable\r\n"
    );
    let warnings: Vec<&str> = run
        .logs
        .iter()
        .map(String::as_str)
        .filter(|l| l.starts_with("warning:"))
        .collect();
    assert_eq!(
        warnings,
        [
            "warning: bad ETRN bad.example... from localhost[127.0.0.1]",
            "warning: unable to talk to fast flush service",
            "warning: reject: ETRN other.example... from localhost[127.0.0.1]",
        ]
    );
}

#[test]
fn etrn_restrictions_refuse_before_the_flush_service() {
    let refusal = Refusal::new(
        554,
        "5.7.1",
        "<flush.example>: Etrn command rejected: Access denied",
    );
    let mut policy = MockPolicy {
        etrn: Some(Decision::Reject(refusal)),
        ..MockPolicy::default()
    };
    let run = session_with(
        settings(),
        &mut policy,
        b"HELO c\r\nETRN flush.example\r\n",
        0,
    );
    assert!(run.replies.ends_with(
        "250 mx.example.com\r\n554 5.7.1 <flush.example>: Etrn command rejected: Access denied\r\n"
    ));
    assert!(run.logs.iter().any(|l| l
        == "NOQUEUE: reject: ETRN from localhost[127.0.0.1]: 554 5.7.1 <flush.example>: \
            Etrn command rejected: Access denied; proto=SMTP helo=<c>"));
    // With smtpd_delay_reject, a client refused at connect is refused here.
    let client = Refusal::new(
        554,
        "5.7.1",
        "<localhost[127.0.0.1]>: Client host rejected: Access denied",
    );
    let mut policy = MockPolicy {
        client: Some(Decision::Reject(client)),
        ..MockPolicy::default()
    };
    let run = session_with(
        settings(),
        &mut policy,
        b"HELO c\r\nETRN flush.example\r\n",
        0,
    );
    assert!(run
        .replies
        .ends_with("554 5.7.1 <localhost[127.0.0.1]>: Client host rejected: Access denied\r\n"));
}

#[test]
fn helo_required() {
    let mut set = settings();
    set.helo_required = true;
    let run = session_with(
        set,
        &mut MockPolicy::default(),
        b"MAIL FROM:<a@b>\r\nETRN flush.example\r\nHELO x\r\nMAIL FROM:<a@b>\r\n",
        0,
    );
    assert!(run.replies.ends_with("503 5.5.1 Error: send HELO/EHLO first\r\n503 Error: send HELO/EHLO first\r\n250 mx.example.com\r\n250 2.1.0 Ok\r\n"));
}

#[test]
fn junk_commands_become_errors() {
    let mut input = Vec::new();
    for _ in 0..200 {
        input.extend_from_slice(b"NOOP\r\n");
    }
    let run = session(&input);
    // 101 free NOOPs, then each is an error: the 20th error closes.
    assert_eq!(run.replies.matches("250 2.0.0 Ok").count(), 121);
    assert!(run
        .replies
        .ends_with("421 4.7.0 mx.example.com Error: too many errors\r\n"));
    assert!(run.closed);
}

#[test]
fn access_prepend_redirect_and_filter_reach_the_message() {
    use crate::restrictions::RestrictionPolicy;
    use libmail::config::Config;
    use libmail::restrict::Restrictions;
    let text = "myhostname = mx.example.com\nmydomain = example.com\n\
        inet_interfaces = 127.0.0.1\nmynetworks = 127.0.0.0/8\nlocal_recipient_maps =\n\
        smtpd_recipient_restrictions = check_recipient_access inline:{ \
        {pre@localhost=PREPEND X-Tag: yes}, {red@localhost=REDIRECT else@example.net}, \
        {fil@localhost=FILTER smtp:[127.0.0.1]:10025} }, permit_mynetworks, reject\n";
    let config = Config::from_text(std::path::Path::new("/nonexistent"), text).unwrap();
    let dns = Box::new(libmail::dns::StaticDns::new());
    let mut policy = RestrictionPolicy::new(Restrictions::new(&config, dns).unwrap());
    let run = session_with(
        settings(),
        &mut policy,
        b"EHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<pre@localhost>\r\nRCPT TO:<red@localhost>\r\nDATA\r\nhi\r\n.\r\n",
        0,
    );
    let message = &run.sink.queued[0];
    assert!(
        message.content.starts_with(b"X-Tag: yes\r\nReceived: "),
        "{:?}",
        String::from_utf8_lossy(&message.content)
    );
    assert_eq!(
        message.disposition,
        Some(Disposition::Redirect("else@example.net".into()))
    );
    assert!(run.logs.iter().any(|l| l.starts_with("4C0FFEE0001: redirect: RCPT from localhost[127.0.0.1]: <red@localhost>: Recipient address triggers REDIRECT else@example.net; from=<a@b> to=<red@localhost>")), "{:?}", run.logs);
    let run = session_with(
        settings(),
        &mut policy,
        b"EHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<fil@localhost>\r\nRCPT TO:<nobody@elsewhere.example>\r\nDATA\r\n.\r\n",
        0,
    );
    assert_eq!(
        run.sink.queued[0].disposition,
        Some(Disposition::Filter("smtp:[127.0.0.1]:10025".into()))
    );
}

#[test]
fn nul_bytes_end_a_command() {
    assert_eq!(
        replies(b"\0\0\0\r\nNOOP\0junk\r\nQUIT\r\n"),
        "500 5.5.2 Error: bad syntax\r\n250 2.0.0 Ok\r\n221 2.0.0 Bye\r\n"
    );
}

#[test]
fn routed_numeric_and_trailing_dot_addresses() {
    let run = session(b"EHLO h\r\nMAIL FROM:<a@127.0.0.1>\r\nMAIL FROM:<s@x.example@b.example.>\r\nRCPT TO:<user@127.0.0.1>\r\nRCPT TO:<user@[127.0.0.1]>\r\nRCPT TO:<user@other.example@test.example>\r\nRCPT TO:<user@other.example.>\r\nRCPT TO:<user@.>\r\nRCPT TO:<user@a..b>\r\nRCPT TO:<x@y@localhost.>\r\nQUIT\r\n");
    let expected = [
        "501 5.1.7 Bad sender address syntax",
        "250 2.1.0 Ok",
        "501 5.1.3 Bad recipient address syntax",
        "554 5.7.1 <user@[127.0.0.1]>: Relay access denied",
        "554 5.7.1 <user@other.example@test.example>: Relay access denied",
        "554 5.7.1 <user@other.example.>: Relay access denied",
        "501 5.1.3 Bad recipient address syntax",
        "501 5.1.3 Bad recipient address syntax",
        "554 5.7.1 <x@y@localhost.>: Relay access denied",
        "221 2.0.0 Bye",
    ];
    let got = run
        .replies
        .split_once("\r\n250 CHUNKING\r\n")
        .expect("ehlo")
        .1;
    assert_eq!(got, expected.map(|l| format!("{l}\r\n")).concat());
    assert!(run.logs.contains(&"NOQUEUE: reject: RCPT from localhost[127.0.0.1]: 554 5.7.1 <user@other.example.>: Relay access denied; from=<s@x.example@b.example.> to=<user@other.example.> proto=ESMTP helo=<h>".to_string()));
}

/// A policy from main.cf text, asking a fixed DNS table.
fn dns_policy(extra: &str) -> crate::restrictions::RestrictionPolicy {
    use libmail::config::Config;
    use libmail::dns::StaticDns;
    use libmail::restrict::Restrictions;
    let text = format!(
        "myhostname = mx.example.com\nmydomain = example.com\n\
         inet_interfaces = 127.0.0.1\nmynetworks = 127.0.0.0/8\nlocal_recipient_maps =\n{extra}"
    );
    let config = Config::from_text(std::path::Path::new("/nonexistent"), &text).unwrap();
    let dns = StaticDns::new()
        .with_a("good.example", "192.0.2.1")
        .with_servfail("broken.example");
    crate::restrictions::RestrictionPolicy::new(Restrictions::new(&config, Box::new(dns)).unwrap())
}

fn rcpt_replies(settings: Settings, policy: &mut dyn Policy, helo: &str) -> Vec<String> {
    let input = format!(
        "EHLO {helo}\r\nMAIL FROM:<a@good.example>\r\nRCPT TO:<u@localhost>\r\n\
         RCPT TO:<u@elsewhere.example>\r\nQUIT\r\n"
    );
    let run = session_with(settings, policy, input.as_bytes(), 0);
    let tail = run.replies.split_once("250 CHUNKING\r\n").expect("ehlo").1;
    tail.lines().map(str::to_string).collect()
}

#[test]
fn helo_tempfail_defers_only_what_would_be_permitted() {
    let mut policy = dns_policy(
        "smtpd_helo_restrictions = reject_unknown_helo_hostname\n\
         smtpd_relay_restrictions = reject_unauth_destination\n",
    );
    let deferred = "450 4.7.1 <broken.example>: Helo command rejected: Host not found";
    let relay = "554 5.7.1 <u@elsewhere.example>: Relay access denied";
    for delay_reject in [true, false] {
        let mut set = settings();
        set.delay_reject = delay_reject;
        assert_eq!(
            rcpt_replies(set.clone(), &mut policy, "broken.example"),
            ["250 2.1.0 Ok", deferred, relay, "221 2.0.0 Bye"],
            "delay_reject={delay_reject}"
        );
        assert_eq!(
            rcpt_replies(set, &mut policy, "good.example"),
            ["250 2.1.0 Ok", "250 2.1.5 Ok", relay, "221 2.0.0 Bye"]
        );
    }
}

#[test]
fn helo_tempfail_with_defer_action_is_immediate() {
    let mut policy = dns_policy(
        "smtpd_helo_restrictions = reject_unknown_helo_hostname\n\
         unknown_helo_hostname_tempfail_action = defer\n",
    );
    let deferred = "450 4.7.1 <broken.example>: Helo command rejected: Host not found";
    assert_eq!(
        rcpt_replies(settings(), &mut policy, "broken.example"),
        ["250 2.1.0 Ok", deferred, deferred, "221 2.0.0 Bye"]
    );
}
