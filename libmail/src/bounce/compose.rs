//! Composing a delivery status notification (RFC 3464): a
//! multipart/report with a human-readable part, a message/delivery-status
//! part, and the original message or its headers. Pure: the same inputs
//! give the same bytes, so the layout is checked by golden-style tests.
//! Lines end in LF, as cleanup stores them.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::mail_date::mail_date;
use crate::queue::{Content, Envelope};

use super::policy::{Return, Role, Settings};
use super::{Action, NoticeKind, Outcome};

/// Everything one notice says.
#[derive(Debug, Clone, Copy)]
pub struct Report<'a> {
    pub kind: NoticeKind,
    pub role: Role,
    /// The original message's queue ID.
    pub queue_id: &'a str,
    /// The notice's own queue ID (for Received: and Message-Id:).
    pub new_id: &'a str,
    pub now: SystemTime,
    /// The To: address.
    pub to: &'a str,
    pub envelope: &'a Envelope,
    pub outcomes: &'a [&'a Outcome],
    pub content: &'a Content,
    /// Already checked against bounce_size_limit (see `returned`).
    pub returned: Return,
    pub settings: &'a Settings,
}

/// What is returned of the original: headers only when that is wanted or
/// when the whole message is larger than bounce_size_limit.
pub fn returned(wants: Return, content: &Content, size_limit: u64) -> Return {
    let size: usize = content.headers.iter().map(Vec::len).sum::<usize>() + content.body.len();
    match wants {
        Return::Full if (size as u64) <= size_limit => Return::Full,
        _ => Return::Headers,
    }
}

/// The whole notice message: header, then the three parts.
pub fn compose(report: &Report) -> Vec<u8> {
    let boundary = boundary(report);
    let mut out = headers(report, &boundary).into_bytes();
    out.extend_from_slice(b"\nThis is a MIME-encapsulated message.\n");
    let notification = notification(report);
    let charset = match notification.is_ascii() {
        true => "us-ascii",
        false => "utf-8",
    };
    let part = format!(
        "Content-Description: Notification\n\
         Content-Type: text/plain; charset={charset}\n\n{notification}"
    );
    push_part(&mut out, &boundary, part.as_bytes());
    let part = format!(
        "Content-Description: Delivery report\n\
         Content-Type: message/delivery-status\n\n{}",
        delivery_status(report)
    );
    push_part(&mut out, &boundary, part.as_bytes());
    push_part(&mut out, &boundary, &original(report));
    out.extend_from_slice(format!("\n--{boundary}--\n").as_bytes());
    out
}

/// A boundary line, then the part, which is made to end with a line end
/// so that the blank line before the next boundary is its own.
fn push_part(out: &mut Vec<u8>, boundary: &str, part: &[u8]) {
    out.extend_from_slice(format!("\n--{boundary}\n").as_bytes());
    out.extend_from_slice(part);
    if !part.ends_with(b"\n") {
        out.push(b'\n');
    }
}

/// `QUEUEID.SECONDS/HOSTNAME`: unlikely to occur in the original.
fn boundary(report: &Report) -> String {
    format!(
        "{}.{}/{}",
        report.queue_id,
        unix_seconds(report.now),
        report.settings.myhostname
    )
}

fn unix_seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

fn subject(kind: NoticeKind, role: Role) -> &'static str {
    match (kind, role) {
        (NoticeKind::NonDelivery, Role::Sender) => "Undelivered Mail Returned to Sender",
        (NoticeKind::NonDelivery, _) => "Postmaster Copy: Undelivered Mail",
        (NoticeKind::Delay, Role::Sender) => "Delayed Mail (still being retried)",
        (NoticeKind::Delay, _) => "Postmaster Warning: Delayed Mail",
        (NoticeKind::Success, _) => "Successful Mail Delivery Report",
    }
}

