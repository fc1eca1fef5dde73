//! The maillog_file writer. Postfix 3.4+ hands every record to postlogd;
//! here each process appends itself: every line is one write(2) on an
//! O_APPEND descriptor, which the kernel applies atomically at the end of
//! the file, so lines from concurrent processes never interleave.
//!
//! After `postfix logrotate` (or logrotate(8)) renames or removes the file,
//! the writer notices and opens the new one. It checks at most once per
//! `CHECK_INTERVAL`: a stat(2) of the path per line would cost as much
//! as the write itself (measured on ext4: ~0.4-0.5 µs per stat, ~0.35-0.4
//! µs per append of a 100-byte line), while the clock is read anyway for
//! the time stamp. `rotate` waits one interval before compressing, so by
//! then every writer has moved on.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::error::LogError;

/// How often a writer looks whether its file was renamed or removed.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// The name that means "this process's standard output" (containers).
const STDOUT: &str = "/dev/stdout";

/// Postfix 3.7 creates the log file readable by its owner only.
const CREATE_MODE: u32 = 0o600;

/// Checks `path` against maillog_file_prefixes as Postfix does: a plain
/// string prefix test (so `/var` also admits `/various`), which keeps a
/// configuration from pointing a privileged writer at an arbitrary file.
pub fn check_prefix(path: &str, prefixes: &[String]) -> Result<(), LogError> {
    if prefixes.iter().any(|p| path.starts_with(p.as_str())) {
        Ok(())
    } else {
        Err(LogError::Prefix {
            path: path.to_string(),
        })
    }
}

/// An open maillog_file.
#[derive(Debug)]
pub struct FileSink {
    path: PathBuf,
    file: File,
    /// Device and inode at open; `None` for standard output, which is
    /// never reopened.
    identity: Option<(u64, u64)>,
    checked: Instant,
    /// A failed reopen is reported once, not on every line.
    reopen_failed: bool,
}

impl FileSink {
    /// Opens (creating if need be) `path` for appending; `/dev/stdout`
    /// is a copy of descriptor 1, which works for pipes and sockets too.
    pub fn open(path: &Path) -> Result<FileSink, LogError> {
        let opened = if path == Path::new(STDOUT) {
            dup_stdout().map(|file| (file, None))
        } else {
            open_append(path)
        };
        let (file, identity) = opened.map_err(|source| LogError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(FileSink {
            path: path.to_path_buf(),
            file,
            identity,
            checked: Instant::now(),
            reopen_failed: false,
        })
    }

    /// Appends one whole line. Returns a note to log when the file was
    /// moved away and could not be reopened (the line then goes to the
    /// old file, which is better than losing it).
    pub fn write_line(&mut self, line: &str) -> Result<Option<String>, LogError> {
        let note = self.reopen_if_moved();
        // One write(2): write_all loops only on a short write, which a
        // regular file gives only when the disk is full.
        self.file
            .write_all(line.as_bytes())
            .map_err(|source| LogError::Write {
                path: self.path.clone(),
                source,
            })?;
        Ok(note)
    }

    fn reopen_if_moved(&mut self) -> Option<String> {
        let identity = self.identity?;
        if self.checked.elapsed() < CHECK_INTERVAL {
            return None;
        }
        self.checked = Instant::now();
        if current_identity(&self.path) == Some(identity) {
            return None;
        }
        match open_append(&self.path) {
            Ok((file, identity)) => {
                self.file = file;
                self.identity = identity;
                self.reopen_failed = false;
                None
            }
            Err(err) if !self.reopen_failed => {
                self.reopen_failed = true;
                let err = crate::error::strerror(&err);
                Some(format!("reopen logfile '{}': {err}", self.path.display()))
            }
            Err(_) => None,
        }
    }
}

fn dup_stdout() -> io::Result<File> {
    Ok(File::from(io::stdout().as_fd().try_clone_to_owned()?))
}

fn open_append(path: &Path) -> io::Result<(File, Option<(u64, u64)>)> {
    let file = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(CREATE_MODE)
        .open(path)?;
    let meta = file.metadata()?;
    Ok((file, Some((meta.dev(), meta.ino()))))
}

fn current_identity(path: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(path)
        .ok()
        .map(|meta| (meta.dev(), meta.ino()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefixes(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn prefix_check_is_a_string_prefix() {
        let allowed = prefixes(&["/var", "/dev/stdout"]);
        assert!(check_prefix("/var/log/maillog", &allowed).is_ok());
        assert!(check_prefix("/dev/stdout", &allowed).is_ok());
        // Postfix compares strings, not path components.
        assert!(check_prefix("/various", &allowed).is_ok());
        let err = check_prefix("/tmp/maillog", &allowed).unwrap_err();
        assert_eq!(
            err.to_string(),
            "maillog_file value '/tmp/maillog' does not match any prefix in maillog_file_prefixes"
        );
        assert!(check_prefix("/var/log/x", &[]).is_err());
    }

    fn temp_dir(name: &str) -> PathBuf {
        crate::test_support::temp_dir(&format!("log-file-{name}"))
    }

    #[test]
    fn appends_and_creates_owner_only() {
        let dir = temp_dir("append");
        let path = dir.join("maillog");
        let mut sink = FileSink::open(&path).expect("open");
        sink.write_line("one\n").expect("write");
        sink.write_line("two\n").expect("write");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "one\ntwo\n");
        let mode = std::fs::metadata(&path).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn reopens_after_rename() {
        let dir = temp_dir("reopen");
        let path = dir.join("maillog");
        let old = dir.join("maillog.old");
        let mut sink = FileSink::open(&path).expect("open");
        sink.write_line("before\n").expect("write");
        std::fs::rename(&path, &old).unwrap();
        // Within the interval the old descriptor is still used...
        sink.write_line("late\n").expect("write");
        // ...and after it the new file.
        sink.checked -= CHECK_INTERVAL;
        assert_eq!(sink.write_line("after\n").expect("write"), None);
        assert_eq!(std::fs::read_to_string(&old).unwrap(), "before\nlate\n");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "after\n");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn unwritable_reopen_is_reported_once_and_keeps_old_file() {
        let dir = temp_dir("noreopen");
        let path = dir.join("maillog");
        let mut sink = FileSink::open(&path).expect("open");
        std::fs::remove_file(&path).unwrap();
        // A directory in the way makes the reopen fail for root as well.
        std::fs::create_dir(&path).unwrap();
        sink.checked -= CHECK_INTERVAL;
        let note = sink.write_line("x\n").expect("write");
        assert!(note.is_some_and(|n| n.starts_with("reopen logfile '")));
        sink.checked -= CHECK_INTERVAL;
        assert_eq!(sink.write_line("y\n").expect("write"), None);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn open_error_names_the_file() {
        let err = FileSink::open(Path::new("/nonexistent-dir/maillog")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "open logfile '/nonexistent-dir/maillog': No such file or directory"
        );
    }
}
