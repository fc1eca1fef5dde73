//! Logging as Postfix does it (DESIGN.md §7): records go to syslog
//! (facility $syslog_facility, tag `$syslog_name/SERVICE[PID]`) or, when
//! $maillog_file is set, are appended to that file in Postfix's own line
//! format (`Mon DD HH:MM:SS host postfix/smtpd[1234]: text`), every process
//! writing its own lines atomically (file.rs). Severities are Postfix's:
//! info (no prefix), `warning:`, `error:`, `fatal:` (exit status 1) and
//! `panic:` (abort, as Postfix's msg_panic; master sees signal 6).
//!
//! `msg` and `log` are one thing. Every message, whether from
//! `msg::warning` in library code or `log::warning` in a daemon, passes
//! through `log::log`, which
//! - writes `PROGRAM: warning: text` to standard error (PROGRAM is
//!   `msg::program()`) according to `set_stderr`: `Always` by default,
//!   which is what commands want; daemons choose `IfTerminal`, Postfix's
//!   rule, so that under master their messages go only to the log;
//! - and, once `init` has run, writes the record to the log as well.
//!
//! Before `init`, or in a command that never calls it, messages therefore
//! behave exactly as `msg` always did. Text is cleaned as Postfix cleans
//! it (control characters become `?`) and cut at 2000 bytes in the log.
//!
//! If there is no syslog service (no /dev/log, as in many containers),
//! `init` does not fail: records go to standard error instead, after one
//! warning that says so. Postfix's 1-second pause after a fatal error is
//! not copied: master's service_throttle_time already slows down a
//! daemon that keeps failing, and commands should fail fast.

pub mod delivery;
pub mod error;
mod file;
pub mod line;
mod rotate;
mod syslog_sink;

use std::fmt::Display;
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::config::Config;
pub use error::LogError;
pub use file::check_prefix;
pub use line::Severity;
pub use rotate::{rotate, Rotation};

use file::FileSink;
use syslog_sink::SyslogSink;

/// When messages are also written to standard error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stderr {
    /// Every message (commands; the default).
    Always,
    /// Only when standard error is a terminal (daemons, postlog).
    IfTerminal,
    /// Never (except when the log itself falls back to standard error).
    Never,
}

/// Where records go once `init` has run.
#[derive(Debug)]
enum Sink {
    Syslog(SyslogSink),
    File(FileSink),
    /// No syslog service: standard error is the log.
    Stderr,
}

#[derive(Debug)]
struct Logger {
    tag: String,
    /// First label of $myhostname, for maillog_file lines.
    host: String,
    /// This process's ID, asked once: every line carries it, and the
    /// system call per line showed in the per-message count.
    pid: u32,
    sink: Sink,
}

struct State {
    logger: Option<Logger>,
    stderr: Stderr,
    stderr_is_terminal: bool,
    /// A failing log is reported once until it works again.
    write_failed: bool,
}

static STATE: Mutex<State> = Mutex::new(State {
    logger: None,
    stderr: Stderr::Always,
    stderr_is_terminal: false,
    write_failed: false,
});

static VERBOSE: AtomicU32 = AtomicU32::new(0);

/// The "no syslog service" warning is given once per process, not at
/// every re-initialisation.
static SYSLOG_MISSING_REPORTED: AtomicBool = AtomicBool::new(false);

