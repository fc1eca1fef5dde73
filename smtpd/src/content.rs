//! The message content phase: DATA and BDAT chunks into the sink, the size
//! limit, the Received: header, and the end of the message (`250 2.0.0 Ok:
//! queued as ID`) or its rejection.

use crate::data::BdatReader;
use crate::policy::{Decision, Disposition, MessageSink};
use crate::received::{received_header, ReceivedInfo};
use crate::reply::Reply;
use crate::session::{Input, Io, Session, Transaction};
use crate::settings::BareNewline;

/// Which command carries the content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Data,
    Bdat,
}

/// smtpd_data_restrictions and the Received: header, before the first
/// content byte; a refusal comes back as the reply.
pub(crate) fn start_content(s: &mut Session, where_: &str, io: &mut Io) -> Option<Reply> {
    let last = s.tx.as_ref().and_then(|t| t.last_rcpt.clone());
    let decision = io.policy.check_data(&s.view(last.as_ref()));
    let accepted = !matches!(decision, Decision::Reject(_));
    crate::commands::take_side_actions(s, io.policy, accepted, where_, last.as_ref());
    let sender = s.tx.as_ref().map(|t| t.sender.clone());
    match decision {
        Decision::Accept => {}
        Decision::Reject(r) => {
            s.log_action(
                "reject",
                where_,
                &r.reply().text(),
                sender.as_ref(),
                last.as_ref(),
            );
            return Some(r.reply());
        }
        Decision::Hold(t) => set_disposition(s, "hold", where_, Disposition::Hold(t), io),
        Decision::Discard(t) => set_disposition(s, "discard", where_, Disposition::Discard(t), io),
    }
    let received = received(s);
    if let Some(tx) = s.tx.as_mut() {
        for d in std::mem::take(&mut tx.dispositions) {
            if let Err(e) = io.sink.set_disposition(&d) {
                tx.sink_error.get_or_insert(e);
            }
        }
        let mut headers = String::new();
        for field in &tx.prepend {
            headers.push_str(field);
            headers.push_str("\r\n");
        }
        headers.push_str(&received);
        if let Err(e) = io.sink.write(headers.as_bytes()) {
            tx.sink_error.get_or_insert(e);
        }
    }
    None
}

/// Logs a HOLD/DISCARD found after the queue file is open and tells the sink.
fn set_disposition(s: &mut Session, action: &str, where_: &str, d: Disposition, io: &mut Io) {
    let text = match &d {
        Disposition::Hold(t)
        | Disposition::Discard(t)
        | Disposition::Redirect(t)
        | Disposition::Filter(t)
        | Disposition::Prepend(t) => t.clone(),
    };
    let sender = s.tx.as_ref().map(|t| t.sender.clone());
    let last = s.tx.as_ref().and_then(|t| t.last_rcpt.clone());
    s.log_action(action, where_, &text, sender.as_ref(), last.as_ref());
    if let Some(tx) = s.tx.as_mut() {
        if let Err(e) = io.sink.set_disposition(&d) {
            tx.sink_error.get_or_insert(e);
        }
    }
}

/// The Received: header for the current transaction.
fn received(s: &Session) -> String {
    let set = &s.settings;
    let tx = s.tx.as_ref();
    let single = tx
        .filter(|t| t.rcpt_count == 1)
        .and_then(|t| t.first_rcpt.as_ref())
        .map(|a| a.to_string());
    let stamp = (set.clock)();
    let rfc_addr = set.client.rfc_addr();
    let info = ReceivedInfo {
        helo: s.helo.as_deref(),
        client_name: &set.client.name,
        client_rfc_addr: &rfc_addr,
        myhostname: &set.myhostname,
        mail_name: &set.mail_name,
        protocol: s.protocol(),
        queue_id: tx.and_then(|t| t.queue_id.as_deref()).unwrap_or("NOQUEUE"),
        single_recipient: single.as_deref(),
        stamp: &stamp,
    };
    received_header(&info)
}

/// Passes content to the sink unless the message is already too big or
/// the sink failed.
fn write_content(tx: &mut Transaction, content: &[u8], limit: u64, sink: &mut dyn MessageSink) {
    if tx.too_big || tx.sink_error.is_some() || content.is_empty() {
        return;
    }
    let size = tx.size + content.len() as u64;
    if limit > 0 && size > limit {
        tx.too_big = true;
        return;
    }
    tx.size = size;
    if let Err(e) = sink.write(content) {
        tx.sink_error = Some(e);
    }
}

