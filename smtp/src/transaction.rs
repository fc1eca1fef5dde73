//! One mail transaction as a state machine, without I/O: the session
//! asks which commands to send, hands in each reply as it arrives, and
//! at the end reads one outcome per recipient. With PIPELINING the
//! envelope goes in one write (MAIL, every RCPT, DATA); without it,
//! command by command.

use std::collections::VecDeque;

use libmail::queue::{notify, ret};

use crate::reply::Reply;

/// What the server said it can do in its EHLO reply.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Features {
    pub esmtp: bool,
    pub pipelining: bool,
    /// SIZE's limit; 0 when the server gave none.
    pub size: Option<u64>,
    pub dsn: bool,
    pub eightbitmime: bool,
    pub smtputf8: bool,
    pub starttls: bool,
}

impl Features {
    /// The keywords of an EHLO reply (the first line is the greeting).
    pub fn from_ehlo(reply: &Reply) -> Features {
        let mut features = Features {
            esmtp: true,
            ..Features::default()
        };
        for line in reply.lines.iter().skip(1) {
            let mut words = line.split_whitespace();
            let keyword = words.next().unwrap_or("").to_ascii_uppercase();
            match keyword.as_str() {
                "PIPELINING" => features.pipelining = true,
                "SIZE" => {
                    features.size = Some(words.next().and_then(|n| n.parse().ok()).unwrap_or(0))
                }
                "DSN" => features.dsn = true,
                "8BITMIME" => features.eightbitmime = true,
                "SMTPUTF8" => features.smtputf8 = true,
                "STARTTLS" => features.starttls = true,
                _ => {}
            }
        }
        features
    }
}

/// A recipient as the transaction needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rcpt {
    pub address: String,
    /// `queue::notify::*` bits, 0 when not given.
    pub notify: u8,
    /// DSN ORCPT (`rfc822;user@example`), empty when not given.
    pub orcpt: String,
}

/// The envelope of the message being sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub sender: String,
    pub recipients: Vec<Rcpt>,
    pub size: u64,
    pub dsn_ret: u8,
    pub dsn_envid: Option<String>,
    /// The body is 8-bit (BODY=8BITMIME at arrival).
    pub eightbit: bool,
    /// SMTPUTF8 was requested at arrival.
    pub smtputf8: bool,
}

/// The command a reply answers, for `(in reply to X command)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Mail,
    Rcpt(usize),
    Data,
    EndOfData,
}

impl Stage {
    pub fn command(self) -> &'static str {
        match self {
            Stage::Mail => "MAIL FROM",
            Stage::Rcpt(_) => "RCPT TO",
            Stage::Data => "DATA",
            Stage::EndOfData => "end of DATA",
        }
    }

    /// What the client was doing, for `lost connection ... while X`.
    pub fn sending(self) -> &'static str {
        match self {
            Stage::Mail => "sending MAIL FROM",
            Stage::Rcpt(_) => "sending RCPT TO",
            Stage::Data => "sending DATA command",
            Stage::EndOfData => "sending end of data -- message may be sent more than once",
        }
    }
}

/// What the session does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Write these commands, then read the next reply.
    Send(Vec<u8>),
    /// Read the next reply.
    Read,
    /// Write the message content and the final dot, then read.
    SendContent,
    /// The transaction is over; `clean` tells whether the session may
    /// be used for another one without RSET.
    Done { clean: bool },
}

/// The result for one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Accepted at end of data: the server's reply.
    Delivered(Reply),
    /// Refused (4xx or 5xx) with the reply and the command it answered.
    Refused(Reply, Stage),
    /// No answer yet (the transaction stopped before it).
    Pending,
}

pub struct Transaction {
    envelope: Envelope,
    features: Features,
    /// The replies still to come, in order.
    expected: VecDeque<Stage>,
    outcomes: Vec<Outcome>,
    /// Recipients the server accepted at RCPT, awaiting end of data.
    accepted: Vec<usize>,
    mail_refused: Option<Reply>,
    /// The commands not yet sent (without PIPELINING).
    next_rcpt: usize,
    /// DATA got 354 but no recipient was accepted: an empty message
    /// went, whose reply means nothing.
    empty_data: bool,
}

impl Transaction {
    pub fn new(envelope: Envelope, features: Features) -> Transaction {
        let count = envelope.recipients.len();
        Transaction {
            envelope,
            features,
            expected: VecDeque::new(),
            outcomes: vec![Outcome::Pending; count],
            accepted: Vec::new(),
            mail_refused: None,
            next_rcpt: 0,
            empty_data: false,
        }
    }

