//! What stops postsuper: each becomes `postsuper: fatal: TEXT`, in
//! Postfix's words. Paths are relative to the queue directory, where
//! postsuper works, as in Postfix.

use std::io;
use std::path::PathBuf;

use libmail::config::ConfigError;
use libmail::error::strerror;
use libmail::queue::QueueError;
use libmail::queue_layout::permission_hint as hint;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum SuperError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Queue(#[from] QueueError),
    #[error("invalid directory name: {0}")]
    BadQueueName(String),
    #[error("{0} queue must not be hashed")]
    HashedQueue(String),
    #[error("chdir {}: {}{}", path.display(), strerror(source), hint(source))]
    Chdir { path: PathBuf, source: io::Error },
    #[error("scan_dir_push: open directory {}: {}{}", path.display(), strerror(source), hint(source))]
    OpenDirectory { path: PathBuf, source: io::Error },
    #[error("remove file {}: {}{}", path.display(), strerror(source), hint(source))]
    Remove { path: PathBuf, source: io::Error },
    #[error("rename file {} as {}: {}{}", from.display(), to.display(), strerror(source), hint(source))]
    Rename {
        from: PathBuf,
        to: PathBuf,
        source: io::Error,
    },
    #[error("expire file {}: cannot set permission: {}{}", path.display(), strerror(source), hint(source))]
    Expire { path: PathBuf, source: io::Error },
    #[error("read standard input: {}", strerror(.0))]
    Stdin(io::Error),
    #[error("{0}")]
    Privilege(String),
    #[error("-c requires absolute pathname")]
    RelativeConfig,
    /// Queue IDs given on the command line may now name other messages.
    #[error("CHECK YOUR QUEUE IDS AND RE-ISSUE THE COMMAND")]
    NamesChanged,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permission_errors_point_to_set_permissions() {
        let err = SuperError::OpenDirectory {
            path: PathBuf::from("defer"),
            source: io::Error::from_raw_os_error(nix::libc::EACCES),
        };
        assert_eq!(
            err.to_string(),
            "scan_dir_push: open directory defer: Permission denied \
(queue ownership or permissions are wrong: run \"postfix set-permissions\" as root)"
        );
        let err = SuperError::Remove {
            path: PathBuf::from("deferred/B/B8222215"),
            source: io::Error::from_raw_os_error(nix::libc::EBUSY),
        };
        assert_eq!(
            err.to_string(),
            "remove file deferred/B/B8222215: Device or resource busy"
        );
    }
}
