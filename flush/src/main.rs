#![forbid(unsafe_code)]
//! flush(8): the fast flush service. Keeps, per site in fast_flush_domains,
//! a log of the mail deferred for it (qmgr's `add`), and delivers that
//! mail on request: SMTP ETRN, `postqueue -s` and `sendmail -qR` send a
//! site, `postqueue -i` one message. master's periodic wakeup and the
//! refresh/purge requests keep the logs from going stale.
//!
//! Clients speak libmail::ipc (libmail::flush has the requests); master's
//! wakeup is a bare trigger byte, told apart by its first byte, which is
//! never the ipc version byte.

mod logfile;
mod service;
mod site;

use std::io::Read;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use libmail::flush::{FlushRequest, FlushStatus};
use libmail::ipc::{self, Decoder};
use libmail::msg;
use libmail::server::{Client, Server};

use service::{Flush, Refresh};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let server = Server::start("flush", &args).unwrap_or_else(|err| msg::fatal(err));
    let mut flush = Flush::from_config(&server.config).unwrap_or_else(|err| msg::fatal(err));
    let timeout = server
        .config
        .time("ipc_timeout")
        .map(|secs| Duration::from_secs(secs.max(1)))
        .unwrap_or_else(|err| msg::fatal(err));
    server.serve(|_config, client| match client {
        Client::Unix(stream) => serve(&mut flush, stream, timeout),
        Client::Trigger(_) => flush.refresh(Refresh::Stale),
        Client::Tcp(_) => msg::warning("unexpected TCP client; the flush service is local only"),
    });
}

/// One client: a request and its answer, or master's wakeup.
fn serve(flush: &mut Flush, mut stream: UnixStream, timeout: Duration) {
    let _ = stream.set_read_timeout(Some(timeout));
    let _ = stream.set_write_timeout(Some(timeout));
    let mut first = [0u8; 512];
    let n = match stream.read(&mut first) {
        Ok(0) => return,
        Ok(n) => n,
        Err(err) => return msg::warning(format_args!("read flush request: {err}")),
    };
    if first[0] != ipc::VERSION {
        // master's wakeup (`W`): nobody waits for an answer.
        return flush.refresh(Refresh::Stale);
    }
    let mut decoder = Decoder::new();
    decoder.push(&first[..n]);
    let request = ipc::receive(&mut stream, &mut decoder)
        .map_err(|err| err.to_string())
        .and_then(|m| FlushRequest::from_message(&m).map_err(|err| err.to_string()));
    let request = match request {
        Ok(request) => request,
        Err(err) => {
            msg::warning(format_args!("bad flush request: {err}"));
            return answer(&mut stream, FlushStatus::Bad);
        }
    };
    match request {
        FlushRequest::Add { site, queue_id } => {
            let status = flush.add(&site, &queue_id);
            answer(&mut stream, status)
        }
        FlushRequest::SendSite { site } => {
            let status = flush.send_site(&site);
            answer(&mut stream, status)
        }
        FlushRequest::SendFile { queue_id } => {
            let status = flush.send_file(&queue_id);
            answer(&mut stream, status)
        }
        // These complete after the answer: the client does not wait.
        FlushRequest::Refresh => {
            answer(&mut stream, FlushStatus::Ok);
            drop(stream);
            flush.refresh(Refresh::Stale)
        }
        FlushRequest::Purge => {
            answer(&mut stream, FlushStatus::Ok);
            drop(stream);
            flush.refresh(Refresh::All)
        }
    }
}

fn answer(stream: &mut UnixStream, status: FlushStatus) {
    if let Err(err) = ipc::send(stream, &status.to_message()) {
        msg::warning(format_args!("send flush reply: {err}"));
    }
}
