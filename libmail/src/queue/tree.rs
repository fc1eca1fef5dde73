//! The queue directory tree as the queue code sees it: where a queue
//! file lives (queue name, hashed subdirectories, ID), finding a file by
//! its ID, listing a queue, moving a file between queues, and saving a
//! damaged file to corrupt/. The directories themselves, their owners and
//! modes are queue_layout's business; this module only adds the hashed
//! subdirectories, on demand, as Postfix's mail_queue_mkdirs() does.

use std::collections::HashMap;
use std::fmt::Display;
use std::fs::{self, DirBuilder, File};
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::config::Config;
use crate::msg;

use super::file::QueueFile;
use super::id::{dir_forest, QueueId};
use super::writer::QueueWriter;
use super::{QueueError, CORRUPT, MAILDROP};

/// Postfix's limit on a queue name's length.
const MAX_QUEUE_NAME: usize = 100;
/// Mode of a complete queue file (Postfix's MAIL_QUEUE_STAT_READY).
pub(crate) const FILE_MODE: u32 = 0o700;
/// Mode of a maildrop file: postdrop writes it as the user, pickup reads
/// it as mail_owner.
pub(crate) const MAILDROP_MODE: u32 = 0o744;

/// The parameters that shape the queue (main.cf's queue_directory,
/// enable_long_queue_ids, hash_queue_names, hash_queue_depth).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSettings {
    pub directory: PathBuf,
    pub long_ids: bool,
    pub hash_names: Vec<String>,
    pub hash_depth: usize,
}

impl QueueSettings {
    /// Postfix's defaults for a queue in `directory`.
    pub fn new(directory: impl Into<PathBuf>) -> QueueSettings {
        QueueSettings {
            directory: directory.into(),
            long_ids: false,
            hash_names: vec!["deferred".into(), "defer".into()],
            hash_depth: 1,
        }
    }

    /// The settings main.cf gives.
    pub fn from_config(config: &Config) -> Result<QueueSettings, QueueError> {
        let depth = config.int("hash_queue_depth")?;
        let hash_depth = usize::try_from(depth)
            .ok()
            .filter(|&d| d >= 1)
            .ok_or_else(|| QueueError::Setting {
                name: "hash_queue_depth",
                value: depth.to_string(),
            })?;
        Ok(QueueSettings {
            directory: PathBuf::from(config.string("queue_directory")?),
            long_ids: config.bool("enable_long_queue_ids")?,
            hash_names: config.list("hash_queue_names")?,
            hash_depth,
        })
    }
}

/// Postfix's mail_queue_name_ok(): 1 to 100 letters and digits.
pub fn is_queue_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_QUEUE_NAME
        && name.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// One instance's queue. Cheap to clone; a daemon makes one at start and
/// keeps it, with the queue directories it writes to open, so that a
/// commit needs no extra open() to fsync a directory.
#[derive(Debug, Clone)]
pub struct Queue {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    settings: QueueSettings,
    /// Open queue directories, by queue name.
    dirs: Mutex<HashMap<String, Arc<File>>>,
    /// Unnamed temporary files do not work here (no O_TMPFILE support, or
    /// no /proc to link them through, as in a chroot): use named ones.
    named_temp: AtomicBool,
}

impl Queue {
    /// A queue with these settings. Fails only on a bad hash depth.
    pub fn new(settings: QueueSettings) -> Result<Queue, QueueError> {
        if settings.hash_depth == 0 {
            return Err(QueueError::Setting {
                name: "hash_queue_depth",
                value: "0".into(),
            });
        }
        let named_temp = !Path::new("/proc/self/fd").is_dir();
        Ok(Queue {
            inner: Arc::new(Inner {
                settings,
                dirs: Mutex::new(HashMap::new()),
                named_temp: AtomicBool::new(named_temp),
            }),
        })
    }

    /// The queue that main.cf describes.
    pub fn from_config(config: &Config) -> Result<Queue, QueueError> {
        Queue::new(QueueSettings::from_config(config)?)
    }

    pub fn settings(&self) -> &QueueSettings {
        &self.inner.settings
    }

    /// $queue_directory.
    pub fn directory(&self) -> &Path {
        &self.inner.settings.directory
    }

    /// Whether `queue` is split into hashed subdirectories (names compare
    /// without regard to case, as in Postfix).
    pub fn is_hashed(&self, queue: &str) -> bool {
        let names = &self.inner.settings.hash_names;
        names.iter().any(|n| n.eq_ignore_ascii_case(queue))
    }

