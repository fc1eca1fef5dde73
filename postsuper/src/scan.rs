//! The pass over whole queue directories: the structure check and repair
//! (`-s`, `-S`), the purge of old temporary files (`-p`), and the `ALL`
//! operations. As Postfix's postsuper, it walks each queue with its
//! one-character subdirectories, and
//! - removes what is neither a file nor a directory, and subdirectories
//!   that are not part of the hashed layout (after a hash_queue_depth
//!   change, once emptied);
//! - renames a message file whose name no longer matches its inode (a
//!   queue restored from elsewhere; or long IDs with
//!   enable_long_queue_ids=no), its logs first;
//! - moves files that are in the wrong subdirectory (after a change of
//!   hash_queue_names or hash_queue_depth) to where they belong.

use std::ffi::OsString;
use std::fs::{self, Metadata};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use libmail::log;
use libmail::queue::{is_safe_name, QueueId, FLUSH, HOLD, MAILDROP};

use crate::error::SuperError;
use crate::options::{Action, Structure};
use crate::work::{applies, is_message_queue, is_ready, move_file, remove_file, Work, LOG_QUEUES};

/// How old a leftover temporary file must be before `-p` removes it
/// (Postfix 3.7 keeps them a week).
pub const MAX_TEMP_AGE: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// What the pass is to do.
#[derive(Debug, Default, Clone)]
pub struct Plan {
    pub structure: Structure,
    pub purge: bool,
    /// The actions given `ALL`.
    pub all: Vec<Action>,
}

impl Plan {
    /// Whether there is anything for a pass over the queues to do.
    pub fn is_needed(&self) -> bool {
        self.structure != Structure::None || self.purge || !self.all.is_empty()
    }

    fn wants(&self, action: Action) -> bool {
        self.all.contains(&action)
    }
}

impl Work {
    /// Runs the pass over `queues`, in order.
    pub fn scan(&mut self, queues: &[String], plan: &Plan) -> Result<(), SuperError> {
        for queue in queues {
            log::verbose(format_args!("queue: {queue}"));
            let wanted = if self.queue.is_hashed(queue) {
                self.queue.settings().hash_depth
            } else {
                0
            };
            // maildrop is writable by users: never step into its
            // subdirectories, so it cannot be hashed.
            if wanted > 0 && queue == MAILDROP {
                return Err(SuperError::HashedQueue(queue.clone()));
            }
            let top = self.queue.directory().join(queue);
            self.walk(queue, &top, 0, wanted, plan)?;
        }
        Ok(())
    }

    fn walk(
        &mut self,
        queue: &str,
        dir: &Path,
        depth: usize,
        wanted: usize,
        plan: &Plan,
    ) -> Result<(), SuperError> {
        for name in list(dir, depth)? {
            let path = dir.join(&name);
            // Gone since the listing: another process moved it.
            let Ok(meta) = fs::symlink_metadata(&path) else {
                continue;
            };
            let Some(name) = name.to_str() else {
                log::warning(format_args!("bogus file name: {}", path.display()));
                continue;
            };
            if meta.is_dir() {
                if name.len() == 1 && queue != MAILDROP {
                    self.walk(queue, &path, depth + 1, wanted, plan)?;
                    if depth + 1 > wanted {
                        remove_directory(&path, false);
                    }
                } else {
                    remove_directory(&path, true);
                }
                continue;
            }
            self.file(queue, &path, name, &meta, plan)?;
        }
        Ok(())
    }

    /// One entry that is not a directory.
    fn file(
        &mut self,
        queue: &str,
        path: &Path,
        name: &str,
        meta: &Metadata,
        plan: &Plan,
    ) -> Result<(), SuperError> {
        let message = is_message_queue(queue);
        if plan.wants(Action::Delete) {
            return self.delete_any(queue, path, name, meta);
        }
        if !meta.is_file() || (plan.purge && message && is_stale_temp(name, meta)) {
            remove_file(path)?;
            return Ok(());
        }
        let id = QueueId::parse(name);
        // The flush logs are named after sites, with dots and escapes
        // (flush/src/site.rs): any file there is flush's business.
        let valid = if message {
            id.is_some()
        } else {
            queue == FLUSH || is_safe_name(name)
        };
        if !valid {
            log::warning(format_args!("bogus file name: {}", path.display()));
            return Ok(());
        }
        // A log named after something else (a flush log's site) stays.
        let Some(mut id) = id else {
            return Ok(());
        };
        let mut path = path.to_path_buf();
        if message && plan.structure != Structure::None {
            match self.match_inode(queue, &id, &path, meta, plan.structure)? {
                Some((new_id, new_path)) => (id, path) = (new_id, new_path),
                None => return Ok(()),
            }
        }
        if message && self.all_actions(queue, &id, &path, plan)? {
            return Ok(());
        }
        if plan.structure != Structure::None {
            let wanted = self.queue.path(queue, &id);
            if path != wanted && move_file(&path, &wanted)? {
                self.counts.moved += 1;
            }
        }
        Ok(())
    }

