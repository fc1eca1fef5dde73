//! One site's fast flush log: the queue IDs of mail deferred for the site,
//! one per line, appended by `add` and read and emptied by a send. Every
//! access holds an exclusive flock on the file, so that an ID appended
//! while a send reads the log is either read or kept, never lost.

use std::collections::HashSet;
use std::fs::{File, FileTimes, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use nix::fcntl::{Flock, FlockArg};

/// Logs are private to the mail system, as the flush directory is.
const LOG_MODE: u32 = 0o600;
/// How many distinct IDs a send remembers to skip duplicates; beyond it,
/// a repeated ID is merely handled twice.
const DUPLICATE_FILTER_SIZE: usize = 10_000;
/// How often `add` tries again when a purge removed the log under it.
const OPEN_ATTEMPTS: usize = 5;

#[derive(Debug, thiserror::Error)]
#[error("{op} fast flush logfile {}: {source}", path.display())]
pub struct LogError {
    op: &'static str,
    path: PathBuf,
    source: io::Error,
}

fn failed<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> LogError + 'a {
    move |source| LogError {
        op,
        path: path.to_path_buf(),
        source,
    }
}

fn lock(file: File, path: &Path) -> Result<Flock<File>, LogError> {
    Flock::lock(file, FlockArg::LockExclusive)
        .map_err(|(_, errno)| failed("lock", path)(io::Error::from(errno)))
}

/// Whether `path` still names the file we hold (a purge may have removed
/// it while we waited for the lock).
fn still_linked(file: &File, path: &Path) -> bool {
    match (file.metadata(), std::fs::symlink_metadata(path)) {
        (Ok(held), Ok(named)) => held.ino() == named.ino() && held.dev() == named.dev(),
        _ => false,
    }
}

/// Appends `queue_id` to the log at `path`, creating it.
pub fn append(path: &Path, queue_id: &str) -> Result<(), LogError> {
    for _ in 0..OPEN_ATTEMPTS {
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(LOG_MODE)
            .open(path)
            .map_err(failed("open", path))?;
        let mut file = lock(file, path)?;
        if !still_linked(&file, path) {
            continue;
        }
        return file
            .write_all(format!("{queue_id}\n").as_bytes())
            .map_err(failed("write", path));
    }
    Err(failed("open", path)(io::Error::other(
        "removed repeatedly while being opened",
    )))
}

/// What a send found in a log.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Taken {
    /// Each ID once, in the order first listed.
    pub ids: Vec<String>,
    /// Lines that are not queue IDs, for a warning.
    pub bad: Vec<String>,
}

/// Opens and locks the log at `path` for a send; `None` when there is no
/// log (no mail was deferred for the site).
pub fn open_for_send(path: &Path) -> Result<Option<Flock<File>>, LogError> {
    let file = match OpenOptions::new().read(true).write(true).open(path) {
        Ok(file) => file,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(failed("open", path)(err)),
    };
    let file = lock(file, path)?;
    // Removed by a purge while we waited: it was empty, so is the site.
    Ok(still_linked(&file, path).then_some(file))
}

/// Reads the locked log; `valid` says which lines are queue IDs.
pub fn read_ids(
    file: &mut Flock<File>,
    path: &Path,
    valid: impl Fn(&str) -> bool,
) -> Result<Taken, LogError> {
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(failed("read", path))?;
    let text = String::from_utf8_lossy(&bytes);
    let mut taken = Taken::default();
    let mut seen = HashSet::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if !valid(line) {
            taken.bad.push(line.to_string());
            continue;
        }
        if seen.contains(line) {
            continue;
        }
        if seen.len() < DUPLICATE_FILTER_SIZE {
            seen.insert(line.to_string());
        }
        taken.ids.push(line.to_string());
    }
    Ok(taken)
}

/// Empties the locked log and marks it read now (its times, not the
/// file system's atime, which a noatime mount never updates).
pub fn truncate_and_mark_read(file: &mut Flock<File>, path: &Path) -> Result<(), LogError> {
    file.set_len(0).map_err(failed("truncate", path))?;
    mark_read(file, path)
}

/// Sets the log's access and modification times to now.
pub fn mark_read(file: &Flock<File>, path: &Path) -> Result<(), LogError> {
    let now = SystemTime::now();
    let times = FileTimes::new().set_accessed(now).set_modified(now);
    file.set_times(times)
        .map_err(failed("update time stamps of", path))
}

/// A log's state for refresh and purge.
#[derive(Debug, Clone, Copy)]
pub struct Status {
    pub empty: bool,
    /// Since the log was last read (atime), or written (mtime).
    pub unread_for: Duration,
    pub unchanged_for: Duration,
}

/// The state of the log at `path`; `None` when it is gone.
pub fn status(path: &Path, now: SystemTime) -> Result<Option<Status>, LogError> {
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(failed("stat", path)(err)),
    };
    let age = |secs: i64| {
        let then = SystemTime::UNIX_EPOCH + Duration::from_secs(secs.max(0) as u64);
        now.duration_since(then).unwrap_or_default()
    };
    Ok(Some(Status {
        empty: meta.len() == 0,
        unread_for: age(meta.atime()),
        unchanged_for: age(meta.mtime()),
    }))
}

/// Removes the log at `path` if it is still empty and unchanged for
/// longer than `max_age`, holding the lock so that an `add` in progress
/// is not lost. Returns whether it was removed.
pub fn remove_if_stale(path: &Path, max_age: Duration, now: SystemTime) -> Result<bool, LogError> {
    let Some(file) = open_for_send(path)? else {
        return Ok(false);
    };
    match status(path, now)? {
        Some(s) if s.empty && s.unchanged_for > max_age => {}
        _ => return Ok(false),
    }
    std::fs::remove_file(path).map_err(failed("remove", path))?;
    drop(file);
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_log(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("flush-log-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("site")
    }

    #[test]
    fn append_then_take_once_each() {
        let path = temp_log("take");
        for id in ["AAA111", "BBB222", "AAA111", "not an id"] {
            append(&path, id).unwrap();
        }
        let mut file = open_for_send(&path).unwrap().unwrap();
        let taken = read_ids(&mut file, &path, |id| !id.contains(' ')).unwrap();
        assert_eq!(taken.ids, ["AAA111", "BBB222"]);
        assert_eq!(taken.bad, ["not an id"]);
        truncate_and_mark_read(&mut file, &path).unwrap();
        drop(file);
        assert_eq!(std::fs::read(&path).unwrap(), b"");
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.mode() & 0o777, LOG_MODE);
    }

    #[test]
    fn a_missing_log_is_nothing_to_send() {
        let path = temp_log("missing");
        assert!(open_for_send(&path).unwrap().is_none());
    }

    #[test]
    fn only_stale_empty_logs_are_removed() {
        let path = temp_log("stale");
        append(&path, "AAA111").unwrap();
        let later = SystemTime::now() + Duration::from_secs(3600);
        assert!(!remove_if_stale(&path, Duration::from_secs(60), later).unwrap());
        std::fs::write(&path, b"").unwrap();
        assert!(!remove_if_stale(&path, Duration::from_secs(7200), later).unwrap());
        assert!(remove_if_stale(&path, Duration::from_secs(60), later).unwrap());
        assert!(!path.exists());
        assert!(!remove_if_stale(&path, Duration::from_secs(60), later).unwrap());
    }
}