    /// `B/ID` in a hashed queue, `ID` otherwise: the file's path below
    /// its queue directory.
    pub fn name_in_queue(&self, queue: &str, id: &QueueId) -> PathBuf {
        if !self.is_hashed(queue) {
            return PathBuf::from(id.as_str());
        }
        let depth = self.inner.settings.hash_depth;
        PathBuf::from(format!("{}{}", dir_forest(&id.hash_key(), depth), id))
    }

    /// `deferred/B/ID`: the path below $queue_directory, which postcat
    /// shows.
    pub fn relative_path(&self, queue: &str, id: &QueueId) -> PathBuf {
        Path::new(queue).join(self.name_in_queue(queue, id))
    }

    /// The full path of a queue file (Postfix's mail_queue_path()).
    pub fn path(&self, queue: &str, id: &QueueId) -> PathBuf {
        self.directory().join(self.relative_path(queue, id))
    }

    fn check_name(queue: &str) -> Result<(), QueueError> {
        if is_queue_name(queue) {
            Ok(())
        } else {
            Err(QueueError::BadQueueName(queue.to_string()))
        }
    }

    /// Starts a new queue file for `queue` (incoming, hold, maildrop).
    /// Its ID is known at once; nothing is visible in the queue until
    /// `QueueWriter::commit`.
    pub fn create(&self, queue: &str) -> Result<QueueWriter, QueueError> {
        let mode = if queue == MAILDROP {
            MAILDROP_MODE
        } else {
            FILE_MODE
        };
        self.create_with_mode(queue, mode)
    }

    /// `create` with the file mode given.
    pub fn create_with_mode(&self, queue: &str, mode: u32) -> Result<QueueWriter, QueueError> {
        Queue::check_name(queue)?;
        QueueWriter::create(self.clone(), queue, mode)
    }

    /// Opens a queue file for reading.
    pub fn open(&self, queue: &str, id: &QueueId) -> Result<QueueFile, QueueError> {
        Queue::check_name(queue)?;
        QueueFile::open(&self.path(queue, id))
    }

    /// Finds the queue that holds `id`, searching `queues` in order, twice
    /// (a file may move from one queue to the next while we look, as in
    /// Postfix's postcat). Not found: the error says `open queue file ID:
    /// No such file or directory`.
    pub fn find(&self, id: &QueueId, queues: &[&str]) -> Result<(String, PathBuf), QueueError> {
        let mut trouble = None;
        for _ in 0..2 {
            for &queue in queues {
                Queue::check_name(queue)?;
                let path = self.path(queue, id);
                match fs::symlink_metadata(&path) {
                    Ok(meta) if meta.is_file() => return Ok((queue.to_string(), path)),
                    Ok(_) => {}
                    Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                    // Which directory could not be searched, and why.
                    Err(err) => {
                        trouble.get_or_insert_with(|| QueueError::io("open", &path, err));
                    }
                }
            }
        }
        if let Some(err) = trouble {
            return Err(err);
        }
        let name = format!("queue file {id}");
        let not_found = io::Error::from_raw_os_error(nix::libc::ENOENT);
        Err(QueueError::io("open", Path::new(&name), not_found))
    }

    /// The IDs of the files in a queue, in no particular order. Names
    /// that are not queue IDs (another program's temporary files) are
    /// left out; in a hashed queue only the one-character subdirectories
    /// are searched.
    pub fn scan(&self, queue: &str) -> Result<Vec<QueueId>, QueueError> {
        Queue::check_name(queue)?;
        let depth = if self.is_hashed(queue) {
            self.inner.settings.hash_depth
        } else {
            0
        };
        let mut ids = Vec::new();
        scan_dir(&self.directory().join(queue), depth, &mut ids)?;
        Ok(ids)
    }

    /// Moves a file to another queue, creating hashed subdirectories as
    /// needed (Postfix's mail_queue_rename()). Returns the new path.
    pub fn rename(&self, id: &QueueId, from: &str, to: &str) -> Result<PathBuf, QueueError> {
        Queue::check_name(from)?;
        Queue::check_name(to)?;
        let old = self.path(from, id);
        let new = self.path(to, id);
        retry_with_dirs(&new, || fs::rename(&old, &new))
            .map_err(|e| QueueError::io("rename", &old, e))?;
        Ok(new)
    }

    /// Removes a queue file.
    pub fn remove(&self, queue: &str, id: &QueueId) -> Result<(), QueueError> {
        Queue::check_name(queue)?;
        let path = self.path(queue, id);
        fs::remove_file(&path).map_err(|e| QueueError::io("remove", &path, e))
    }