/// The message header, ending before the empty line.
fn headers(report: &Report, boundary: &str) -> String {
    let s = report.settings;
    let date = mail_date(report.now);
    let stamp = chrono::DateTime::<chrono::Utc>::from(report.now).format("%Y%m%d%H%M%S");
    format!(
        "Received: by {host} ({name})\n\
         \tid {new_id}; {date}\n\
         Date: {date}\n\
         From: MAILER-DAEMON@{host} (Mail Delivery System)\n\
         Subject: {subject}\n\
         To: {to}\n\
         Auto-Submitted: auto-replied\n\
         MIME-Version: 1.0\n\
         Content-Type: multipart/report; report-type=delivery-status;\n\
         \tboundary=\"{boundary}\"\n\
         Content-Transfer-Encoding: 8bit\n\
         Message-Id: <{stamp}.{new_id}@{host}>\n",
        host = s.myhostname,
        name = s.mail_name,
        new_id = report.new_id,
        subject = subject(report.kind, report.role),
        to = one_line(report.to),
    )
}

/// The human-readable part.
fn notification(report: &Report) -> String {
    let s = report.settings;
    let mut text = format!(
        "This is the {} mail system at host {}.\n\n",
        s.mail_name, s.myhostname
    );
    text.push_str(&explanation(report));
    text.push('\n');
    for outcome in report.outcomes {
        text.push_str(&format!(
            "<{}>: {}\n",
            outcome.recipient.address,
            one_line(&outcome.reason)
        ));
    }
    text
}

/// The paragraph that says what happened, for the sender or for the
/// postmaster.
fn explanation(report: &Report) -> String {
    let attached = match report.returned {
        Return::Full => "The message is attached below.",
        Return::Headers => "The headers of the message are attached below.",
    };
    if report.role != Role::Sender {
        let what = match report.kind {
            NoticeKind::NonDelivery => "could not be delivered to",
            NoticeKind::Delay => "is still waiting for delivery to",
            NoticeKind::Success => "was delivered to",
        };
        return format!(
            "This is a copy for the postmaster. Message {} from <{}>\n\
             {what} the recipients listed below.\n{attached}\n",
            report.queue_id,
            one_line(&report.envelope.sender)
        );
    }
    match report.kind {
        NoticeKind::NonDelivery => format!(
            "Your message could not be delivered to one or more of its\n\
             recipients, listed below with the reason for each.\n\
             {attached}\n\n\
             If you need help, write to the postmaster of this host and\n\
             include this report.\n"
        ),
        NoticeKind::Delay => format!(
            "Your message has not yet been delivered to the recipients listed\n\
             below. It is still in the queue, and delivery will be tried again\n\
             until {}; you need not send it again.\n\
             {attached}\n",
            mail_date(retry_until(report))
        ),
        NoticeKind::Success => format!(
            "Your message was delivered to the recipients listed below, as\n\
             you asked in its delivery status notification request.\n\
             {attached}\n"
        ),
    }
}

/// When the queue gives up: arrival plus maximal_queue_lifetime.
fn retry_until(report: &Report) -> SystemTime {
    let lifetime = report.settings.maximal_queue_lifetime;
    let arrival = report.envelope.arrival_time;
    arrival.checked_add(lifetime).unwrap_or(arrival)
}

/// The message/delivery-status part: per-message fields, then one
/// block per recipient, each after an empty line.
fn delivery_status(report: &Report) -> String {
    let env = report.envelope;
    let mut text = String::new();
    if let Some(envid) = &env.dsn_envid {
        text.push_str(&format!("Original-Envelope-Id: {}\n", one_line(envid)));
    }
    text.push_str(&format!(
        "Reporting-MTA: dns; {}\n\
         X-Postfix-Queue-ID: {}\n\
         X-Postfix-Sender: rfc822; {}\n\
         Arrival-Date: {}\n",
        report.settings.myhostname,
        report.queue_id,
        one_line(&env.sender),
        mail_date(env.arrival_time)
    ));
    for outcome in report.outcomes {
        text.push('\n');
        text.push_str(&recipient_fields(report, outcome));
    }
    text
}