impl Session {
    /// DATA content; returns the bytes used.
    pub(crate) fn read_data(&mut self, rest: &[u8], io: &mut Io) -> usize {
        let Input::Data(reader) = &mut self.input else {
            return rest.len();
        };
        let mut out = Vec::new();
        let (used, end) = reader.feed(rest, &mut out);
        let bare_lf = reader.bare_lf;
        let limit = self.settings.message_size_limit;
        if let Some(tx) = self.tx.as_mut() {
            tx.received += used as u64;
            write_content(tx, &out, limit, io.sink);
        }
        if end {
            self.end_of_message(Kind::Data, bare_lf, io);
        }
        used
    }

    /// BDAT chunk bytes; returns the bytes used.
    pub(crate) fn read_bdat(&mut self, rest: &[u8], io: &mut Io) -> usize {
        let Input::Bdat { left, last } = &mut self.input else {
            return rest.len();
        };
        let n = rest.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
        *left -= n as u64;
        let (done, last) = (*left == 0, *last);
        self.bdat_content(&rest[..n], last && done, io);
        if done {
            self.bdat_chunk_done(last, io);
        }
        n
    }

    fn bdat_content(&mut self, chunk: &[u8], finish: bool, io: &mut Io) {
        let limit = self.settings.message_size_limit;
        let Some(tx) = self.tx.as_mut() else {
            return;
        };
        let mut out = Vec::with_capacity(chunk.len());
        if let Some(reader) = tx.bdat.as_mut() {
            reader.feed(chunk, &mut out);
            if finish {
                reader.finish(&mut out);
            }
        }
        tx.received += chunk.len() as u64;
        write_content(tx, &out, limit, io.sink);
    }

    /// A chunk is complete: `250 2.0.0 Ok: N bytes`, or the end of the message.
    fn bdat_chunk_done(&mut self, last: bool, io: &mut Io) {
        self.input = Input::Command;
        if last {
            let bare = self
                .tx
                .as_ref()
                .and_then(|t| t.bdat.as_ref())
                .is_some_and(|r| r.bare_lf);
            return self.end_of_message(Kind::Bdat, bare, io);
        }
        self.counters.count("bdat", true);
        let size = self.bdat_size();
        self.reply(Reply::new(250, "2.0.0", format!("Ok: {size} bytes")));
        self.check_error_limit(io);
    }

    fn bdat_size(&self) -> u64 {
        self.tx
            .as_ref()
            .and_then(|t| t.bdat.as_ref())
            .map_or(0, |r| r.size)
    }

    /// Discards the chunk of a failed BDAT, then replies.
    pub(crate) fn skip_chunk(&mut self, rest: &[u8], io: &mut Io) -> usize {
        let Input::Skip { left, .. } = &mut self.input else {
            return rest.len();
        };
        let n = rest.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
        *left -= n as u64;
        if *left == 0 {
            if let Input::Skip { reply, .. } = std::mem::replace(&mut self.input, Input::Command) {
                self.counters.count("bdat", false);
                self.fail(reply);
                self.check_error_limit(io);
            }
        }
        n
    }

    /// The end of DATA or of BDAT LAST.
    fn end_of_message(&mut self, kind: Kind, bare_lf: bool, io: &mut Io) {
        self.input = Input::Command;
        self.where_ = "END-OF-MESSAGE".to_string();
        let bdat_size = self.bdat_size();
        let name = match kind {
            Kind::Data => "data",
            Kind::Bdat => "bdat",
        };
        match self.finish_message(bare_lf, io) {
            Ok(id) => {
                self.tx = None;
                self.counters.count(name, true);
                self.error_count = 0;
                self.junk_commands = 0;
                let text = match kind {
                    Kind::Data => format!("Ok: queued as {id}"),
                    Kind::Bdat => format!("Ok: {bdat_size} bytes queued as {id}"),
                };
                self.reply(Reply::new(250, "2.0.0", text));
            }
            Err(reply) => {
                self.reset_transaction(io.sink);
                self.counters.count(name, false);
                let code = reply.code;
                self.fail(reply);
                if code == 521 {
                    return self.close(io.sink);
                }
            }
        }
        self.check_error_limit(io);
    }

