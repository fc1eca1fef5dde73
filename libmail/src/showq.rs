//! The queue listing behind `postqueue -p`, `postqueue -j`, `mailq` and
//! the showq(8) service: one `Entry` per queue file (where it is, its ID,
//! arrival time, size, sender, and the recipients still to be delivered
//! with the reason each was deferred), collected from the queue
//! directories, carried over the internal protocol, and written out in
//! Postfix's two formats — the Sendmail-style table and JSON lines.
//!
//! Collecting reads only envelopes and defer logs: message content never
//! leaves the queue, since showq answers any local user. Formatting does
//! no I/O, so the layouts are tested against golden text.

use std::fmt::Write as _;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::ipc::{IpcError, Message};
use crate::queue::{
    self, defer_log, lock, Envelope, Queue, QueueError, QueueFile, QueueId, ACTIVE, DEFERRED, HOLD,
    INCOMING, MAILDROP,
};

/// The queues listed, in Postfix's order: mail not yet picked up first,
/// then mail being delivered, new mail, mail waiting to be retried, and
/// mail on hold.
pub const LISTED_QUEUES: [&str; 5] = [MAILDROP, ACTIVE, INCOMING, DEFERRED, HOLD];

/// The first message of every showq answer, so that a client knows it
/// reached the right service.
pub const PROTOCOL: &str = "showq";

/// Owner permission bits of a finished queue file; a file without all
/// three is still being written or was set aside (Postfix's
/// mail_open_ok()).
const READY_BITS: u32 = 0o700;

/// The width Postfix right-aligns a `(reason)` line to.
const REASON_WIDTH: usize = 76;

/// One recipient still waiting for delivery.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Pending {
    /// Printable and quoted as in an SMTP command (`"john doe"@example.com`).
    pub address: String,
    /// Why the last delivery attempt failed, when it is known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delay_reason: Option<String>,
}

/// One queue file as the listing shows it. Field names and order are
/// those of Postfix's JSON objects.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Entry {
    pub queue_name: String,
    pub queue_id: String,
    /// Seconds since the epoch.
    pub arrival_time: u64,
    /// Header and body bytes.
    pub message_size: u64,
    /// Marked to expire now (`postsuper -e` / `-f`).
    pub forced_expire: bool,
    /// `MAILER-DAEMON` (empty_address_recipient) for the null sender.
    pub sender: String,
    pub recipients: Vec<Pending>,
}

/// Why a file in a listed queue is left out of the listing.
#[derive(Debug)]
pub struct Skipped {
    pub queue_name: &'static str,
    pub queue_id: String,
    pub error: QueueError,
}

impl std::fmt::Display for Skipped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: not listed: {}",
            self.queue_name, self.queue_id, self.error
        )
    }
}

/// What one scan step found.
#[derive(Debug)]
pub enum Found {
    Entry(Entry),
    /// A file that cannot be listed (damaged, unreadable): the caller
    /// logs it; the listing goes on and nothing is moved or changed.
    Skipped(Skipped),
}

