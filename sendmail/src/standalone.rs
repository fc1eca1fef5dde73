//! `sendmail -bs`: an SMTP conversation on standard input and output
//! with the submitting user, through the smtpd protocol engine. Each
//! message goes to postdrop like any other local submission.

use std::io::{Read, Write};
use std::path::PathBuf;

use libmail::cleanup::{Flags, Request};
use libmail::queue::{attr, notify, ret, Recipient};
use smtpd::params::{MailParams, RcptParams};
use smtpd::{Action, Address, Disposition, Envelope, MessageSink, Policy, Session, SinkError};

use crate::client::Postdrop;
use crate::protocol::DropStatus;

/// The local user may do anything a stand-alone session offers.
pub struct LocalUser;

impl Policy for LocalUser {}

/// Writes each message through a new postdrop.
pub struct PostdropSink {
    pub command_dir: PathBuf,
    pub config_dir: Option<String>,
    pub verbose: u32,
    current: Option<Postdrop>,
    /// A CR at the end of the last piece, not yet known to end a line.
    held_cr: bool,
}

impl PostdropSink {
    pub fn new(command_dir: PathBuf, config_dir: Option<String>, verbose: u32) -> PostdropSink {
        PostdropSink {
            command_dir,
            config_dir,
            verbose,
            current: None,
            held_cr: false,
        }
    }

    fn pipe(&mut self) -> Result<&mut Postdrop, SinkError> {
        self.current
            .as_mut()
            .ok_or_else(|| SinkError::Temporary("no open queue file".to_string()))
    }
}

fn temporary(err: impl std::fmt::Display) -> SinkError {
    SinkError::Temporary(err.to_string())
}

/// SMTP's CRLF line ends made LF, the maildrop file's convention.
pub fn crlf_to_lf(bytes: &[u8], held_cr: &mut bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + 1);
    for &b in bytes {
        if std::mem::take(held_cr) && b != b'\n' {
            out.push(b'\r');
        }
        match b {
            b'\r' => *held_cr = true,
            other => out.push(other),
        }
    }
    out
}

impl MessageSink for PostdropSink {
    fn begin(&mut self, envelope: &Envelope) -> Result<String, SinkError> {
        let pipe = Postdrop::start(
            &self.command_dir,
            self.config_dir.as_deref(),
            self.verbose,
            &Request::Open(Flags::default()),
        )
        .map_err(temporary)?;
        let id = pipe.queue_id().to_string();
        self.current = Some(pipe);
        self.held_cr = false;
        let params: &MailParams = envelope.params;
        let mut first = vec![Request::Attribute(
            attr::REWRITE_CONTEXT.to_string(),
            "local".to_string(),
        )];
        if let Some(envid) = &params.envid {
            first.push(Request::DsnEnvid(envid.clone()));
        }
        match params.ret {
            Some(smtpd::params::Ret::Full) => first.push(Request::DsnRet(ret::FULL)),
            Some(smtpd::params::Ret::Hdrs) => first.push(Request::DsnRet(ret::HDRS)),
            None => {}
        }
        let sender = match envelope.sender {
            smtpd::Path::Null => String::new(),
            smtpd::Path::Mailbox(address) => address.internal(),
        };
        first.push(Request::Sender(sender));
        let pipe = self.pipe()?;
        for request in &first {
            pipe.send(request).map_err(temporary)?;
        }
        Ok(id)
    }

    fn add_recipient(&mut self, recipient: &Address, params: &RcptParams) -> Result<(), SinkError> {
        let mut rcpt = Recipient::new(&recipient.internal());
        if let Some(n) = params.notify {
            let bits = [
                (n.never, notify::NEVER),
                (n.success, notify::SUCCESS),
                (n.delay, notify::DELAY),
                (n.failure, notify::FAILURE),
            ];
            rcpt.dsn_notify = bits.iter().filter(|(on, _)| *on).map(|(_, b)| b).sum();
        }
        if let Some((kind, address)) = &params.orcpt {
            rcpt.dsn_orcpt = format!("{kind};{address}");
        }
        self.pipe()?
            .send(&Request::Recipient(rcpt))
            .map_err(temporary)
    }

    fn set_disposition(&mut self, _disposition: &Disposition) -> Result<(), SinkError> {
        // LocalUser never holds or discards.
        Ok(())
    }

    fn write(&mut self, content: &[u8]) -> Result<(), SinkError> {
        let mut held = self.held_cr;
        let bytes = crlf_to_lf(content, &mut held);
        self.held_cr = held;
        self.pipe()?.content(&bytes).map_err(temporary)
    }

    fn finish(&mut self) -> Result<String, SinkError> {
        let pipe = self
            .current
            .take()
            .ok_or_else(|| temporary("no open queue file"))?;
        let id = pipe.queue_id().to_string();
        // SMTP content always ends in CRLF: a held CR is a line end.
        self.held_cr = false;
        match pipe.finish().map_err(temporary)? {
            DropStatus::Queued => Ok(id),
            DropStatus::Size => Err(SinkError::Rejected(smtpd::Refusal::new(
                552,
                "5.3.4",
                "Error: message file too big",
            ))),
            other => Err(temporary(other.text())),
        }
    }

    fn abort(&mut self) {
        if let Some(pipe) = self.current.take() {
            pipe.abort();
        }
    }
}

/// Runs the session on `input` and `output` until QUIT or end of input.
pub fn run(
    session: &mut Session,
    sink: &mut PostdropSink,
    input: &mut impl Read,
    output: &mut impl Write,
) -> std::io::Result<()> {
    let mut policy = LocalUser;
    let actions = session.greeting(&mut policy);
    perform(actions, output)?;
    let mut buf = vec![0u8; 8192];
    while !session.is_closed() {
        let n = input.read(&mut buf)?;
        let actions = match n {
            0 => session.lost_connection(sink),
            n => session.receive(&buf[..n], &mut policy, sink),
        };
        perform(actions, output)?;
        if n == 0 {
            break;
        }
    }
    Ok(())
}

fn perform(actions: Vec<Action>, output: &mut impl Write) -> std::io::Result<()> {
    for action in actions {
        match action {
            Action::Reply(bytes) => {
                output.write_all(&bytes)?;
                output.flush()?;
            }
            Action::Sleep(pause) => std::thread::sleep(pause),
            Action::Log(line) => libmail::msg::info(line),
            Action::Close => break,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crlf_becomes_lf_across_pieces() {
        let mut held = false;
        let mut out = crlf_to_lf(b"a\r\nb\r", &mut held);
        assert!(held);
        out.extend(crlf_to_lf(b"\nc\rd\r\n", &mut held));
        assert_eq!(out, b"a\nb\nc\rd\n");
        assert!(!held);
    }
}
