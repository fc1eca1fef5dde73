//! `pid/master.pid`: written and held with an exclusive lock by the running
//! master, so that a second master (and `postfix start`) can tell that one
//! is running, and `postfix stop` knows whom to signal. Used by master
//! and by the postfix command.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

/// The lock, held for as long as master runs.
pub struct PidFile {
    _lock: Flock<File>,
}

pub fn path(queue_directory: &str) -> PathBuf {
    Path::new(queue_directory).join("pid").join("master.pid")
}

/// Locks the pid file and writes our pid into it; fails when another
/// master holds the lock.
pub fn acquire(path: &Path) -> Result<PidFile, String> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .open(path)
        .map_err(|e| format!("open lock file {}: {}", path.display(), strerror(&e)))?;
    let lock = Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|(_, errno)| {
        let err = io::Error::from(errno);
        format!(
            "open lock file {}: unable to set exclusive lock: {}",
            path.display(),
            strerror(&err)
        )
    })?;
    let mut file: &File = &lock;
    let text = format!("{:>10}\n", std::process::id());
    file.set_len(0)
        .and_then(|()| file.write_all(text.as_bytes()))
        .map_err(|e| format!("write {}: {}", path.display(), strerror(&e)))?;
    Ok(PidFile { _lock: lock })
}

/// The pid of the running master, or `None` when it is not running (no
/// pid file, or nobody holds its lock).
pub fn running(pid_file: &Path) -> Result<Option<i32>, String> {
    let file = match File::open(pid_file) {
        Ok(file) => file,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(format!("open {}: {}", pid_file.display(), strerror(&err))),
    };
    match Flock::lock(file, FlockArg::LockSharedNonblock) {
        // We got the lock, so master does not hold it.
        Ok(_unlocked_on_drop) => Ok(None),
        Err((file, Errno::EWOULDBLOCK)) => read_pid(file, pid_file).map(Some),
        Err((_, errno)) => Err(format!("lock {}: {}", pid_file.display(), errno.desc())),
    }
}

/// Reads the pid from a locked pid file. master locks the file before it
/// writes the number, so an empty file is read again for a moment.
fn read_pid(mut file: File, pid_file: &Path) -> Result<i32, String> {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let mut text = String::new();
        file.rewind()
            .and_then(|()| file.read_to_string(&mut text))
            .map_err(|e| format!("read {}: {}", pid_file.display(), strerror(&e)))?;
        match text.trim().parse::<i32>() {
            Ok(pid) if pid > 0 => return Ok(pid),
            _ if Instant::now() < deadline => sleep(Duration::from_millis(50)),
            _ => {
                return Err(format!(
                    "{}: no process ID in the pid file of the running master",
                    pid_file.display()
                ))
            }
        }
    }
}

fn strerror(err: &io::Error) -> String {
    crate::error::strerror(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        crate::test_support::temp_dir(&format!("pid-file-{name}"))
    }

    #[test]
    fn pid_file_states() {
        let dir = temp_dir("states");
        let pid_file = dir.join("master.pid");
        assert_eq!(running(&pid_file), Ok(None));
        std::fs::write(&pid_file, "       1234\n").expect("write");
        assert_eq!(running(&pid_file), Ok(None), "unlocked file: not running");
        // Another open file description holding the lock is master.
        let file = File::open(&pid_file).expect("open");
        let lock = Flock::lock(file, FlockArg::LockExclusiveNonblock).expect("lock");
        assert_eq!(running(&pid_file), Ok(Some(1234)));
        drop(lock);
        assert_eq!(running(&pid_file), Ok(None));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn second_acquire_is_refused() {
        let dir = temp_dir("acquire");
        let pid_file = dir.join("master.pid");
        let _held = acquire(&pid_file).expect("first");
        let err = acquire(&pid_file).err().expect("second refused");
        assert!(err.contains("unable to set exclusive lock"), "{err}");
        assert_eq!(running(&pid_file), Ok(Some(std::process::id() as i32)));
        let _ = std::fs::remove_dir_all(dir);
    }
}
