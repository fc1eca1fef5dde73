//! The session state machine: bytes in, actions out. It reads command lines
//! (line_length_limit, bare `<LF>` per smtpd_forbid_bare_newline), hands
//! content to the DATA and BDAT readers, keeps Postfix's error counters
//! (smtpd_error_sleep_time, soft and hard limits) and per-command counters,
//! and writes the classic smtpd log lines.

use std::time::Duration;

use crate::address::{Address, Path};
use crate::counters::Counters;
use crate::data::{BdatReader, DataReader};
use crate::params::{MailParams, RcptParams};
use crate::policy::{Decision, Disposition, MessageSink, Policy, SinkError, View};
use crate::reply::{Action, Reply};
use crate::settings::{BareNewline, Settings};

/// What the next input bytes are.
#[derive(Debug)]
pub(crate) enum Input {
    Command,
    Data(Box<DataReader>),
    /// BDAT chunk bytes still to read; LAST was given.
    Bdat {
        left: u64,
        last: bool,
    },
    /// BDAT chunk bytes to throw away, then the reply.
    Skip {
        left: u64,
        reply: Reply,
    },
    Closed,
}

/// One mail transaction, from MAIL FROM to the end of the message.
#[derive(Debug)]
pub(crate) struct Transaction {
    pub sender: Path,
    pub params: MailParams,
    /// Accepted recipients.
    pub rcpt_count: usize,
    /// RCPTs answered `452 too many recipients`.
    pub overshoot: usize,
    pub first_rcpt: Option<Address>,
    pub last_rcpt: Option<Address>,
    pub queue_id: Option<String>,
    /// HOLD, DISCARD, REDIRECT or FILTER not yet given to the sink.
    pub dispositions: Vec<Disposition>,
    /// PREPEND header fields, written before the Received: header.
    pub prepend: Vec<String>,
    /// Content bytes given to the sink.
    pub size: u64,
    /// Raw bytes received after DATA, for "lost connection after DATA (N bytes)".
    pub received: u64,
    pub too_big: bool,
    pub sink_error: Option<SinkError>,
    /// BDAT chunks have started.
    pub bdat: Option<BdatReader>,
}

impl Transaction {
    pub fn new(sender: Path, params: MailParams) -> Transaction {
        Transaction {
            sender,
            params,
            rcpt_count: 0,
            overshoot: 0,
            first_rcpt: None,
            last_rcpt: None,
            queue_id: None,
            dispositions: Vec::new(),
            prepend: Vec::new(),
            size: 0,
            received: 0,
            too_big: false,
            sink_error: None,
            bdat: None,
        }
    }
}

/// The policy and sink a call works with.
pub(crate) struct Io<'a> {
    pub policy: &'a mut dyn Policy,
    pub sink: &'a mut dyn MessageSink,
}

/// One SMTP session, from the greeting to the close.
#[derive(Debug)]
pub struct Session {
    pub(crate) settings: Settings,
    pub(crate) input: Input,
    /// The command line read so far (at most line_length_limit bytes).
    line: Vec<u8>,
    /// The last raw byte of the command line was `<CR>`.
    line_cr: bool,
    pub(crate) helo: Option<String>,
    pub(crate) esmtp: bool,
    pub(crate) tx: Option<Transaction>,
    /// A BDAT failed; chunks are discarded until BDAT LAST or RSET.
    pub(crate) bdat_error: bool,
    pub(crate) error_count: u32,
    pub(crate) counters: Counters,
    /// The client was rejected at connect (smtpd_delay_reject = no).
    pub(crate) access_denied: bool,
    /// The last command, for "... after CMD from ..." lines.
    pub(crate) where_: String,
    pub(crate) improper_pipelining: bool,
    /// NOOP, VRFY, ETRN and RSET since the last delivery.
    pub(crate) junk_commands: u32,
    out: Vec<Action>,
}

