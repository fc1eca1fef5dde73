//! The skeleton every daemon runs in (Postfix's single_server): master
//! starts the program with its status channel on descriptor 5 and its
//! listeners from descriptor 6 on, and the arguments `-n service -t type
//! -s count [-c] [-u] [-o name=value]...`. The skeleton loads main.cf with
//! the `-o` overrides, gives up root (chroot first when asked), then
//! serves one client at a time: it tells master when it is available and
//! when it has taken a client, and exits after max_use clients, after
//! max_idle seconds without one, or as soon as master goes away.

use std::io::{self, Read};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixDatagram, UnixListener, UnixStream};
use std::time::Duration;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{AddressFamily, SockaddrLike, SockaddrStorage};
use thiserror::Error;

use crate::config::master_cf::ServiceType;
use crate::config::Config;

/// Where master puts the status channel.
pub const STATUS_FD: RawFd = 5;
/// Where master puts the first listener; further ones follow.
pub const LISTEN_FD: RawFd = 6;
/// The environment variable with the service generation (a reload starts
/// a new one; master ignores status from older generations).
pub const GENERATION_ENV: &str = "MASTER_GENERATION";

/// What a child tells master on its status channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Available,
    Taken,
}

/// One status record: pid, generation and status, 12 bytes, written in
/// one send on a SOCK_SEQPACKET socket so that records never mix.
pub fn encode_status(pid: u32, generation: u32, status: Status) -> [u8; 12] {
    let mut out = [0u8; 12];
    out[0..4].copy_from_slice(&pid.to_le_bytes());
    out[4..8].copy_from_slice(&generation.to_le_bytes());
    let code: u32 = match status {
        Status::Available => 1,
        Status::Taken => 0,
    };
    out[8..12].copy_from_slice(&code.to_le_bytes());
    out
}

/// The inverse of `encode_status`; `None` for a record of the wrong size.
pub fn decode_status(record: &[u8]) -> Option<(u32, u32, Status)> {
    let word = |at: usize| -> Option<u32> {
        Some(u32::from_le_bytes(record.get(at..at + 4)?.try_into().ok()?))
    };
    if record.len() != 12 {
        return None;
    }
    let status = match word(8)? {
        1 => Status::Available,
        _ => Status::Taken,
    };
    Some((word(0)?, word(4)?, status))
}

#[derive(Debug, Error)]
pub enum ServerError {
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("this program is started by the master daemon: descriptor {0} is not open")]
    NotFromMaster(RawFd),
    #[error("{op}: {source}")]
    System { op: String, source: io::Error },
}

fn system(op: impl Into<String>) -> impl FnOnce(io::Error) -> ServerError {
    let op = op.into();
    move |source| ServerError::System { op, source }
}

/// The command line master gives a daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceArgs {
    pub service: String,
    pub kind: ServiceType,
    pub listeners: usize,
    pub chroot: bool,
    pub unprivileged: bool,
    pub verbose: bool,
    pub overrides: Vec<(String, String)>,
}

/// Parses `-n service -t type -s count [-c] [-u] [-v] [-o name=value]...`;
/// other words (the program's own arguments in master.cf) are ignored.
pub fn parse_args(args: &[String]) -> Result<ServiceArgs, ServerError> {
    let mut out = ServiceArgs {
        service: String::new(),
        kind: ServiceType::Unix,
        listeners: 1,
        chroot: false,
        unprivileged: false,
        verbose: false,
        overrides: Vec::new(),
    };
    let usage = |what: &str| ServerError::Usage(format!("bad or missing {what}"));
    let mut words = args.iter();
    while let Some(word) = words.next() {
        match word.as_str() {
            "-n" => out.service = words.next().ok_or_else(|| usage("-n service"))?.clone(),
            "-t" => {
                let text = words.next().ok_or_else(|| usage("-t type"))?;
                out.kind = ServiceType::parse(text).ok_or_else(|| usage("-t type"))?;
            }
            "-s" => {
                let text = words.next().ok_or_else(|| usage("-s count"))?;
                out.listeners = text.parse().map_err(|_| usage("-s count"))?;
            }
            "-c" => out.chroot = true,
            "-u" => out.unprivileged = true,
            "-v" => out.verbose = true,
            "-o" => {
                let pair = words.next().ok_or_else(|| usage("-o name=value"))?;
                let (name, value) = pair.split_once('=').ok_or_else(|| usage("-o name=value"))?;
                out.overrides
                    .push((name.trim().to_string(), value.trim().to_string()));
            }
            _ => {}
        }
    }
    if out.service.is_empty() {
        return Err(usage("-n service"));
    }
    Ok(out)
}

