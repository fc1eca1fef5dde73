//! The deferred-reasons log of a message: `defer/ID` (hashed as
//! deferred/ is), rewritten by qmgr each time the message is deferred,
//! read by `postqueue -p` to show why each recipient is still waiting.
//!
//! The format is text, one `name=value` per line, records separated by a
//! blank line. A record with a `recipient=` line describes one deferred
//! recipient (`recipient`, `orig_recipient`, `offset`, `dsn`, `reason`);
//! other records hold facts about the message (`delay_warned=yes`).
//!
//! The file is a report, not part of the queue's durable state: it is
//! written without fsync, and a damaged or missing one only loses the
//! explanation, never mail.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;

use super::tree::{retry_with_dirs, FILE_MODE};
use super::{Queue, QueueError, QueueId, DEFER};

/// Why one recipient was deferred.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeferredRecipient {
    pub recipient: String,
    pub orig_recipient: String,
    /// The recipient record's offset in the queue file.
    pub offset: u64,
    /// The enhanced status code, `4.4.1`.
    pub dsn: String,
    pub reason: String,
}

/// The whole log of one message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeferLog {
    pub recipients: Vec<DeferredRecipient>,
    /// A delay warning was sent to the sender (delay_warning_time): send
    /// it only once.
    pub delay_warned: bool,
}

impl DeferLog {
    /// The log as text.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if self.delay_warned {
            out.push_str("delay_warned=yes\n\n");
        }
        for rcpt in &self.recipients {
            line(&mut out, "recipient", &rcpt.recipient);
            line(&mut out, "orig_recipient", &rcpt.orig_recipient);
            line(&mut out, "offset", &rcpt.offset.to_string());
            line(&mut out, "dsn", &rcpt.dsn);
            line(&mut out, "reason", &rcpt.reason);
            out.push('\n');
        }
        out
    }

    /// Reads the text back. Lines that do not parse are skipped: the log
    /// only explains, so a damaged one shows what it can.
    pub fn decode(text: &str) -> DeferLog {
        let mut log = DeferLog::default();
        for record in text.split("\n\n") {
            let mut rcpt: Option<DeferredRecipient> = None;
            for (name, value) in record.lines().filter_map(|l| l.split_once('=')) {
                match (name, rcpt.as_mut()) {
                    ("delay_warned", _) => log.delay_warned = value == "yes",
                    ("recipient", _) => {
                        log.recipients.extend(rcpt.take());
                        rcpt = Some(DeferredRecipient {
                            recipient: value.to_string(),
                            ..DeferredRecipient::default()
                        });
                    }
                    ("orig_recipient", Some(r)) => r.orig_recipient = value.to_string(),
                    ("offset", Some(r)) => r.offset = value.parse().unwrap_or(0),
                    ("dsn", Some(r)) => r.dsn = value.to_string(),
                    ("reason", Some(r)) => r.reason = value.to_string(),
                    _ => {}
                }
            }
            log.recipients.extend(rcpt);
        }
        log
    }
}

/// `name=value\n`, with line breaks in the value made spaces so that a
/// reason from a remote server cannot forge records.
fn line(out: &mut String, name: &str, value: &str) {
    out.push_str(name);
    out.push('=');
    out.extend(
        value
            .chars()
            .map(|c| if c == '\n' || c == '\r' { ' ' } else { c }),
    );
    out.push('\n');
}

/// Replaces the log of message `id`, creating hashed subdirectories as
/// needed.
pub fn write(queue: &Queue, id: &QueueId, log: &DeferLog) -> Result<(), QueueError> {
    let path = queue.path(DEFER, id);
    let text = log.encode();
    let mut write_file = || -> io::Result<()> {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(FILE_MODE & 0o600)
            .open(&path)?;
        file.write_all(text.as_bytes())
    };
    retry_with_dirs(&path, &mut write_file)
        .map(|_| ())
        .map_err(|e| QueueError::io("write", &path, e))
}

/// The log of message `id`; `None` when it has none.
pub fn read(queue: &Queue, id: &QueueId) -> Result<Option<DeferLog>, QueueError> {
    let path = queue.path(DEFER, id);
    match fs::read(&path) {
        Ok(bytes) => Ok(Some(DeferLog::decode(&String::from_utf8_lossy(&bytes)))),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(QueueError::io("read", &path, err)),
    }
}

/// Removes the log of message `id`; a missing log is no error.
pub fn remove(queue: &Queue, id: &QueueId) -> Result<(), QueueError> {
    let path = queue.path(DEFER, id);
    match fs::remove_file(&path) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => {
            Err(QueueError::io("remove", &path, err))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::QueueSettings;

    fn sample() -> DeferLog {
        DeferLog {
            recipients: vec![
                DeferredRecipient {
                    recipient: "bob@example.com".into(),
                    orig_recipient: "bob".into(),
                    offset: 321,
                    dsn: "4.4.1".into(),
                    reason: "connect to mx.example.com[192.0.2.1]:25: Connection refused".into(),
                },
                DeferredRecipient {
                    recipient: "carol@example.com".into(),
                    offset: 400,
                    dsn: "4.3.0".into(),
                    reason: "mail transport unavailable".into(),
                    ..DeferredRecipient::default()
                },
            ],
            delay_warned: true,
        }
    }

    #[test]
    fn text_round_trips() {
        let log = sample();
        let text = log.encode();
        assert!(text.starts_with("delay_warned=yes\n\nrecipient=bob@example.com\n"));
        assert!(text.contains("offset=321\ndsn=4.4.1\nreason=connect to"));
        assert_eq!(DeferLog::decode(&text), log);
        assert_eq!(DeferLog::decode(""), DeferLog::default());
    }

    #[test]
    fn line_breaks_in_reasons_cannot_forge_records() {
        let mut log = sample();
        log.recipients[0].reason = "bad\n\nrecipient=evil@example.com".into();
        let back = DeferLog::decode(&log.encode());
        assert_eq!(back.recipients.len(), 2);
        assert_eq!(back.recipients[0].reason, "bad  recipient=evil@example.com");
    }

    #[test]
    fn file_is_written_read_and_removed_in_the_hashed_defer_queue() {
        let dir = crate::test_support::temp_dir("defer-log");
        let queue = Queue::new(QueueSettings::new(&dir)).unwrap();
        let id = QueueId::parse("B822221522").unwrap();
        assert_eq!(read(&queue, &id).unwrap(), None);
        write(&queue, &id, &sample()).unwrap();
        assert!(dir.join("defer/B/B822221522").is_file());
        assert_eq!(read(&queue, &id).unwrap(), Some(sample()));
        let shorter = DeferLog {
            recipients: sample().recipients[1..].to_vec(),
            delay_warned: false,
        };
        write(&queue, &id, &shorter).unwrap();
        assert_eq!(read(&queue, &id).unwrap(), Some(shorter));
        remove(&queue, &id).unwrap();
        remove(&queue, &id).unwrap();
        assert_eq!(read(&queue, &id).unwrap(), None);
    }
}
