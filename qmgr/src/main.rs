#![forbid(unsafe_code)]
//! qmgr(8): the queue manager. master starts one; it moves new mail
//! from incoming/ into active/, resolves each recipient to a transport
//! and nexthop, hands delivery requests to the delivery agents within
//! per-destination concurrency limits, and records the results: removes
//! delivered mail, sends notices, moves the rest to deferred/ until its
//! next retry time, and returns mail that stays too long.
//!
//! Threads: the main thread owns the queue and the scheduler; one thread
//! waits for triggers on the qmgr socket; delivery threads (one per
//! delivery in flight, kept) talk to the agents. They meet on a channel.

mod daemon;
mod retry;
mod scheduler;
mod settings;
mod worker;

use std::io::Read;
use std::path::Path;
use std::sync::mpsc::{self, Sender};
use std::time::Duration;

use libmail::config::master_cf::MasterCf;
use libmail::config::Config;
use libmail::msg;
use libmail::server::{Client, Server};

use daemon::{Daemon, Event};

/// The most a trigger client may send, and how long it may take.
const TRIGGER_LIMIT: u64 = 1024;
const TRIGGER_TIMEOUT: Duration = Duration::from_secs(1);

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut server = Server::start("qmgr", &args).unwrap_or_else(|err| msg::fatal(err));
    // The scheduler thread keeps the configuration; the trigger loop,
    // which runs on a thread of its own, needs none.
    let empty = Config::from_text(Path::new("/"), "").unwrap_or_else(|err| msg::fatal(err));
    let mut config = std::mem::replace(&mut server.config, empty);
    let master = match MasterCf::load(config.config_dir()) {
        Ok(master) => {
            config.add_service_defaults(&master);
            Some(master)
        }
        Err(err) => {
            msg::warning(err);
            None
        }
    };
    let (events, receiver) = mpsc::channel();
    let mut daemon =
        Daemon::new(config, master, events.clone(), receiver).unwrap_or_else(|err| msg::fatal(err));
    let spawned = std::thread::Builder::new()
        .name("triggers".into())
        .spawn(move || {
            server.serve_triggers(|client| forward(client, &events));
            let _ = events.send(Event::MasterGone);
        });
    if let Err(err) = spawned {
        msg::fatal(format_args!("cannot start the trigger thread: {err}"));
    }
    daemon.run();
}

/// Passes a trigger's bytes to the scheduler thread.
fn forward(client: Client, events: &Sender<Event>) {
    let bytes = match client {
        Client::Trigger(bytes) => bytes,
        Client::Unix(stream) => {
            let _ = stream.set_read_timeout(Some(TRIGGER_TIMEOUT));
            let mut bytes = Vec::new();
            // A sender that stalls has still woken us up.
            let _ = stream.take(TRIGGER_LIMIT).read_to_end(&mut bytes);
            bytes
        }
        Client::Tcp(_) => return,
    };
    let _ = events.send(Event::Trigger(bytes));
}