    /// The first commands: the whole envelope with PIPELINING, MAIL
    /// alone without.
    pub fn start(&mut self) -> Vec<u8> {
        let mut out = self.mail_command();
        self.expected.push_back(Stage::Mail);
        if self.features.pipelining {
            for index in 0..self.envelope.recipients.len() {
                out.extend(self.rcpt_command(index));
                self.expected.push_back(Stage::Rcpt(index));
            }
            self.next_rcpt = self.envelope.recipients.len();
            out.extend_from_slice(b"DATA\r\n");
            self.expected.push_back(Stage::Data);
        }
        out
    }

    /// The stage the next reply answers.
    pub fn awaiting(&self) -> Option<Stage> {
        self.expected.front().copied()
    }

    pub fn on_reply(&mut self, reply: Reply) -> Action {
        let Some(stage) = self.expected.pop_front() else {
            return Action::Done { clean: false };
        };
        match stage {
            Stage::Mail => self.on_mail(reply),
            Stage::Rcpt(index) => self.on_rcpt(index, reply),
            Stage::Data => self.on_data(reply),
            Stage::EndOfData => self.on_end_of_data(reply),
        }
    }

    fn on_mail(&mut self, reply: Reply) -> Action {
        if reply.class() != 2 {
            for outcome in &mut self.outcomes {
                *outcome = Outcome::Refused(reply.clone(), Stage::Mail);
            }
            self.mail_refused = Some(reply);
        }
        self.continue_envelope()
    }

    fn on_rcpt(&mut self, index: usize, reply: Reply) -> Action {
        if self.mail_refused.is_none() {
            if reply.class() == 2 {
                self.accepted.push(index);
            } else {
                self.outcomes[index] = Outcome::Refused(reply, Stage::Rcpt(index));
            }
        }
        self.continue_envelope()
    }

    /// Without PIPELINING: the next RCPT, or DATA; with it, read on.
    fn continue_envelope(&mut self) -> Action {
        if !self.expected.is_empty() {
            return Action::Read;
        }
        if self.mail_refused.is_some() {
            return Action::Done { clean: false };
        }
        if self.next_rcpt < self.envelope.recipients.len() {
            let index = self.next_rcpt;
            self.next_rcpt += 1;
            self.expected.push_back(Stage::Rcpt(index));
            return Action::Send(self.rcpt_command(index));
        }
        if self.accepted.is_empty() {
            return Action::Done { clean: false };
        }
        self.expected.push_back(Stage::Data);
        Action::Send(b"DATA\r\n".to_vec())
    }

    fn on_data(&mut self, reply: Reply) -> Action {
        if reply.code != 354 {
            for &index in &self.accepted {
                self.outcomes[index] = Outcome::Refused(reply.clone(), Stage::Data);
            }
            return Action::Done { clean: false };
        }
        self.expected.push_back(Stage::EndOfData);
        if self.accepted.is_empty() {
            // Pipelined DATA went through although every RCPT failed:
            // end it with an empty message (RFC 2920 §3.1).
            self.empty_data = true;
            return Action::Send(b".\r\n".to_vec());
        }
        Action::SendContent
    }

    fn on_end_of_data(&mut self, reply: Reply) -> Action {
        if self.empty_data {
            return Action::Done { clean: false };
        }
        for &index in &self.accepted {
            self.outcomes[index] = match reply.class() {
                2 => Outcome::Delivered(reply.clone()),
                _ => Outcome::Refused(reply.clone(), Stage::EndOfData),
            };
        }
        Action::Done {
            clean: reply.class() == 2,
        }
    }

    pub fn outcomes(&self) -> &[Outcome] {
        &self.outcomes
    }

    fn mail_command(&self) -> Vec<u8> {
        let mut cmd = format!("MAIL FROM:<{}>", self.envelope.sender);
        if let Some(limit) = self.features.size {
            if limit > 0 || self.features.esmtp {
                cmd.push_str(&format!(" SIZE={}", self.envelope.size));
            }
        }
        if self.envelope.eightbit && self.features.eightbitmime {
            cmd.push_str(" BODY=8BITMIME");
        }
        if self.envelope.smtputf8 && self.features.smtputf8 {
            cmd.push_str(" SMTPUTF8");
        }
        if self.features.dsn {
            match self.envelope.dsn_ret {
                r if r & ret::FULL != 0 => cmd.push_str(" RET=FULL"),
                r if r & ret::HDRS != 0 => cmd.push_str(" RET=HDRS"),
                _ => {}
            }
            if let Some(envid) = &self.envelope.dsn_envid {
                cmd.push_str(&format!(" ENVID={}", xtext(envid)));
            }
        }
        cmd.push_str("\r\n");
        cmd.into_bytes()
    }

