//! One master.cf service as master runs it: its listeners, its children
//! and which of them are available, its process limit, wakeup timer and
//! start-up throttle. A reload gives every service a new generation with
//! a new status channel; children of the old one finish their client and
//! go when they find their channel closed.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use libmail::config::master_cf::{MasterEntry, Wakeup};
use libmail::config::Config;
use libmail::server::{GENERATION_ENV, LISTEN_FD, STATUS_FD};
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};

use crate::listen::{self, Endpoint};

/// A child process of a service.
#[derive(Debug, Clone, Copy)]
pub struct ChildState {
    pub available: bool,
    /// Whether it ever took a client: a child that fails before that
    /// failed at start-up, which throttles the service.
    pub used: bool,
}

pub struct Service {
    pub key: String,
    pub entry: MasterEntry,
    pub program: PathBuf,
    pub endpoint: Endpoint,
    pub listeners: Vec<OwnedFd>,
    /// 0: no limit.
    pub max_proc: u32,
    pub wakeup: Option<Wakeup>,
    pub generation: u32,
    /// master's end of the status channel, and the end children inherit.
    pub status: OwnedFd,
    status_child: OwnedFd,
    pub children: HashMap<u32, ChildState>,
    pub throttled_until: Option<Instant>,
    pub limit_warned_at: Option<Instant>,
    pub next_wakeup: Option<Instant>,
}

/// Why a master.cf entry is not run.
pub enum Skipped {
    /// Postfix has this daemon and this build does not (yet): the entry
    /// is accepted and the service stays off.
    NotProvided(PathBuf),
    Broken(String),
}

impl Service {
    /// Sets up an entry: program, limits, endpoint (not yet opened).
    pub fn new(entry: &MasterEntry, config: &Config, generation: u32) -> Result<Service, Skipped> {
        let daemon_directory = config
            .string("daemon_directory")
            .map_err(|e| Skipped::Broken(e.to_string()))?;
        let program = program_path(&daemon_directory, &entry.command);
        if !program.exists() {
            return Err(Skipped::NotProvided(program));
        }
        let default_limit = config
            .int("default_process_limit")
            .map_err(|e| Skipped::Broken(e.to_string()))?;
        let endpoint = listen::endpoint(entry, config).map_err(Skipped::Broken)?;
        let (status, status_child) = status_channel().map_err(Skipped::Broken)?;
        Ok(Service {
            key: entry.key(),
            entry: entry.clone(),
            program,
            endpoint,
            listeners: Vec::new(),
            max_proc: entry.max_process().unwrap_or(default_limit.max(0) as u32),
            wakeup: entry.wakeup(),
            generation,
            status,
            status_child,
            children: HashMap::new(),
            throttled_until: None,
            limit_warned_at: None,
            // The first wakeup goes out at once, as Postfix's does: that
            // starts qmgr and pickup with master, so mail left in the
            // queue by a crash or a stop moves again without waiting.
            next_wakeup: entry.wakeup().map(|_| Instant::now()),
        })
    }

    pub fn available(&self) -> usize {
        self.children.values().filter(|c| c.available).count()
    }

    pub fn at_limit(&self) -> bool {
        self.max_proc > 0 && self.children.len() >= self.max_proc as usize
    }

    /// master watches the listeners only when no child is available to
    /// take a new client, there is room for another, and the service is
    /// not throttled.
    pub fn wants_listen(&self, now: Instant) -> bool {
        let throttled = self.throttled_until.is_some_and(|until| until > now);
        !self.listeners.is_empty() && self.available() == 0 && !self.at_limit() && !throttled
    }

    /// Starts one child with the listeners and status channel in place.
    pub fn spawn(&mut self, config_dir: Option<&Path>) -> std::io::Result<u32> {
        let mut command = Command::new(&self.program);
        std::os::unix::process::CommandExt::arg0(&mut command, &self.entry.command);
        command
            .args(["-n", &self.entry.service, "-t", self.entry.kind.as_str()])
            .args(["-s", &self.listeners.len().to_string()]);
        if self.entry.chroot() {
            command.arg("-c");
        }
        if self.entry.unprivileged() {
            command.arg("-u");
        }
        command.args(&self.entry.args);
        command.env(GENERATION_ENV, self.generation.to_string());
        if let Some(dir) = config_dir {
            command.env("MAIL_CONFIG", dir);
        }
        command.stdin(Stdio::null());
        let mut fds = vec![(self.status_child.as_raw_fd(), STATUS_FD)];
        for (i, listener) in self.listeners.iter().enumerate() {
            fds.push((listener.as_raw_fd(), LISTEN_FD + i as i32));
        }
        let child = libmail::sys::spawn_with_fds(&mut command, &fds)?;
        let pid = child.id();
        // Reaped through SIGCHLD and waitpid, not through this handle.
        drop(child);
        self.children.insert(
            pid,
            ChildState {
                available: true,
                used: false,
            },
        );
        Ok(pid)
    }

    /// Starts a new generation: a fresh status channel, so children of
    /// the old one go after their current client.
    pub fn renew(&mut self, generation: u32) -> Result<(), String> {
        let (status, status_child) = status_channel()?;
        self.status = status;
        self.status_child = status_child;
        self.generation = generation;
        self.children.clear();
        Ok(())
    }

    /// `"smtp" (25)`, `"127.0.0.1:2525" (127.0.0.1:2525)`, `"qmgr" (private/qmgr)`:
    /// the service and where it listens, as Postfix's warnings name them.
    pub fn describe(&self) -> String {
        let name = &self.entry.service;
        let place = match (&self.endpoint, self.entry.inet_address()) {
            (Endpoint::Inet(_), Some(address)) => {
                // /etc/services only: the name as the listener was given it.
                let port = libmail::service_port::tcp_port(&address.port, "")
                    .map(|p| p.to_string())
                    .unwrap_or(address.port);
                match address.host {
                    Some(host) => format!("{host}:{port}"),
                    None => port,
                }
            }
            _ => {
                let dir = if self.entry.private() {
                    "private"
                } else {
                    "public"
                };
                format!("{dir}/{name}")
            }
        };
        format!("\"{name}\" ({place})")
    }
}

/// `command` in daemon_directory, unless it is a path itself.
pub fn program_path(daemon_directory: &str, command: &str) -> PathBuf {
    if command.starts_with('/') {
        PathBuf::from(command)
    } else {
        Path::new(daemon_directory).join(command)
    }
}

/// A SOCK_SEQPACKET pair: each status record arrives whole, and closing
/// master's end shows as hang-up to every child holding the other.
fn status_channel() -> Result<(OwnedFd, OwnedFd), String> {
    socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
    )
    .map_err(|e| format!("socketpair: {}", e.desc()))
}
