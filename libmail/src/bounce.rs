//! Delivery status notifications (RFC 3464): the non-delivery, delay and
//! success notices qmgr sends about a message, composed here and
//! submitted through cleanup as new messages from MAILER-DAEMON.

use crate::config::Config;
use crate::queue::{QueueFile, Recipient};

/// The DSN action of one recipient (RFC 3464 section 2.3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Failed,
    Delayed,
    Delivered,
    Relayed,
    Expanded,
}

/// What happened to one recipient, for the notice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub recipient: Recipient,
    pub action: Action,
    /// Enhanced status code, `5.1.1`.
    pub dsn: String,
    /// `unknown user: "x"`, `connect to ...: Connection refused`.
    pub reason: String,
    /// `local`, `none`, `mx.example.com[192.0.2.1]:25`.
    pub relay: String,
}

/// Which notice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoticeKind {
    NonDelivery,
    Delay,
    Success,
}

#[derive(Debug, thiserror::Error)]
pub enum BounceError {
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("{0}")]
    Queue(#[from] crate::queue::QueueError),
    #[error("{0}")]
    Cleanup(String),
}

/// Sends the notice of `kind` about the message in `file` (queue ID
/// `queue_id`) for `outcomes`, and logs `ID: sender non-delivery
/// notification: NEWID` (or its sibling). Ok also when policy says no
/// notice is due; an error means nothing was sent and the caller must
/// keep the message to try again.
pub fn send_notice(
    config: &Config,
    kind: NoticeKind,
    queue_id: &str,
    file: &QueueFile,
    outcomes: &[Outcome],
) -> Result<(), BounceError> {
    let _ = (config, kind, queue_id, file, outcomes);
    Err(BounceError::Cleanup("bounce: not yet built".into()))
}