/// One recipient's fields, in RFC 3464's order (Postfix puts
/// Final-Recipient first).
fn recipient_fields(report: &Report, outcome: &Outcome) -> String {
    let mut text = format!(
        "Final-Recipient: rfc822; {}\n",
        one_line(&outcome.recipient.address)
    );
    if let Some(original) = original_recipient(outcome) {
        text.push_str(&format!("Original-Recipient: {original}\n"));
    }
    text.push_str(&format!(
        "Action: {}\nStatus: {}\n",
        action_name(outcome.action),
        status(outcome)
    ));
    if let Some(host) = remote_mta(&outcome.relay) {
        text.push_str(&format!("Remote-MTA: dns; {host}\n"));
    }
    if !outcome.reason.is_empty() {
        text.push_str(&format!(
            "Diagnostic-Code: {}\n",
            diagnostic_code(&outcome.reason)
        ));
    }
    if outcome.action == Action::Delayed {
        let until = mail_date(retry_until(report));
        text.push_str(&format!("Will-Retry-Until: {until}\n"));
    }
    text
}

fn action_name(action: Action) -> &'static str {
    match action {
        Action::Failed => "failed",
        Action::Delayed => "delayed",
        Action::Delivered => "delivered",
        Action::Relayed => "relayed",
        Action::Expanded => "expanded",
    }
}

/// The enhanced status code, or the generic one of the action's class
/// when the agent gave none that is well-formed.
fn status(outcome: &Outcome) -> String {
    let parts: Vec<&str> = outcome.dsn.split('.').collect();
    let numeric = |p: &&str| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit());
    let valid =
        parts.len() == 3 && parts.iter().all(numeric) && matches!(parts[0], "2" | "4" | "5");
    if valid {
        return outcome.dsn.clone();
    }
    match outcome.action {
        Action::Failed => "5.0.0",
        Action::Delayed => "4.0.0",
        _ => "2.0.0",
    }
    .to_string()
}

/// `Original-Recipient:`'s value: the DSN ORCPT as `type; address` when
/// the client gave one, else the address before rewriting when it
/// differs from the final one.
pub fn original_recipient(outcome: &Outcome) -> Option<String> {
    let rcpt = &outcome.recipient;
    if let Some((kind, address)) = rcpt.dsn_orcpt.split_once(';') {
        let (kind, address) = (kind.trim(), address.trim());
        if !kind.is_empty() && !address.is_empty() {
            return Some(format!("{kind}; {}", one_line(address)));
        }
    }
    let orig = rcpt.orig_recipient.as_str();
    (!orig.is_empty() && orig != rcpt.address).then(|| format!("rfc822; {}", one_line(orig)))
}

/// The remote host of a relay written `host[address]:port`; local
/// transports (`local`, `none`, `virtual`, a socket path) have none.
pub fn remote_mta(relay: &str) -> Option<&str> {
    let (host, rest) = relay.split_once('[')?;
    let address = rest.split_once(']')?.0;
    match host.is_empty() {
        true => (!address.is_empty()).then_some(address),
        false => Some(host),
    }
}

/// `smtp; 550 5.1.1 ...` when the reason is (or quotes) a remote SMTP
/// reply, else `X-Postfix; reason`.
pub fn diagnostic_code(reason: &str) -> String {
    let reason = one_line(reason);
    if starts_with_reply_code(&reason) {
        return format!("smtp; {reason}");
    }
    // `host mx.example.com[192.0.2.1] said: 550 5.1.1 ... (in reply to
    // RCPT TO command)`: the reply itself is the diagnostic.
    if let Some((_, said)) = reason.split_once(" said: ") {
        if starts_with_reply_code(said) {
            let reply = match said.rfind(" (in reply to ") {
                Some(at) if said.ends_with(')') => &said[..at],
                _ => said,
            };
            return format!("smtp; {reply}");
        }
    }
    format!("X-Postfix; {reason}")
}