    /// Moves a damaged file out of the way, to corrupt/, with Postfix's
    /// warnings: `ID: REASON`, then `saving corrupt file "ID" from queue
    /// "QUEUE" to queue "corrupt"`. REASON says what is wrong without
    /// naming the file again: a `Damage`, typically.
    pub fn save_corrupt(
        &self,
        queue: &str,
        id: &QueueId,
        reason: &dyn Display,
    ) -> Result<PathBuf, QueueError> {
        msg::warning(format_args!("{id}: {reason}"));
        msg::warning(format_args!(
            "saving corrupt file \"{id}\" from queue \"{queue}\" to queue \"{CORRUPT}\""
        ));
        self.rename(id, queue, CORRUPT)
    }

    /// The open directory of `queue`, kept for later commits.
    pub(crate) fn queue_dir(&self, queue: &str) -> Result<Arc<File>, QueueError> {
        let mut dirs = self
            .inner
            .dirs
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(dir) = dirs.get(queue) {
            return Ok(Arc::clone(dir));
        }
        let path = self.directory().join(queue);
        let dir = Arc::new(File::open(&path).map_err(|e| QueueError::io("open", &path, e))?);
        dirs.insert(queue.to_string(), Arc::clone(&dir));
        Ok(dir)
    }

    pub(crate) fn uses_named_temp(&self) -> bool {
        self.inner.named_temp.load(Ordering::Relaxed)
    }

    /// From now on, make named temporary files.
    pub(crate) fn use_named_temp(&self) {
        self.inner.named_temp.store(true, Ordering::Relaxed);
    }
}

/// Runs `op` (which makes `target`); if a directory on the way is
/// missing, creates the missing directories with mode 0700 and tries
/// once more. Returns whether directories were made.
pub(crate) fn retry_with_dirs(
    target: &Path,
    mut op: impl FnMut() -> io::Result<()>,
) -> io::Result<bool> {
    match op() {
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            let Some(parent) = target.parent() else {
                return Err(err);
            };
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)?;
            op().map(|()| true)
        }
        other => other.map(|()| false),
    }
}

fn scan_dir(dir: &Path, depth: usize, ids: &mut Vec<QueueId>) -> Result<(), QueueError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        // A missing queue has no files (and a subdirectory may go away).
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(QueueError::io("open", dir, err)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| QueueError::io("read", dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if depth > 0 {
            if name.len() == 1 && entry.path().is_dir() {
                scan_dir(&entry.path(), depth - 1, ids)?;
            }
        } else if let Some(id) = QueueId::parse(name) {
            ids.push(id);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(hash_names: &[&str], depth: usize) -> Queue {
        let mut settings = QueueSettings::new("/var/spool/postfix");
        settings.hash_names = hash_names.iter().map(|s| s.to_string()).collect();
        settings.hash_depth = depth;
        Queue::new(settings).unwrap()
    }

    #[test]
    fn hashed_queues_get_subdirectories() {
        let id = QueueId::parse("B822221522").unwrap();
        let q = queue(&["deferred", "defer"], 1);
        assert_eq!(
            q.path("deferred", &id),
            Path::new("/var/spool/postfix/deferred/B/B822221522")
        );
        assert_eq!(
            q.relative_path("defer", &id),
            Path::new("defer/B/B822221522")
        );
        assert_eq!(
            q.relative_path("incoming", &id),
            Path::new("incoming/B822221522")
        );
        let q = queue(&["Incoming"], 2);
        assert_eq!(
            q.relative_path("incoming", &id),
            Path::new("incoming/B/8/B822221522")
        );
    }

    #[test]
    fn long_ids_hash_on_their_microseconds() {
        let time = std::time::UNIX_EPOCH + std::time::Duration::new(1_700_000_000, 0xB8222 * 1000);
        let id = QueueId::new(time, 99, true);
        let q = queue(&["deferred"], 2);
        let expected = format!("deferred/B/8/{id}");
        assert_eq!(q.relative_path("deferred", &id), Path::new(&expected));
    }

    #[test]
    fn queue_names() {
        assert!(is_queue_name("incoming"));
        assert!(!is_queue_name("../etc"));
        assert!(!is_queue_name(""));
        let q = queue(&[], 1);
        let id = QueueId::parse("B822221522").unwrap();
        assert!(matches!(
            q.open("a/b", &id),
            Err(QueueError::BadQueueName(_))
        ));
    }

    #[test]
    fn depth_must_be_positive() {
        let mut settings = QueueSettings::new("/tmp");
        settings.hash_depth = 0;
        let err = Queue::new(settings).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid hash_queue_depth parameter value: 0"
        );
    }
}
