//! The mail queue: queue IDs, the queue directory tree with its hashed
//! subdirectories, and the queue file (DESIGN.md §4), written by cleanup
//! and postdrop, read by qmgr, the delivery agents, pickup and postcat.
//!
//! Writing a message:
//!
//! ```no_run
//! # fn main() -> Result<(), libmail::queue::QueueError> {
//! use libmail::queue::{Queue, QueueSettings, Recipient, INCOMING};
//! let queue = Queue::new(QueueSettings::new("/var/spool/postfix"))?;
//! let mut file = queue.create(INCOMING)?;       // the ID is known now
//! println!("{}: client=localhost[127.0.0.1]", file.id());
//! file.sender("alice@example.com")?;
//! file.recipient(&Recipient::new("bob@example.com"))?;
//! file.header(b"Subject: hello\n")?;
//! file.body(b"\nHi Bob.\n")?;
//! let done = file.commit()?;                    // on disk: say 250 now
//! println!("250 2.0.0 Ok: queued as {}", done.id);
//! # Ok(()) }
//! ```
//!
//! The durability rule: until `commit` returns, the file has no name in
//! any queue (it is an unnamed O_TMPFILE inode, or, where the system
//! cannot do that, a temporary name that is not a queue ID), so qmgr never
//! sees an incomplete file and a writer that dies leaves nothing behind.
//! `commit` writes the end marker, fsyncs the file, links it into the
//! queue under its ID, and fsyncs the directory.

pub mod defer_log;
mod file;
mod id;
pub mod lock;
mod record;
mod tree;
mod writer;

use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use thiserror::Error;

use crate::config::ConfigError;
use crate::error::strerror;

pub use file::{
    mark_locked_recipients_done, mark_recipients_done, Content, ContentParts, Envelope, Part,
    QueueFile,
};
pub use id::{dir_forest, is_safe_name, QueueId};
pub use record::{
    kind, notify, record_name, ret, Damage, Data, Entry, Recipient, Record, Sizes, Walker,
};
pub use tree::{is_queue_name, Queue, QueueSettings};
pub use writer::{Committed, QueueWriter};

// Queue names (Postfix's mail_queue.h).
pub const MAILDROP: &str = "maildrop";
pub const HOLD: &str = "hold";
pub const INCOMING: &str = "incoming";
pub const ACTIVE: &str = "active";
pub const DEFERRED: &str = "deferred";
pub const TRACE: &str = "trace";
pub const DEFER: &str = "defer";
pub const BOUNCE: &str = "bounce";
pub const CORRUPT: &str = "corrupt";
pub const FLUSH: &str = "flush";
pub const SAVED: &str = "saved";

/// Where `postcat -q` and other lookups by ID search, in Postfix 3.7's
/// order.
pub const MESSAGE_QUEUES: [&str; 6] = [MAILDROP, INCOMING, ACTIVE, DEFERRED, HOLD, SAVED];

/// Well-known named attributes (Postfix's MAIL_ATTR_* names), written
/// with `QueueWriter::attribute` and shown by postcat as
/// `named_attribute: name=value`.
pub mod attr {
    pub const REWRITE_CONTEXT: &str = "rewrite_context";
    pub const CLIENT_NAME: &str = "client_name";
    pub const REVERSE_CLIENT_NAME: &str = "reverse_client_name";
    pub const CLIENT_ADDRESS: &str = "client_address";
    pub const CLIENT_PORT: &str = "client_port";
    pub const CLIENT_ADDRESS_TYPE: &str = "client_address_type";
    pub const SERVER_ADDRESS: &str = "server_address";
    pub const SERVER_PORT: &str = "server_port";
    pub const HELO_NAME: &str = "helo_name";
    pub const PROTOCOL_NAME: &str = "protocol_name";
    pub const LOG_CLIENT_NAME: &str = "log_client_name";
    pub const LOG_CLIENT_ADDRESS: &str = "log_client_address";
    pub const LOG_CLIENT_PORT: &str = "log_client_port";
    pub const LOG_MESSAGE_ORIGIN: &str = "log_message_origin";
    pub const LOG_HELO_NAME: &str = "log_helo_name";
    pub const LOG_PROTOCOL_NAME: &str = "log_protocol_name";
    /// The ID to log instead of the file's own (Postfix's log_ident).
    pub const LOG_IDENT: &str = "log_ident";
    pub const SASL_METHOD: &str = "sasl_method";
    pub const SASL_USERNAME: &str = "sasl_username";
    pub const SASL_SENDER: &str = "sasl_sender";
    /// BODY=7BIT or 8BITMIME: `7bit` or `8bit`.
    pub const ENCODING: &str = "encoding";
    pub const TRACE_FLAGS: &str = "trace_flags";
    // How postcat shows the DSN fields, which have records of their own.
    pub const DSN_ENVID: &str = "envelope_id";
    pub const DSN_RET: &str = "ret_flags";
    pub const DSN_NOTIFY: &str = "notify_flags";
    pub const DSN_ORCPT: &str = "dsn_orig_rcpt";
}

/// Everything that can go wrong with the queue.
#[derive(Debug, Error)]
pub enum QueueError {
    /// A system call failed: `open /var/spool/postfix/incoming/X: ...`.
    #[error("{op} {}: {}", path.display(), strerror(source))]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    /// The file is not a complete, well-formed queue file.
    #[error("{}: {damage}", path.display())]
    Damaged { path: PathBuf, damage: Damage },
    #[error("bad mail queue name: {0}")]
    BadQueueName(String),
    #[error("bad mail queue ID: {0}")]
    BadId(String),
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("invalid {name} parameter value: {value}")]
    Setting { name: &'static str, value: String },
    /// A writer was used out of order (a bug in the caller, reported
    /// rather than panicking).
    #[error("queue file {id}: {what}")]
    Usage { id: String, what: &'static str },
}

impl QueueError {
    pub fn io(op: &'static str, path: &Path, source: io::Error) -> QueueError {
        QueueError::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }

    pub fn damaged(path: &Path, damage: Damage) -> QueueError {
        QueueError::Damaged {
            path: path.to_path_buf(),
            damage,
        }
    }

    /// What is damaged, if that is the problem.
    pub fn damage(&self) -> Option<&Damage> {
        match self {
            QueueError::Damaged { damage, .. } => Some(damage),
            _ => None,
        }
    }

    /// The error's text, with the set-permissions hint when the queue
    /// could not be read for lack of permission.
    pub fn with_hint(&self) -> String {
        match self {
            QueueError::Io { source, .. } => {
                format!("{self}{}", crate::queue_layout::permission_hint(source))
            }
            _ => self.to_string(),
        }
    }

    /// Whether the file (or its directory) does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, QueueError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }
}

/// A time as C's asctime() writes it, in local time, without the
/// newline: `Sat Nov 21 10:00:00 2026` (postcat's format).
pub fn asctime(time: SystemTime) -> String {
    let local: chrono::DateTime<chrono::Local> = time.into();
    local.format("%a %b %e %H:%M:%S %Y").to_string()
}

#[cfg(test)]
mod tests;
