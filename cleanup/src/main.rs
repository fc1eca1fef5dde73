//! cleanup(8): the daemon that master runs behind public/cleanup. Each
//! client connection (smtpd, pickup) brings one message after another in
//! the protocol of libmail::cleanup; the message itself is handled by
//! the state machine in message.rs, and this file only adds the socket
//! I/O and the qmgr wakeup after a commit.

#![forbid(unsafe_code)]

mod addresses;
mod content;
mod envelope;
mod headers;
mod inspect;
mod message;
mod report;
mod settings;

use std::io::{Read, Write};
use std::time::Duration;

use libmail::cleanup::{Outcome, Request};
use libmail::config::Config;
use libmail::ipc::{self, Decoder, IpcError, Message as IpcMessage};
use libmail::msg;
use libmail::server::{Client, Server};
use libmail::trigger::{qmgr, wake_qmgr};

use message::{wakes_qmgr, Service, StreamError};

/// How long a client may keep cleanup waiting between requests
/// (Postfix's ipc_timeout).
const CLIENT_TIMEOUT: Duration = Duration::from_secs(3600);

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let server = Server::start("cleanup", &args).unwrap_or_else(|err| msg::fatal(err));
    let mut service = Service::from_config(&server.config).unwrap_or_else(|err| msg::fatal(err));
    server.serve(|config, client| match client {
        Client::Unix(stream) => {
            let _ = stream.set_read_timeout(Some(CLIENT_TIMEOUT));
            serve_client(&mut service, config, stream);
        }
        Client::Tcp(stream) => {
            let _ = stream.set_read_timeout(Some(CLIENT_TIMEOUT));
            serve_client(&mut service, config, stream);
        }
        Client::Trigger(_) => msg::warning("unexpected trigger request ignored"),
    });
}

/// Messages from one client until it hangs up. Anything that is not
/// the protocol ends the connection; a message not yet ended leaves no
/// queue file behind.
fn serve_client(service: &mut Service, config: &Config, mut stream: impl Read + Write) {
    let mut decoder = Decoder::new();
    loop {
        let flags = match next_request(&mut stream, &mut decoder) {
            Ok(None) => return,
            Ok(Some(Request::Open(flags))) => flags,
            Ok(Some(_)) => return msg::warning("protocol error: expected open request"),
            Err(err) => return msg::warning(format!("protocol error: {err}")),
        };
        let message = match service.open(flags) {
            Ok(message) => message,
            Err(err) => {
                msg::warning(&err);
                let refusal = IpcMessage::new()
                    .with("status", "fail")
                    .with("text", "queue file create error");
                if ipc::send(&mut stream, &refusal).is_err() {
                    return;
                }
                continue;
            }
        };
        let queue_id = message.queue_id().to_string();
        let opened = IpcMessage::new()
            .with("status", "ok")
            .with("queue_id", &queue_id);
        if let Err(err) = ipc::send(&mut stream, &opened) {
            return msg::warning(format!("{queue_id}: send reply: {err}"));
        }
        let outcome = match receive_message(message, &mut stream, &mut decoder) {
            Ok(Some(finished)) => {
                if wakes_qmgr(&finished) {
                    wake_qmgr(config, qmgr::SCAN_INCOMING);
                }
                finished.outcome
            }
            Ok(None) => return,
            Err(err) => return msg::warning(format!("{queue_id}: {err}")),
        };
        if let Err(err) = ipc::send(&mut stream, &outcome_message(&outcome, &queue_id)) {
            return msg::warning(format!("{queue_id}: send reply: {err}"));
        }
    }
}

/// Feeds requests to the message until End. `Ok(None)`: the client
/// hung up first (the message is dropped with its file).
fn receive_message(
    mut message: message::Message<'_>,
    stream: &mut impl Read,
    decoder: &mut Decoder,
) -> Result<Option<message::Finished>, ConnectionError> {
    loop {
        match next_request(stream, decoder)? {
            None => return Ok(None),
            Some(Request::End) => return Ok(Some(message.finish()?)),
            Some(request) => message.handle(request)?,
        }
    }
}

fn outcome_message(outcome: &Outcome, queue_id: &str) -> IpcMessage {
    outcome.to_message(queue_id)
}

