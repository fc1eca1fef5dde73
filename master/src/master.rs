//! The event loop: listeners with no available child, status channels,
//! signals (SIGCHLD, SIGHUP, SIGTERM, SIGQUIT) and timers (wakeups,
//! throttles, `-e`), all in one mio poll.

use std::collections::HashMap;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use libmail::config::master_cf::MasterCf;
use libmail::config::{mail_version, Config};
use libmail::msg;
use libmail::server::{decode_status, Status};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use signal_hook::consts::{SIGCHLD, SIGHUP, SIGINT, SIGQUIT, SIGTERM};
use signal_hook_mio::v1_0::Signals;

use crate::listen::{self, Endpoint};
use crate::service::{Service, Skipped};
use crate::Options;
use libmail::pid_file as pidfile;

const SIGNALS: Token = Token(usize::MAX);
/// Status channels are tokens 0..N (service index); listeners N.. .
const LISTENER_BASE: usize = 1 << 20;
/// How long a graceful stop waits for busy children.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Starts the real master in the background (a session of its own) and
/// returns once it holds the pid file, or with its failure. The daemon is
/// meant to outlive us (init adopts it), so it is not waited for.
#[allow(clippy::zombie_processes)]
pub fn daemonize(args: &[String], pid_path: &Path) -> ExitCode {
    let exe = std::env::current_exe().unwrap_or_else(|e| msg::fatal(format!("self: {e}")));
    let mut command = Command::new(exe);
    command
        .args(args)
        .arg("-d")
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    command.env("POSTFIX_RS_DETACHED", "1");
    let mut child = libmail::sys::spawn_daemon(&mut command)
        .unwrap_or_else(|e| msg::fatal(format!("start master: {e}")));
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if pidfile::running(pid_path) == Ok(Some(child.id() as i32)) {
            return ExitCode::SUCCESS;
        }
        if let Ok(Some(status)) = child.try_wait() {
            return ExitCode::from(status.code().unwrap_or(1).clamp(1, 255) as u8);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    msg::fatal("master did not start within 30 seconds")
}

/// Runs in the foreground until stopped.
pub fn run(options: Options, config: Config, pid_path: &Path) -> ExitCode {
    let _pid_file = pidfile::acquire(pid_path).unwrap_or_else(|e| msg::fatal(e));
    let detached = std::env::var_os("POSTFIX_RS_DETACHED").is_some();
    start_logging(&config, detached);
    let mut master = Master::new(options, config);
    if let Err(text) = master.load(true) {
        msg::fatal(text);
    }
    let dir = master.config_dir_text();
    msg::info(format!(
        "daemon started -- version {}, configuration {dir}",
        mail_version()
    ));
    if detached {
        detach_stdio();
    }
    master.main_loop()
}

/// Logs go to syslog or maillog_file; a master in the foreground also
/// shows them on standard error, a detached one has none.
fn start_logging(config: &Config, detached: bool) {
    if let Err(err) = libmail::log::init(config, "master") {
        msg::fatal(err);
    }
    libmail::log::set_stderr(if detached {
        libmail::log::Stderr::Never
    } else {
        libmail::log::Stderr::Always
    });
}

/// A detached master has nobody to write to; its messages go to the log.
fn detach_stdio() {
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        for fd in 0..3 {
            let _ = nix::unistd::dup2(null.as_raw_fd(), fd);
        }
    }
}

enum Stop {
    Graceful(Instant),
    Abort,
}

struct Master {
    options: Options,
    config: Config,
    services: Vec<Service>,
    /// Children of earlier generations, left to finish: pid → program.
    retired: HashMap<u32, String>,
    generation: u32,
    poll: Poll,
    signals: Signals,
    /// Listener registrations in place, by service index.
    listening: Vec<bool>,
    stop: Option<Stop>,
    exit_at: Option<Instant>,
}

