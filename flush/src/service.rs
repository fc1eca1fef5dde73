//! The requests of the fast flush service, on the queue and the per-site
//! logs: `add` remembers that a message waits for a site, a send moves the
//! site's deferred mail (or one message) to incoming/ and wakes qmgr, and
//! refresh/purge keep the logs from going stale.
//!
//! As in Postfix, a send touches each listed deferred file (its mtime is
//! our qmgr's retry time, so the message is due even if it stays put),
//! moves it to incoming/, where qmgr takes it on its next incoming scan,
//! and then empties the log: qmgr adds the message again if it is
//! deferred again. A site send first asks qmgr to forget which
//! destinations it found dead, so that the flushed mail is really tried.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use libmail::config::{Config, ConfigError};
use libmail::flush::FlushStatus;
use libmail::msg;
use libmail::queue::{Queue, QueueError, QueueId, DEFERRED, FLUSH, INCOMING};
use libmail::trigger::qmgr;
use nix::sys::stat::{utimensat, UtimensatFlags};
use nix::sys::time::TimeSpec;

use crate::logfile;
use crate::site::{self, Eligible, EligibleError};

/// Sends requests to qmgr (a stand-in records them in tests).
pub type Waker = Box<dyn FnMut(&[u8])>;

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Queue(#[from] QueueError),
    #[error("{0}")]
    Eligible(#[from] EligibleError),
}

/// Which logs a refresh looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refresh {
    /// Those unread for fast_flush_refresh_time (refresh, master wakeup).
    Stale,
    /// All of them (purge).
    All,
}

pub struct Flush {
    queue: Queue,
    /// $queue_directory/flush.
    logs: PathBuf,
    eligible: Eligible,
    refresh_time: Duration,
    purge_time: Duration,
    wake_qmgr: Waker,
}

impl Flush {
    pub fn from_config(config: &Config) -> Result<Flush, SetupError> {
        let queue = Queue::from_config(config)?;
        let qmgr_path =
            libmail::trigger::public_service(config, &config.string("queue_service_name")?)?;
        Ok(Flush {
            logs: queue.directory().join(FLUSH),
            queue,
            eligible: Eligible::from_config(config)?,
            refresh_time: Duration::from_secs(config.time("fast_flush_refresh_time")?),
            purge_time: Duration::from_secs(config.time("fast_flush_purge_time")?),
            // A qmgr that is not running finds the mail on its own.
            wake_qmgr: Box::new(move |request| {
                let _ = libmail::trigger::send_to_path(&qmgr_path, request);
            }),
        })
    }

    #[cfg(test)]
    pub fn for_test(queue: Queue, eligible: Eligible, wake_qmgr: Waker) -> Flush {
        Flush {
            logs: queue.directory().join(FLUSH),
            queue,
            eligible,
            refresh_time: Duration::from_secs(12 * 3600),
            purge_time: Duration::from_secs(7 * 86_400),
            wake_qmgr,
        }
    }

    /// The log file of a site that may have one: normalized, eligible
    /// and nameable; otherwise the answer to give.
    fn log_path(&mut self, site: &str) -> Result<PathBuf, FlushStatus> {
        let site = site::normalize(site);
        match self.eligible.allows(&site) {
            Ok(true) => {}
            Ok(false) => return Err(FlushStatus::Deny),
            Err(err) => {
                msg::warning(format_args!("fast_flush_domains: {err}"));
                return Err(FlushStatus::Fail);
            }
        }
        let name = site::file_name(&site).ok_or(FlushStatus::Bad)?;
        Ok(self.logs.join(name))
    }

    /// `add`: `queue_id` waits for `site`.
    pub fn add(&mut self, site: &str, queue_id: &str) -> FlushStatus {
        if QueueId::parse(queue_id).is_none() {
            return FlushStatus::Bad;
        }
        let path = match self.log_path(site) {
            Ok(path) => path,
            Err(status) => return status,
        };
        match logfile::append(&path, queue_id) {
            Ok(()) => FlushStatus::Ok,
            Err(err) => {
                msg::warning(err);
                FlushStatus::Fail
            }
        }
    }

    /// `send_site`: deliver what the site's log lists.
    pub fn send_site(&mut self, site: &str) -> FlushStatus {
        match self.log_path(site) {
            Ok(path) => self.send_log(&path, true),
            Err(status) => status,
        }
    }

