//! One qmgr connection: delivery requests until qmgr hangs up. While
//! the agent waits for the next request, cached sessions whose time is
//! up are closed. The queue file side of a request (lock, status lines,
//! done marks) is libmail::agent's, as for every delivery agent.

use std::io;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use libmail::agent::{Delivery, Verdict, CLIENT_TIMEOUT};
use libmail::deliver::{read_request, send_reply, DeliveryReply, DeliveryRequest};
use libmail::ipc::{Decoder, IpcError};
use libmail::msg;
use libmail::queue::QueueFile;

use crate::agent::{self, Agent, Message};
use crate::transaction::Envelope;

pub fn serve_client(agent: &mut Agent, mut stream: UnixStream) {
    let mut decoder = Decoder::new();
    loop {
        let wait = agent.cache.next_expiry().unwrap_or(CLIENT_TIMEOUT);
        let _ = stream.set_read_timeout(Some(wait.max(Duration::from_millis(10))));
        let request = match read_request(&mut stream, &mut decoder) {
            Ok(Some(request)) => request,
            Ok(None) => return,
            Err(IpcError::Io(e)) if is_timeout(&e) && agent.cache.next_expiry().is_some() => {
                agent.cache.expire();
                continue;
            }
            Err(err) => return msg::warning(format!("delivery request: {err}")),
        };
        let reply = handle(agent, &request);
        if let Err(err) = send_reply(&mut stream, &reply) {
            return msg::warning(format!("{}: reply to qmgr: {err}", request.queue_id));
        }
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Delivers one request, with the queue file locked throughout.
pub fn handle(agent: &mut Agent, request: &DeliveryRequest) -> DeliveryReply {
    let delivery = match Delivery::begin(&agent.queue, request, "none") {
        Ok(delivery) => delivery,
        Err(reply) => return reply,
    };
    let message = match delivery.queue_file().and_then(|file| {
        message(&file, request).map_err(|err| {
            msg::warning(format!("{}: {err}", request.queue_id));
            let verdict = Verdict::new(
                libmail::deliver::Status::Deferred,
                "4.3.0",
                "queue file read error",
            );
            DeliveryReply {
                results: delivery.report_all(&verdict),
            }
        })
    }) {
        Ok(message) => message,
        Err(reply) => return reply,
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