impl Master {
    fn new(options: Options, config: Config) -> Master {
        let poll = Poll::new().unwrap_or_else(|e| msg::fatal(format!("epoll: {e}")));
        let mut signals = Signals::new([SIGCHLD, SIGHUP, SIGTERM, SIGQUIT, SIGINT])
            .unwrap_or_else(|e| msg::fatal(format!("signals: {e}")));
        poll.registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)
            .unwrap_or_else(|e| msg::fatal(format!("epoll: {e}")));
        let exit_at = options.exit_after.map(|after| Instant::now() + after);
        Master {
            options,
            config,
            services: Vec::new(),
            retired: HashMap::new(),
            generation: 1,
            poll,
            signals,
            listening: Vec::new(),
            stop: None,
            exit_at,
        }
    }

    fn config_dir_text(&self) -> String {
        self.config
            .string("config_directory")
            .unwrap_or_else(|_| "/etc/postfix".into())
    }

    /// Reads master.cf and sets up every service, keeping the listeners of
    /// services that did not move. At start-up a listener that cannot be
    /// opened is fatal; on reload that service is left out with a warning.
    fn load(&mut self, starting: bool) -> Result<(), String> {
        let dir = std::path::PathBuf::from(self.config_dir_text());
        let master_cf = MasterCf::load(&dir).map_err(|e| e.to_string())?;
        self.unregister_all();
        let mut old: HashMap<String, Service> = self
            .services
            .drain(..)
            .map(|s| (s.key.clone(), s))
            .collect();
        for entry in &master_cf.entries {
            let mut service = match Service::new(entry, &self.config, self.generation) {
                Ok(service) => service,
                Err(Skipped::NotProvided(program)) => {
                    if starting {
                        msg::warning(format!(
                            "{}, line {}: service \"{}\": {} is not provided by this build; not started",
                            master_cf.path.display(), entry.line, entry.key(), program.display()
                        ));
                    }
                    continue;
                }
                Err(Skipped::Broken(reason)) => {
                    let text = format!(
                        "{}, line {}: {reason}",
                        master_cf.path.display(),
                        entry.line
                    );
                    if starting {
                        return Err(text);
                    }
                    msg::warning(text);
                    continue;
                }
            };
            match old
                .remove(&service.key)
                .filter(|o| o.endpoint == service.endpoint)
            {
                Some(previous) => {
                    self.retire(&previous);
                    service.listeners = previous.listeners;
                }
                None => match listen::open(&service.endpoint) {
                    Ok(fds) => service.listeners = fds,
                    Err(reason) if starting => return Err(reason),
                    Err(reason) => {
                        msg::warning(format!("service {}: {reason}", service.key));
                        continue;
                    }
                },
            }
            self.services.push(service);
        }
        for (_, removed) in old {
            self.retire(&removed);
            remove_endpoint(&removed.endpoint);
        }
        self.register_all();
        Ok(())
    }

    /// Children of a service being replaced finish their client and go.
    fn retire(&mut self, service: &Service) {
        for pid in service.children.keys() {
            self.retired
                .insert(*pid, service.program.display().to_string());
        }
    }

    fn unregister_all(&mut self) {
        for (index, service) in self.services.iter().enumerate() {
            let _ = self
                .poll
                .registry()
                .deregister(&mut SourceFd(&service.status.as_raw_fd()));
            if self.listening.get(index) == Some(&true) {
                for fd in &service.listeners {
                    let _ = self
                        .poll
                        .registry()
                        .deregister(&mut SourceFd(&fd.as_raw_fd()));
                }
            }
        }
        self.listening = vec![false; self.services.len()];
    }

    fn register_all(&mut self) {
        self.listening = vec![false; self.services.len()];
        for (index, service) in self.services.iter().enumerate() {
            let fd = service.status.as_raw_fd();
            let _ =
                self.poll
                    .registry()
                    .register(&mut SourceFd(&fd), Token(index), Interest::READABLE);
        }
        for index in 0..self.services.len() {
            self.update_listening(index);
        }
    }

    /// Watches a service's listeners exactly when it may start a child.
    fn update_listening(&mut self, index: usize) {
        let want = self.stop.is_none() && self.services[index].wants_listen(Instant::now());
        if self.listening.get(index) != Some(&!want) {
            return;
        }
        for (n, fd) in self.services[index].listeners.iter().enumerate() {
            let raw = fd.as_raw_fd();
            let token = Token(LISTENER_BASE + index * 256 + n);
            let registry = self.poll.registry();
            let _ = if want {
                registry.register(&mut SourceFd(&raw), token, Interest::READABLE)
            } else {
                registry.deregister(&mut SourceFd(&raw))
            };
        }
        self.listening[index] = want;
    }

    fn main_loop(&mut self) -> ExitCode {
        let mut events = Events::with_capacity(64);
        loop {
            if let Some(code) = self.finished() {
                return code;
            }
            let timeout = self.next_timeout();
            if let Err(err) = self.poll.poll(&mut events, timeout) {
                if err.kind() != std::io::ErrorKind::Interrupted {
                    msg::fatal(format!("epoll: {err}"));
                }
            }
            for event in events.iter() {
                match event.token() {
                    SIGNALS => self.handle_signals(),
                    Token(n) if n >= LISTENER_BASE => {
                        self.client_waiting((n - LISTENER_BASE) / 256)
                    }
                    Token(n) => self.read_status(n),
                }
            }
            self.run_timers();
        }
    }

    /// The exit code once a stop is complete.
    fn finished(&mut self) -> Option<ExitCode> {
        match self.stop {
            Some(Stop::Abort) => Some(ExitCode::SUCCESS),
            Some(Stop::Graceful(deadline)) => {
                let children = self.child_count();
                if children == 0 {
                    return Some(ExitCode::SUCCESS);
                }
                if Instant::now() >= deadline {
                    self.kill_all(Signal::SIGKILL);
                    return Some(ExitCode::SUCCESS);
                }
                None
            }
            None => None,
        }
    }

    fn child_count(&self) -> usize {
        self.retired.len()
            + self
                .services
                .iter()
                .map(|s| s.children.len())
                .sum::<usize>()
    }

    fn next_timeout(&self) -> Option<Duration> {
        let now = Instant::now();
        let mut next: Option<Instant> = self.exit_at;
        let mut earliest = |at: Instant| next = Some(next.map_or(at, |n| n.min(at)));
        for service in &self.services {
            service.next_wakeup.into_iter().for_each(&mut earliest);
            service.throttled_until.into_iter().for_each(&mut earliest);
        }
        if let Some(Stop::Graceful(deadline)) = self.stop {
            earliest(deadline.min(now + Duration::from_millis(100)));
        }
        next.map(|at| at.saturating_duration_since(now))
    }

    fn client_waiting(&mut self, index: usize) {
        if index >= self.services.len() || !self.services[index].wants_listen(Instant::now()) {
            return;
        }
        let config_dir = self.options.config_dir.clone();
        let throttle = self.throttle_time();
        let service = &mut self.services[index];
        match service.spawn(config_dir.as_deref()) {
            Ok(_) => {}
            Err(err) => {
                msg::warning(format!("fork: {}: {err}", service.program.display()));
                service.throttled_until = Some(Instant::now() + throttle);
            }
        }
        self.warn_if_at_limit(index);
        self.update_listening(index);
    }

    fn warn_if_at_limit(&mut self, index: usize) {
        let service = &mut self.services[index];
        let now = Instant::now();
        let recently = service
            .limit_warned_at
            .is_some_and(|at| now.duration_since(at) < Duration::from_secs(60));
        // A service of one process (qmgr, pickup) is always at its limit;
        // Postfix warns only about the ones meant to grow.
        if service.max_proc > 1 && service.at_limit() && service.available() == 0 && !recently {
            service.limit_warned_at = Some(now);
            msg::warning(format!(
                "service {} has reached its process limit \"{}\": new clients may experience noticeable delays",
                service.describe(),
                service.max_proc
            ));
        }
    }

    fn read_status(&mut self, index: usize) {
        let Some(service) = self.services.get_mut(index) else {
            return;
        };
        let mut record = [0u8; 64];
        loop {
            let n = match nix::sys::socket::recv(
                service.status.as_raw_fd(),
                &mut record,
                nix::sys::socket::MsgFlags::MSG_DONTWAIT,
            ) {
                Ok(n) if n > 0 => n,
                _ => break,
            };
            let Some((pid, generation, status)) = decode_status(&record[..n]) else {
                continue;
            };
            if generation != service.generation {
                continue;
            }
            if let Some(child) = service.children.get_mut(&pid) {
                child.available = status == Status::Available;
                child.used |= status == Status::Taken;
            }
        }
        self.warn_if_at_limit(index);
        self.update_listening(index);
    }

    fn throttle_time(&self) -> Duration {
        Duration::from_secs(self.config.time("service_throttle_time").unwrap_or(60))
    }

    fn handle_signals(&mut self) {
        let pending: Vec<i32> = self.signals.pending().collect();
        for signal in pending {
            match signal {
                SIGCHLD => self.reap_children(),
                SIGHUP => self.reload(),
                SIGTERM => self.begin_stop(signal),
                _ => self.abort(signal),
            }
        }
    }

    fn reap_children(&mut self) {
        loop {
            let status = match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(status) => status,
            };
            let Some(pid) = status.pid() else {
                continue;
            };
            self.child_exited(pid.as_raw() as u32, status);
        }
    }

    fn child_exited(&mut self, pid: u32, status: WaitStatus) {
        if let Some(program) = self.retired.remove(&pid) {
            report_exit(&program, pid, status);
            return;
        }
        let throttle = self.throttle_time();
        let Some(index) = self
            .services
            .iter()
            .position(|s| s.children.contains_key(&pid))
        else {
            return;
        };
        let service = &mut self.services[index];
        let Some(child) = service.children.remove(&pid) else {
            return;
        };
        let failed = report_exit(&service.program.display().to_string(), pid, status);
        if failed && !child.used && self.stop.is_none() {
            msg::warning(format!(
                "{}: bad command startup -- throttling",
                service.program.display()
            ));
            service.throttled_until = Some(Instant::now() + throttle);
        }
        self.update_listening(index);
    }

    fn reload(&mut self) {
        if self.stop.is_some() {
            return;
        }
        match Config::load(self.options.config_dir.as_deref()) {
            Ok(config) => {
                if let Err(err) = libmail::log::init(&config, "master") {
                    msg::warning(format!("reload: {err}; keeping the old log settings"));
                }
                self.config = config;
            }
            Err(err) => {
                msg::warning(format!("reload: {err}; keeping the old configuration"));
                return;
            }
        }
        self.generation += 1;
        if let Err(text) = self.load(false) {
            msg::warning(format!("reload: {text}"));
        }
        let dir = self.config_dir_text();
        msg::info(format!(
            "reload -- version {}, configuration {dir}",
            mail_version()
        ));
    }

    /// Graceful stop: no new clients; idle children see their status
    /// channel close and go; busy ones finish their client first.
    fn begin_stop(&mut self, signal: i32) {
        msg::info(format!("terminating on signal {signal}"));
        self.unregister_all();
        for service in self.services.iter_mut() {
            service.listeners.clear();
            for pid in service.children.keys() {
                self.retired
                    .insert(*pid, service.program.display().to_string());
            }
            let _ = service.renew(0);
        }
        self.stop = Some(Stop::Graceful(Instant::now() + STOP_GRACE));
    }

    fn abort(&mut self, signal: i32) {
        msg::info(format!("terminating on signal {signal}"));
        self.kill_all(Signal::SIGKILL);
        self.stop = Some(Stop::Abort);
    }

    fn kill_all(&mut self, signal: Signal) {
        let pids: Vec<u32> = self
            .services
            .iter()
            .flat_map(|s| s.children.keys().copied())
            .chain(self.retired.keys().copied())
            .collect();
        for pid in pids {
            let _ = kill(Pid::from_raw(pid as i32), signal);
        }
    }

    fn run_timers(&mut self) {
        let now = Instant::now();
        if self.exit_at.is_some_and(|at| at <= now) && self.stop.is_none() {
            self.exit_at = None;
            self.begin_stop(SIGTERM);
            return;
        }
        for index in 0..self.services.len() {
            let service = &mut self.services[index];
            if service.throttled_until.is_some_and(|until| until <= now) {
                service.throttled_until = None;
            }
            if service.next_wakeup.is_some_and(|at| at <= now) {
                wake_up(service, now);
            }
            self.update_listening(index);
        }
    }
}