impl Session {
    pub fn new(settings: Settings) -> Session {
        Session {
            settings,
            input: Input::Command,
            line: Vec::new(),
            line_cr: false,
            helo: None,
            esmtp: false,
            tx: None,
            bdat_error: false,
            error_count: 0,
            counters: Counters::default(),
            access_denied: false,
            where_: "CONNECT".to_string(),
            improper_pipelining: false,
            junk_commands: 0,
            out: Vec::new(),
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Whether the session has ended (after 221, 421, or a close).
    pub fn is_closed(&self) -> bool {
        matches!(self.input, Input::Closed)
    }

    /// `connect from ...` and the 220 banner, or the client restriction's
    /// refusal when smtpd_delay_reject = no.
    pub fn greeting(&mut self, policy: &mut dyn Policy) -> Vec<Action> {
        let client = self.settings.client.log_name();
        self.log(format!("connect from {client}"));
        let decision = match self.settings.delay_reject {
            true => Decision::Accept,
            false => policy.check_client(&self.view(None)),
        };
        match decision {
            Decision::Reject(refusal) => {
                self.access_denied = true;
                self.log_action("reject", "CONNECT", &refusal.reply().text(), None, None);
                self.error_count += 1;
                self.push_reply(refusal.reply());
            }
            _ => self.push_reply(Reply::plain(220, self.settings.banner.clone())),
        }
        std::mem::take(&mut self.out)
    }

    /// Consumes client input; returns what to do, in order. Input after the
    /// session closed is ignored.
    pub fn receive(
        &mut self,
        input: &[u8],
        policy: &mut dyn Policy,
        sink: &mut dyn MessageSink,
    ) -> Vec<Action> {
        let mut io = Io { policy, sink };
        let mut rest = input;
        while !rest.is_empty() && !self.is_closed() {
            let used = match self.input {
                Input::Command => self.read_command(rest, &mut io),
                Input::Data(_) => self.read_data(rest, &mut io),
                Input::Bdat { .. } => self.read_bdat(rest, &mut io),
                Input::Skip { .. } => self.skip_chunk(rest, &mut io),
                Input::Closed => rest.len(),
            };
            rest = &rest[used.min(rest.len())..];
        }
        std::mem::take(&mut self.out)
    }

    /// The client went away: `lost connection after CMD from ...`, the
    /// disconnect summary, and any open queue file dropped.
    pub fn lost_connection(&mut self, sink: &mut dyn MessageSink) -> Vec<Action> {
        if !self.is_closed() {
            let client = self.settings.client.log_name();
            let after = self.where_with_size();
            self.log(format!("lost connection after {after} from {client}"));
            self.count_interrupted();
            self.close(sink);
        }
        std::mem::take(&mut self.out)
    }

    /// smtpd_timeout expired: `421 4.4.2 HOST Error: timeout exceeded`.
    pub fn timeout(&mut self, sink: &mut dyn MessageSink) -> Vec<Action> {
        if !self.is_closed() {
            let client = self.settings.client.log_name();
            let after = self.where_with_size();
            self.log(format!("timeout after {after} from {client}"));
            self.count_interrupted();
            let host = self.settings.myhostname.clone();
            self.out.push(Action::Reply(
                Reply::new(421, "4.4.2", format!("{host} Error: timeout exceeded")).to_bytes(),
            ));
            self.close(sink);
        }
        std::mem::take(&mut self.out)
    }

    /// A DATA or BDAT cut short counts as a failed command.
    fn count_interrupted(&mut self) {
        let name = match self.input {
            Input::Data(_) => "data",
            Input::Bdat { .. } | Input::Skip { .. } => "bdat",
            Input::Command | Input::Closed => return,
        };
        self.counters.count(name, false);
    }

    fn where_with_size(&self) -> String {
        match (&self.input, &self.tx) {
            (Input::Data(_), Some(tx)) => format!("DATA ({} bytes)", tx.received),
            _ => self.where_.clone(),
        }
    }

    /// Reads up to one command line; returns the bytes used.
    fn read_command(&mut self, rest: &[u8], io: &mut Io) -> usize {
        let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
            self.take_line_part(rest);
            return rest.len();
        };
        self.take_line_part(&rest[..nl]);
        let crlf = self.line_cr;
        let mut line = std::mem::take(&mut self.line);
        self.line_cr = false;
        if crlf && line.last() == Some(&b'\r') {
            line.pop();
        }
        self.command_line(&line, crlf, &rest[nl + 1..], io);
        nl + 1
    }

    /// Appends raw line bytes, keeping at most line_length_limit of them
    /// (Postfix discards the rest of an overlong command line).
    fn take_line_part(&mut self, part: &[u8]) {
        if let Some(&last) = part.last() {
            self.line_cr = last == b'\r';
        }
        let room = self
            .settings
            .line_length_limit
            .saturating_sub(self.line.len());
        self.line.extend_from_slice(&part[..part.len().min(room)]);
    }

    /// One complete command line.
    fn command_line(&mut self, line: &[u8], crlf: bool, pending: &[u8], io: &mut Io) {
        if !crlf && self.settings.forbid_bare_newline == BareNewline::Reject {
            return self.reject_bare_lf_command(io);
        }
        crate::commands::dispatch(self, line, crlf, pending, io);
        self.check_error_limit(io);
    }

    /// smtpd_forbid_bare_newline = reject, in the command phase: reply and
    /// disconnect, as Postfix does.
    fn reject_bare_lf_command(&mut self, io: &mut Io) {
        let where_ = self.where_.clone();
        self.log_action("reject", &where_, "bare <LF> received", None, None);
        let code = self.settings.bare_newline_reject_code;
        let host = self.settings.myhostname.clone();
        self.reply(Reply::new(
            code,
            "5.5.2",
            format!("{host} Error: bare <LF> received"),
        ));
        self.close(io.sink);
    }

    /// smtpd_hard_error_limit: `421 4.7.0 HOST Error: too many errors`.
    pub(crate) fn check_error_limit(&mut self, io: &mut Io) {
        let idle = matches!(self.input, Input::Command);
        if !idle || self.is_closed() || self.error_count < self.settings.hard_error_limit {
            return;
        }
        let client = self.settings.client.log_name();
        self.log(format!(
            "too many errors after {} from {client}",
            self.where_
        ));
        let host = self.settings.myhostname.clone();
        self.reply(Reply::new(
            421,
            "4.7.0",
            format!("{host} Error: too many errors"),
        ));
        self.close(io.sink);
    }

    /// Queues a reply, after the error sleep Postfix would take: the error
    /// count in seconds past smtpd_soft_error_limit, else
    /// smtpd_error_sleep_time before a 4xx/5xx.
    pub(crate) fn reply(&mut self, reply: Reply) {
        let sleep = if self.error_count >= self.settings.soft_error_limit {
            Duration::from_secs(u64::from(self.error_count))
        } else if reply.is_error() {
            self.settings.error_sleep_time
        } else {
            Duration::ZERO
        };
        if !sleep.is_zero() {
            self.out.push(Action::Sleep(sleep));
        }
        self.push_reply(reply);
    }

    fn push_reply(&mut self, reply: Reply) {
        self.out.push(Action::Reply(reply.to_bytes()));
    }

    /// A failed command: count it, and reply.
    pub(crate) fn fail(&mut self, reply: Reply) {
        self.reply(reply);
        self.error_count += 1;
    }

    pub(crate) fn log(&mut self, line: String) {
        self.out.push(Action::Log(line));
    }

    /// `ID: ACTION: WHERE from host[addr]: TEXT; from=<s> to=<r> proto=P helo=<h>`
    /// (NOQUEUE before a queue file exists).
    pub(crate) fn log_action(
        &mut self,
        action: &str,
        where_: &str,
        text: &str,
        from: Option<&Path>,
        to: Option<&Address>,
    ) {
        let id = self
            .tx
            .as_ref()
            .and_then(|t| t.queue_id.clone())
            .unwrap_or_else(|| "NOQUEUE".to_string());
        let mut line = format!(
            "{id}: {action}: {where_} from {}: {text};",
            self.settings.client.log_name()
        );
        if let Some(from) = from {
            line.push_str(&format!(" from=<{from}>"));
        }
        if let Some(to) = to {
            line.push_str(&format!(" to=<{to}>"));
        }
        line.push_str(&format!(" proto={}", self.protocol()));
        if let Some(helo) = &self.helo {
            line.push_str(&format!(" helo=<{helo}>"));
        }
        self.log(line);
    }

    /// SMTP or ESMTP, as logged and as Received: says (UTF8SMTP with SMTPUTF8).
    pub(crate) fn protocol(&self) -> &'static str {
        let utf8 = self.tx.as_ref().is_some_and(|t| t.params.smtputf8);
        match (self.esmtp, utf8) {
            (true, true) => "UTF8SMTP",
            (true, false) => "ESMTP",
            (false, _) => "SMTP",
        }
    }