    /// `send_file`: deliver one deferred message. Not being deferred
    /// (delivered meanwhile, say) is not an error.
    pub fn send_file(&mut self, queue_id: &str) -> FlushStatus {
        let Some(id) = QueueId::parse(queue_id) else {
            return FlushStatus::Bad;
        };
        if self.schedule(&id, SystemTime::now()) {
            (self.wake_qmgr)(qmgr::SCAN_INCOMING);
        }
        FlushStatus::Ok
    }

    /// Moves the mail a log lists to incoming/ and empties the log.
    fn send_log(&mut self, path: &Path, unthrottle: bool) -> FlushStatus {
        match self.try_send_log(path, unthrottle) {
            Ok(()) => FlushStatus::Ok,
            Err(err) => {
                msg::warning(err);
                FlushStatus::Fail
            }
        }
    }

    fn try_send_log(&mut self, path: &Path, unthrottle: bool) -> Result<(), logfile::LogError> {
        let Some(mut file) = logfile::open_for_send(path)? else {
            return Ok(()); // nothing was ever deferred for the site
        };
        if unthrottle {
            (self.wake_qmgr)(qmgr::FLUSH_DEAD);
        }
        let taken = logfile::read_ids(&mut file, path, |id| QueueId::parse(id).is_some())?;
        for bad in &taken.bad {
            let shown: String = bad.chars().take(30).collect();
            msg::warning(format_args!(
                "bad queue id \"{shown}...\" in fast flush logfile {}",
                path.display()
            ));
        }
        let now = SystemTime::now();
        let moved = taken
            .ids
            .iter()
            .filter_map(|id| QueueId::parse(id))
            .filter(|id| self.schedule(id, now))
            .count();
        if taken.ids.is_empty() && taken.bad.is_empty() {
            logfile::mark_read(&file, path)?;
        } else {
            logfile::truncate_and_mark_read(&mut file, path)?;
        }
        drop(file);
        if moved > 0 {
            (self.wake_qmgr)(qmgr::SCAN_INCOMING);
        }
        Ok(())
    }

    /// Makes one message due now and moves it from deferred/ to
    /// incoming/. Returns whether it is waiting in incoming/ (moved now,
    /// or already moved by another flush process).
    fn schedule(&self, id: &QueueId, now: SystemTime) -> bool {
        let since = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        let time = TimeSpec::from(since);
        for queue in [DEFERRED, INCOMING] {
            let path = self.queue.path(queue, id);
            match utimensat(None, &path, &time, &time, UtimensatFlags::FollowSymlink) {
                Ok(()) => {}
                Err(nix::errno::Errno::ENOENT) => continue,
                Err(err) => {
                    msg::warning(format_args!(
                        "update {} time stamps: {}",
                        path.display(),
                        io::Error::from(err)
                    ));
                    continue;
                }
            }
            if queue == INCOMING {
                return true;
            }
            return match self.queue.rename(id, DEFERRED, INCOMING) {
                Ok(_) => true,
                // Taken by qmgr (or postsuper) since we touched it.
                Err(err) if err.is_not_found() => false,
                Err(err) => {
                    msg::warning(err);
                    false
                }
            };
        }
        false
    }

    /// refresh, purge and master's wakeup: removes empty logs unchanged
    /// for fast_flush_purge_time, and sends (without unthrottling) each
    /// non-empty log unread for fast_flush_refresh_time, or every one.
    pub fn refresh(&mut self, which: Refresh) {
        let entries = match std::fs::read_dir(&self.logs) {
            Ok(entries) => entries,
            Err(err) => {
                return msg::warning(format_args!("open {}: {err}", self.logs.display()));
            }
        };
        let now = SystemTime::now();
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if site::from_file_name(name).is_none() {
                continue;
            }
            self.refresh_one(&entry.path(), which, now);
        }
    }

    fn refresh_one(&mut self, path: &Path, which: Refresh, now: SystemTime) {
        let status = match logfile::status(path, now) {
            Ok(Some(status)) => status,
            Ok(None) => return,
            Err(err) => return msg::warning(err),
        };
        if status.empty {
            if status.unchanged_for > self.purge_time {
                if let Err(err) = logfile::remove_if_stale(path, self.purge_time, now) {
                    msg::warning(err);
                }
            }
            return;
        }
        if which == Refresh::All || status.unread_for > self.refresh_time {
            self.send_log(path, false);
        }
    }
}

#[cfg(test)]
mod tests;