/// A poisoned lock only means another thread panicked while logging; the
/// state itself is still usable, and logging must go on.
fn lock() -> MutexGuard<'static, State> {
    STATE.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Starts logging for a service: tag `$syslog_name/SERVICE` (the base name
/// of `service`). May be called again, after a reload, to apply a new
/// configuration.
pub fn init(config: &Config, service: &str) -> Result<(), LogError> {
    let syslog_name = config.string("syslog_name")?;
    init_tagged(config, &line::ident(&syslog_name, service))
}

/// `init` with the tag given exactly (postlog's `-t`).
pub fn init_tagged(config: &Config, tag: &str) -> Result<(), LogError> {
    let facility_name = config.string("syslog_facility")?;
    let facility = syslog_sink::facility(&facility_name, config.main_cf_path())?;
    let path = config.string("maillog_file")?;
    let sink = if path.is_empty() {
        connect_syslog(facility, tag)
    } else {
        check_prefix(&path, &config.list("maillog_file_prefixes")?)?;
        Sink::File(FileSink::open(Path::new(&path))?)
    };
    let host = line::short_host(&config.string("myhostname")?).to_string();
    lock().logger = Some(Logger {
        tag: tag.to_string(),
        host,
        pid: std::process::id(),
        sink,
    });
    Ok(())
}

fn connect_syslog(facility: syslog::Facility, tag: &str) -> Sink {
    match SyslogSink::connect(facility, tag) {
        Ok(sink) => Sink::Syslog(sink),
        Err(reason) => {
            if !SYSLOG_MISSING_REPORTED.swap(true, Ordering::Relaxed) {
                let text = format!("no syslog service: {reason}; logging to standard error");
                write_stderr(Severity::Warning, &line::clean(&text));
            }
            Sink::Stderr
        }
    }
}

/// Whether `init` has run.
pub fn is_initialized() -> bool {
    lock().logger.is_some()
}

/// Chooses when messages are also written to standard error.
pub fn set_stderr(mode: Stderr) {
    let mut state = lock();
    state.stderr = mode;
    state.stderr_is_terminal = std::io::stderr().is_terminal();
}

/// Sets the `-v` level; `verbose` messages are logged when it is above 0.
pub fn set_verbose(level: u32) {
    VERBOSE.store(level, Ordering::Relaxed);
}

/// The `-v` level (Postfix's msg_verbose).
pub fn verbosity() -> u32 {
    VERBOSE.load(Ordering::Relaxed)
}

/// An informational record, only with `-v`. Pass `format_args!(...)` and
/// nothing is formatted when verbose logging is off.
pub fn verbose(text: impl Display) {
    if verbosity() > 0 {
        log(Severity::Info, text);
    }
}

pub fn info(text: impl Display) {
    log(Severity::Info, text);
}

/// `warning: text`: something is wrong, work goes on.
pub fn warning(text: impl Display) {
    log(Severity::Warning, text);
}

/// `error: text`: a failure that the program works around.
pub fn error(text: impl Display) {
    log(Severity::Error, text);
}

/// `fatal: text`, then exit status 1.
pub fn fatal(text: impl Display) -> ! {
    log(Severity::Fatal, text);
    std::process::exit(1)
}

/// `panic: text` for a broken invariant (a bug, not bad input), then
/// abort() as Postfix does, so that a core dump can be had.
pub fn panic(text: impl Display) -> ! {
    log(Severity::Panic, text);
    std::process::abort()
}

/// Logs one record at any severity without exiting, even for fatal and
/// panic (postlog `-p fatal`). A log that cannot be written is reported
/// on standard error, with the record, once until it works again.
pub fn log(severity: Severity, text: impl Display) {
    let text = line::clean(&text.to_string());
    let mut state = lock();
    let echoed = echo(&state, severity, &text);
    let Some(logger) = state.logger.as_mut() else {
        return;
    };
    match logger.write(severity, &text) {
        Ok(()) => state.write_failed = false,
        Err(err) => {
            if !echoed {
                write_stderr(severity, &text);
            }
            if !state.write_failed {
                state.write_failed = true;
                write_stderr(Severity::Warning, &err.to_string());
            }
        }
    }
}

/// As `log`, but a record that cannot be written to the log is an error
/// for the caller (postlog must not claim success when nothing was
/// logged).
pub fn try_log(severity: Severity, text: impl Display) -> Result<(), LogError> {
    let text = line::clean(&text.to_string());
    let mut state = lock();
    echo(&state, severity, &text);
    match state.logger.as_mut() {
        Some(logger) => logger.write(severity, &text),
        None => Ok(()),
    }
}

/// Writes the message to standard error if the mode says so; true if it
/// did.
fn echo(state: &State, severity: Severity, text: &str) -> bool {
    let wanted = match state.stderr {
        Stderr::Always => true,
        Stderr::IfTerminal => state.stderr_is_terminal,
        Stderr::Never => false,
    };
    let fallback = matches!(
        state.logger,
        Some(Logger {
            sink: Sink::Stderr,
            ..
        })
    );
    if wanted || fallback {
        write_stderr(severity, text);
    }
    wanted || fallback
}

/// `PROGRAM: [severity: ]text` in one write, so that messages from
/// processes sharing a terminal or pipe stay whole.
fn write_stderr(severity: Severity, text: &str) {
    let line = format!("{}: {}\n", crate::msg::program(), severity.prefixed(text));
    let _ = std::io::stderr().write_all(line.as_bytes());
}

impl Logger {
    fn write(&mut self, severity: Severity, text: &str) -> Result<(), LogError> {
        match &mut self.sink {
            Sink::Syslog(sink) => sink.send(severity, line::truncate(text)),
            Sink::File(sink) => {
                let now = chrono::Local::now().naive_local();
                let pid = self.pid;
                let record = line::file_line(&now, &self.host, &self.tag, pid, severity, text);
                let note = sink.write_line(&record)?;
                if let Some(note) = note {
                    let warning = Severity::Warning;
                    let record = line::file_line(&now, &self.host, &self.tag, pid, warning, &note);
                    sink.write_line(&record)?;
                }
                Ok(())
            }
            Sink::Stderr => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn temp_dir(name: &str) -> PathBuf {
        crate::test_support::temp_dir(&format!("log-mod-{name}"))
    }

    fn config(dir: &Path, text: &str) -> Config {
        Config::from_text(dir, text).expect("main.cf")
    }

    /// The global logger is shared by every test in this process, so the
    /// tests that use it run as one.
    #[test]
    fn init_writes_postfix_lines_and_checks_settings() {
        let dir = temp_dir("init");
        let log = dir.join("maillog");
        let text = format!(
            "maillog_file = {}\nmaillog_file_prefixes = {}\nmyhostname = mx.example.com\n",
            log.display(),
            dir.display()
        );
        set_stderr(Stderr::Never);
        init(&config(&dir, &text), "/usr/libexec/postfix/smtpd").expect("init");
        assert!(is_initialized());
        info("logtest connect from localhost[127.0.0.1]");
        warning("logtest a\nb");
        try_log(Severity::Error, "logtest bad").expect("log");
        verbose("logtest not logged");
        set_verbose(1);
        verbose(format_args!("logtest logged {}", 1));
        set_verbose(0);
        let written = std::fs::read_to_string(&log).unwrap();
        let pid = std::process::id();
        // Other tests in this process may warn meanwhile; keep ours.
        let tails: Vec<String> = written
            .lines()
            .filter(|l| l.contains("logtest"))
            .map(|l| l.splitn(4, ' ').nth(3).unwrap_or_default().to_string())
            .collect();
        assert_eq!(
            tails,
            [
                format!("mx postfix/smtpd[{pid}]: logtest connect from localhost[127.0.0.1]"),
                format!("mx postfix/smtpd[{pid}]: warning: logtest a?b"),
                format!("mx postfix/smtpd[{pid}]: error: logtest bad"),
                format!("mx postfix/smtpd[{pid}]: logtest logged 1"),
            ]
        );

        let outside = format!(
            "maillog_file = /var/tmp/x\nmaillog_file_prefixes = {}\n",
            dir.display()
        );
        let err = init(&config(&dir, &outside), "smtpd").unwrap_err();
        assert_eq!(
            err.to_string(),
            "maillog_file value '/var/tmp/x' does not match any prefix in maillog_file_prefixes"
        );
        let bad = format!("{text}syslog_facility = mial\n");
        let err = init(&config(&dir, &bad), "smtpd").unwrap_err();
        assert!(err
            .to_string()
            .ends_with("parameter syslog_facility: unrecognized value: mial"));

        let named = format!("{text}syslog_name = postfix-out\n");
        init(&config(&dir, &named), "qmgr").expect("init");
        info("logtest x");
        let written = std::fs::read_to_string(&log).unwrap();
        assert!(written.contains(&format!(" mx postfix-out/qmgr[{pid}]: logtest x\n")));
        lock().logger = None;
        set_stderr(Stderr::Always);
        let _ = std::fs::remove_dir_all(dir);
    }
}
