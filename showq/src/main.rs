#![forbid(unsafe_code)]
//! showq(8): lists the mail queue for postqueue(1) (`postqueue -p`,
//! `postqueue -j`, `mailq`). Each client gets the greeting, one entry
//! per queue file (envelope facts and defer reasons, never content),
//! then the end marker. It runs as mail_owner behind public/showq, which
//! any local user reaches through the set-gid postqueue, and takes no
//! input from the client.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use libmail::config::Config;
use libmail::ipc::{self, IpcError};
use libmail::queue::Queue;
use libmail::server::{Client, Server};
use libmail::showq::{self, Reply};

/// How long a client may take to read (a stalled client must not keep
/// the service from others).
const CLIENT_TIMEOUT: Duration = Duration::from_secs(3600);

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let server = Server::start("showq", &args).unwrap_or_else(|err| libmail::msg::fatal(err));
    let queue = Queue::from_config(&server.config).unwrap_or_else(|err| libmail::msg::fatal(err));
    server.serve(|config, client| {
        let Client::Unix(stream) = client else {
            libmail::msg::warning("showq: only UNIX stream clients are served");
            return;
        };
        if let Err(err) = answer(config, &queue, stream) {
            // A client that hung up early (`mailq | head`) is no news.
            if !is_hangup(&err) {
                libmail::msg::warning(format_args!("showq client: {err}"));
            }
        }
    });
}

/// Sends the whole listing to one client.
fn answer(config: &Config, queue: &Queue, mut stream: UnixStream) -> Result<(), IpcError> {
    stream.set_write_timeout(Some(CLIENT_TIMEOUT))?;
    let empty_address = config
        .string("empty_address_recipient")
        .unwrap_or_else(|_| "MAILER-DAEMON".to_string());
    ipc::send(&mut stream, &showq::greeting())?;
    let scanned = showq::list(queue, &empty_address, |entry| {
        ipc::send(&mut stream, &Reply::Entry(entry.clone()).to_message()).map(|()| true)
    })?;
    if let Err(err) = scanned {
        libmail::msg::warning(err);
    }
    ipc::send(&mut stream, &Reply::End.to_message())?;
    stream.flush()?;
    Ok(())
}

fn is_hangup(err: &IpcError) -> bool {
    matches!(err, IpcError::Io(io) if matches!(
        io.kind(),
        std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
    ))
}