    fn rcpt_command(&self, index: usize) -> Vec<u8> {
        let rcpt = &self.envelope.recipients[index];
        let mut cmd = format!("RCPT TO:<{}>", rcpt.address);
        if self.features.dsn {
            if rcpt.notify != 0 {
                cmd.push_str(&format!(" NOTIFY={}", notify_text(rcpt.notify)));
            }
            if !rcpt.orcpt.is_empty() {
                cmd.push_str(&format!(" ORCPT={}", orcpt_param(&rcpt.orcpt)));
            }
        }
        cmd.push_str("\r\n");
        cmd.into_bytes()
    }
}

fn notify_text(bits: u8) -> String {
    if bits & notify::NEVER != 0 {
        return "NEVER".to_string();
    }
    let mut words = Vec::new();
    for (bit, word) in [
        (notify::SUCCESS, "SUCCESS"),
        (notify::FAILURE, "FAILURE"),
        (notify::DELAY, "DELAY"),
    ] {
        if bits & bit != 0 {
            words.push(word);
        }
    }
    words.join(",")
}

/// `rfc822;addr` with the address part in xtext.
fn orcpt_param(orcpt: &str) -> String {
    match orcpt.split_once(';') {
        Some((kind, address)) => format!("{kind};{}", xtext(address)),
        None => format!("rfc822;{}", xtext(orcpt)),
    }
}

/// RFC 3461 xtext: `+XX` for `+`, `=`, and anything outside `!`..`~`.
pub fn xtext(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        match byte {
            b'+' | b'=' => out.push_str(&format!("+{byte:02X}")),
            b'!'..=b'~' => out.push(byte as char),
            _ => out.push_str(&format!("+{byte:02X}")),
        }
    }
    out
}

