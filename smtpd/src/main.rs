//! smtpd(8): the SMTP server daemon. master hands it one client at a
//! time; this file only adds the I/O around the protocol engine
//! (`Session`): reading with smtpd_timeout, writing each batch of
//! replies at once (pipelined commands cost one write), error sleeps,
//! and the log. Restrictions come from main.cf (`RestrictionPolicy`),
//! and messages go to the cleanup service (`CleanupSink`). One DNS
//! resolver serves the process: the restrictions and, when
//! dns_resolver_servers names servers, the client name lookups.

#![forbid(unsafe_code)]

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

use libmail::config::{Config, ConfigError};
use libmail::dns::{Dns, DnsError, Lookup, MxRecord};
use libmail::msg;
use libmail::restrict::Restrictions;
use libmail::server::{Client, Server};

use smtpd::cleanup_sink::{CleanupSink, LocalHeaderClients, RewriteContext};
use smtpd::restrictions::RestrictionPolicy;
use smtpd::{config, peer, Action, Session, Settings};

/// Bytes read from the client at a time.
const READ_SIZE: usize = 64 * 1024;

/// What every session of this process shares: main.cf is read once,
/// tables stay open between clients.
struct Daemon {
    policy: RestrictionPolicy,
    /// main.cf's session settings; each connection adds its client.
    settings: Settings,
    local_headers: LocalHeaderClients,
    cleanup: PathBuf,
    timeout: Duration,
    peername_lookup: bool,
    /// dns_resolver_servers is set: client names come from those servers
    /// too, not from the system resolver.
    own_servers: bool,
}

impl Daemon {
    fn new(config: &Config) -> Result<Daemon, String> {
        let setting = |e: ConfigError| e.to_string();
        let restrictions =
            Restrictions::new(config, resolver(config)).map_err(|e| e.to_string())?;
        let unknown = smtpd::Client::new("unknown", "", 0);
        Ok(Daemon {
            policy: RestrictionPolicy::new(restrictions)
                .with_flush_service(libmail::flush::service_path(config).map_err(setting)?),
            settings: config::settings(config, unknown).map_err(setting)?,
            local_headers: LocalHeaderClients::new(config),
            cleanup: libmail::cleanup::service_path(config).map_err(setting)?,
            timeout: Duration::from_secs(config.time("smtpd_timeout").map_err(setting)?.max(1)),
            peername_lookup: config.bool("smtpd_peername_lookup").map_err(setting)?,
            own_servers: !config
                .list("dns_resolver_servers")
                .map_err(setting)?
                .is_empty(),
        })
    }

    /// One SMTP session, from the greeting to the disconnect.
    fn serve(&mut self, config: &Config, stream: TcpStream) {
        let Ok(peer_addr) = stream.peer_addr() else {
            return; // gone before we looked
        };
        let naming = match (self.peername_lookup, self.own_servers) {
            (false, _) => peer::Naming::Off,
            (true, false) => peer::Naming::System,
            (true, true) => peer::Naming::Dns(self.policy.dns()),
        };
        let (client, warning) = peer::client(peer_addr, naming);
        if let Some(warning) = warning {
            msg::warning(warning);
        }
        let context = match client.addr.parse() {
            Ok(addr) => self.local_headers.context(addr, &client.name),
            Err(_) => RewriteContext::Remote,
        };
        let mut settings = self.settings.clone();
        settings.client = client;
        config::exclude_bare_newline(config, &mut settings);
        let _ = stream.set_read_timeout(Some(self.timeout));
        let _ = stream.set_write_timeout(Some(self.timeout));
        let _ = stream.set_nodelay(true);
        let mut session = Session::new(settings);
        let mut sink = CleanupSink::new(self.cleanup.clone(), context);
        let mut conn = Connection::new(stream);
        conn.perform(session.greeting(&mut self.policy));
        let mut buf = vec![0u8; READ_SIZE];
        while !session.is_closed() {
            let actions = match conn.read(&mut buf) {
                Input::Data(n) => session.receive(&buf[..n], &mut self.policy, &mut sink),
                Input::Timeout => session.timeout(&mut sink),
                Input::Lost => session.lost_connection(&mut sink),
            };
            conn.perform(actions);
            if conn.broken && !session.is_closed() {
                let actions = session.lost_connection(&mut sink);
                conn.perform(actions);
            }
        }
        conn.close();
    }
}