    /// What restrictions see.
    pub(crate) fn view<'a>(&'a self, recipient: Option<&'a Address>) -> View<'a> {
        View {
            client: &self.settings.client,
            helo: self.helo.as_deref(),
            sender: self.tx.as_ref().map(|t| &t.sender),
            recipient,
            protocol: self.protocol(),
            improper_pipelining: self.improper_pipelining,
            recipient_count: self.tx.as_ref().map_or(0, |t| t.rcpt_count),
        }
    }

    /// Ends the transaction, dropping an unfinished queue file.
    pub(crate) fn reset_transaction(&mut self, sink: &mut dyn MessageSink) {
        if let Some(tx) = self.tx.take() {
            if tx.queue_id.is_some() {
                sink.abort();
            }
        }
    }

    /// The disconnect summary, then Close.
    pub(crate) fn close(&mut self, sink: &mut dyn MessageSink) {
        self.reset_transaction(sink);
        let summary = self.counters.summary();
        self.log(format!(
            "disconnect from {}{summary}",
            self.settings.client.log_name()
        ));
        self.out.push(Action::Close);
        self.input = Input::Closed;
    }

    /// Opens the queue file at the first accepted recipient (`ID: client=`).
    pub(crate) fn open_queue_file(&mut self, io: &mut Io) -> Result<(), SinkError> {
        let Some(tx) = self.tx.as_ref() else {
            return Err(SinkError::Temporary("no transaction".into()));
        };
        if tx.queue_id.is_some() {
            return Ok(());
        }
        let envelope = crate::policy::Envelope {
            client: &self.settings.client,
            helo: self.helo.as_deref(),
            protocol: self.protocol(),
            sender: &tx.sender,
            params: &tx.params,
        };
        let id = io.sink.begin(&envelope)?;
        let client = self.settings.client.log_name();
        self.log(format!("{id}: client={client}"));
        if let Some(tx) = self.tx.as_mut() {
            tx.queue_id = Some(id);
        }
        Ok(())
    }

    /// Records an accepted recipient with the sink.
    pub(crate) fn add_recipient(
        &mut self,
        rcpt: Address,
        params: &RcptParams,
        io: &mut Io,
    ) -> Result<(), SinkError> {
        self.open_queue_file(io)?;
        io.sink.add_recipient(&rcpt, params)?;
        if let Some(tx) = self.tx.as_mut() {
            tx.rcpt_count += 1;
            if tx.first_rcpt.is_none() {
                tx.first_rcpt = Some(rcpt.clone());
            }
            tx.last_rcpt = Some(rcpt);
            for d in std::mem::take(&mut tx.dispositions) {
                io.sink.set_disposition(&d)?;
            }
        }
        Ok(())
    }
}