    /// `-d ALL`: everything goes. Messages are counted, and lose their
    /// logs; other files in the queues (logs, leftovers) just go.
    fn delete_any(
        &mut self,
        queue: &str,
        path: &Path,
        name: &str,
        meta: &Metadata,
    ) -> Result<(), SuperError> {
        let complete = meta.is_file() && is_ready(meta.mode());
        match QueueId::parse(name) {
            Some(id) if is_message_queue(queue) && complete => {
                self.apply(Action::Delete, queue, &id, path, false)?;
            }
            _ => {
                remove_file(path)?;
            }
        }
        Ok(())
    }

    /// The `ALL` operations other than delete, in postsuper's order;
    /// true if the file moved away.
    fn all_actions(
        &mut self,
        queue: &str,
        id: &QueueId,
        path: &Path,
        plan: &Plan,
    ) -> Result<bool, SuperError> {
        use crate::work::Outcome;
        let order = [
            Action::Requeue,
            Action::Expire,
            Action::ExpireRelease,
            Action::Hold,
            Action::Release,
        ];
        for action in order {
            if !plan.wants(action) || !applies(action, queue) {
                continue;
            }
            let outcome = self.apply(action, queue, id, path, false)?;
            let moves = match action {
                Action::Expire => false,
                Action::ExpireRelease => queue == HOLD,
                _ => true,
            };
            if outcome == Outcome::Gone || (outcome == Outcome::Done && moves) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Renames a message file whose name does not match its inode (short
    /// IDs; long ones too with `-S`), or a long name to a short one when
    /// long IDs are off. Its logs are renamed first. Returns the new ID
    /// and path, or the old ones when nothing needed doing; None if the
    /// file went away or could not be renamed.
    fn match_inode(
        &mut self,
        queue: &str,
        id: &QueueId,
        path: &Path,
        meta: &Metadata,
        structure: Structure,
    ) -> Result<Option<(QueueId, PathBuf)>, SuperError> {
        let inode = meta.ino();
        let long_to_short = id.is_long() && !self.long_ids;
        let mismatch = id.inode() != inode && (!id.is_long() || structure == Structure::Redundant);
        if !long_to_short && !mismatch {
            return Ok(Some((id.clone(), path.to_path_buf())));
        }
        let new_id = id.with_inode(inode, id.is_long() && self.long_ids);
        let new_path = self.queue.path(queue, &new_id);
        if new_id == *id || fs::symlink_metadata(&new_path).is_ok() {
            log::warning(format_args!("name/inode mismatch: {}", path.display()));
            return Ok(None);
        }
        for log_queue in LOG_QUEUES {
            move_file(
                &self.queue.path(log_queue, id),
                &self.queue.path(log_queue, &new_id),
            )?;
        }
        if !move_file(path, &new_path)? {
            return Ok(None);
        }
        self.counts.renamed += 1;
        Ok(Some((new_id, new_path)))
    }
}

/// The names in a directory, sorted (so that runs are repeatable). A
/// queue directory that does not exist has nothing in it; one that
/// cannot be read stops postsuper, naming it.
fn list(dir: &Path, depth: usize) -> Result<Vec<OsString>, SuperError> {
    let open_error = |source| SuperError::OpenDirectory {
        path: dir.to_path_buf(),
        source,
    };
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound && depth > 0 => return Ok(Vec::new()),
        Err(err) if err.kind() == io::ErrorKind::NotFound && !dir.exists() => return Ok(Vec::new()),
        Err(err) => return Err(open_error(err)),
    };
    let mut names = Vec::new();
    for entry in entries {
        names.push(entry.map_err(open_error)?.file_name());
    }
    names.sort();
    Ok(names)
}

/// Removes a subdirectory that does not belong. An alien one that cannot
/// go is reported; a hashed level beyond hash_queue_depth that still has
/// files in it stays quietly (the structure check empties it).
fn remove_directory(path: &Path, alien: bool) {
    match fs::remove_dir(path) {
        Ok(()) => log::verbose(format_args!("remove subdirectory {}", path.display())),
        Err(err) if err.kind() == io::ErrorKind::NotFound => {}
        Err(err) if !alien && err.kind() == io::ErrorKind::DirectoryNotEmpty => {}
        Err(err) => {
            let reason = libmail::error::strerror(&err);
            log::warning(format_args!(
                "remove subdirectory {}: {reason}",
                path.display()
            ));
        }
    }
}

/// A file that a writer left behind (a crash): not complete (owner bits
/// short of 0700), or named as a temporary file (`microseconds.pid`),
/// and older than MAX_TEMP_AGE.
fn is_stale_temp(name: &str, meta: &Metadata) -> bool {
    let old = meta
        .modified()
        .ok()
        .and_then(|time| SystemTime::now().duration_since(time).ok())
        .is_some_and(|age| age > MAX_TEMP_AGE);
    old && (!is_ready(meta.mode()) || is_temp_name(name))
}

/// `digits.digits`: the writer's temporary names.
fn is_temp_name(name: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    name.split_once('.')
        .is_some_and(|(micros, pid)| digits(micros) && digits(pid))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::work::MESSAGE_QUEUES;
    use libmail::queue::{Queue, QueueSettings, Recipient, DEFER, DEFERRED, INCOMING};
    use std::fs::{File, FileTimes};

    fn setup(tag: &str) -> (PathBuf, Work) {
        let dir = std::env::temp_dir().join(format!("postsuper-scan-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        for q in MESSAGE_QUEUES.iter().chain(LOG_QUEUES.iter()) {
            fs::create_dir_all(dir.join(q)).unwrap();
        }
        let queue = Queue::new(QueueSettings::new(&dir)).unwrap();
        (dir, Work::new(queue, false))
    }

    fn message(work: &Work, queue: &str) -> QueueId {
        let mut writer = work.queue.create(queue).unwrap();
        writer.sender("alice@example.com").unwrap();
        writer
            .recipient(&Recipient::new("bob@example.com"))
            .unwrap();
        writer.body(b"\nhi\n").unwrap();
        writer.commit().unwrap().id
    }

    fn scan_all(work: &mut Work, plan: &Plan) {
        let names: Vec<String> = [DEFER, MAILDROP, INCOMING, DEFERRED, HOLD]
            .iter()
            .map(|q| q.to_string())
            .collect();
        work.scan(&names, plan).unwrap();
    }

    #[test]
    fn structure_check_repairs_the_layout() {
        let (dir, mut work) = setup("structure");
        // A deferred message without its hash subdirectory, one in the
        // wrong one, a short name that does not match its inode, an
        // alien subdirectory and a fifo.
        let a = message(&work, DEFERRED);
        let right_a = work.queue.path(DEFERRED, &a);
        fs::rename(&right_a, dir.join(DEFERRED).join(a.as_str())).unwrap();
        let b = message(&work, DEFERRED);
        let right_b = work.queue.path(DEFERRED, &b);
        let wrong = if b.as_str().starts_with('0') {
            "1"
        } else {
            "0"
        };
        fs::create_dir_all(dir.join(DEFERRED).join(wrong)).unwrap();
        fs::rename(&right_b, dir.join(DEFERRED).join(wrong).join(b.as_str())).unwrap();
        let c = message(&work, INCOMING);
        let c_meta = fs::metadata(work.queue.path(INCOMING, &c)).unwrap();
        let stale = c.with_inode(c_meta.ino() + 1, false);
        fs::rename(
            work.queue.path(INCOMING, &c),
            work.queue.path(INCOMING, &stale),
        )
        .unwrap();
        fs::create_dir_all(dir.join(INCOMING).join("junk")).unwrap();
        nix::unistd::mkfifo(
            &dir.join(HOLD).join("FIFO"),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .unwrap();
        let plan = Plan {
            structure: Structure::Check,
            ..Plan::default()
        };
        scan_all(&mut work, &plan);
        assert!(right_a.exists(), "moved into its hash subdirectory");
        assert!(right_b.exists(), "moved to the right subdirectory");
        assert!(
            work.queue.path(INCOMING, &c).exists(),
            "renamed to match the inode"
        );
        assert_eq!(work.counts.renamed, 1);
        assert!(!dir.join(INCOMING).join("junk").exists());
        assert!(!dir.join(HOLD).join("FIFO").exists());
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn purge_removes_only_old_leftovers() {
        let (dir, mut work) = setup("purge");
        let old = SystemTime::now() - MAX_TEMP_AGE - Duration::from_secs(60);
        let make = |name: &str, time: SystemTime| {
            let path = dir.join(INCOMING).join(name);
            let file = File::create(&path).unwrap();
            file.set_times(FileTimes::new().set_modified(time)).unwrap();
            path
        };
        let stale = make("123456.789", old);
        let fresh = make("234567.891", SystemTime::now());
        let plan = Plan {
            purge: true,
            ..Plan::default()
        };
        scan_all(&mut work, &plan);
        assert!(!stale.exists());
        assert!(fresh.exists());
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn delete_all_counts_messages() {
        let (dir, mut work) = setup("deleteall");
        message(&work, DEFERRED);
        message(&work, HOLD);
        let plan = Plan {
            all: vec![Action::Delete],
            ..Plan::default()
        };
        scan_all(&mut work, &plan);
        assert_eq!(work.counts.deleted, 2);
        assert!(work.queue.scan(DEFERRED).unwrap().is_empty());
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn temp_names() {
        assert!(is_temp_name("123456.789"));
        assert!(!is_temp_name("B8222ABC"));
        assert!(!is_temp_name("12.x"));
        assert!(!is_temp_name(".12"));
    }
}
