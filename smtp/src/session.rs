//! One SMTP connection: connect, greeting, EHLO (or HELO), STARTTLS,
//! then mail transactions driven by `transaction::Transaction`, and
//! QUIT. This is the only place that reads and writes the socket; every
//! failure comes back as a `Failure` with Postfix's reason text.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use openssl::ssl::SslStream;

use crate::nexthop::Target;
use crate::reply::{Reply, ReplyReader};
use crate::settings::{Settings, Timeouts};
use crate::tls::{Level, Tls};
use crate::transaction::{dot_stuffed, Action, Features, Stage, Transaction};

/// Why a session or transaction could not go on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// A 5xx answer: the recipients bounce; otherwise they wait for the
    /// next host, or a later attempt.
    pub permanent: bool,
    pub dsn: String,
    pub reason: String,
    /// Nothing reached the server (a cached connection that had gone
    /// stale): safe to try again at once on a new connection.
    pub before_mail: bool,
}

impl Failure {
    fn soft(dsn: &str, reason: String) -> Failure {
        Failure {
            permanent: false,
            dsn: dsn.to_string(),
            reason,
            before_mail: false,
        }
    }

    /// `host H[A] said: 550 ... (in reply to X command)`.
    pub fn said(target: &Target, reply: &Reply, command: &str) -> Failure {
        Failure {
            permanent: reply.class() == 5,
            dsn: reply.status(),
            reason: format!(
                "host {} said: {} (in reply to {command} command)",
                target.name_addr(),
                reply.text()
            ),
            before_mail: false,
        }
    }
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<SslStream<TcpStream>>),
    /// Between the plaintext and the TLS stream during the handshake.
    Gone,
}

impl Stream {
    fn tcp(&self) -> Option<&TcpStream> {
        match self {
            Stream::Plain(s) => Some(s),
            Stream::Tls(s) => Some(s.get_ref()),
            Stream::Gone => None,
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
            Stream::Gone => Err(io::ErrorKind::NotConnected.into()),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
            Stream::Gone => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
            Stream::Gone => Ok(()),
        }
    }
}

/// An open, greeted connection.
pub struct Session {
    stream: Stream,
    reader: ReplyReader,
    pub target: Target,
    pub features: Features,
    timeouts: Timeouts,
    /// Mail transactions done on it.
    pub transactions: u64,
    pub opened: Instant,
    /// The TLS handshake's log line, when TLS is on.
    pub tls_line: Option<String>,
}

/// How the session should treat TLS.
pub struct TlsChoice<'a> {
    pub tls: Option<&'a Tls>,
    pub level: Level,
    /// Try it this time (false after a failed opportunistic handshake).
    pub attempt: bool,
}

impl Session {
    /// Connects, reads the greeting, says EHLO (or HELO), and starts TLS
    /// as the policy asks.
    pub fn open(target: &Target, settings: &Settings, tls: &TlsChoice) -> Result<Session, Failure> {
        let addr = SocketAddr::new(target.addr, target.port);
        let stream = TcpStream::connect_timeout(&addr, settings.timeouts.connect).map_err(|e| {
            Failure::soft(
                "4.4.1",
                format!("connect to {}: {}", target.relay(), connect_error(&e)),
            )
        })?;
        let _ = stream.set_nodelay(true);
        let mut session = Session {
            stream: Stream::Plain(stream),
            reader: ReplyReader::new(),
            target: target.clone(),
            features: Features::default(),
            timeouts: settings.timeouts,
            transactions: 0,
            opened: Instant::now(),
            tls_line: None,
        };
        session.greeting(settings)?;
        session.hello(settings)?;
        session.start_tls(settings, tls)?;
        Ok(session)
    }

    fn greeting(&mut self, settings: &Settings) -> Result<(), Failure> {
        let reply = self.read_reply(self.timeouts.helo, "receiving the initial server greeting")?;
        if reply.class() == 2 {
            return Ok(());
        }
        let permanent = reply.class() == 5 && !settings.skip_5xx_greeting;
        Err(Failure {
            permanent,
            dsn: reply.status(),
            reason: format!(
                "host {} refused to talk to me: {}",
                self.target.name_addr(),
                reply.text()
            ),
            before_mail: false,
        })
    }