/// Sends a wakeup request (`W`) to a unix or fifo service, as Postfix
/// does for qmgr and pickup; with `?`, only when the service is in use.
fn wake_up(service: &mut Service, now: Instant) {
    let Some(wakeup) = service.wakeup else {
        return;
    };
    service.next_wakeup = Some(now + Duration::from_secs(wakeup.seconds.into()));
    if wakeup.when_used && service.children.is_empty() {
        return;
    }
    let Endpoint::Path(kind, path) = &service.endpoint else {
        return;
    };
    let sent = libmail::trigger::send(*kind, path, libmail::trigger::WAKEUP);
    if let Err(err) = sent {
        msg::warning(format!("wakeup {}: {err}", path.display()));
    }
}

/// Logs an abnormal exit as Postfix does; true when the child failed.
fn report_exit(program: &str, pid: u32, status: WaitStatus) -> bool {
    match status {
        WaitStatus::Exited(_, 0) => false,
        WaitStatus::Exited(_, code) => {
            msg::warning(format!("process {program} pid {pid} exit status {code}"));
            true
        }
        WaitStatus::Signaled(_, signal, _) => {
            msg::warning(format!(
                "process {program} pid {pid} killed by signal {}",
                signal as i32
            ));
            true
        }
        _ => false,
    }
}

/// A removed unix service's socket or fifo goes with it.
fn remove_endpoint(endpoint: &Endpoint) {
    if let Endpoint::Path(_, path) = endpoint {
        let _ = std::fs::remove_file(path);
    }
}
