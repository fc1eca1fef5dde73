//! Forwarding to non-local addresses found in aliases and .forward
//! files: a new message through cleanup with the same content, a
//! Delivered-To: header in front, the original sender (or the list
//! owner), and the original recipient's DSN details.

use std::path::Path;

use libmail::cleanup::{CleanupClient, Flags, Outcome, Request};
use libmail::queue::Recipient;

use crate::agent::Message;

/// One address to forward to, and the sender to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    pub sender: String,
    pub address: String,
}

/// Submits one message to `batch`; the new queue ID, or why not.
pub fn submit(
    cleanup: &Path,
    message: &Message,
    rcpt: &Recipient,
    sender: &str,
    batch: &[&Forward],
    delivered_to: Option<&str>,
) -> Result<String, String> {
    let failed = |err: libmail::cleanup::CleanupError| format!("mail forwarding failed: {err}");
    let flags = Flags {
        filter: false,
        map: true,
        extract: false,
    };
    let mut client = CleanupClient::connect(cleanup, flags).map_err(failed)?;
    let request = message.request;
    client
        .send(&Request::Sender(sender.to_string()))
        .map_err(failed)?;
    if let Some(envid) = &request.dsn_envid {
        client
            .send(&Request::DsnEnvid(envid.clone()))
            .map_err(failed)?;
    }
    if request.dsn_ret != 0 {
        client
            .send(&Request::DsnRet(request.dsn_ret))
            .map_err(failed)?;
    }
    for f in batch {
        let orig = match rcpt.orig_recipient.is_empty() {
            true => rcpt.address.clone(),
            false => rcpt.orig_recipient.clone(),
        };
        client
            .send(&Request::Recipient(Recipient {
                address: f.address.clone(),
                orig_recipient: orig,
                dsn_orcpt: rcpt.dsn_orcpt.clone(),
                dsn_notify: rcpt.dsn_notify,
                ..Recipient::default()
            }))
            .map_err(failed)?;
    }
    if let Some(address) = delivered_to {
        client
            .content(format!("Delivered-To: {address}\n").as_bytes())
            .map_err(failed)?;
    }
    client.content(&message.content).map_err(failed)?;
    let queue_id = client.queue_id().to_string();
    match client.finish().map_err(failed)? {
        Outcome::Queued => Ok(queue_id),
        Outcome::Rejected { text, .. } | Outcome::Failed(text) => {
            Err(format!("mail forwarding failed: {text}"))
        }
    }
}