    fn hello(&mut self, settings: &Settings) -> Result<(), Failure> {
        let helo = &settings.helo_name;
        if !settings.never_send_ehlo {
            let reply = self.command(
                format!("EHLO {helo}\r\n").as_bytes(),
                self.timeouts.helo,
                "performing the EHLO handshake",
            )?;
            if reply.class() == 2 {
                self.features = Features::from_ehlo(&reply);
                return Ok(());
            }
        }
        let reply = self.command(
            format!("HELO {helo}\r\n").as_bytes(),
            self.timeouts.helo,
            "performing the HELO handshake",
        )?;
        match reply.class() {
            2 => {
                self.features = Features::default();
                Ok(())
            }
            _ => Err(Failure::said(&self.target, &reply, "HELO")),
        }
    }

    fn start_tls(&mut self, settings: &Settings, choice: &TlsChoice) -> Result<(), Failure> {
        let Some(tls) = choice
            .tls
            .filter(|_| choice.attempt && choice.level != Level::None)
        else {
            return Ok(());
        };
        if !self.features.starttls {
            return match choice.level.mandatory() {
                true => Err(Failure::soft(
                    "4.7.4",
                    format!(
                        "TLS is required, but was not offered by host {}",
                        self.target.name_addr()
                    ),
                )),
                false => Ok(()),
            };
        }
        let reply = self.command(b"STARTTLS\r\n", self.timeouts.helo, "sending STARTTLS")?;
        if reply.class() != 2 {
            return match choice.level.mandatory() {
                true => Err(Failure::said(&self.target, &reply, "STARTTLS")),
                // Opportunistic: carry on in plaintext.
                false => Ok(()),
            };
        }
        self.handshake(tls, settings)?;
        let reply = self.command(
            format!("EHLO {}\r\n", settings.helo_name).as_bytes(),
            self.timeouts.helo,
            "performing the EHLO handshake",
        )?;
        match reply.class() {
            2 => {
                self.features = Features::from_ehlo(&reply);
                Ok(())
            }
            _ => Err(Failure::said(&self.target, &reply, "EHLO")),
        }
    }

    fn handshake(&mut self, tls: &Tls, settings: &Settings) -> Result<(), Failure> {
        let Stream::Plain(tcp) = std::mem::replace(&mut self.stream, Stream::Gone) else {
            return Err(Failure::soft(
                "4.7.5",
                "Cannot start TLS: already started".into(),
            ));
        };
        let _ = tcp.set_read_timeout(Some(settings.timeouts.starttls));
        let _ = tcp.set_write_timeout(Some(settings.timeouts.starttls));
        let (stream, summary) = tls
            .handshake(tcp, &self.target.host)
            .map_err(|why| Failure::soft("4.7.5", String::new()).tls_reason(&self.target, why))?;
        self.tls_line = Some(summary.line(&self.target.relay()));
        self.stream = Stream::Tls(Box::new(stream));
        Ok(())
    }

    /// Whether this session may carry another transaction.
    pub fn reusable(&self, settings: &Settings) -> bool {
        (settings.reuse_count_limit == 0 || self.transactions < settings.reuse_count_limit)
            && self.opened.elapsed() < settings.reuse_time_limit
    }

    /// One mail transaction; the outcomes are in `transaction`. A
    /// failure here concerns every recipient still without an answer.
    pub fn transact(
        &mut self,
        transaction: &mut Transaction,
        content: &[u8],
    ) -> Result<bool, Failure> {
        self.transactions += 1;
        let first = transaction.start();
        self.send(&first, Stage::Mail)?;
        loop {
            let stage = transaction.awaiting().unwrap_or(Stage::Mail);
            let reply = self
                .read_reply(self.stage_timeout(stage), stage.sending())
                .map_err(|mut f| {
                    f.before_mail = stage == Stage::Mail;
                    f
                })?;
            match transaction.on_reply(reply) {
                Action::Read => continue,
                Action::Send(bytes) => {
                    let stage = transaction.awaiting().unwrap_or(Stage::Mail);
                    self.send(&bytes, stage)?
                }
                Action::SendContent => self.send_content(content)?,
                Action::Done { clean } => return Ok(clean),
            }
        }
    }