/// A three-digit reply code from 2xx to 5xx, alone or followed by a
/// space or hyphen.
fn starts_with_reply_code(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() >= 3
        && (b'2'..=b'5').contains(&bytes[0])
        && bytes[1..3].iter().all(u8::is_ascii_digit)
        && matches!(bytes.get(3), None | Some(b' ' | b'-'))
}

/// Text for a header or DSN field: line ends would start a new field.
fn one_line(text: &str) -> String {
    text.replace(['\r', '\n'], " ")
}

/// The third part: the original, whole or its headers.
fn original(report: &Report) -> Vec<u8> {
    let what = match report.kind {
        NoticeKind::NonDelivery => "Undelivered Message",
        NoticeKind::Delay => "Delayed Message",
        NoticeKind::Success => "Delivered Message",
    };
    let headers = report.content.headers.concat();
    let (head, text) = match report.returned {
        Return::Full => {
            let mut text = headers;
            text.extend_from_slice(&report.content.body);
            (
                format!("Content-Description: {what}\nContent-Type: message/rfc822\n"),
                text,
            )
        }
        Return::Headers => (
            format!("Content-Description: {what} Headers\nContent-Type: text/rfc822-headers\n"),
            headers,
        ),
    };
    let mut out = head.into_bytes();
    if !text.is_ascii() {
        out.extend_from_slice(b"Content-Transfer-Encoding: 8bit\n");
    }
    out.push(b'\n');
    out.extend_from_slice(&text);
    out
}

#[cfg(test)]
mod tests {
    use super::super::policy::tests::{outcome, settings};
    use super::*;
    use crate::queue::{Recipient, Sizes};
    use std::time::Duration;

    const NOW: u64 = 1_763_800_000;

    fn envelope(sender: &str) -> Envelope {
        Envelope {
            sizes: Sizes::default(),
            arrival_time: UNIX_EPOCH + Duration::from_secs(NOW - 3600),
            create_time: None,
            sender: sender.into(),
            sender_fullname: None,
            recipients: Vec::new(),
            attributes: Vec::new(),
            content_filter: None,
            redirect_to: None,
            dsn_envid: None,
            dsn_ret: 0,
        }
    }

    fn content() -> Content {
        Content {
            headers: vec![
                b"From: alice@example.org\n".to_vec(),
                b"Subject: lunch\n".to_vec(),
                b"X-Folded: one\n\ttwo\n".to_vec(),
            ],
            body: b"\nSee you at noon.\n".to_vec(),
        }
    }