/// A client, as the listener kind delivers it.
pub enum Client {
    Tcp(TcpStream),
    Unix(UnixStream),
    /// What a fifo or unix-dgram service received (a wakeup, say).
    Trigger(Vec<u8>),
}

enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
    /// A `pass` service: each connection hands over one client socket.
    Pass(UnixListener),
    Fifo(std::fs::File),
    Datagram(UnixDatagram),
}

impl Listener {
    fn fd(&self) -> BorrowedFd<'_> {
        match self {
            Listener::Tcp(socket) => socket.as_fd(),
            Listener::Unix(socket) | Listener::Pass(socket) => socket.as_fd(),
            Listener::Fifo(file) => file.as_fd(),
            Listener::Datagram(socket) => socket.as_fd(),
        }
    }

    /// The next client, or `None` when another process took it first
    /// (the listener is shared by every child of the service and is
    /// non-blocking, so the losers of a race get EAGAIN, not a hang).
    fn accept(&mut self) -> io::Result<Option<Client>> {
        let result = match self {
            Listener::Tcp(socket) => socket.accept().and_then(|(stream, _)| {
                stream.set_nonblocking(false)?;
                Ok(Client::Tcp(stream))
            }),
            // Linux does not pass the listener's O_NONBLOCK on to the
            // accepted socket, so it is blocking as it is.
            Listener::Unix(socket) => socket.accept().map(|(stream, _)| Client::Unix(stream)),
            Listener::Pass(socket) => socket
                .accept()
                .and_then(|(stream, _)| receive_client(stream)),
            Listener::Fifo(file) => read_trigger(|buf| file.read(buf)),
            Listener::Datagram(socket) => read_trigger(|buf| socket.recv(buf)),
        };
        match result {
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => Ok(None),
            other => other.map(Some),
        }
    }
}

/// The client socket passed over `stream`; a sender that hangs up without
/// passing one is an error, not a client.
fn receive_client(stream: UnixStream) -> io::Result<Client> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let fd = crate::sys::receive_fd(&stream)?
        .ok_or_else(|| io::Error::other("pass connection without a client descriptor"))?;
    if is_unix_socket(&fd) {
        return Ok(Client::Unix(UnixStream::from(fd)));
    }
    Ok(Client::Tcp(TcpStream::from(fd)))
}

fn read_trigger(mut read: impl FnMut(&mut [u8]) -> io::Result<usize>) -> io::Result<Client> {
    let mut buf = vec![0u8; 1024];
    let n = read(&mut buf)?;
    buf.truncate(n);
    Ok(Client::Trigger(buf))
}

/// A running daemon: its configuration and what master gave it.
pub struct Server {
    pub args: ServiceArgs,
    pub config: Config,
    listeners: Vec<Listener>,
    status: OwnedFd,
    generation: u32,
    max_use: u64,
    max_idle: Duration,
}

impl Server {
    /// Takes over what master passed: arguments, main.cf with overrides,
    /// descriptors; then gives up privileges. `program` names the daemon
    /// in messages (`postfix/NAME[pid]`).
    pub fn start(program: &str, args: &[String]) -> Result<Server, ServerError> {
        let server = Server::start_privileged(program, args)?;
        server.drop_privileges()?;
        Ok(server)
    }

    /// `start` without giving up root: for local(8) and virtual(8),
    /// which switch to each recipient's uid/gid for the delivery itself
    /// (DESIGN.md §6).
    pub fn start_privileged(program: &str, args: &[String]) -> Result<Server, ServerError> {
        let args = parse_args(args)?;
        let mut config = Config::load(None)?;
        for (name, value) in &args.overrides {
            config.set_override(name, value);
        }
        let syslog_name = config.string("syslog_name")?;
        crate::msg::set_program(&format!("{syslog_name}/{program}"));
        crate::log::init(&config, program).map_err(|e| ServerError::Usage(e.to_string()))?;
        crate::log::set_stderr(crate::log::Stderr::IfTerminal);
        exit_with_master()?;
        let status = take_fd(STATUS_FD)?;
        let listeners = (0..args.listeners)
            .map(|i| take_listener(LISTEN_FD + i as RawFd, args.kind))
            .collect::<Result<Vec<_>, _>>()?;
        let generation = std::env::var(GENERATION_ENV)
            .ok()
            .and_then(|text| text.parse().ok())
            .unwrap_or(0);
        let max_use = config.int("max_use")?.max(0) as u64;
        let max_idle = Duration::from_secs(config.time("max_idle")?);
        let server = Server {
            args,
            config,
            listeners,
            status,
            generation,
            max_use,
            max_idle,
        };
        Ok(server)
    }

