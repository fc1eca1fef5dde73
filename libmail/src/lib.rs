#![deny(unsafe_code)]
//! What every postfix-rs program shares. Each module is named for what it
//! is; a program crate holds only what is specific to that program.
//! `unsafe` is denied everywhere except `sys` (descriptors at fixed
//! numbers for children, SCM_RIGHTS, setsid), which allows it explicitly.

pub mod agent;
pub mod atomic_file;
pub mod bounce;
pub mod cleanup;
pub mod config;
pub mod deliver;
pub mod dns;
pub mod error;
pub mod features;
pub mod flush;
pub mod header_checks;
pub mod ipc;
pub mod log;
pub mod mail_date;
pub mod mailbox;
pub mod maildrop;
pub mod match_list;
pub mod msg;
pub mod pid_file;
pub mod pipe_command;
pub mod queue;
pub mod queue_layout;
pub mod resolve;
pub mod restrict;
pub mod rewrite;
pub mod server;
pub mod service_port;
pub mod showq;
pub mod sys;
pub mod tables;
#[cfg(test)]
mod test_support;
pub mod trigger;
