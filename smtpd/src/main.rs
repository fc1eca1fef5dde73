//! smtpd(8): the SMTP server daemon. master hands it one client at a
//! time; this file only adds the I/O around the protocol engine
//! (`Session`): reading with smtpd_timeout, writing each batch of
//! replies at once (pipelined commands cost one write), error sleeps,
//! and the log. Restrictions come from main.cf (`RestrictionPolicy`),
//! and messages go to the cleanup service (`CleanupSink`).

#![forbid(unsafe_code)]

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

use libmail::config::{Config, ConfigError};
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
}

impl Daemon {
    fn new(config: &Config) -> Result<Daemon, String> {
        let restrictions = Restrictions::new(config).map_err(|e| e.to_string())?;
        let setting = |e: ConfigError| e.to_string();
        let unknown = smtpd::Client {
            name: "unknown".to_string(),
            addr: String::new(),
            port: 0,
        };
        Ok(Daemon {
            policy: RestrictionPolicy::new(restrictions)
                .with_flush_service(libmail::flush::service_path(config).map_err(setting)?),
            settings: config::settings(config, unknown).map_err(setting)?,
            local_headers: LocalHeaderClients::new(config),
            cleanup: libmail::cleanup::service_path(config).map_err(setting)?,
            timeout: Duration::from_secs(config.time("smtpd_timeout").map_err(setting)?.max(1)),
            peername_lookup: config.bool("smtpd_peername_lookup").map_err(setting)?,
        })
    }

    /// One SMTP session, from the greeting to the disconnect.
    fn serve(&mut self, config: &Config, stream: TcpStream) {
        let Ok(peer_addr) = stream.peer_addr() else {
            return; // gone before we looked
        };
        let client = peer::client(peer_addr, self.peername_lookup);
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