    /// Root gives way to mail_owner (after chroot into the queue directory
    /// when master.cf asks); anybody else is already unprivileged.
    fn drop_privileges(&self) -> Result<(), ServerError> {
        if !nix::unistd::geteuid().is_root() {
            return Ok(());
        }
        let owner = self.config.string("mail_owner")?;
        let user = nix::unistd::User::from_name(&owner)
            .map_err(|e| system(format!("getpwnam {owner}"))(e.into()))?
            .ok_or_else(|| ServerError::Usage(format!("unknown mail_owner user: {owner}")))?;
        if self.args.chroot {
            let queue = self.config.string("queue_directory")?;
            nix::unistd::chroot(queue.as_str())
                .map_err(|e| system(format!("chroot {queue}"))(e.into()))?;
            nix::unistd::chdir("/").map_err(|e| system("chdir /")(e.into()))?;
        }
        nix::unistd::setgroups(&[user.gid]).map_err(|e| system("setgroups")(e.into()))?;
        nix::unistd::setgid(user.gid).map_err(|e| system("setgid")(e.into()))?;
        nix::unistd::setuid(user.uid).map_err(|e| system("setuid")(e.into()))?;
        Ok(())
    }

    fn report(&self, status: Status) {
        let record = encode_status(std::process::id(), self.generation, status);
        // Master gone: the status poll notices it and the loop ends.
        let _ = nix::sys::socket::send(
            self.status.as_raw_fd(),
            &record,
            nix::sys::socket::MsgFlags::MSG_NOSIGNAL,
        );
    }

    /// Serves clients one at a time until max_use, max_idle or master
    /// going away; returns so that the program can exit 0.
    pub fn serve(mut self, mut handle: impl FnMut(&Config, Client)) {
        let mut served = 0u64;
        loop {
            self.report(Status::Available);
            let Some(index) = self.wait_for_client() else {
                return;
            };
            match self.listeners[index].accept() {
                Ok(None) => continue,
                Ok(Some(client)) => {
                    self.report(Status::Taken);
                    handle(&self.config, client);
                    served += 1;
                    if self.max_use > 0 && served >= self.max_use {
                        return;
                    }
                }
                Err(err) => crate::msg::warning(format!("accept: {err}")),
            }
        }
    }

    /// For a persistent daemon (qmgr): serves until master goes away,
    /// ignoring max_use and max_idle as Postfix does for its queue
    /// manager. The handler gets no configuration: such a daemon takes
    /// `config` out of the server before it hands the server to the
    /// thread that runs this loop.
    pub fn serve_triggers(mut self, mut handle: impl FnMut(Client)) {
        // Master hears of the first trigger only, which shows it the
        // process started well (a later death is then not a startup
        // failure to throttle). It starts no second process for a service
        // like this (process limit 1), and two status messages per
        // trigger would wake it twice for every message queued.
        self.report(Status::Available);
        let mut told = false;
        loop {
            let Some(index) = self.wait_without_timeout() else {
                return;
            };
            match self.listeners[index].accept() {
                Ok(None) => continue,
                Ok(Some(client)) => {
                    if !told {
                        self.report(Status::Taken);
                        self.report(Status::Available);
                        told = true;
                    }
                    handle(client);
                }
                Err(err) => crate::msg::warning(format!("accept: {err}")),
            }
        }
    }

    /// The listener with a client, or `None` when it is time to go:
    /// master gone, or max_idle passed without a client.
    fn wait_for_client(&self) -> Option<usize> {
        let millis = self.max_idle.as_millis().min(i32::MAX as u128) as i32;
        self.wait(PollTimeout::try_from(millis).unwrap_or(PollTimeout::MAX))
    }

