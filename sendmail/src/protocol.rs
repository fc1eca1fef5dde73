//! What postdrop says to sendmail on its standard output (Postfix's
//! `postdrop -r`): the queue ID once the maildrop file is open, then the
//! final status once it is committed or abandoned. Requests go the other
//! way as libmail::cleanup frames.

use libmail::ipc::{IpcError, Message};

/// The final status (Postfix's CLEANUP_STAT_* that postdrop can report).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DropStatus {
    /// The file is in maildrop/, on disk.
    Queued,
    /// The request stream was not acceptable.
    Bad(String),
    /// The file could not be written.
    Write(String),
    /// The message is larger than message_size_limit.
    Size,
}

impl DropStatus {
    pub fn to_message(&self) -> Message {
        let m = Message::new();
        match self {
            DropStatus::Queued => m.with("status", "ok"),
            DropStatus::Bad(text) => m.with("status", "bad").with("text", text),
            DropStatus::Write(text) => m.with("status", "write").with("text", text),
            DropStatus::Size => m.with("status", "size"),
        }
    }

    pub fn from_message(message: &Message) -> Result<DropStatus, IpcError> {
        let text = || message.text("text").unwrap_or_default().to_string();
        Ok(match message.text("status")? {
            "ok" => DropStatus::Queued,
            "bad" => DropStatus::Bad(text()),
            "write" => DropStatus::Write(text()),
            "size" => DropStatus::Size,
            other => {
                return Err(IpcError::BadValue {
                    name: "status".to_string(),
                    reason: other.to_string(),
                })
            }
        })
    }

    /// What sendmail says about it (Postfix's cleanup_strerror()).
    pub fn text(&self) -> &'static str {
        match self {
            DropStatus::Queued => "Success",
            DropStatus::Bad(_) => "internal protocol error",
            DropStatus::Write(_) => "queue file write error",
            DropStatus::Size => "message file too big",
        }
    }
}

/// postdrop's first answer: the maildrop file is open under this ID.
pub fn opened(queue_id: &str) -> Message {
    Message::new()
        .with("status", "ok")
        .with("queue_id", queue_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip() {
        for status in [
            DropStatus::Queued,
            DropStatus::Bad("two senders".into()),
            DropStatus::Write("disk full".into()),
            DropStatus::Size,
        ] {
            assert_eq!(
                DropStatus::from_message(&status.to_message()).unwrap(),
                status
            );
        }
        let bogus = Message::new().with("status", "maybe");
        assert!(DropStatus::from_message(&bogus).is_err());
        assert_eq!(opened("ABC").text("queue_id").unwrap(), "ABC");
    }
}