    fn report<'a>(
        kind: NoticeKind,
        role: Role,
        env: &'a Envelope,
        outcomes: &'a [&'a Outcome],
        content: &'a Content,
        returned: Return,
        settings: &'a Settings,
    ) -> Report<'a> {
        Report {
            kind,
            role,
            queue_id: "4F9D1C2A3B",
            new_id: "5A0B1C2D3E",
            now: UNIX_EPOCH + Duration::from_secs(NOW),
            to: &env.sender,
            envelope: env,
            outcomes,
            content,
            returned,
            settings,
        }
    }

    fn text(bytes: &[u8]) -> String {
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    /// Splits a notice at its boundary: header, preamble, parts; and
    /// checks the closing delimiter ends the message.
    fn parts(message: &str) -> (String, Vec<String>) {
        let (head, body) = message.split_once("\n\n").unwrap();
        let boundary = head
            .split("boundary=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap()
            .to_string();
        let closing = format!("\n--{boundary}--\n");
        assert!(body.ends_with(&closing), "no closing delimiter");
        let body = &body[..body.len() - closing.len()];
        let mut pieces: Vec<String> = body
            .split(&format!("\n--{boundary}\n"))
            .map(str::to_string)
            .collect();
        assert_eq!(pieces.remove(0), "This is a MIME-encapsulated message.\n");
        (head.to_string(), pieces)
    }

    fn header_names(head: &str) -> Vec<&str> {
        head.lines()
            .filter(|l| !l.starts_with([' ', '\t']))
            .filter_map(|l| l.split_once(':').map(|(n, _)| n))
            .collect()
    }

    #[test]
    fn non_delivery_is_a_well_formed_multipart_report() {
        let s = settings();
        let env = envelope("alice@example.org");
        let failed = Outcome {
            recipient: Recipient {
                orig_recipient: "Bob".into(),
                ..Recipient::new("bob@example.com")
            },
            action: Action::Failed,
            dsn: "5.1.1".into(),
            reason: "unknown user: \"bob\"".into(),
            relay: "local".into(),
        };
        let outcomes = [&failed];
        let c = content();
        let r = report(
            NoticeKind::NonDelivery,
            Role::Sender,
            &env,
            &outcomes,
            &c,
            Return::Full,
            &s,
        );
        let message = text(&compose(&r));
        assert!(!message.contains('\r'));
        let (head, parts) = parts(&message);
        assert_eq!(
            header_names(&head),
            [
                "Received",
                "Date",
                "From",
                "Subject",
                "To",
                "Auto-Submitted",
                "MIME-Version",
                "Content-Type",
                "Content-Transfer-Encoding",
                "Message-Id"
            ]
        );
        assert!(head.contains("\nFrom: MAILER-DAEMON@mail.example.com (Mail Delivery System)\n"));
        assert!(head.contains("\nSubject: Undelivered Mail Returned to Sender\n"));
        assert!(head.contains("\nTo: alice@example.org\n"));
        assert!(head.contains(
            "Content-Type: multipart/report; report-type=delivery-status;\n\
             \tboundary=\"4F9D1C2A3B.1763800000/mail.example.com\"\n"
        ));
        assert!(head.contains("\nMessage-Id: <"));
        assert!(head.ends_with(".5A0B1C2D3E@mail.example.com>"));
        assert_eq!(parts.len(), 3);
        assert!(parts[0].starts_with(
            "Content-Description: Notification\n\
             Content-Type: text/plain; charset=us-ascii\n\n\
             This is the Postfix mail system at host mail.example.com.\n"
        ));
        assert!(parts[0].contains("\n<bob@example.com>: unknown user: \"bob\"\n"));
        let arrival = mail_date(env.arrival_time);
        assert_eq!(
            parts[1],
            format!(
                "Content-Description: Delivery report\n\
                 Content-Type: message/delivery-status\n\n\
                 Reporting-MTA: dns; mail.example.com\n\
                 X-Postfix-Queue-ID: 4F9D1C2A3B\n\
                 X-Postfix-Sender: rfc822; alice@example.org\n\
                 Arrival-Date: {arrival}\n\
                 \n\
                 Final-Recipient: rfc822; bob@example.com\n\
                 Original-Recipient: rfc822; Bob\n\
                 Action: failed\n\
                 Status: 5.1.1\n\
                 Diagnostic-Code: X-Postfix; unknown user: \"bob\"\n"
            )
        );
        assert_eq!(
            parts[2],
            "Content-Description: Undelivered Message\n\
             Content-Type: message/rfc822\n\n\
             From: alice@example.org\nSubject: lunch\nX-Folded: one\n\ttwo\n\
             \nSee you at noon.\n"
        );
    }

    #[test]
    fn headers_only_part_and_postmaster_subject() {
        let s = settings();
        let env = envelope("alice@example.org");
        let failed = outcome("bob@example.com", 0, Action::Failed);
        let outcomes = [&failed];
        let c = content();
        let mut r = report(
            NoticeKind::NonDelivery,
            Role::PostmasterCopy,
            &env,
            &outcomes,
            &c,
            Return::Headers,
            &s,
        );
        r.to = "postmaster";
        let message = text(&compose(&r));
        let (head, parts) = parts(&message);
        assert!(head.contains("\nSubject: Postmaster Copy: Undelivered Mail\n"));
        assert!(head.contains("\nTo: postmaster\n"));
        assert!(parts[0].contains("Message 4F9D1C2A3B from <alice@example.org>"));
        assert_eq!(
            parts[2],
            "Content-Description: Undelivered Message Headers\n\
             Content-Type: text/rfc822-headers\n\n\
             From: alice@example.org\nSubject: lunch\nX-Folded: one\n\ttwo\n"
        );
        assert!(!message.contains("See you at noon"));
    }

    #[test]
    fn delay_notice_says_until_when() {
        let s = settings();
        let env = envelope("alice@example.org");
        let mut delayed = outcome("bob@example.com", 0, Action::Delayed);
        delayed.dsn = "4.4.1".into();
        delayed.reason = "connect to mx.example.com[192.0.2.1]:25: Connection refused".into();
        delayed.relay = "none".into();
        let outcomes = [&delayed];
        let c = content();
        let r = report(
            NoticeKind::Delay,
            Role::Sender,
            &env,
            &outcomes,
            &c,
            Return::Headers,
            &s,
        );
        let message = text(&compose(&r));
        let (head, parts) = parts(&message);
        assert!(head.contains("\nSubject: Delayed Mail (still being retried)\n"));
        let until = mail_date(env.arrival_time + s.maximal_queue_lifetime);
        assert!(parts[0].contains(&until));
        assert!(parts[1].ends_with(&format!(
            "Action: delayed\nStatus: 4.4.1\n\
             Diagnostic-Code: X-Postfix; connect to mx.example.com[192.0.2.1]:25: \
             Connection refused\n\
             Will-Retry-Until: {until}\n"
        )));
        assert!(parts[2].starts_with("Content-Description: Delayed Message Headers\n"));
    }

    #[test]
    fn success_notice_with_envid_and_orcpt() {
        let s = settings();
        let mut env = envelope("alice@example.org");
        env.dsn_envid = Some("QQ314159".into());
        let mut done = outcome("bob@example.com", 2, Action::Relayed);
        done.recipient.dsn_orcpt = "rfc822;Bob@Example.COM".into();
        done.dsn = "2.0.0".into();
        done.reason = "250 2.0.0 Ok: queued as 1234".into();
        done.relay = "mx.example.com[192.0.2.1]:25".into();
        let outcomes = [&done];
        let c = content();
        let r = report(
            NoticeKind::Success,
            Role::Sender,
            &env,
            &outcomes,
            &c,
            Return::Headers,
            &s,
        );
        let message = text(&compose(&r));
        let (head, parts) = parts(&message);
        assert!(head.contains("\nSubject: Successful Mail Delivery Report\n"));
        assert!(parts[1]
            .contains("message/delivery-status\n\nOriginal-Envelope-Id: QQ314159\nReporting-MTA:"));
        assert!(parts[1].ends_with(
            "Final-Recipient: rfc822; bob@example.com\n\
             Original-Recipient: rfc822; Bob@Example.COM\n\
             Action: relayed\n\
             Status: 2.0.0\n\
             Remote-MTA: dns; mx.example.com\n\
             Diagnostic-Code: smtp; 250 2.0.0 Ok: queued as 1234\n"
        ));
        assert!(parts[2].starts_with("Content-Description: Delivered Message Headers\n"));
    }

    #[test]
    fn eight_bit_content_is_labelled_and_boundary_closes_unterminated_body() {
        let s = settings();
        let env = envelope("alice@example.org");
        let failed = outcome("bob@example.com", 0, Action::Failed);
        let outcomes = [&failed];
        let c = Content {
            headers: vec![b"Subject: caf\xc3\xa9\n".to_vec()],
            body: b"\nno newline at end".to_vec(),
        };
        let r = report(
            NoticeKind::NonDelivery,
            Role::Sender,
            &env,
            &outcomes,
            &c,
            Return::Full,
            &s,
        );
        let bytes = compose(&r);
        let message = String::from_utf8_lossy(&bytes);
        assert!(message.contains(
            "Content-Type: message/rfc822\nContent-Transfer-Encoding: 8bit\n\n\
             Subject: caf\u{e9}\n\nno newline at end\n\n--"
        ));
    }

    #[test]
    fn reasons_cannot_inject_fields() {
        let s = settings();
        let env = envelope("alice@example.org");
        let mut failed = outcome("bob@example.com", 0, Action::Failed);
        failed.reason = "bad\nAction: delivered".into();
        let outcomes = [&failed];
        let c = content();
        let r = report(
            NoticeKind::NonDelivery,
            Role::Sender,
            &env,
            &outcomes,
            &c,
            Return::Headers,
            &s,
        );
        let message = text(&compose(&r));
        assert!(!message.contains("\nAction: delivered"));
        assert!(message.contains("Diagnostic-Code: X-Postfix; bad Action: delivered\n"));
    }

    #[test]
    fn size_limit_turns_full_into_headers() {
        let c = content();
        let size = c.text().len() as u64;
        assert_eq!(returned(Return::Full, &c, size), Return::Full);
        assert_eq!(returned(Return::Full, &c, size - 1), Return::Headers);
        assert_eq!(returned(Return::Headers, &c, u64::MAX), Return::Headers);
    }

    #[test]
    fn original_recipient_rules() {
        let mut o = outcome("bob@example.com", 0, Action::Failed);
        assert_eq!(original_recipient(&o), None);
        o.recipient.orig_recipient = "bob@example.com".into();
        assert_eq!(original_recipient(&o), None);
        o.recipient.orig_recipient = "bob".into();
        assert_eq!(original_recipient(&o).as_deref(), Some("rfc822; bob"));
        o.recipient.dsn_orcpt = "rfc822;Robert@example.com".into();
        assert_eq!(
            original_recipient(&o).as_deref(),
            Some("rfc822; Robert@example.com")
        );
        o.recipient.dsn_orcpt = "utf-8; b\u{f6}b@example.com".into();
        assert_eq!(
            original_recipient(&o).as_deref(),
            Some("utf-8; b\u{f6}b@example.com")
        );
        // A malformed ORCPT falls back to the address before rewriting.
        o.recipient.dsn_orcpt = "rfc822;".into();
        assert_eq!(original_recipient(&o).as_deref(), Some("rfc822; bob"));
    }

    #[test]
    fn diagnostic_code_type() {
        assert_eq!(
            diagnostic_code("550 5.1.1 <b@x>: Recipient address rejected"),
            "smtp; 550 5.1.1 <b@x>: Recipient address rejected"
        );
        assert_eq!(
            diagnostic_code(
                "host mx.x[192.0.2.1] said: 552-5.2.2 mailbox full (in reply to RCPT TO command)"
            ),
            "smtp; 552-5.2.2 mailbox full"
        );
        assert_eq!(
            diagnostic_code("unknown user: \"bob\""),
            "X-Postfix; unknown user: \"bob\""
        );
        assert_eq!(
            diagnostic_code("1234 is not a reply"),
            "X-Postfix; 1234 is not a reply"
        );
        assert_eq!(diagnostic_code("600 no"), "X-Postfix; 600 no");
    }

    #[test]
    fn remote_mta_only_for_hosts() {
        assert_eq!(
            remote_mta("mx.example.com[192.0.2.1]:25"),
            Some("mx.example.com")
        );
        assert_eq!(remote_mta("[192.0.2.1]:25"), Some("192.0.2.1"));
        for local in ["local", "none", "virtual", "private/dovecot-lmtp", ""] {
            assert_eq!(remote_mta(local), None, "{local}");
        }
    }

    #[test]
    fn bad_status_codes_fall_back_to_the_action_class() {
        let mut o = outcome("b@x", 0, Action::Failed);
        o.dsn = "".into();
        assert_eq!(status(&o), "5.0.0");
        o.dsn = "5.1".into();
        assert_eq!(status(&o), "5.0.0");
        o.action = Action::Delayed;
        o.dsn = "x.1.1".into();
        assert_eq!(status(&o), "4.0.0");
        o.dsn = "4.7.12".into();
        assert_eq!(status(&o), "4.7.12");
    }
}
