//! Delivery status notifications (RFC 3464): the non-delivery, delay and
//! success notices qmgr sends about a message. `policy` decides who gets
//! which notice, `compose` writes it, and this module submits it through
//! cleanup as a new message and logs it.

mod compose;
mod policy;

use std::path::Path;
use std::time::SystemTime;

use crate::cleanup::{self, CleanupClient, Flags, Request};
use crate::config::Config;
use crate::log::delivery::notice_sent;
use crate::msg;
use crate::queue::{attr, Content, Envelope, QueueFile, Recipient};

pub use compose::{compose, diagnostic_code, original_recipient, remote_mta, returned, Report};
pub use policy::{plan, Plan, Planned, Return, Role, Settings};

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
    let settings = Settings::from_config(config)?;
    let envelope = file.envelope();
    let notices = match plan(
        kind,
        &envelope.sender,
        envelope.dsn_ret,
        outcomes,
        &settings,
    ) {
        Plan::Discard => {
            msg::info(crate::log::delivery::discarding_double_bounce(queue_id));
            return Ok(());
        }
        Plan::Notices(notices) => notices,
    };
    if notices.is_empty() {
        return Ok(());
    }
    let original = Original {
        queue_id,
        envelope,
        content: &file.content()?,
        settings: &settings,
    };
    let service = cleanup::service_path(config)?;
    for notice in &notices {
        match submit(&service, notice, &original) {
            Ok(new_id) => msg::info(notice_sent(queue_id, notice.log_as(), &new_id)),
            Err(err) if notice.is_critical() => return Err(err),
            // A postmaster copy is a courtesy: the sender's notice went
            // out, so the message must not be bounced a second time.
            Err(err) => msg::warning(format!("{queue_id}: postmaster copy not sent: {err}")),
        }
    }
    Ok(())
}

/// The message a notice is about.
struct Original<'a> {
    queue_id: &'a str,
    envelope: &'a Envelope,
    content: &'a Content,
    settings: &'a Settings,
}

/// What bounce asks of cleanup: address mapping (so the notice reaches
/// an aliased sender) but no header/body checks, which must not stop a
/// notice about mail they let through.
const FLAGS: Flags = Flags {
    filter: false,
    map: true,
    extract: false,
};

/// Submits one notice through cleanup and returns its queue ID.
fn submit(service: &Path, notice: &Planned, original: &Original) -> Result<String, BounceError> {
    let mut client = CleanupClient::connect(service, FLAGS).map_err(cleanup_error)?;
    let new_id = client.queue_id().to_string();
    let message = compose(&Report {
        kind: notice.kind,
        role: notice.role,
        queue_id: original.queue_id,
        new_id: &new_id,
        now: SystemTime::now(),
        to: &notice.to,
        envelope: original.envelope,
        outcomes: &notice.outcomes,
        content: original.content,
        returned: returned(
            notice.wants,
            original.content,
            original.settings.bounce_size_limit,
        ),
        settings: original.settings,
    });
    for request in requests(notice) {
        client.send(&request).map_err(cleanup_error)?;
    }
    client.content(&message).map_err(cleanup_error)?;
    match client.finish().map_err(cleanup_error)? {
        cleanup::Outcome::Queued => Ok(new_id),
        cleanup::Outcome::Rejected {
            code,
            enhanced,
            text,
        } => Err(BounceError::Cleanup(format!(
            "cleanup rejected the notice: {code} {enhanced} {text}"
        ))),
        cleanup::Outcome::Failed(text) => Err(BounceError::Cleanup(format!(
            "cleanup could not queue the notice: {text}"
        ))),
    }
}

/// The envelope requests, in the order smtpd and pickup send them.
fn requests(notice: &Planned) -> Vec<Request> {
    let attribute = |name: &str, value: &str| Request::Attribute(name.into(), value.into());
    vec![
        attribute(attr::REWRITE_CONTEXT, "local"),
        attribute(attr::LOG_MESSAGE_ORIGIN, "local"),
        Request::Sender(notice.from.clone()),
        Request::Recipient(Recipient::new(&notice.to)),
    ]
}

fn cleanup_error(err: cleanup::CleanupError) -> BounceError {
    BounceError::Cleanup(err.to_string())
}

#[cfg(test)]
mod tests;