    fn send_content(&mut self, content: &[u8]) -> Result<(), Failure> {
        let wire = dot_stuffed(content);
        self.write(&wire, self.timeouts.data_xfer, "sending message body")
    }

    fn send(&mut self, bytes: &[u8], stage: Stage) -> Result<(), Failure> {
        self.write(bytes, self.stage_timeout(stage), stage.sending())
    }

    fn stage_timeout(&self, stage: Stage) -> Duration {
        match stage {
            Stage::Mail => self.timeouts.mail,
            Stage::Rcpt(_) => self.timeouts.rcpt,
            Stage::Data => self.timeouts.data_init,
            Stage::EndOfData => self.timeouts.data_done,
        }
    }

    /// RSET after a transaction that did not end cleanly, so that the
    /// connection can be used again; false when it cannot.
    pub fn reset(&mut self) -> bool {
        matches!(
            self.command(b"RSET\r\n", self.timeouts.rset, "sending RSET"),
            Ok(reply) if reply.class() == 2
        )
    }

    /// QUIT, without waiting long for the answer: the mail is done.
    pub fn quit(mut self) {
        let limit = self.timeouts.quit.min(Duration::from_secs(5));
        let _ = self.command(b"QUIT\r\n", limit, "sending QUIT");
        if let Stream::Tls(mut tls) = std::mem::replace(&mut self.stream, Stream::Gone) {
            let _ = tls.shutdown();
        }
    }

    fn command(&mut self, bytes: &[u8], timeout: Duration, doing: &str) -> Result<Reply, Failure> {
        self.write(bytes, timeout, doing)?;
        self.read_reply(timeout, doing)
    }

    fn write(&mut self, bytes: &[u8], timeout: Duration, doing: &str) -> Result<(), Failure> {
        if let Some(tcp) = self.stream.tcp() {
            let _ = tcp.set_write_timeout(Some(timeout));
        }
        self.stream
            .write_all(bytes)
            .and_then(|_| self.stream.flush())
            .map_err(|e| self.io_failure(&e, doing))
    }

    fn read_reply(&mut self, timeout: Duration, doing: &str) -> Result<Reply, Failure> {
        if let Some(tcp) = self.stream.tcp() {
            let _ = tcp.set_read_timeout(Some(timeout));
        }
        let mut buf = [0u8; 8192];
        loop {
            match self.reader.next_reply() {
                Ok(Some(reply)) => return Ok(reply),
                Ok(None) => {}
                Err(e) => {
                    return Err(Failure::soft(
                        "4.4.2",
                        format!("{} while {doing}: {e}", self.lost_with()),
                    ))
                }
            }
            let n = self
                .stream
                .read(&mut buf)
                .map_err(|e| self.io_failure(&e, doing))?;
            if n == 0 {
                return Err(Failure::soft(
                    "4.4.2",
                    format!("{} while {doing}", self.lost_with()),
                ));
            }
            self.reader.push(&buf[..n]);
        }
    }

    fn lost_with(&self) -> String {
        format!("lost connection with {}", self.target.name_addr())
    }

    fn io_failure(&self, error: &io::Error, doing: &str) -> Failure {
        let reason = match error.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => format!(
                "conversation with {} timed out while {doing}",
                self.target.name_addr()
            ),
            _ => format!("{} while {doing}", self.lost_with()),
        };
        Failure::soft("4.4.2", reason)
    }
}

impl Failure {
    /// A failed TLS handshake, in Postfix's words.
    fn tls_reason(mut self, target: &Target, why: String) -> Failure {
        self.reason = match why.starts_with("Server certificate not verified") {
            true => format!("{why} for {}", target.name_addr()),
            false => format!("Cannot start TLS: {why} with {}", target.name_addr()),
        };
        self
    }
}

/// The strerror text Postfix shows for a failed connect.
fn connect_error(error: &io::Error) -> String {
    match error.kind() {
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => "Connection timed out".to_string(),
        io::ErrorKind::ConnectionRefused => "Connection refused".to_string(),
        _ => libmail::error::strerror(error),
    }
}
