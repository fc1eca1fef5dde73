//! Replacing a file so that readers see the old or the new contents, never
//! a mix: write `NAME.tmp` beside it under an exclusive lock, fsync, give it
//! the old file's mode and owner, rename over the old name, fsync the
//! directory. Two writers at once take turns on the lock; a crash leaves
//! at worst a stale `.tmp` file, never a half-written NAME.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use thiserror::Error;

use crate::error::strerror;

#[derive(Debug, Error)]
#[error("{op} {}: {}", path.display(), strerror(source))]
pub struct AtomicWriteError {
    pub op: &'static str,
    pub path: PathBuf,
    pub source: io::Error,
}

fn fail<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> AtomicWriteError + 'a {
    move |source| AtomicWriteError {
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

/// Replaces `path` with `contents`. A new file gets mode 0644.
pub fn replace(path: &Path, contents: &[u8]) -> Result<(), AtomicWriteError> {
    let temp = temp_path(path);
    let old = std::fs::metadata(path).ok();
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .open(&temp)
        .map_err(fail("create", &temp))?;
    let lock = Flock::lock(file, FlockArg::LockExclusive)
        .map_err(|(_, errno)| fail("lock", &temp)(io::Error::from(errno)))?;
    let file: &File = &lock;
    file.set_len(0).map_err(fail("truncate", &temp))?;
    let mut writer = file;
    writer.write_all(contents).map_err(fail("write", &temp))?;
    if let Some(old) = &old {
        file.set_permissions(std::fs::Permissions::from_mode(old.mode() & 0o7777))
            .map_err(fail("chmod", &temp))?;
        if old.uid() != nix::unistd::geteuid().as_raw()
            || old.gid() != nix::unistd::getegid().as_raw()
        {
            std::os::unix::fs::fchown(file, Some(old.uid()), Some(old.gid()))
                .map_err(fail("chown", &temp))?;
        }
    }
    file.sync_all().map_err(fail("fsync", &temp))?;
    std::fs::rename(&temp, path).map_err(fail("rename", &temp))?;
    sync_directory(path)
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
        let dir = std::env::temp_dir().join(format!("atomic-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
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
    fn missing_directory_is_reported() {
        let err = replace(Path::new("/nonexistent-dir/main.cf"), b"").unwrap_err();
        assert_eq!(
            err.to_string(),
            "create /nonexistent-dir/main.cf.tmp: No such file or directory"
        );
    }
}
