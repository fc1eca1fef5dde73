#![forbid(unsafe_code)]
//! smtp(8): the SMTP client delivery agent. Started by master, it runs
//! as mail_owner and takes delivery requests from qmgr: it finds the
//! hosts of each request's nexthop (MX records, or the host named in
//! `[brackets]`), talks SMTP to them, with STARTTLS as
//! smtp_tls_security_level asks, and answers one result per recipient.

mod agent;
mod cache;
mod handler;
mod nexthop;
mod reply;
mod session;
mod settings;
mod tls;
mod transaction;

use libmail::dns::Dns;
use libmail::msg;
use libmail::queue::{Queue, QueueSettings};
use libmail::server::Server;

use crate::agent::Agent;
use crate::settings::Settings;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let server = Server::start("smtp", &args).unwrap_or_else(|err| msg::fatal(err));
    let mut agent = make_agent(&server.config).unwrap_or_else(|err| msg::fatal(err));
    libmail::agent::serve(server, &mut agent);
    agent.cache.close_all();
}

fn make_agent(config: &libmail::config::Config) -> Result<Agent, String> {
    let settings = Settings::from_config(config).map_err(|e| e.to_string())?;
    let dns = Dns::from_config(config).map_err(|e| e.to_string())?;
    let queue_directory = config
        .string("queue_directory")
        .map_err(|e| e.to_string())?;
    let queue = Queue::new(QueueSettings::new(std::path::PathBuf::from(
        queue_directory,
    )))
    .map_err(|e| e.to_string())?;
    Agent::new(queue, settings, Box::new(dns))
}