#[derive(Debug, thiserror::Error)]
enum ConnectionError {
    #[error("protocol error: {0}")]
    Ipc(#[from] IpcError),
    #[error("protocol error: {0}")]
    Stream(#[from] StreamError),
}

/// The next request; `None` when the client hung up between requests.
fn next_request(
    stream: &mut impl Read,
    decoder: &mut Decoder,
) -> Result<Option<Request>, ConnectionError> {
    match ipc::receive(stream, decoder) {
        Ok(message) => Ok(Some(Request::from_message(&message)?)),
        Err(IpcError::Closed) => Ok(None),
        Err(err) => Err(err.into()),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::{UnixListener, UnixStream};
    use std::path::{Path, PathBuf};
    use std::thread;

    use libmail::cleanup::{CleanupClient, Flags, Outcome, Request};
    use libmail::config::Config;
    use libmail::ipc::{self, Decoder};
    use libmail::queue::{Queue, QueueSettings, Recipient, INCOMING};

    use super::{serve_client, Service};

    fn queue_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("cleanup-main-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join(INCOMING)).unwrap();
        dir
    }

    /// Serves `clients` connections on a socket in `dir`, in a thread.
    fn start(dir: &Path, clients: usize) -> (PathBuf, thread::JoinHandle<()>) {
        let socket = dir.join("cleanup.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        let dir = dir.to_path_buf();
        let handle = thread::spawn(move || {
            let text = format!(
                "myhostname = mail.example.com\nqueue_directory = {}\ninet_interfaces = loopback-only\n",
                dir.display()
            );
            let config = Config::from_text(&dir, &text).unwrap();
            let queue = Queue::new(QueueSettings::new(&dir)).unwrap();
            let mut service = Service::with_queue(&config, queue).unwrap();
            for _ in 0..clients {
                let (stream, _) = listener.accept().unwrap();
                serve_client(&mut service, &config, stream);
            }
        });
        (socket, handle)
    }

    fn incoming(dir: &Path) -> usize {
        let queue = Queue::new(QueueSettings::new(dir)).unwrap();
        queue.scan(INCOMING).unwrap().len()
    }

    #[test]
    fn the_library_client_queues_a_message() {
        let dir = queue_dir("client");
        let (socket, server) = start(&dir, 1);
        let mut client = CleanupClient::connect(&socket, Flags::standard()).unwrap();
        assert!(!client.queue_id().is_empty());
        client.send(&Request::Sender("a@x.example".into())).unwrap();
        let rcpt = Recipient::new("b@y.example");
        client.send(&Request::Recipient(rcpt)).unwrap();
        client.content(b"Subject: hi\r\n\r\nbody\r\n").unwrap();
        assert_eq!(client.finish().unwrap(), Outcome::Queued);
        server.join().unwrap();
        assert_eq!(incoming(&dir), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn request(stream: &mut UnixStream, request: Request) {
        ipc::send(stream, &request.to_message()).unwrap();
    }

    #[test]
    fn several_messages_per_connection_and_a_hangup_mid_message() {
        let dir = queue_dir("raw");
        let (socket, server) = start(&dir, 2);
        let mut stream = UnixStream::connect(&socket).unwrap();
        let mut decoder = Decoder::new();
        for n in 0..2 {
            request(&mut stream, Request::Open(Flags::standard()));
            let opened = ipc::receive(&mut stream, &mut decoder).unwrap();
            assert_eq!(opened.text("status").unwrap(), "ok");
            request(&mut stream, Request::Sender(format!("a{n}@x.example")));
            request(
                &mut stream,
                Request::Recipient(Recipient::new("b@y.example")),
            );
            request(&mut stream, Request::Content(b"\nbody\n".to_vec()));
            request(&mut stream, Request::End);
            let done = ipc::receive(&mut stream, &mut decoder).unwrap();
            assert_eq!(Outcome::from_message(&done).unwrap(), Outcome::Queued);
        }
        drop(stream);
        // The second client goes away before End: no queue file.
        let mut stream = UnixStream::connect(&socket).unwrap();
        request(&mut stream, Request::Open(Flags::standard()));
        ipc::receive(&mut stream, &mut decoder).unwrap();
        request(&mut stream, Request::Sender("gone@x.example".into()));
        request(
            &mut stream,
            Request::Content(b"Subject: x\n\npartial".to_vec()),
        );
        drop(stream);
        server.join().unwrap();
        assert_eq!(incoming(&dir), 2);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
