//! The fast flush service's protocol (Postfix's flush(8)): requests to
//! the flush daemon on public/flush and its one-number answers. qmgr adds
//! the queue IDs of mail deferred for a site in fast_flush_domains; smtpd's
//! ETRN and `postqueue -s` ask for a site's mail to be delivered now, and
//! `postqueue -i` for one deferred message.

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::{Config, ConfigError};
use crate::ipc::{self, Decoder, IpcError, Message};
use crate::trigger;

/// The service name in public/.
pub const SERVICE: &str = "flush";
/// How long a client waits for the daemon to answer.
const TIMEOUT: Duration = Duration::from_secs(100);

/// One request (attribute `request`, plus `site` or `queue_id`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlushRequest {
    /// Remember that `queue_id` waits for `site`.
    Add { site: String, queue_id: String },
    /// Deliver the mail waiting for `site` now.
    SendSite { site: String },
    /// Deliver one deferred message now.
    SendFile { queue_id: String },
    /// Rebuild logs not read for fast_flush_refresh_time.
    Refresh,
    /// Rebuild every log now.
    Purge,
}

/// The answer (Postfix's FLUSH_STAT_* values on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushStatus {
    Ok,
    /// The service is unavailable.
    Fail,
    /// A malformed request.
    Bad,
    /// The site is not eligible (not in fast_flush_domains).
    Deny,
}

impl FlushStatus {
    pub fn code(self) -> u64 {
        match self {
            FlushStatus::Ok => 0,
            FlushStatus::Fail => 1,
            FlushStatus::Bad => 3,
            FlushStatus::Deny => 4,
        }
    }

    pub fn from_code(code: u64) -> FlushStatus {
        match code {
            0 => FlushStatus::Ok,
            3 => FlushStatus::Bad,
            4 => FlushStatus::Deny,
            _ => FlushStatus::Fail,
        }
    }

    pub fn to_message(self) -> Message {
        Message::new().with("status", self.code().to_string())
    }
}

impl FlushRequest {
    pub fn to_message(&self) -> Message {
        match self {
            FlushRequest::Add { site, queue_id } => Message::new()
                .with("request", "add")
                .with("site", site)
                .with("queue_id", queue_id),
            FlushRequest::SendSite { site } => Message::new()
                .with("request", "send_site")
                .with("site", site),
            FlushRequest::SendFile { queue_id } => Message::new()
                .with("request", "send_file")
                .with("queue_id", queue_id),
            FlushRequest::Refresh => Message::new().with("request", "refresh"),
            FlushRequest::Purge => Message::new().with("request", "purge"),
        }
    }

    pub fn from_message(message: &Message) -> Result<FlushRequest, IpcError> {
        let text = |name| message.text(name).map(str::to_string);
        match message.text("request")? {
            "add" => Ok(FlushRequest::Add {
                site: text("site")?,
                queue_id: text("queue_id")?,
            }),
            "send_site" => Ok(FlushRequest::SendSite {
                site: text("site")?,
            }),
            "send_file" => Ok(FlushRequest::SendFile {
                queue_id: text("queue_id")?,
            }),
            "refresh" => Ok(FlushRequest::Refresh),
            "purge" => Ok(FlushRequest::Purge),
            other => Err(IpcError::BadValue {
                name: "request".into(),
                reason: format!("unknown request {other:?}"),
            }),
        }
    }
}

/// Sends one request to the flush daemon and returns its answer; a daemon
/// that cannot be reached is `Fail`.
pub fn request(config: &Config, request: &FlushRequest) -> FlushStatus {
    match service_path(config) {
        Ok(path) => request_at(&path, request),
        Err(_) => FlushStatus::Fail,
    }
}

/// Where the flush daemon listens: public/flush.
pub fn service_path(config: &Config) -> Result<PathBuf, ConfigError> {
    trigger::public_service(config, SERVICE)
}

/// `request` to the daemon at `path`, for a long-running client (smtpd)
/// that looks the path up once.
pub fn request_at(path: &Path, request: &FlushRequest) -> FlushStatus {
    let ask = || -> Result<FlushStatus, IpcError> {
        let mut stream = UnixStream::connect(path)?;
        stream.set_read_timeout(Some(TIMEOUT))?;
        stream.set_write_timeout(Some(TIMEOUT))?;
        ipc::send(&mut stream, &request.to_message())?;
        let reply = ipc::receive(&mut stream, &mut Decoder::new())?;
        Ok(FlushStatus::from_code(reply.number("status")?))
    };
    ask().unwrap_or(FlushStatus::Fail)
}

/// qmgr: `queue_id` was deferred for `site`. Without fast_flush_domains
/// nothing is asked (Postfix's client does the same).
pub fn add(config: &Config, site: &str, queue_id: &str) -> FlushStatus {
    let domains = config.string("fast_flush_domains").unwrap_or_default();
    if domains.trim().is_empty() {
        return FlushStatus::Deny;
    }
    request(
        config,
        &FlushRequest::Add {
            site: site.to_string(),
            queue_id: queue_id.to_string(),
        },
    )
}

/// ETRN, `postqueue -s`, `sendmail -qR`.
pub fn send_site(config: &Config, site: &str) -> FlushStatus {
    request(
        config,
        &FlushRequest::SendSite {
            site: site.to_string(),
        },
    )
}

/// `postqueue -i`, `sendmail -qI`.
pub fn send_file(config: &Config, queue_id: &str) -> FlushStatus {
    request(
        config,
        &FlushRequest::SendFile {
            queue_id: queue_id.to_string(),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_survive_the_wire() {
        let all = [
            FlushRequest::Add {
                site: "example.com".into(),
                queue_id: "4F9D1C2A3B".into(),
            },
            FlushRequest::SendSite {
                site: "[192.0.2.1]".into(),
            },
            FlushRequest::SendFile {
                queue_id: "4F9D1C2A3B".into(),
            },
            FlushRequest::Refresh,
            FlushRequest::Purge,
        ];
        for request in all {
            let mut decoder = Decoder::new();
            decoder.push(&request.to_message().encode().unwrap());
            let back = decoder.next_message().unwrap().unwrap();
            assert_eq!(FlushRequest::from_message(&back).unwrap(), request);
        }
        let odd = Message::new().with("request", "explode");
        assert!(FlushRequest::from_message(&odd).is_err());
    }

    #[test]
    fn status_codes_are_postfix_values() {
        for status in [
            FlushStatus::Ok,
            FlushStatus::Fail,
            FlushStatus::Bad,
            FlushStatus::Deny,
        ] {
            assert_eq!(FlushStatus::from_code(status.code()), status);
        }
        assert_eq!(FlushStatus::from_code(99), FlushStatus::Fail);
    }

    #[test]
    fn a_missing_daemon_is_a_failure() {
        let dir = crate::test_support::temp_dir("flush-client");
        let text = format!(
            "queue_directory = {}\nfast_flush_domains = example.com\n",
            dir.display()
        );
        let config = Config::from_text(&dir, &text).unwrap();
        assert_eq!(send_site(&config, "example.com"), FlushStatus::Fail);
        let text = format!(
            "queue_directory = {}\nfast_flush_domains =\n",
            dir.display()
        );
        let config = Config::from_text(&dir, &text).unwrap();
        assert_eq!(add(&config, "example.com", "ABC"), FlushStatus::Deny);
    }
}