/// The process's resolver. Without one (no usable /etc/resolv.conf)
/// every lookup is a temporary failure, as with a resolver that has no
/// server to ask: DNS-based restrictions defer, nothing is rejected.
fn resolver(config: &Config) -> Box<dyn Lookup> {
    match Dns::from_config(config) {
        Ok(dns) => Box::new(dns),
        Err(err) => {
            msg::warning(format!("DNS lookups will fail: {err}"));
            Box::new(NoResolver {
                reason: err.to_string(),
            })
        }
    }
}

/// See `resolver`.
struct NoResolver {
    reason: String,
}

impl NoResolver {
    fn fail<T>(&self, name: &str, rtype: &'static str) -> Result<T, DnsError> {
        Err(DnsError::temp_fail(name, rtype, &self.reason))
    }
}

impl Lookup for NoResolver {
    fn mx(&self, domain: &str) -> Result<Vec<MxRecord>, DnsError> {
        self.fail(domain, "MX")
    }
    fn a(&self, host: &str) -> Result<Vec<Ipv4Addr>, DnsError> {
        self.fail(host, "A")
    }
    fn aaaa(&self, host: &str) -> Result<Vec<Ipv6Addr>, DnsError> {
        self.fail(host, "AAAA")
    }
    fn ptr(&self, addr: IpAddr) -> Result<Vec<String>, DnsError> {
        self.fail(&libmail::dns::reverse_name(addr), "PTR")
    }
    fn txt(&self, name: &str) -> Result<Vec<String>, DnsError> {
        self.fail(name, "TXT")
    }
}

enum Input {
    Data(usize),
    Timeout,
    Lost,
}

/// The client socket with an output buffer: replies collect until the
/// engine has used all input, then go out in one write.
struct Connection {
    stream: TcpStream,
    out: Vec<u8>,
    /// A write failed: the client is gone.
    broken: bool,
}

impl Connection {
    fn new(stream: TcpStream) -> Connection {
        Connection {
            stream,
            out: Vec::with_capacity(4096),
            broken: false,
        }
    }

    fn read(&mut self, buf: &mut [u8]) -> Input {
        if self.broken {
            return Input::Lost;
        }
        loop {
            return match self.stream.read(buf) {
                Ok(0) => Input::Lost,
                Ok(n) => Input::Data(n),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    Input::Timeout
                }
                Err(_) => Input::Lost,
            };
        }
    }

    fn perform(&mut self, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Reply(bytes) => self.out.extend_from_slice(&bytes),
                Action::Log(line) => msg::info(line),
                Action::Sleep(pause) => {
                    self.flush();
                    std::thread::sleep(pause);
                }
                Action::Close => self.flush(),
            }
        }
        self.flush();
    }

    fn flush(&mut self) {
        if self.out.is_empty() || self.broken {
            self.out.clear();
            return;
        }
        if self.stream.write_all(&self.out).is_err() {
            self.broken = true;
        }
        self.out.clear();
    }

    fn close(mut self) {
        self.flush();
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let server = match Server::start("smtpd", &args) {
        Ok(server) => server,
        Err(err) => msg::fatal(err),
    };
    let mut daemon = match Daemon::new(&server.config) {
        Ok(daemon) => daemon,
        Err(err) => msg::fatal(err),
    };
    server.serve(|config, client| match client {
        Client::Tcp(stream) => daemon.serve(config, stream),
        Client::Unix(_) | Client::Trigger(_) => {
            msg::warning("unexpected client on a non-TCP listener; ignored")
        }
    });
}
