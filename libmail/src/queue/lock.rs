//! Locks on queue files, so that postsuper and the delivery agents never
//! work on the same message at the same moment.
//!
//! A delivery agent holds a shared lock on the queue file from before it
//! reads the content until it has marked its recipients done; postsuper
//! takes an exclusive lock before it deletes, holds, releases, requeues or
//! expires a message. So postsuper waits for a delivery in progress to end
//! and then sees its done marks, and an agent that locks a file postsuper
//! has just removed or moved finds out (`LockedFile::open` checks that the
//! path still names the file it locked) and delivers nothing.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

use super::QueueError;

/// The file mode bit that marks a message for forced expiration
/// (`postsuper -e`/`-f`): group execute, as in Postfix
/// (MAIL_QUEUE_STAT_EXPIRE), so that it survives renames between queues.
pub const EXPIRE_FLAG: u32 = 0o010;

/// Whether a queue file's mode says it is to expire now.
pub fn is_forced_expire(mode: u32) -> bool {
    mode & EXPIRE_FLAG != 0
}

/// Which lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockKind {
    /// A delivery agent reading and marking recipients.
    Shared,
    /// postsuper changing the message's fate.
    Exclusive,
}

/// An open queue file with its lock; the lock goes when this does.
#[derive(Debug)]
pub struct LockedFile {
    path: PathBuf,
    lock: Flock<File>,
}

impl LockedFile {
    /// Opens `path` for reading and writing and waits for the lock. A
    /// file that was removed or renamed while we waited is reported as
    /// not found, like a file that was never there.
    pub fn open(path: &Path, kind: LockKind) -> Result<LockedFile, QueueError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| QueueError::io("open", path, e))?;
        let arg = match kind {
            LockKind::Shared => FlockArg::LockShared,
            LockKind::Exclusive => FlockArg::LockExclusive,
        };
        let lock = Flock::lock(file, arg)
            .map_err(|(_, errno)| QueueError::io("lock", path, io::Error::from(errno)))?;
        let locked = LockedFile {
            path: path.to_path_buf(),
            lock,
        };
        locked.check_still_linked()?;
        Ok(locked)
    }

    /// The path must still name the inode we hold.
    fn check_still_linked(&self) -> Result<(), QueueError> {
        let held = self
            .lock
            .metadata()
            .map_err(|e| QueueError::io("fstat", &self.path, e))?;
        let named = std::fs::symlink_metadata(&self.path)
            .map_err(|e| QueueError::io("open", &self.path, e))?;
        if held.ino() == named.ino() && held.dev() == named.dev() {
            return Ok(());
        }
        let gone = io::Error::from_raw_os_error(nix::libc::ENOENT);
        Err(QueueError::io("open", &self.path, gone))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The open file, for reading and for marking recipients.
    pub fn file(&self) -> &File {
        &self.lock
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn scratch(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("qlock-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn shared_locks_coexist_and_exclude_an_exclusive_one() {
        let dir = scratch("share");
        let path = dir.join("A1B2C3");
        std::fs::write(&path, b"x").unwrap();
        let one = LockedFile::open(&path, LockKind::Shared).unwrap();
        let _two = LockedFile::open(&path, LockKind::Shared).unwrap();
        let probe = File::open(&path).unwrap();
        let busy = Flock::lock(probe, FlockArg::LockExclusiveNonblock);
        assert!(busy.is_err(), "an exclusive lock got past shared ones");
        drop(one);
        drop(_two);
        let probe = File::open(&path).unwrap();
        assert!(Flock::lock(probe, FlockArg::LockExclusiveNonblock).is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_file_renamed_away_is_not_found() {
        let dir = scratch("moved");
        let path = dir.join("A1B2C3");
        std::fs::write(&path, b"x").unwrap();
        // Another file now has the name: the lock is on the wrong inode.
        let held = File::open(&path).unwrap();
        std::fs::rename(&path, dir.join("elsewhere")).unwrap();
        std::fs::write(&path, b"y").unwrap();
        let locked = LockedFile {
            path: path.clone(),
            lock: Flock::lock(held, FlockArg::LockShared).unwrap(),
        };
        let err = locked.check_still_linked().unwrap_err();
        assert!(err.is_not_found(), "{err}");
        std::fs::remove_file(&path).unwrap();
        let err = LockedFile::open(&path, LockKind::Shared).unwrap_err();
        assert!(err.is_not_found(), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_expire_flag_is_read_from_the_mode() {
        let dir = scratch("mode");
        let path = dir.join("A1B2C3");
        std::fs::write(&path, b"x").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o710)).unwrap();
        let mode = std::fs::metadata(&path).unwrap().mode() & 0o7777;
        assert_eq!(mode, 0o710);
        assert!(is_forced_expire(mode));
        assert!(!is_forced_expire(0o700));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