    /// `wait_for_client` without max_idle.
    fn wait_without_timeout(&self) -> Option<usize> {
        self.wait(PollTimeout::NONE)
    }

    fn wait(&self, timeout: PollTimeout) -> Option<usize> {
        let mut fds: Vec<PollFd> = self
            .listeners
            .iter()
            .map(|l| PollFd::new(l.fd(), PollFlags::POLLIN))
            .collect();
        fds.push(PollFd::new(self.status.as_fd(), PollFlags::POLLIN));
        loop {
            match poll(&mut fds, timeout) {
                Ok(0) => return None,
                Ok(_) => break,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => return None,
            }
        }
        let master_gone = fds
            .last()
            .and_then(|fd| fd.revents())
            .is_some_and(|r| !r.is_empty());
        if master_gone {
            return None;
        }
        fds.iter()
            .position(|fd| fd.revents().is_some_and(|r| r.contains(PollFlags::POLLIN)))
    }
}

/// A child never outlives master: the kernel sends SIGTERM when master
/// dies, and a master that died before this call is noticed at once.
fn exit_with_master() -> Result<(), ServerError> {
    let parent = nix::unistd::getppid();
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM)
        .map_err(|e| system("prctl PR_SET_PDEATHSIG")(e.into()))?;
    if parent.as_raw() == 1 || nix::unistd::getppid() != parent {
        std::process::exit(0);
    }
    Ok(())
}

fn take_fd(fd: RawFd) -> Result<OwnedFd, ServerError> {
    if nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFD).is_err() {
        return Err(ServerError::NotFromMaster(fd));
    }
    let owned = crate::sys::own_fixed_fd(fd);
    nix::fcntl::fcntl(
        owned.as_raw_fd(),
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    )
    .map_err(|e| system("fcntl")(e.into()))?;
    Ok(owned)
}

fn take_listener(fd: RawFd, kind: ServiceType) -> Result<Listener, ServerError> {
    let owned = take_fd(fd)?;
    let nonblocking = |result: io::Result<()>| result.map_err(system("set listener non-blocking"));
    Ok(match kind {
        ServiceType::Fifo => Listener::Fifo(std::fs::File::from(owned)),
        ServiceType::UnixDgram => {
            let socket = UnixDatagram::from(owned);
            nonblocking(socket.set_nonblocking(true))?;
            Listener::Datagram(socket)
        }
        ServiceType::Pass => {
            let socket = UnixListener::from(owned);
            nonblocking(socket.set_nonblocking(true))?;
            Listener::Pass(socket)
        }
        _ if is_unix_socket(&owned) => {
            let socket = UnixListener::from(owned);
            nonblocking(socket.set_nonblocking(true))?;
            Listener::Unix(socket)
        }
        _ => {
            let socket = TcpListener::from(owned);
            nonblocking(socket.set_nonblocking(true))?;
            Listener::Tcp(socket)
        }
    })
}

fn is_unix_socket(fd: &OwnedFd) -> bool {
    nix::sys::socket::getsockname::<SockaddrStorage>(fd.as_raw_fd())
        .ok()
        .and_then(|address| address.family())
        .is_some_and(|family| family == AddressFamily::Unix)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn status_records_round_trip() {
        let record = encode_status(1234, 7, Status::Taken);
        assert_eq!(decode_status(&record), Some((1234, 7, Status::Taken)));
        assert_eq!(decode_status(&record[..8]), None);
    }

    #[test]
    fn master_arguments() {
        let args = parse_args(&words(&[
            "-n",
            "smtp",
            "-t",
            "inet",
            "-s",
            "2",
            "-u",
            "-o",
            "syslog_name=postfix/x",
            "extra",
        ]))
        .unwrap();
        assert_eq!(args.service, "smtp");
        assert_eq!(args.kind, ServiceType::Inet);
        assert_eq!(args.listeners, 2);
        assert!(args.unprivileged && !args.chroot);
        assert_eq!(
            args.overrides,
            [("syslog_name".to_string(), "postfix/x".to_string())]
        );
        assert!(parse_args(&words(&["-t", "inet"])).is_err());
        assert!(parse_args(&words(&["-n", "x", "-t", "bogus"])).is_err());
    }

    #[test]
    fn started_by_hand_is_refused() {
        assert!(matches!(take_fd(987), Err(ServerError::NotFromMaster(987))));
    }
}
