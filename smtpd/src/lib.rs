//! smtpd: the Postfix SMTP server's protocol engine (RFC 5321, 1870, 2920,
//! 3030, 3461, 6152, 6531), as a state machine without I/O. The daemon
//! feeds it client bytes and performs the `Action`s it returns; restrictions
//! and the queue file come in through the `Policy` and `MessageSink` traits.
//!
//! ```text
//! let mut session = Session::new(settings);
//! perform(session.greeting(&mut policy));              // connect from ..., 220
//! loop {
//!     match read(conn) {
//!         Data(bytes) => perform(session.receive(&bytes, &mut policy, &mut sink)),
//!         Eof => perform(session.lost_connection(&mut sink)),
//!         Timeout => perform(session.timeout(&mut sink)),
//!     }
//!     if session.is_closed() { break }
//! }
//! ```

pub mod address;
pub mod cleanup_sink;
mod commands;
pub mod config;
mod content;
pub mod counters;
pub mod data;
pub mod params;
pub mod peer;
pub mod policy;
pub mod received;
pub mod reply;
pub mod restrictions;
mod session;
pub mod settings;

#[cfg(test)]
mod tests;

pub use address::{Address, AddressError, Domain, Path};
pub use policy::{
    Decision, Disposition, Envelope, Etrn, MessageSink, Policy, Refusal, SinkError, View,
};
pub use reply::{Action, Reply};
pub use session::Session;
pub use settings::{BareNewline, Client, Settings, Stamp};
