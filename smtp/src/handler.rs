//! smtp as a libmail::agent handler: one request delivered with the
//! queue file side (lock, status lines, done marks) that every delivery
//! agent shares, and, while it waits for the next request, cached
//! sessions whose time is up closed.

use std::time::Duration;

use libmail::agent::{Delivery, Handler, Verdict};
use libmail::deliver::{DeliveryReply, DeliveryRequest, Status};
use libmail::msg;
use libmail::queue::QueueFile;

use crate::agent::{self, Agent, Message};
use crate::transaction::Envelope;

impl Handler for Agent {
    fn handle(&mut self, request: &DeliveryRequest) -> DeliveryReply {
        handle(self, request)
    }

    fn idle_after(&self) -> Option<Duration> {
        self.cache.next_expiry()
    }

    fn idle(&mut self) {
        self.cache.expire();
    }
}

/// Delivers one request, with the queue file locked throughout.
pub fn handle(agent: &mut Agent, request: &DeliveryRequest) -> DeliveryReply {
    let delivery = match Delivery::begin(&agent.queue, request, "none") {
        Ok(delivery) => delivery,
        Err(reply) => return reply,
    };
    let file = match delivery.queue_file() {
        Ok(file) => file,
        Err(reply) => return reply,
    };
    let message = match message(&file, request) {
        Ok(message) => message,
        Err(err) => {
            msg::warning(format!("{}: {err}", request.queue_id));
            let verdict = Verdict::new(Status::Deferred, "4.3.0", "queue file read error");
            let results = delivery.report_all(&verdict);
            return delivery.finish(results);
        }
    };
    let done = agent.deliver(request, &message);
    let results = request
        .recipients
        .iter()
        .zip(&done)
        .map(|(rcpt, done)| {
            let verdict = Verdict::new(done.status, &done.dsn, &done.reason);
            delivery.report_via(rcpt, &verdict, &done.relay, done.connected)
        })
        .collect();
    delivery.finish(results)
}

/// The message as the transaction sends it, from the queue file.
fn message(
    file: &QueueFile,
    request: &DeliveryRequest,
) -> Result<Message, libmail::queue::QueueError> {
    let content = file.content()?;
    let envelope = file.envelope();
    Ok(Message {
        envelope: Envelope {
            sender: request.sender.clone(),
            recipients: agent::rcpts(request),
            size: envelope.sizes.message_size,
            dsn_ret: request.dsn_ret,
            dsn_envid: request.dsn_envid.clone(),
            eightbit: envelope.attribute("encoding") == Some("8bit"),
            smtputf8: envelope.sizes.smtputf8 != 0,
        },
        utf8_headers: content.headers.iter().any(|h| !h.is_ascii()),
        content: content.text(),
    })
}