/// Walks the listed queues in order and hands each file's entry (or the
/// reason it was skipped) to `visit`, which returns `false` to stop (the
/// client went away). Files that vanish while we look (delivered,
/// moved) are passed over in silence, as in Postfix. Within a queue the
/// files come in queue ID order, so that a listing is reproducible.
/// `empty_address` stands for the null sender.
pub fn scan(
    queue: &Queue,
    empty_address: &str,
    visit: &mut dyn FnMut(Found) -> bool,
) -> Result<(), QueueError> {
    for queue_name in LISTED_QUEUES {
        let mut ids = match queue.scan(queue_name) {
            Ok(ids) => ids,
            Err(err) if err.is_not_found() => continue,
            Err(err) => return Err(err),
        };
        ids.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        for id in ids {
            let found = match entry(queue, queue_name, &id, empty_address) {
                Ok(None) => continue,
                Ok(Some(entry)) => Found::Entry(entry),
                Err(error) => Found::Skipped(Skipped {
                    queue_name,
                    queue_id: id.to_string(),
                    error,
                }),
            };
            if !visit(found) {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// `scan` for a lister: skipped files become warnings, each entry goes
/// to `sink`, which returns `Ok(false)` to stop early; its first error
/// stops the scan and is the outer error. The inner result is the scan's.
pub fn list<E>(
    queue: &Queue,
    empty_address: &str,
    mut sink: impl FnMut(&Entry) -> Result<bool, E>,
) -> Result<Result<(), QueueError>, E> {
    let mut failure = None;
    let scanned = scan(queue, empty_address, &mut |found| match found {
        Found::Entry(entry) => match sink(&entry) {
            Ok(more) => more,
            Err(err) => {
                failure = Some(err);
                false
            }
        },
        Found::Skipped(skipped) => {
            crate::msg::warning(skipped);
            true
        }
    });
    match failure {
        Some(err) => Err(err),
        None => Ok(scanned),
    }
}

/// The entry for one file; `None` for a file that is gone or not ready.
pub fn entry(
    queue: &Queue,
    queue_name: &str,
    id: &QueueId,
    empty_address: &str,
) -> Result<Option<Entry>, QueueError> {
    let path = queue.path(queue_name, id);
    let meta = match std::fs::symlink_metadata(&path) {
        Ok(meta) => meta,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(QueueError::io("lstat", &path, err)),
    };
    if !meta.is_file() {
        let err = io::Error::other("not a regular file");
        return Err(QueueError::io("lstat", &path, err));
    }
    if meta.mode() & READY_BITS != READY_BITS {
        return Ok(None);
    }
    let file = match QueueFile::open(&path) {
        Ok(file) => file,
        Err(err) if err.is_not_found() => return Ok(None),
        Err(err) => return Err(err),
    };
    // A missing or unreadable defer log only loses the explanation.
    let reasons = defer_log::read(queue, id).ok().flatten();
    let mtime = SystemTime::UNIX_EPOCH + Duration::from_secs(meta.mtime().max(0) as u64);
    let envelope = file.envelope();
    Ok(Some(Entry {
        queue_name: queue_name.to_string(),
        queue_id: id.to_string(),
        arrival_time: epoch_seconds(arrival(envelope, mtime)),
        message_size: envelope.sizes.message_size,
        forced_expire: lock::is_forced_expire(meta.mode()),
        sender: display_address(&envelope.sender, empty_address),
        recipients: pending(envelope, reasons.as_ref(), empty_address),
    }))
}

/// The envelope's arrival time, or the file's mtime when it has none.
fn arrival(envelope: &Envelope, mtime: SystemTime) -> SystemTime {
    if envelope.arrival_time == SystemTime::UNIX_EPOCH {
        mtime
    } else {
        envelope.arrival_time
    }
}

fn epoch_seconds(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The recipients not yet done: first those the defer log explains, in
/// its order (so that recipients with the same reason stay together, as
/// Postfix lists them), then the rest in file order. A log record names
/// its recipient by record offset; by address when the offset is unknown.
fn pending(
    envelope: &Envelope,
    log: Option<&defer_log::DeferLog>,
    empty_address: &str,
) -> Vec<Pending> {
    let mut waiting: Vec<Option<&queue::Recipient>> = envelope.pending().map(Some).collect();
    let mut listed = Vec::with_capacity(waiting.len());
    for record in log.map(|l| l.recipients.as_slice()).unwrap_or_default() {
        let slot = waiting.iter_mut().find(|slot| {
            slot.is_some_and(|r| match record.offset {
                0 => r.address == record.recipient,
                offset => r.offset == offset,
            })
        });
        if let Some(rcpt) = slot.and_then(Option::take) {
            let reason = printable(&record.reason);
            listed.push(Pending {
                address: display_address(&rcpt.address, empty_address),
                delay_reason: (!reason.is_empty()).then_some(reason),
            });
        }
    }
    listed.extend(waiting.into_iter().flatten().map(|rcpt| Pending {
        address: display_address(&rcpt.address, empty_address),
        delay_reason: None,
    }));
    listed
}

/// An envelope address as the listing shows it: the null address as
/// `empty_address`, the local part quoted when it needs to be, control
/// characters as `?`.
pub fn display_address(address: &str, empty_address: &str) -> String {
    if address.is_empty() {
        return printable(empty_address);
    }
    printable(&quote_local_part(address))
}

/// Control characters become `?` (the listing is for terminals).
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// `john doe@example.com` → `"john doe"@example.com`: the local part (up
/// to the last `@`) in double quotes, with `"` and `\` escaped, unless it
/// is a plain dot-atom (Postfix's quote_822_local()). 8-bit characters
/// need no quotes.
pub fn quote_local_part(address: &str) -> String {
    let (local, domain) = match address.rfind('@') {
        Some(at) => (&address[..at], Some(&address[at..])),
        None => (address, None),
    };
    if is_dot_atom(local) {
        return address.to_string();
    }
    let mut quoted = String::with_capacity(address.len() + 4);
    quoted.push('"');
    for c in local.chars() {
        if c == '"' || c == '\\' {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted.push('"');
    quoted.push_str(domain.unwrap_or_default());
    quoted
}

fn is_dot_atom(local: &str) -> bool {
    const SPECIALS: &str = "()<>@,;:\\\".[] ";
    !local.is_empty()
        && local.split('.').all(|atom| {
            !atom.is_empty() && !atom.chars().any(|c| c.is_control() || SPECIALS.contains(c))
        })
}

// --- the showq protocol ----------------------------------------------------

/// What showq sends after its greeting: entries, then `End`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Entry(Entry),
    End,
}

/// The greeting that opens every answer.
pub fn greeting() -> Message {
    Message::new().with("protocol", PROTOCOL)
}

/// Whether a message is showq's greeting.
pub fn is_greeting(message: &Message) -> bool {
    message.get("protocol") == Some(PROTOCOL.as_bytes())
}

impl Reply {
    pub fn to_message(&self) -> Message {
        let Reply::Entry(entry) = self else {
            return Message::new().with("end", "1");
        };
        let mut message = Message::new()
            .with("queue_name", &entry.queue_name)
            .with("queue_id", &entry.queue_id)
            .with("arrival_time", entry.arrival_time.to_string())
            .with("message_size", entry.message_size.to_string())
            .with("forced_expire", if entry.forced_expire { "1" } else { "0" })
            .with("sender", &entry.sender);
        for rcpt in &entry.recipients {
            message.push("recipient", &rcpt.address);
            message.push("delay_reason", rcpt.delay_reason.as_deref().unwrap_or(""));
        }
        message
    }

    /// The inverse of `to_message`. Each `recipient` is followed by its
    /// `delay_reason` (empty when there is none).
    pub fn from_message(message: &Message) -> Result<Reply, IpcError> {
        if message.get("end").is_some() {
            return Ok(Reply::End);
        }
        let text = |name| message.text(name).map(str::to_string);
        let mut entry = Entry {
            queue_name: text("queue_name")?,
            queue_id: text("queue_id")?,
            arrival_time: message.number("arrival_time")?,
            message_size: message.number("message_size")?,
            forced_expire: message.number("forced_expire")? != 0,
            sender: text("sender")?,
            recipients: Vec::new(),
        };
        for (name, value) in &message.attributes {
            let value = || {
                std::str::from_utf8(value).map_err(|_| IpcError::BadValue {
                    name: name.clone(),
                    reason: "not UTF-8".into(),
                })
            };
            match name.as_str() {
                "recipient" => entry.recipients.push(Pending {
                    address: printable(value()?),
                    delay_reason: None,
                }),
                "delay_reason" => {
                    let rcpt = entry
                        .recipients
                        .last_mut()
                        .ok_or(IpcError::Malformed("delay_reason before recipient"))?;
                    let reason = printable(value()?);
                    rcpt.delay_reason = (!reason.is_empty()).then_some(reason);
                }
                _ => {}
            }
        }
        entry.sender = printable(&entry.sender);
        Ok(Reply::Entry(entry))
    }
}

// --- postqueue -p ----------------------------------------------------------

/// The column layout, which depends on enable_long_queue_ids.
#[derive(Debug, Clone, Copy)]
struct Columns {
    id: usize,
    size: usize,
    time: usize,
}

const SHORT_COLUMNS: Columns = Columns {
    id: 11,
    size: 7,
    time: 20,
};
const LONG_COLUMNS: Columns = Columns {
    id: 17,
    size: 8,
    time: 19,
};

/// The Sendmail-style listing, built one entry at a time so that a long
/// queue is printed as it is read.
#[derive(Debug)]
pub struct TextListing {
    columns: Columns,
    long_ids: bool,
    /// Times in UTC rather than local time (for tests that must not
    /// depend on the machine's zone).
    utc: bool,
    count: u64,
    bytes: u64,
}

impl TextListing {
    /// `long_ids` is enable_long_queue_ids, which picks the column widths.
    pub fn new(long_ids: bool) -> TextListing {
        TextListing {
            columns: if long_ids {
                LONG_COLUMNS
            } else {
                SHORT_COLUMNS
            },
            long_ids,
            utc: false,
            count: 0,
            bytes: 0,
        }
    }

    fn row(&self, out: &mut String, id: &str, size: &str, time: &str, last: &str) {
        let c = self.columns;
        let _ = writeln!(
            out,
            "{id:<iw$} {size:>sw$} {time:<tw$} {last}",
            iw = c.id,
            sw = c.size,
            tw = c.time
        );
    }

    /// The text for one entry: the heading before the first, a blank
    /// line before the others.
    pub fn entry(&mut self, entry: &Entry) -> String {
        let mut out = String::new();
        if self.count > 0 {
            out.push('\n');
        } else if self.long_ids {
            let heading = ["----Queue ID-----", "--Size--", "---Arrival Time----"];
            self.row(
                &mut out,
                heading[0],
                heading[1],
                heading[2],
                "--Sender/Recipient------",
            );
        } else {
            let heading = ["-Queue ID-", "--Size--", "----Arrival Time----"];
            self.row(
                &mut out,
                heading[0],
                heading[1],
                heading[2],
                "-Sender/Recipient-------",
            );
        }
        self.count += 1;
        self.bytes += entry.message_size;
        let time = arrival_text(entry.arrival_time, self.columns.time, self.utc);
        let size = entry.message_size.to_string();
        self.row(
            &mut out,
            &id_with_status(entry),
            &size,
            &time,
            &entry.sender,
        );
        let mut shown_reason = "";
        for rcpt in &entry.recipients {
            let reason = rcpt.delay_reason.as_deref().unwrap_or("");
            // A reason line when it changes; "reason unavailable" when a
            // recipient without one follows one with one.
            if reason != shown_reason {
                shown_reason = reason;
                let text = if reason.is_empty() {
                    "reason unavailable"
                } else {
                    reason
                };
                let pad = REASON_WIDTH.saturating_sub(text.len());
                let _ = writeln!(out, "{:pad$}({text})", "");
            }
            self.row(&mut out, "", "", "", &rcpt.address);
        }
        out
    }

    /// The closing line: the total, or `Mail queue is empty`.
    pub fn finish(&self) -> String {
        match self.count {
            0 => "Mail queue is empty\n".to_string(),
            n => format!(
                "\n-- {} Kbytes in {n} Request{}.\n",
                self.bytes / 1024,
                if n == 1 { "" } else { "s" }
            ),
        }
    }
}

/// The queue ID with its status marks: `*` active, `!` on hold, then `#`
/// when forced to expire.
fn id_with_status(entry: &Entry) -> String {
    let mut id = entry.queue_id.clone();
    match entry.queue_name.as_str() {
        ACTIVE => id.push('*'),
        HOLD => id.push('!'),
        _ => {}
    }
    if entry.forced_expire {
        id.push('#');
    }
    id
}

/// The arrival time as asctime() in local time, cut to the column
/// (`Sat Nov 21 10:00:00 ` in the short layout: the year falls off).
fn arrival_text(seconds: u64, width: usize, utc: bool) -> String {
    let time = SystemTime::UNIX_EPOCH + Duration::from_secs(seconds);
    let text = if utc {
        let utc: chrono::DateTime<chrono::Utc> = time.into();
        utc.format("%a %b %e %H:%M:%S %Y").to_string()
    } else {
        queue::asctime(time)
    };
    format!("{:>width$.width$}", text)
}

// --- postqueue -j ----------------------------------------------------------

/// `, ` before every member or element but the first.
fn separator<W: io::Write + ?Sized>(w: &mut W, first: bool) -> io::Result<()> {
    match first {
        true => Ok(()),
        false => w.write_all(b", "),
    }
}

/// JSON with Postfix's spacing: `", "` between members, `": "` after
/// names, everything on one line.
struct PostfixJson;

impl serde_json::ser::Formatter for PostfixJson {
    fn begin_array_value<W: io::Write + ?Sized>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        separator(w, first)
    }

    fn begin_object_key<W: io::Write + ?Sized>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        separator(w, first)
    }

    fn begin_object_value<W: io::Write + ?Sized>(&mut self, w: &mut W) -> io::Result<()> {
        w.write_all(b": ")
    }
}

/// One entry as one JSON line, newline included.
pub fn json_line(entry: &Entry) -> String {
    let mut bytes = Vec::with_capacity(256);
    let mut serializer = serde_json::Serializer::with_formatter(&mut bytes, PostfixJson);
    // Strings and numbers only: serializing this into memory cannot fail.
    if entry.serialize(&mut serializer).is_err() {
        return String::new();
    }
    bytes.push(b'\n');
    String::from_utf8(bytes).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::{QueueSettings, Recipient};
    use std::os::unix::fs::PermissionsExt;

    fn sample_entries() -> Vec<Entry> {
        vec![
            Entry {
                queue_name: "active".into(),
                queue_id: "4F9D1C2A3B".into(),
                arrival_time: 1_700_000_000,
                message_size: 1500,
                forced_expire: true,
                sender: "alice@example.com".into(),
                recipients: vec![Pending {
                    address: "\"john doe\"@example.net".into(),
                    delay_reason: None,
                }],
            },
            Entry {
                queue_name: "deferred".into(),
                queue_id: "B822221522".into(),
                arrival_time: 1_700_003_600,
                message_size: 2_000_000,
                forced_expire: false,
                sender: "MAILER-DAEMON".into(),
                recipients: vec![
                    Pending {
                        address: "bob@example.com".into(),
                        delay_reason: Some(
                            "connect to mx.example.com[192.0.2.1]:25: Connection refused".into(),
                        ),
                    },
                    Pending {
                        address: "carol@example.org".into(),
                        delay_reason: None,
                    },
                ],
            },
            Entry {
                queue_name: "hold".into(),
                queue_id: "C11111".into(),
                arrival_time: 1_700_007_200,
                message_size: 12,
                forced_expire: false,
                sender: "dave@example.com".into(),
                recipients: vec![],
            },
        ]
    }

    fn utc_listing(long_ids: bool) -> TextListing {
        TextListing {
            utc: true,
            ..TextListing::new(long_ids)
        }
    }

    const GOLDEN_SHORT: &str = "\
-Queue ID-  --Size-- ----Arrival Time---- -Sender/Recipient-------
4F9D1C2A3B*#    1500 Tue Nov 14 22:13:20  alice@example.com
                                         \"john doe\"@example.net

B822221522  2000000 Tue Nov 14 23:13:20  MAILER-DAEMON
                 (connect to mx.example.com[192.0.2.1]:25: Connection refused)
                                         bob@example.com
                                                          (reason unavailable)
                                         carol@example.org

C11111!          12 Wed Nov 15 00:13:20  dave@example.com

-- 1954 Kbytes in 3 Requests.
";

    #[test]
    fn text_listing_matches_postfix_layout() {
        let mut listing = utc_listing(false);
        let mut text = String::new();
        for entry in sample_entries() {
            text.push_str(&listing.entry(&entry));
        }
        text.push_str(&listing.finish());
        assert_eq!(text, GOLDEN_SHORT);
    }

    #[test]
    fn long_id_layout_and_single_request_and_empty_queue() {
        let mut entry = sample_entries().remove(2);
        entry.queue_id = "4XcYL30gmRz1MLnFq".into();
        entry.queue_name = "incoming".into();
        let mut listing = utc_listing(true);
        let text = listing.entry(&entry) + &listing.finish();
        let golden = "\
----Queue ID----- --Size-- ---Arrival Time---- --Sender/Recipient------
4XcYL30gmRz1MLnFq       12 Wed Nov 15 00:13:20 dave@example.com

-- 0 Kbytes in 1 Request.
";
        assert_eq!(text, golden);
        assert_eq!(TextListing::new(false).finish(), "Mail queue is empty\n");
    }

    #[test]
    fn a_long_reason_gets_no_padding() {
        let reason = "x".repeat(90);
        let entry = Entry {
            queue_id: "ABC".into(),
            recipients: vec![Pending {
                address: "a@b".into(),
                delay_reason: Some(reason.clone()),
            }],
            ..Entry::default()
        };
        let text = TextListing::new(false).entry(&entry);
        assert!(text.contains(&format!("\n({reason})\n")), "{text}");
    }

    #[test]
    fn json_lines_have_postfix_fields_and_spacing() {
        let entries = sample_entries();
        let line = json_line(&entries[1]);
        assert_eq!(
            line,
            "{\"queue_name\": \"deferred\", \"queue_id\": \"B822221522\", \
\"arrival_time\": 1700003600, \"message_size\": 2000000, \"forced_expire\": false, \
\"sender\": \"MAILER-DAEMON\", \"recipients\": [{\"address\": \"bob@example.com\", \
\"delay_reason\": \"connect to mx.example.com[192.0.2.1]:25: Connection refused\"}, \
{\"address\": \"carol@example.org\"}]}\n"
        );
        let line = json_line(&entries[0]);
        assert!(line.contains("\"forced_expire\": true"));
        assert!(line.contains("[{\"address\": \"\\\"john doe\\\"@example.net\"}]"));
        assert!(json_line(&entries[2]).ends_with("\"recipients\": []}\n"));
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["queue_id"], "4F9D1C2A3B");
    }

    #[test]
    fn entries_survive_the_wire() {
        for entry in sample_entries() {
            let reply = Reply::Entry(entry);
            let frame = reply.to_message().encode().unwrap();
            let mut decoder = crate::ipc::Decoder::new();
            decoder.push(&frame);
            let back = decoder.next_message().unwrap().unwrap();
            assert_eq!(Reply::from_message(&back).unwrap(), reply);
        }
        let end = Reply::End.to_message();
        assert_eq!(Reply::from_message(&end).unwrap(), Reply::End);
        assert!(is_greeting(&greeting()));
        assert!(!is_greeting(&end));
        let bad = Message::new().with("queue_name", "active");
        assert!(Reply::from_message(&bad).is_err());
        let orphan = Reply::Entry(sample_entries().remove(2))
            .to_message()
            .with("delay_reason", "x");
        assert!(Reply::from_message(&orphan).is_err());
    }

    #[test]
    fn addresses_are_quoted_and_made_printable() {
        assert_eq!(quote_local_part("bob@example.com"), "bob@example.com");
        assert_eq!(quote_local_part("a.b.c@x"), "a.b.c@x");
        assert_eq!(quote_local_part("john doe@x"), "\"john doe\"@x");
        assert_eq!(quote_local_part("a..b@x"), "\"a..b\"@x");
        assert_eq!(quote_local_part(".a@x"), "\".a\"@x");
        assert_eq!(quote_local_part("q\"t\\@x"), "\"q\\\"t\\\\\"@x");
        assert_eq!(quote_local_part("a@b@x"), "\"a@b\"@x");
        assert_eq!(quote_local_part("ü@example.com"), "ü@example.com");
        assert_eq!(quote_local_part("postmaster"), "postmaster");
        assert_eq!(display_address("", "MAILER-DAEMON"), "MAILER-DAEMON");
        assert_eq!(display_address("a\u{7}b@x", "M"), "\"a?b\"@x");
    }

    fn write_message(queue: &Queue, sender: &str, recipients: &[&str]) -> QueueId {
        for name in [INCOMING, ACTIVE, HOLD] {
            std::fs::create_dir_all(queue.directory().join(name)).unwrap();
        }
        let mut w = queue.create(INCOMING).unwrap();
        w.set_arrival_time(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000))
            .unwrap();
        w.sender(sender).unwrap();
        for rcpt in recipients {
            w.recipient(&Recipient::new(rcpt)).unwrap();
        }
        w.header(b"Subject: secret\n").unwrap();
        w.body(b"\nthe body\n").unwrap();
        w.commit().unwrap().id
    }

    fn collect(queue: &Queue) -> (Vec<Entry>, Vec<String>) {
        let (mut entries, mut skipped) = (Vec::new(), Vec::new());
        scan(queue, "MAILER-DAEMON", &mut |found| {
            match found {
                Found::Entry(e) => entries.push(e),
                Found::Skipped(s) => skipped.push(s.to_string()),
            }
            true
        })
        .unwrap();
        (entries, skipped)
    }

    #[test]
    fn scan_lists_queues_in_postfix_order_with_reasons() {
        let dir = crate::test_support::temp_dir("showq-scan");
        let queue = Queue::new(QueueSettings::new(&dir)).unwrap();
        let held = write_message(&queue, "", &["h@example.com"]);
        queue.rename(&held, INCOMING, HOLD).unwrap();
        let deferred = write_message(&queue, "a@example.com", &["b@example.com", "c@example.com"]);
        queue.rename(&deferred, INCOMING, DEFERRED).unwrap();
        let offset_of_c = queue
            .open(DEFERRED, &deferred)
            .unwrap()
            .envelope()
            .recipients[1]
            .offset;
        let log = defer_log::DeferLog {
            recipients: vec![defer_log::DeferredRecipient {
                recipient: "c@example.com".into(),
                offset: offset_of_c,
                reason: "mail transport unavailable".into(),
                ..Default::default()
            }],
            delay_warned: false,
        };
        defer_log::write(&queue, &deferred, &log).unwrap();
        let new = write_message(&queue, "n@example.com", &["john doe@example.com"]);
        let active = write_message(&queue, "x@example.com", &["y@example.com"]);
        let path = queue.rename(&active, INCOMING, ACTIVE).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o710)).unwrap();

        let (entries, skipped) = collect(&queue);
        assert!(skipped.is_empty(), "{skipped:?}");
        let order: Vec<(&str, &str)> = entries
            .iter()
            .map(|e| (e.queue_name.as_str(), e.queue_id.as_str()))
            .collect();
        assert_eq!(
            order,
            [
                (ACTIVE, active.as_str()),
                (INCOMING, new.as_str()),
                (DEFERRED, deferred.as_str()),
                (HOLD, held.as_str())
            ]
        );
        assert!(entries[0].forced_expire);
        assert_eq!(entries[1].recipients[0].address, "\"john doe\"@example.com");
        assert_eq!(entries[1].arrival_time, 1_700_000_000);
        assert_eq!(entries[1].message_size, 26);
        // The explained recipient first, then the others.
        let rcpts = &entries[2].recipients;
        assert_eq!(rcpts[0].address, "c@example.com");
        assert_eq!(
            rcpts[0].delay_reason.as_deref(),
            Some("mail transport unavailable")
        );
        assert_eq!(rcpts[1].address, "b@example.com");
        assert_eq!(rcpts[1].delay_reason, None);
        assert_eq!(entries[3].sender, "MAILER-DAEMON");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn damaged_and_unready_files_are_skipped_and_left_alone() {
        let dir = crate::test_support::temp_dir("showq-damaged");
        let queue = Queue::new(QueueSettings::new(&dir)).unwrap();
        let good = write_message(&queue, "a@example.com", &["b@example.com"]);
        std::fs::create_dir_all(dir.join(ACTIVE)).unwrap();
        let damaged = dir.join(ACTIVE).join("ABCDEF12345");
        std::fs::write(&damaged, b"garbage").unwrap();
        std::fs::set_permissions(&damaged, std::fs::Permissions::from_mode(0o700)).unwrap();
        let unready = dir.join(INCOMING).join("ABCDEF12346");
        std::fs::write(&unready, b"half").unwrap();
        std::fs::set_permissions(&unready, std::fs::Permissions::from_mode(0o600)).unwrap();

        let (entries, skipped) = collect(&queue);
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].queue_id, good.as_str());
        assert_eq!(skipped.len(), 1);
        assert!(
            skipped[0].starts_with("active ABCDEF12345: not listed: "),
            "{skipped:?}"
        );
        assert_eq!(std::fs::read(&damaged).unwrap(), b"garbage");
        assert!(unready.exists());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_visitor_can_stop_the_scan() {
        let dir = crate::test_support::temp_dir("showq-stop");
        let queue = Queue::new(QueueSettings::new(&dir)).unwrap();
        write_message(&queue, "a@example.com", &["b@example.com"]);
        write_message(&queue, "a@example.com", &["b@example.com"]);
        let mut seen = 0;
        scan(&queue, "M", &mut |_| {
            seen += 1;
            false
        })
        .unwrap();
        assert_eq!(seen, 1);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
