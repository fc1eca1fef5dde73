//! Records to the system's syslog service over /dev/log, with the
//! facility from syslog_facility and Postfix's severity mapping (info,
//! warning, err, and crit for both fatal and panic).

use std::path::{Path, PathBuf};

use syslog::{Facility, Formatter3164, LoggerBackend};

use super::error::LogError;
use super::line::Severity;
use crate::error::strerror;

/// Postfix's facility names (msg_syslog.c), compared exactly: `LOCAL3`
/// is refused as Postfix refuses it.
pub fn facility(name: &str, main_cf: &Path) -> Result<Facility, LogError> {
    let facility = match name {
        "auth" => Facility::LOG_AUTH,
        "authpriv" => Facility::LOG_AUTHPRIV,
        "cron" => Facility::LOG_CRON,
        "daemon" => Facility::LOG_DAEMON,
        "ftp" => Facility::LOG_FTP,
        "kern" => Facility::LOG_KERN,
        "lpr" => Facility::LOG_LPR,
        "mail" => Facility::LOG_MAIL,
        "news" => Facility::LOG_NEWS,
        "syslog" => Facility::LOG_SYSLOG,
        "user" => Facility::LOG_USER,
        "uucp" => Facility::LOG_UUCP,
        "local0" => Facility::LOG_LOCAL0,
        "local1" => Facility::LOG_LOCAL1,
        "local2" => Facility::LOG_LOCAL2,
        "local3" => Facility::LOG_LOCAL3,
        "local4" => Facility::LOG_LOCAL4,
        "local5" => Facility::LOG_LOCAL5,
        "local6" => Facility::LOG_LOCAL6,
        "local7" => Facility::LOG_LOCAL7,
        _ => {
            return Err(LogError::Facility {
                main_cf: main_cf.to_path_buf(),
                value: name.to_string(),
            })
        }
    };
    Ok(facility)
}

/// A connection to syslogd.
pub struct SyslogSink {
    formatter: Formatter3164,
    logger: syslog::Logger<LoggerBackend, Formatter3164>,
    path: PathBuf,
}

impl std::fmt::Debug for SyslogSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyslogSink")
            .field("formatter", &self.formatter)
            .finish()
    }
}

/// Where glibc's syslog() sends records on Linux.
const DEV_LOG: &str = "/dev/log";

impl SyslogSink {
    /// Connects to /dev/log. The record carries no host name, as glibc's
    /// syslog() sends none locally; the daemon adds its own. The tag is
    /// the process name, `[pid]` follows.
    pub fn connect(facility: Facility, tag: &str) -> Result<SyslogSink, String> {
        SyslogSink::connect_to(Path::new(DEV_LOG), facility, tag)
    }

    fn connect_to(path: &Path, facility: Facility, tag: &str) -> Result<SyslogSink, String> {
        let formatter = Formatter3164 {
            facility,
            hostname: None,
            process: tag.to_string(),
            pid: std::process::id(),
        };
        let logger = syslog::unix_custom(formatter.clone(), path)
            .map_err(|e| format!("connect {}: {}", path.display(), reason(&e)))?;
        Ok(SyslogSink {
            formatter,
            logger,
            path: path.to_path_buf(),
        })
    }

    /// Sends one record; a syslogd that restarted is reconnected once.
    pub fn send(&mut self, severity: Severity, text: &str) -> Result<(), LogError> {
        let message = severity.prefixed(text);
        if self.try_send(severity, &message).is_ok() {
            return Ok(());
        }
        self.logger = syslog::unix_custom(self.formatter.clone(), &self.path)
            .map_err(|e| LogError::Syslog(reason(&e)))?;
        self.try_send(severity, &message)
            .map_err(|e| LogError::Syslog(reason(&e)))
    }

    fn try_send(&mut self, severity: Severity, message: &str) -> Result<(), syslog::Error> {
        match severity {
            Severity::Info => self.logger.info(message),
            Severity::Warning => self.logger.warning(message),
            Severity::Error => self.logger.err(message),
            Severity::Fatal | Severity::Panic => self.logger.crit(message),
        }
    }
}

/// The system's words for what went wrong, without the crate's wrapping.
fn reason(err: &syslog::Error) -> String {
    match err {
        syslog::Error::Write(io) | syslog::Error::Io(io) => strerror(io),
        syslog::Error::Initialization(inner) => {
            if let Some(inner) = inner.downcast_ref::<syslog::Error>() {
                reason(inner)
            } else if let Some(io) = inner.downcast_ref::<std::io::Error>() {
                strerror(io)
            } else {
                inner.to_string()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facility_names_are_postfix_ones() {
        let main_cf = Path::new("/etc/postfix/main.cf");
        assert_eq!(
            facility("mail", main_cf).unwrap() as u8,
            Facility::LOG_MAIL as u8
        );
        assert_eq!(
            facility("local7", main_cf).unwrap() as u8,
            Facility::LOG_LOCAL7 as u8
        );
        let err = facility("LOCAL3", main_cf).unwrap_err();
        assert_eq!(
            err.to_string(),
            "file /etc/postfix/main.cf: parameter syslog_facility: unrecognized value: LOCAL3"
        );
        assert!(facility("log_mail", main_cf).is_err());
    }

    #[test]
    fn records_reach_the_socket_with_priority_and_tag() {
        let dir = std::env::temp_dir().join(format!("log-syslog-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("log");
        let server = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        let mut sink = SyslogSink::connect_to(&path, Facility::LOG_MAIL, "postfix/smtpd").unwrap();
        sink.send(Severity::Warning, "disk low").unwrap();
        sink.send(Severity::Panic, "bug").unwrap();
        let mut buf = [0u8; 512];
        let pid = std::process::id();
        let n = server.recv(&mut buf).unwrap();
        let record = String::from_utf8_lossy(&buf[..n]).to_string();
        // LOG_MAIL (16) | LOG_WARNING (4); the time stamp is syslogd's concern.
        assert!(record.starts_with("<20>"), "{record}");
        assert!(
            record.ends_with(&format!(" postfix/smtpd[{pid}]: warning: disk low")),
            "{record}"
        );
        let n = server.recv(&mut buf).unwrap();
        let record = String::from_utf8_lossy(&buf[..n]).to_string();
        // fatal and panic are LOG_CRIT (2), as in Postfix.
        assert!(
            record.starts_with("<18>") && record.ends_with(": panic: bug"),
            "{record}"
        );
        let _ = std::fs::remove_dir_all(&dir);
        let err = SyslogSink::connect_to(&path, Facility::LOG_MAIL, "x").unwrap_err();
        assert!(err.ends_with("log: No such file or directory"), "{err}");
    }
}