    /// Checks the finished content and commits it; a refusal comes back as
    /// the reply.
    fn finish_message(&mut self, bare_lf: bool, io: &mut Io) -> Result<String, Reply> {
        let Some(tx) = self.tx.as_ref() else {
            return Err(Reply::new(503, "5.5.1", "Error: need RCPT command"));
        };
        let (sender, last) = (tx.sender.clone(), tx.last_rcpt.clone());
        if bare_lf && self.settings.forbid_bare_newline == BareNewline::Reject {
            self.log_action(
                "reject",
                "END-OF-MESSAGE",
                "bare <LF> received",
                Some(&sender),
                last.as_ref(),
            );
            let host = &self.settings.myhostname;
            let code = self.settings.bare_newline_reject_code;
            return Err(Reply::new(
                code,
                "5.5.2",
                format!("{host} Error: bare <LF> received"),
            ));
        }
        if tx.too_big {
            return Err(Reply::new(552, "5.3.4", "Error: message file too big"));
        }
        if let Some(e) = &tx.sink_error {
            return Err(e.reply());
        }
        match io.policy.check_end_of_data(&self.view(last.as_ref())) {
            Decision::Accept => {}
            Decision::Reject(r) => {
                self.log_action(
                    "reject",
                    "END-OF-MESSAGE",
                    &r.reply().text(),
                    Some(&sender),
                    last.as_ref(),
                );
                return Err(r.reply());
            }
            Decision::Hold(t) => {
                set_disposition(self, "hold", "END-OF-MESSAGE", Disposition::Hold(t), io)
            }
            Decision::Discard(t) => set_disposition(
                self,
                "discard",
                "END-OF-MESSAGE",
                Disposition::Discard(t),
                io,
            ),
        }
        if let Some(e) = self.tx.as_ref().and_then(|t| t.sink_error.clone()) {
            return Err(e.reply());
        }
        io.sink.finish().map_err(|e| e.reply())
    }
}

/// `BDAT count [LAST]`.
fn parse_bdat(args: &str) -> Option<(u64, bool)> {
    let words: Vec<&str> = args.split_ascii_whitespace().collect();
    let count = words
        .first()
        .filter(|w| w.bytes().all(|b| b.is_ascii_digit()))?
        .parse()
        .ok()?;
    match words.get(1..) {
        Some([]) => Some((count, false)),
        Some([last]) if last.eq_ignore_ascii_case("LAST") => Some((count, true)),
        _ => None,
    }
}

/// BDAT (RFC 3030). A malformed command ends the session (the chunk size is
/// unknown); a refused chunk is read and discarded before the reply.
pub(crate) fn bdat(s: &mut Session, args: &str, text: &str, io: &mut Io) -> Option<bool> {
    if !s.settings.offers("chunking") {
        s.fail(Reply::new(502, "5.5.1", "Error: command not implemented"));
        return Some(false);
    }
    let Some((count, last)) = parse_bdat(args) else {
        let id =
            s.tx.as_ref()
                .and_then(|t| t.queue_id.clone())
                .unwrap_or_else(|| "NOQUEUE".into());
        let client = s.settings.client.log_name();
        s.log(format!(
            "warning: {id}: malformed BDAT command syntax from {client}: {text}"
        ));
        s.counters.count("bdat", false);
        s.reply(Reply::new(521, "5.5.4", "Syntax: BDAT count [LAST]"));
        s.close(io.sink);
        return None;
    };
    if let Some(reply) = bdat_refusal(s, count, io) {
        s.reset_transaction(io.sink);
        s.bdat_error = !last;
        s.input = Input::Skip { left: count, reply };
    } else {
        s.input = Input::Bdat { left: count, last };
    }
    if count == 0 {
        s.receive_empty_chunk(io);
    }
    None
}

/// Why a chunk cannot be taken, in Postfix's order.
fn bdat_refusal(s: &mut Session, count: u64, io: &mut Io) -> Option<Reply> {
    if s.bdat_error {
        return Some(Reply::new(
            551,
            "5.0.0",
            format!("Discarded {count} bytes after earlier error"),
        ));
    }
    let tx = match s.tx.as_ref() {
        None => return Some(Reply::new(503, "5.5.1", "Error: need RCPT command")),
        Some(t) if t.rcpt_count == 0 => {
            return Some(Reply::new(554, "5.5.1", "Error: no valid recipients"))
        }
        Some(t) => t,
    };
    let limit = s.settings.message_size_limit;
    let size = tx.bdat.as_ref().map_or(0, |r| r.size);
    if limit > 0 && size.saturating_add(count) > limit {
        return Some(Reply::new(552, "5.3.4", "Chunk exceeds message size limit"));
    }
    if tx.bdat.is_some() {
        return None;
    }
    let refusal = start_content(s, "BDAT", io);
    if let Some(tx) = s.tx.as_mut() {
        tx.bdat = Some(BdatReader::default());
    }
    refusal
}

impl Session {
    /// A zero-length chunk completes at once.
    fn receive_empty_chunk(&mut self, io: &mut Io) {
        match self.input {
            Input::Bdat { last, .. } => {
                self.bdat_content(&[], last, io);
                self.bdat_chunk_done(last, io);
            }
            Input::Skip { .. } => {
                self.skip_chunk(&[], io);
            }
            _ => {}
        }
    }
}
