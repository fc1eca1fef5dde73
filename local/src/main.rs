#![forbid(unsafe_code)]
//! local(8): the local delivery agent. Started by master as root, it
//! takes delivery requests from qmgr and delivers each recipient through
//! aliases, .forward files and the user's mailbox, switching to the
//! recipient's privileges for the delivery itself.

mod agent;
mod alias_list;
mod expand;
mod forward;
mod handler;
mod privileges;
mod settings;

use libmail::deliver::DeliveryRequest;
use libmail::msg;
use libmail::server::Server;

use crate::agent::Agent;
use crate::privileges::Privileges;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let server = Server::start_privileged("local", &args).unwrap_or_else(|err| msg::fatal(err));
    let privileges = Privileges::detect(false);
    if !privileges.is_privileged() {
        msg::info("unprivileged mode: delivering as the current user only");
    }
    let mut agent = Agent::new(&server.config, privileges).unwrap_or_else(|err| msg::fatal(err));
    libmail::agent::serve(server, &mut |request: &DeliveryRequest| {
        handler::handle(&mut agent, request)
    });
}
