//! One message through cleanup, as a state machine without sockets: it
//! takes the client's requests (libmail::cleanup::Request) one by one,
//! writes the queue file through a QueueWriter, and at `finish` returns
//! the Outcome for the client. The daemon (main.rs) only adds I/O.
//!
//! A message that fails on the way (a REJECT, a size or hop limit, a
//! table or disk that fails) drops its queue file at once and keeps
//! reading the client's requests until End, since the client sends
//! everything before it reads the answer.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use libmail::cleanup::{Disposition, Flags, Outcome, Request};
use libmail::config::Config;
use libmail::msg;
use libmail::queue::{attr, Queue, QueueError, QueueWriter, Recipient, HOLD, INCOMING};
use thiserror::Error;

use crate::content::Lines;
use crate::envelope::{self, Context, Role};
use crate::headers::Gatherer;
use crate::report::Origin;
use crate::settings::{Settings, SettingsError, Tables};

/// What the process keeps between messages: settings, open tables, the
/// queue.
pub struct Service {
    pub settings: Settings,
    pub tables: Tables,
    pub queue: Queue,
}

#[derive(Debug, Error)]
pub enum ServiceError {
    #[error("{0}")]
    Settings(#[from] SettingsError),
    #[error("{0}")]
    Queue(#[from] QueueError),
}

impl Service {
    pub fn from_config(config: &Config) -> Result<Service, ServiceError> {
        let queue = Queue::from_config(config)?;
        Service::with_queue(config, queue)
    }

    pub fn with_queue(config: &Config, queue: Queue) -> Result<Service, ServiceError> {
        Ok(Service {
            settings: Settings::from_config(config)?,
            tables: Tables::open(config)?,
            queue,
        })
    }

    /// Starts a message: a new queue file in incoming/, not yet visible.
    pub fn open(&mut self, flags: Flags) -> Result<Message<'_>, QueueError> {
        let writer = self.queue.create(INCOMING)?;
        Ok(Message::new(self, writer, flags))
    }
}

/// The client broke the protocol; the connection is dropped and the
/// queue file with it.
#[derive(Debug, Error)]
pub enum StreamError {
    #[error("unexpected {0} request")]
    Unexpected(&'static str),
    #[error("{0}")]
    Queue(QueueError),
}

/// What `finish` decided.
#[derive(Debug, PartialEq, Eq)]
pub struct Finished {
    pub outcome: Outcome,
    /// The queue the file was committed to, if it was.
    pub queue: Option<String>,
}

/// Envelope information that arrives after the content has started; it
/// goes to the file's extracted section at the end.
#[derive(Debug)]
enum Late {
    Recipient(Recipient),
    Fullname(String),
    Attribute(String, String),
    Envid(String),
    Ret(u8),
}

/// Which headers the message has (for the missing-header rules).
#[derive(Debug, Default)]
pub(crate) struct Seen {
    pub message_id: bool,
    pub date: bool,
    pub from: bool,
    pub to_or_cc: bool,
    pub resent_message_id: bool,
    pub resent_date: bool,
    pub resent_from: bool,
    pub resent_to_or_cc: bool,
    /// Any Resent- header: the added headers are Resent- ones, and
    /// `sendmail -t` takes the Resent- recipients.
    pub resent: bool,
}

pub struct Message<'s> {
    pub(crate) settings: &'s Settings,
    pub(crate) tables: &'s mut Tables,
    pub(crate) writer: Option<QueueWriter>,
    pub(crate) queue_id: String,
    created: SystemTime,
    pub(crate) arrival: SystemTime,
    pub(crate) flags: Flags,
    /// header/body checks still apply (REJECT, DISCARD and REDIRECT end
    /// them).
    pub(crate) checks_on: bool,
    pub(crate) sender: Option<String>,
    pub(crate) fullname: Option<String>,
    first_recipient: Option<String>,
    attributes: HashMap<String, String>,
    pub(crate) rewrite_local: bool,
    duplicates: HashSet<String>,
    recipient_count: u64,
    late: Vec<Late>,
    pub(crate) filter: Option<String>,
    pub(crate) redirect: Option<String>,
    pub(crate) bcc: Vec<String>,
    lines: Lines,
    pub(crate) gatherer: Gatherer,
    pub(crate) in_body: bool,
    pub(crate) headers_done: bool,
    content_started: bool,
    content_done: bool,
    pub(crate) seen: Seen,
    pub(crate) hops: usize,
    pub(crate) extracted: Vec<String>,
    pub(crate) extracted_resent: Vec<String>,
    pub(crate) size: u64,
    pub(crate) body_inspected: usize,
    pub(crate) hold: bool,
    pub(crate) discard: bool,
    pub(crate) failure: Option<Outcome>,
}

impl<'s> Message<'s> {
    fn new(service: &'s mut Service, writer: QueueWriter, flags: Flags) -> Message<'s> {
        let now = SystemTime::now();
        Message {
            settings: &service.settings,
            tables: &mut service.tables,
            queue_id: writer.id().to_string(),
            writer: Some(writer),
            created: now,
            arrival: now,
            flags,
            checks_on: flags.filter,
            sender: None,
            fullname: None,
            first_recipient: None,
            attributes: HashMap::new(),
            rewrite_local: true,
            duplicates: HashSet::new(),
            recipient_count: 0,
            late: Vec::new(),
            filter: None,
            redirect: None,
            bcc: Vec::new(),
            lines: Lines::new(),
            gatherer: Gatherer::new(service.settings.header_size_limit),
            in_body: false,
            headers_done: false,
            content_started: false,
            content_done: false,
            seen: Seen::default(),
            hops: 0,
            extracted: Vec::new(),
            extracted_resent: Vec::new(),
            size: 0,
            body_inspected: 0,
            hold: false,
            discard: false,
            failure: None,
        }
    }

    pub fn queue_id(&self) -> &str {
        &self.queue_id
    }

    pub(crate) fn created(&self) -> SystemTime {
        self.created
    }

    /// Takes one request other than End (see `finish`).
    pub fn handle(&mut self, request: Request) -> Result<(), StreamError> {
        match request {
            Request::Open(_) => Err(StreamError::Unexpected("open")),
            Request::End => Err(StreamError::Unexpected("end")),
            Request::Sender(address) => self.sender(&address),
            Request::Fullname(name) => {
                self.fullname = Some(name.clone());
                self.envelope_record(Late::Fullname(name))
            }
            Request::Attribute(name, value) => self.attribute(name, value),
            Request::Recipient(recipient) => self.recipient(recipient),
            Request::DsnEnvid(envid) => self.envelope_record(Late::Envid(envid)),
            Request::DsnRet(flags) => self.envelope_record(Late::Ret(flags)),
            Request::Arrival(seconds) => self.arrival(seconds),
            Request::Disposition(disposition) => {
                self.disposition(disposition);
                Ok(())
            }
            Request::Content(bytes) => self.content(&bytes),
        }
    }

    fn sender(&mut self, address: &str) -> Result<(), StreamError> {
        if self.sender.is_some() {
            return Err(StreamError::Unexpected("duplicate sender"));
        }
        let rewritten = self.rewrite(address, Role::EnvelopeSender, Context::Local);
        let rewritten = rewritten.unwrap_or_default();
        self.sender = Some(rewritten.clone());
        self.write(|w| w.sender(&rewritten))
    }

    fn attribute(&mut self, name: String, value: String) -> Result<(), StreamError> {
        if name.is_empty() || name.contains('=') {
            return Err(StreamError::Unexpected("bad attribute"));
        }
        if name == "smtputf8" {
            if let (Ok(flags), Some(writer)) = (value.parse::<u64>(), self.writer.as_mut()) {
                writer.set_smtputf8(flags);
            }
            return Ok(());
        }
        if name == attr::REWRITE_CONTEXT {
            self.rewrite_local = value != "remote";
        }
        self.attributes.insert(name.clone(), value.clone());
        self.envelope_record(Late::Attribute(name, value))
    }

    fn arrival(&mut self, seconds: u64) -> Result<(), StreamError> {
        if self.content_started {
            return Err(StreamError::Unexpected("arrival after content"));
        }
        self.arrival = UNIX_EPOCH + Duration::from_secs(seconds);
        let arrival = self.arrival;
        self.write(|w| w.set_arrival_time(arrival))
    }

    fn disposition(&mut self, disposition: Disposition) {
        match disposition {
            Disposition::Hold(_) => self.hold = !self.discard,
            Disposition::Discard(_) => {
                self.discard = true;
                self.hold = false;
            }
            Disposition::Filter(target) => self.filter = Some(target),
            Disposition::Redirect(target) => self.redirect = Some(target),
        }
    }

    fn content(&mut self, bytes: &[u8]) -> Result<(), StreamError> {
        if self.sender.is_none() {
            return Err(StreamError::Unexpected("content before sender"));
        }
        if self.content_done {
            return Err(StreamError::Unexpected("content after end"));
        }
        self.content_started = true;
        let mut lines = std::mem::take(&mut self.lines);
        let result = lines.push(bytes, |line| self.line(line));
        self.lines = lines;
        result
    }

    /// A client recipient: rewritten, expanded, deduplicated, written.
    fn recipient(&mut self, given: Recipient) -> Result<(), StreamError> {
        if self.first_recipient.is_none() {
            self.first_recipient = Some(given.address.clone());
        }
        self.add_recipient(given)
    }

    pub(crate) fn add_recipient(&mut self, given: Recipient) -> Result<(), StreamError> {
        if self.failure.is_some() || given.address.is_empty() {
            return Ok(());
        }
        let Some(address) = self.rewrite(&given.address, Role::EnvelopeRecipient, Context::Local)
        else {
            return Ok(());
        };
        let addresses = match self.flags.map {
            true => match envelope::expand(self.settings, self.tables, &address) {
                Ok(expansion) if expansion.limited => {
                    msg::warning(format!(
                        "{}: unreasonable virtual_alias_maps map expansion size for {address} \
                         -- message not accepted, try again later",
                        self.queue_id
                    ));
                    self.fail(Outcome::Rejected {
                        code: 451,
                        enhanced: "4.6.0".into(),
                        text: "Alias expansion error".into(),
                    });
                    return Ok(());
                }
                Ok(expansion) => expansion.addresses,
                Err(err) => {
                    self.tempfail(err);
                    return Ok(());
                }
            },
            false => vec![address],
        };
        let orig = if !self.settings.enable_original_recipient {
            String::new()
        } else if !given.orig_recipient.is_empty() {
            given.orig_recipient.clone()
        } else {
            given.address.clone()
        };
        for address in addresses {
            let recipient = Recipient {
                address,
                orig_recipient: orig.clone(),
                ..given.clone()
            };
            if self.is_duplicate(&recipient) {
                continue;
            }
            self.recipient_count += 1;
            self.envelope_record(Late::Recipient(recipient))?;
        }
        Ok(())
    }

    /// Postfix's duplicate filter: the same address with the same
    /// original address and DSN settings is kept once, as long as fewer
    /// than duplicate_filter_limit have been remembered.
    fn is_duplicate(&mut self, r: &Recipient) -> bool {
        let key = format!(
            "{}\n{}\n{}\n{}",
            r.dsn_orcpt, r.dsn_notify, r.orig_recipient, r.address
        );
        if self.duplicates.contains(&key) {
            return true;
        }
        if self.duplicates.len() < self.settings.duplicate_filter_limit {
            self.duplicates.insert(key);
        }
        false
    }

    /// Rewrites an address; a table failure fails the message (`None`).
    pub(crate) fn rewrite(
        &mut self,
        address: &str,
        role: Role,
        context: Context,
    ) -> Option<String> {
        let map = self.flags.map;
        match envelope::rewrite(self.settings, self.tables, address, role, context, map) {
            Ok(address) => Some(address),
            Err(err) => {
                self.tempfail(err);
                None
            }
        }
    }

    /// Writes an envelope record now, or at the end when the content has
    /// started (the writer would end the content section otherwise).
    fn envelope_record(&mut self, record: Late) -> Result<(), StreamError> {
        if self.content_started && !self.content_done {
            self.late.push(record);
            return Ok(());
        }
        self.write(|w| match &record {
            Late::Recipient(r) => w.recipient(r),
            Late::Fullname(name) => w.sender_fullname(name),
            Late::Attribute(name, value) => w.attribute(name, value),
            Late::Envid(envid) => w.dsn_envid(envid),
            Late::Ret(flags) => w.dsn_ret(*flags),
        })
    }

    /// Runs `op` on the queue file, unless the message has failed. A
    /// writer used out of order means the requests were out of order.
    pub(crate) fn write(
        &mut self,
        op: impl FnOnce(&mut QueueWriter) -> Result<(), QueueError>,
    ) -> Result<(), StreamError> {
        let Some(writer) = self.writer.as_mut() else {
            return Ok(());
        };
        match op(writer) {
            Ok(()) => Ok(()),
            Err(err @ QueueError::Usage { .. }) => Err(StreamError::Queue(err)),
            Err(err) => {
                self.tempfail(err);
                Ok(())
            }
        }
    }

    /// The message cannot be accepted; its queue file goes.
    pub(crate) fn fail(&mut self, outcome: Outcome) {
        if self.failure.is_none() {
            self.failure = Some(outcome);
        }
        self.writer = None;
        self.checks_on = false;
    }

    /// A temporary failure (disk, table): logged, and the client is told
    /// to try again.
    pub(crate) fn tempfail(&mut self, err: impl std::fmt::Display) {
        msg::warning(format!("{}: {err}", self.queue_id));
        self.fail(Outcome::Failed("queue file write error".into()));
    }

    /// The log's view of the client, for header/body check actions.
    pub(crate) fn origin(&self) -> Origin {
        let get = |name: &str| self.attributes.get(name).cloned();
        let origin = get(attr::LOG_MESSAGE_ORIGIN)
            .or_else(|| {
                let name = get(attr::LOG_CLIENT_NAME).or_else(|| get(attr::CLIENT_NAME))?;
                let address =
                    get(attr::LOG_CLIENT_ADDRESS).or_else(|| get(attr::CLIENT_ADDRESS))?;
                Some(format!("{name}[{address}]"))
            })
            .unwrap_or_else(|| "unknown".to_string());
        Origin {
            origin,
            sender: self.sender.clone(),
            recipient: self.first_recipient.clone(),
            protocol: get(attr::LOG_PROTOCOL_NAME).or_else(|| get(attr::PROTOCOL_NAME)),
            helo: get(attr::LOG_HELO_NAME).or_else(|| get(attr::HELO_NAME)),
        }
    }

    /// The End request: completes the content, adds what was deferred to
    /// the end, and commits (or drops) the queue file.
    pub fn finish(mut self) -> Result<Finished, StreamError> {
        let mut lines = std::mem::take(&mut self.lines);
        lines.finish(|line| self.line(line))?;
        if self.content_started && !self.headers_done {
            if let Some(field) = self.gatherer.take() {
                self.header(field)?;
            }
            self.end_of_headers()?;
        }
        self.content_done = true;
        let result = |outcome, queue| Ok(Finished { outcome, queue });
        if self.discard {
            // Discarded on purpose: success for the client, as Postfix.
            return result(Outcome::Queued, None);
        }
        if self.sender.is_none() && self.failure.is_none() {
            return Err(StreamError::Unexpected("end before sender"));
        }
        self.add_extracted()?;
        if let Some(outcome) = self.failure.take() {
            return result(outcome, None);
        }
        if self.recipient_count == 0 {
            return result(
                Outcome::Rejected {
                    code: 550,
                    enhanced: "5.1.0".into(),
                    text: "no recipients specified".into(),
                },
                None,
            );
        }
        self.write_late()?;
        if let Some(outcome) = self.failure.take() {
            return result(outcome, None);
        }
        let Some(mut writer) = self.writer.take() else {
            return result(Outcome::Failed("queue file write error".into()), None);
        };
        if self.hold {
            writer.set_queue(HOLD).map_err(StreamError::Queue)?;
        }
        match writer.commit() {
            Ok(done) => result(Outcome::Queued, Some(done.queue)),
            Err(err) => {
                msg::warning(format!("{}: {err}", self.queue_id));
                result(Outcome::Failed("queue file write error".into()), None)
            }
        }
    }

    /// Recipients from the headers (`sendmail -t`) and BCC actions.
    fn add_extracted(&mut self) -> Result<(), StreamError> {
        let from_headers = match self.seen.resent {
            true => std::mem::take(&mut self.extracted_resent),
            false => std::mem::take(&mut self.extracted),
        };
        let bcc = std::mem::take(&mut self.bcc);
        for address in from_headers.into_iter().chain(bcc) {
            self.add_recipient(Recipient::new(&address))?;
        }
        Ok(())
    }

    /// Envelope records that came during the content, then FILTER and
    /// REDIRECT, into the extracted section.
    fn write_late(&mut self) -> Result<(), StreamError> {
        for record in std::mem::take(&mut self.late) {
            self.envelope_record(record)?;
        }
        if let Some(filter) = self.filter.take() {
            self.write(|w| w.content_filter(&filter))?;
        }
        if let Some(redirect) = self.redirect.take() {
            self.write(|w| w.redirect_to(&redirect))?;
        }
        Ok(())
    }
}

/// Whether a finished message means new work for qmgr.
pub fn wakes_qmgr(finished: &Finished) -> bool {
    finished.queue.as_deref() == Some(INCOMING)
}

#[cfg(test)]
#[path = "message_tests.rs"]
mod tests;