/// The content on the wire: CRLF line ends, leading dots doubled, and
/// the final dot.
pub fn dot_stuffed(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + text.len() / 32 + 8);
    for line in text.split_inclusive(|&b| b == b'\n') {
        let body = line.strip_suffix(b"\n").unwrap_or(line);
        let body = body.strip_suffix(b"\r").unwrap_or(body);
        if body.first() == Some(&b'.') {
            out.push(b'.');
        }
        out.extend_from_slice(body);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reply::ReplyReader;

    fn reply(text: &str) -> Reply {
        let mut r = ReplyReader::new();
        r.push(format!("{text}\r\n").as_bytes());
        r.next_reply().unwrap().unwrap()
    }

    fn envelope(rcpts: &[&str]) -> Envelope {
        Envelope {
            sender: "alice@example.com".into(),
            recipients: rcpts
                .iter()
                .map(|r| Rcpt {
                    address: r.to_string(),
                    notify: 0,
                    orcpt: String::new(),
                })
                .collect(),
            size: 1234,
            dsn_ret: 0,
            dsn_envid: None,
            eightbit: false,
            smtputf8: false,
        }
    }

    fn features(keywords: &[&str]) -> Features {
        let mut lines = vec!["250-mx.example".to_string()];
        lines.extend(keywords.iter().map(|k| format!("250-{k}")));
        lines.push("250 HELP".to_string());
        Features::from_ehlo(&reply(&lines.join("\r\n")))
    }

    #[test]
    fn ehlo_keywords() {
        let f = Features::from_ehlo(&reply(
            "250-mx.example\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-DSN\r\n250-8BITMIME\r\n250-STARTTLS\r\n250 SMTPUTF8",
        ));
        assert!(f.pipelining && f.dsn && f.eightbitmime && f.starttls && f.smtputf8);
        assert_eq!(f.size, Some(10_240_000));
    }

    #[test]
    fn pipelined_envelope_with_one_recipient_refused() {
        let mut t = Transaction::new(envelope(&["a@x", "b@x"]), features(&["PIPELINING"]));
        assert_eq!(
            t.start(),
            b"MAIL FROM:<alice@example.com>\r\nRCPT TO:<a@x>\r\nRCPT TO:<b@x>\r\nDATA\r\n"
        );
        assert_eq!(t.on_reply(reply("250 2.1.0 Ok")), Action::Read);
        assert_eq!(t.on_reply(reply("250 2.1.5 Ok")), Action::Read);
        assert_eq!(t.awaiting(), Some(Stage::Rcpt(1)));
        assert_eq!(
            t.on_reply(reply("550 5.1.1 <b@x>: User unknown")),
            Action::Read
        );
        assert_eq!(t.on_reply(reply("354 go ahead")), Action::SendContent);
        assert_eq!(
            t.on_reply(reply("250 2.0.0 Ok: queued as ABC")),
            Action::Done { clean: true }
        );
        assert!(
            matches!(&t.outcomes()[0], Outcome::Delivered(r) if r.text() == "250 2.0.0 Ok: queued as ABC")
        );
        assert!(matches!(&t.outcomes()[1], Outcome::Refused(r, Stage::Rcpt(1)) if r.code == 550));
    }

    #[test]
    fn step_by_step_without_pipelining() {
        let mut t = Transaction::new(envelope(&["a@x", "b@x"]), features(&["8BITMIME"]));
        assert_eq!(t.start(), b"MAIL FROM:<alice@example.com>\r\n");
        assert_eq!(
            t.on_reply(reply("250 Ok")),
            Action::Send(b"RCPT TO:<a@x>\r\n".to_vec())
        );
        assert_eq!(
            t.on_reply(reply("451 4.3.0 try later")),
            Action::Send(b"RCPT TO:<b@x>\r\n".to_vec())
        );
        assert_eq!(
            t.on_reply(reply("250 Ok")),
            Action::Send(b"DATA\r\n".to_vec())
        );
        assert_eq!(t.on_reply(reply("354 go")), Action::SendContent);
        assert_eq!(
            t.on_reply(reply("554 5.7.1 spam")),
            Action::Done { clean: false }
        );
        assert!(matches!(&t.outcomes()[0], Outcome::Refused(r, Stage::Rcpt(0)) if r.code == 451));
        assert!(matches!(&t.outcomes()[1], Outcome::Refused(r, Stage::EndOfData) if r.code == 554));
    }

    #[test]
    fn refused_sender_refuses_everyone_and_reads_the_rest() {
        let mut t = Transaction::new(envelope(&["a@x"]), features(&["PIPELINING"]));
        t.start();
        assert_eq!(t.on_reply(reply("452 4.3.1 full")), Action::Read);
        assert_eq!(t.on_reply(reply("503 5.5.1 need MAIL")), Action::Read);
        assert_eq!(
            t.on_reply(reply("503 5.5.1 need RCPT")),
            Action::Done { clean: false }
        );
        assert!(matches!(&t.outcomes()[0], Outcome::Refused(r, Stage::Mail) if r.code == 452));
    }

    #[test]
    fn all_recipients_refused_but_data_accepted_sends_an_empty_message() {
        let mut t = Transaction::new(envelope(&["a@x"]), features(&["PIPELINING"]));
        t.start();
        t.on_reply(reply("250 ok"));
        t.on_reply(reply("550 no"));
        assert_eq!(t.on_reply(reply("354 go")), Action::Send(b".\r\n".to_vec()));
        assert_eq!(t.on_reply(reply("250 ok")), Action::Done { clean: false });
        assert!(matches!(
            &t.outcomes()[0],
            Outcome::Refused(_, Stage::Rcpt(0))
        ));
    }

    #[test]
    fn esmtp_parameters() {
        let mut env = envelope(&["a@x"]);
        env.eightbit = true;
        env.smtputf8 = true;
        env.dsn_ret = ret::HDRS;
        env.dsn_envid = Some("id+1 x".into());
        env.recipients[0].notify = notify::SUCCESS | notify::FAILURE;
        env.recipients[0].orcpt = "rfc822;a=b@x".into();
        let mut t = Transaction::new(
            env,
            features(&["PIPELINING", "SIZE 0", "DSN", "8BITMIME", "SMTPUTF8"]),
        );
        let text = String::from_utf8(t.start()).unwrap();
        assert!(text.starts_with(
            "MAIL FROM:<alice@example.com> SIZE=1234 BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=id+2B1+20x\r\n\
             RCPT TO:<a@x> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a+3Db@x\r\n"
        ), "{text}");
    }

    #[test]
    fn content_is_dot_stuffed_with_crlf() {
        assert_eq!(
            dot_stuffed(b"Subject: x\n\n.hidden\nend\r\n"),
            b"Subject: x\r\n\r\n..hidden\r\nend\r\n.\r\n"
        );
        assert_eq!(dot_stuffed(b""), b".\r\n");
    }
}
