//! Replacing a file so that readers see the old or the new contents, never
//! a mix, and concurrent writers never lose each other's changes: take an
//! exclusive lock on `NAME.tmp`, read the current file under that lock,
//! write the new contents to `NAME.tmp`, fsync, give it the old file's mode
//! and owner, rename it over NAME, fsync the directory. A crash leaves at
//! worst a stale `.tmp` file, never a half-written NAME.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use thiserror::Error;

use crate::error::strerror;

#[derive(Debug, Error)]
pub enum AtomicWriteError {
    #[error("{op} {}: {}", path.display(), strerror(source))]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    /// The caller's function refused the old contents.
    #[error("{0}")]
    Refused(String),
}

fn fail<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> AtomicWriteError + 'a {
    move |source| AtomicWriteError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// The temporary name used while `path` is being rewritten.
pub fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".tmp");
    PathBuf::from(name)
}

/// Opens and locks `NAME.tmp`. A writer that waited for the lock may find
/// that the file it locked has meanwhile been renamed to NAME by the writer
/// before it; it then starts over with a new `NAME.tmp`.
fn lock_temp(temp: &Path) -> Result<Flock<File>, AtomicWriteError> {
    loop {
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(temp)
            .map_err(fail("open", temp))?;
        let lock = Flock::lock(file, FlockArg::LockExclusive)
            .map_err(|(_, errno)| fail("lock", temp)(io::Error::from(errno)))?;
        let locked = lock.metadata().map_err(fail("fstat", temp))?;
        match std::fs::metadata(temp) {
            Ok(now) if now.ino() == locked.ino() && now.dev() == locked.dev() => return Ok(lock),
            Ok(_) => continue,
            Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
            Err(err) => return Err(fail("stat", temp)(err)),
        }
    }
}

/// Replaces `path` with a file that `write` produces itself (an indexed
/// table, say), under the same lock as `update`: `write` gets the locked,
/// empty `NAME.tmp` and may read the old `path` first. Setting mode and
/// owner is `write`'s business.
pub fn rewrite_with(
    path: &Path,
    write: impl FnOnce(&File) -> Result<(), String>,
) -> Result<(), AtomicWriteError> {
    let temp = temp_path(path);
    let lock = lock_temp(&temp)?;
    let file: &File = &lock;
    file.set_len(0).map_err(fail("truncate", &temp))?;
    write(file).map_err(AtomicWriteError::Refused)?;
    file.sync_all().map_err(fail("fsync", &temp))?;
    std::fs::rename(&temp, path).map_err(fail("rename", &temp))?;
    sync_directory(path)
}

/// Rewrites `path` with what `update` makes of its current contents (empty
/// when the file does not exist yet; it then gets mode 0644).
pub fn update(
    path: &Path,
    update: impl FnOnce(&[u8]) -> Result<Vec<u8>, String>,
) -> Result<(), AtomicWriteError> {
    let temp = temp_path(path);
    let lock = lock_temp(&temp)?;
    let (old_text, old_meta) = match std::fs::read(path) {
        Ok(text) => (
            text,
            Some(std::fs::metadata(path).map_err(fail("stat", path))?),
        ),
        Err(err) if err.kind() == io::ErrorKind::NotFound => (Vec::new(), None),
        Err(err) => return Err(fail("open", path)(err)),
    };
    let new_text = update(&old_text).map_err(AtomicWriteError::Refused)?;
    let file: &File = &lock;
    file.set_len(0).map_err(fail("truncate", &temp))?;
    let mut writer = file;
    writer.write_all(&new_text).map_err(fail("write", &temp))?;
    if let Some(old) = &old_meta {
        file.set_permissions(std::fs::Permissions::from_mode(old.mode() & 0o7777))
            .map_err(fail("chmod", &temp))?;
        let me = (
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
        );
        if (old.uid(), old.gid()) != me {
            std::os::unix::fs::fchown(file, Some(old.uid()), Some(old.gid()))
                .map_err(fail("chown", &temp))?;
        }
    }
    file.sync_all().map_err(fail("fsync", &temp))?;
    std::fs::rename(&temp, path).map_err(fail("rename", &temp))?;
    sync_directory(path)
}

/// Replaces `path` with `contents`.
pub fn replace(path: &Path, contents: &[u8]) -> Result<(), AtomicWriteError> {
    update(path, |_| Ok(contents.to_vec()))
}

/// Makes a rename or a new directory entry durable.
pub fn sync_directory(path: &Path) -> Result<(), AtomicWriteError> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(fail("fsync", dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        crate::test_support::temp_dir(&format!("atomic-{name}"))
    }

    #[test]
    fn replaces_and_keeps_mode() {
        let dir = scratch("mode");
        let path = dir.join("main.cf");
        std::fs::write(&path, "old\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        replace(&path, b"new\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new\n");
        let mode = std::fs::metadata(&path).unwrap().mode() & 0o7777;
        assert_eq!(mode, 0o640);
        assert!(!temp_path(&path).exists());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn stale_temp_file_is_overwritten() {
        let dir = scratch("stale");
        let path = dir.join("main.cf");
        std::fs::write(temp_path(&path), "garbage that is longer than the result\n").unwrap();
        replace(&path, b"x = 1\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "x = 1\n");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn concurrent_updates_are_not_lost() {
        let dir = scratch("race");
        let path = dir.join("main.cf");
        std::fs::write(&path, "").unwrap();
        let threads: Vec<_> = (0..16)
            .map(|i| {
                let path = path.clone();
                std::thread::spawn(move || {
                    update(&path, |old| {
                        let mut new = old.to_vec();
                        new.extend(format!("p{i} = {i}\n").bytes());
                        Ok(new)
                    })
                    .unwrap();
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 16, "{text}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn refusal_leaves_file_alone() {
        let dir = scratch("refuse");
        let path = dir.join("main.cf");
        std::fs::write(&path, "keep\n").unwrap();
        let err = update(&path, |_| Err("no".into())).unwrap_err();
        assert_eq!(err.to_string(), "no");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "keep\n");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn missing_directory_is_reported() {
        let err = replace(Path::new("/nonexistent-dir/main.cf"), b"").unwrap_err();
        assert_eq!(
            err.to_string(),
            "open /nonexistent-dir/main.cf.tmp: No such file or directory"
        );
    }
}
