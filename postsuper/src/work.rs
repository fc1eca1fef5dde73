//! What postsuper does to one message: delete, hold, release, requeue,
//! expire. Each runs under the exclusive lock that keeps it from a
//! delivery in progress (libmail::queue::lock): postsuper waits until a
//! delivery agent has marked its recipients done, and an agent that comes
//! later finds the file gone from where it looked and delivers nothing.
//!
//! postsuper runs in the queue directory, so every path here is relative
//! to it (`deferred/B/B822221522`), which is also how Postfix names files
//! in its messages.

use std::fs::{self, DirBuilder, File, FileTimes, Permissions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use libmail::log;
use libmail::queue::lock::{is_forced_expire, LockKind, LockedFile, EXPIRE_FLAG};
use libmail::queue::{
    Queue, QueueFile, QueueId, ACTIVE, BOUNCE, DEFER, DEFERRED, HOLD, INCOMING, MAILDROP, TRACE,
};

use crate::error::SuperError;
use crate::options::Action;
use libmail::queue_layout::permission_hint as hint;

/// The queues that hold messages, in the order postsuper searches them
/// for a queue ID.
pub const MESSAGE_QUEUES: [&str; 5] = [MAILDROP, INCOMING, ACTIVE, DEFERRED, HOLD];
/// The per-message logs that go with a message.
pub const LOG_QUEUES: [&str; 3] = [BOUNCE, DEFER, TRACE];
/// The mode of a complete queue file, owner bits (Postfix's
/// MAIL_QUEUE_STAT_READY); a requeued file gets exactly this, which
/// pickup recognises (owner mail_owner, not world-readable).
pub const READY_MODE: u32 = 0o700;

pub fn is_message_queue(queue: &str) -> bool {
    MESSAGE_QUEUES.contains(&queue)
}

/// Whether a file in `queue` is one that `action` works on: maildrop
/// mail is not yet sanitized, so it is only ever deleted; only held
/// mail is released.
pub fn applies(action: Action, queue: &str) -> bool {
    let message = is_message_queue(queue);
    match action {
        Action::Delete => message,
        Action::Requeue | Action::Expire | Action::ExpireRelease => message && queue != MAILDROP,
        Action::Hold => message && queue != MAILDROP && queue != HOLD,
        Action::Release => queue == HOLD,
    }
}

/// Whether the owner bits say the file is complete.
pub fn is_ready(mode: u32) -> bool {
    mode & 0o700 == READY_MODE
}

/// What became of one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The action was done.
    Done,
    /// The file is there but nothing was to be done (already expired,
    /// just delivered): stop looking for it.
    Unchanged,
    /// The file is not there (any more): look elsewhere.
    Gone,
}

/// How many messages each action touched: the report at the end.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Counts {
    pub requeued: usize,
    pub deleted: usize,
    pub expired: usize,
    pub held: usize,
    pub released: usize,
    /// Files renamed to match their inode (`-s`).
    pub renamed: usize,
    /// Files moved to their right subdirectory (`-s`); not reported.
    pub moved: usize,
}

/// The queue and the tally.
pub struct Work {
    pub queue: Queue,
    pub long_ids: bool,
    pub counts: Counts,
}

/// A message file held still for an operation. Maildrop files are not
/// locked: they may belong to the users who submitted them, and no
/// delivery agent reads them.
enum Guard {
    Locked(LockedFile),
    Unlocked,
}

impl Guard {
    fn file(&self) -> Option<&File> {
        match self {
            Guard::Locked(locked) => Some(locked.file()),
            Guard::Unlocked => None,
        }
    }
}

impl Work {
    pub fn new(queue: Queue, long_ids: bool) -> Work {
        Work {
            queue,
            long_ids,
            counts: Counts::default(),
        }
    }

    /// Applies `action` to the message `text` names, searching `queues`
    /// (those the action applies to) twice, since a message may move from
    /// one queue to the next while we look.
    pub fn by_id(
        &mut self,
        action: Action,
        text: &str,
        queues: &[String],
    ) -> Result<(), SuperError> {
        if !libmail::queue::is_safe_name(text) {
            log::warning(format_args!("invalid mail queue id: {text}"));
            return Ok(());
        }
        // A well-formed name that no queue file can have is simply not there.
        let Some(id) = QueueId::parse(text) else {
            return Ok(());
        };
        for _ in 0..2 {
            for queue in queues.iter().filter(|q| applies(action, q)) {
                let path = self.queue.path(queue, &id);
                if !self.is_ready_file(&path) {
                    continue;
                }
                if self.apply(action, queue, &id, &path, true)? != Outcome::Gone {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// Postfix's mail_open_ok(): a complete regular file; trouble other
    /// than absence is reported and the file passed over.
    fn is_ready_file(&self, path: &Path) -> bool {
        match fs::symlink_metadata(path) {
            Ok(meta) => meta.is_file() && is_ready(meta.mode()),
            Err(err) if err.kind() == io::ErrorKind::NotFound => false,
            Err(err) => {
                let reason = libmail::error::strerror(&err);
                log::warning(format_args!("{}: {reason}{}", path.display(), hint(&err)));
                false
            }
        }
    }

    /// Does `action` to the file at `path` in `queue`. `announce` logs
    /// `ID: removed` and the like, which Postfix does for messages named
    /// one by one, not for `ALL`.
    pub fn apply(
        &mut self,
        action: Action,
        queue: &str,
        id: &QueueId,
        path: &Path,
        announce: bool,
    ) -> Result<Outcome, SuperError> {
        let Some(guard) = self.hold_still(queue, path)? else {
            return Ok(Outcome::Gone);
        };
        if just_delivered(queue, path) {
            return Ok(Outcome::Unchanged);
        }
        match action {
            Action::Delete => self.delete(id, path, announce, true),
            Action::Requeue => self.requeue(id, path, &guard, announce),
            Action::Hold => self.hold(id, path, announce),
            Action::Release => self.release(id, path, &guard, announce),
            Action::Expire => self.expire(id, path, &guard, announce),
            Action::ExpireRelease => {
                let expired = self.expire(id, path, &guard, announce)?;
                if queue != HOLD || expired == Outcome::Gone {
                    return Ok(expired);
                }
                match self.release(id, path, &guard, announce)? {
                    Outcome::Gone => Ok(expired),
                    released => Ok(released),
                }
            }
        }
    }

    /// Takes the exclusive lock (waiting for a delivery in progress).
    /// None: the file is gone, or cannot be opened (reported).
    fn hold_still(&self, queue: &str, path: &Path) -> Result<Option<Guard>, SuperError> {
        if queue == MAILDROP {
            return Ok(path.exists().then_some(Guard::Unlocked));
        }
        match LockedFile::open(path, LockKind::Exclusive) {
            Ok(locked) => Ok(Some(Guard::Locked(locked))),
            Err(err) if err.is_not_found() => Ok(None),
            Err(err) => {
                log::warning(err);
                Ok(None)
            }
        }
    }

    /// Removes the message and its logs. `count` is false for files
    /// that are not complete messages (`-d ALL` removes those too).
    pub fn delete(
        &mut self,
        id: &QueueId,
        path: &Path,
        announce: bool,
        count: bool,
    ) -> Result<Outcome, SuperError> {
        self.remove_logs(id)?;
        if !remove_file(path)? {
            return Ok(Outcome::Gone);
        }
        if count {
            self.counts.deleted += 1;
        }
        if announce {
            log::info(format_args!("{id}: removed"));
        }
        Ok(Outcome::Done)
    }

    fn hold(&mut self, id: &QueueId, path: &Path, announce: bool) -> Result<Outcome, SuperError> {
        if !move_file(path, &self.queue.path(HOLD, id))? {
            return Ok(Outcome::Gone);
        }
        self.counts.held += 1;
        if announce {
            log::info(format_args!("{id}: placed on hold"));
        }
        Ok(Outcome::Done)
    }

    /// Hold to deferred, due at once: in deferred/ the file's time is
    /// when qmgr tries it next.
    fn release(
        &mut self,
        id: &QueueId,
        path: &Path,
        guard: &Guard,
        announce: bool,
    ) -> Result<Outcome, SuperError> {
        let target = self.queue.path(DEFERRED, id);
        if !move_file(path, &target)? {
            return Ok(Outcome::Gone);
        }
        touch(guard, &target);
        self.counts.released += 1;
        if announce {
            log::info(format_args!("{id}: released from hold"));
        }
        Ok(Outcome::Done)
    }

    /// To maildrop/, where pickup gives it to cleanup as new mail, so
    /// that address rewriting and content filters apply again. The logs
    /// go: they describe deliveries of the old queue file.
    fn requeue(
        &mut self,
        id: &QueueId,
        path: &Path,
        guard: &Guard,
        announce: bool,
    ) -> Result<Outcome, SuperError> {
        let target = self.queue.path(MAILDROP, id);
        if !move_file(path, &target)? {
            return Ok(Outcome::Gone);
        }
        if let Err(err) = set_mode(guard, &target, READY_MODE) {
            // pickup still takes it, as a local submission by mail_owner.
            let reason = libmail::error::strerror(&err);
            log::warning(format_args!("{}: set mode: {reason}", target.display()));
        }
        touch(guard, &target);
        self.remove_logs(id)?;
        self.counts.requeued += 1;
        if announce {
            log::info(format_args!("{id}: requeued"));
        }
        Ok(Outcome::Done)
    }

    /// Sets the forced-expiration bit; qmgr returns the message to the
    /// sender when it next looks at it.
    fn expire(
        &mut self,
        id: &QueueId,
        path: &Path,
        guard: &Guard,
        announce: bool,
    ) -> Result<Outcome, SuperError> {
        let mode = match fs::symlink_metadata(path) {
            Ok(meta) => meta.mode() & 0o7777,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Outcome::Gone),
            Err(source) => {
                let path = path.to_path_buf();
                return Err(SuperError::Expire { path, source });
            }
        };
        if is_forced_expire(mode) {
            return Ok(Outcome::Unchanged);
        }
        set_mode(guard, path, mode | EXPIRE_FLAG).map_err(|source| SuperError::Expire {
            path: path.to_path_buf(),
            source,
        })?;
        self.counts.expired += 1;
        if announce {
            log::info(format_args!("{id}: expired"));
        }
        Ok(Outcome::Done)
    }

    /// The bounce, defer and trace logs of message `id`.
    pub fn remove_logs(&self, id: &QueueId) -> Result<(), SuperError> {
        for log_queue in LOG_QUEUES {
            remove_file(&self.queue.path(log_queue, id))?;
        }
        Ok(())
    }
}

/// A message in active/ with no recipient left to deliver was delivered
/// while we waited for the lock; qmgr removes it. (A file that cannot be
/// read as a queue file is not "delivered": it can still be deleted.)
fn just_delivered(queue: &str, path: &Path) -> bool {
    queue == ACTIVE
        && QueueFile::open(path).is_ok_and(|file| file.envelope().pending().next().is_none())
}

fn set_mode(guard: &Guard, path: &Path, mode: u32) -> io::Result<()> {
    let permissions = Permissions::from_mode(mode);
    match guard.file() {
        Some(file) => file.set_permissions(permissions),
        None => fs::set_permissions(path, permissions),
    }
}

/// Sets the file's times to now; failure is only a warning (Postfix's
/// "reset time stamps").
fn touch(guard: &Guard, path: &Path) {
    let now = SystemTime::now();
    let times = FileTimes::new().set_accessed(now).set_modified(now);
    let done = match guard.file() {
        Some(file) => file.set_times(times),
        None => File::options()
            .write(true)
            .open(path)
            .and_then(|f| f.set_times(times)),
    };
    if let Err(err) = done {
        let reason = libmail::error::strerror(&err);
        log::warning(format_args!(
            "{}: reset time stamps: {reason}",
            path.display()
        ));
    }
}

/// Removes a file; false if it was not there.
pub fn remove_file(path: &Path) -> Result<bool, SuperError> {
    match fs::remove_file(path) {
        Ok(()) => {
            log::verbose(format_args!("removed file {}", path.display()));
            Ok(true)
        }
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(SuperError::Remove {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Renames a file, making the hashed subdirectories on the way as
/// needed (mode 0700, as Postfix's mail_queue_mkdirs). False if the file
/// was not there.
pub fn move_file(from: &Path, to: &Path) -> Result<bool, SuperError> {
    let error = |source| SuperError::Rename {
        from: from.to_path_buf(),
        to: to.to_path_buf(),
        source,
    };
    let first = fs::rename(from, to);
    let result = match first {
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            if fs::symlink_metadata(from).is_err() {
                return Ok(false);
            }
            let parent = to.parent().map_or_else(PathBuf::new, Path::to_path_buf);
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&parent)
                .map_err(error)?;
            fs::rename(from, to)
        }
        other => other,
    };
    match result {
        Ok(()) => {
            log::verbose(format_args!(
                "renamed file {} as {}",
                from.display(),
                to.display()
            ));
            Ok(true)
        }
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(error(source)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use libmail::queue::{QueueSettings, Recipient};

    /// A queue in a scratch directory with one message in `queue`.
    fn setup(tag: &str, queue_name: &str) -> (PathBuf, Work, QueueId) {
        let dir = std::env::temp_dir().join(format!("postsuper-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        for q in MESSAGE_QUEUES.iter().chain(LOG_QUEUES.iter()) {
            fs::create_dir_all(dir.join(q)).unwrap();
        }
        let queue = Queue::new(QueueSettings::new(&dir)).unwrap();
        let mut writer = queue.create(queue_name).unwrap();
        writer.sender("alice@example.com").unwrap();
        writer
            .recipient(&Recipient::new("bob@example.com"))
            .unwrap();
        writer.body(b"\nhi\n").unwrap();
        let id = writer.commit().unwrap().id;
        (dir, Work::new(queue, false), id)
    }

    fn ids(work: &Work, queue: &str) -> Vec<QueueId> {
        work.queue.scan(queue).unwrap()
    }

    #[test]
    fn delete_removes_message_and_logs() {
        let (dir, mut work, id) = setup("delete", DEFERRED);
        let log = work.queue.path(DEFER, &id);
        fs::create_dir_all(log.parent().unwrap()).unwrap();
        fs::write(&log, "recipient=bob@example.com\n").unwrap();
        let queues: Vec<String> = MESSAGE_QUEUES.iter().map(|q| q.to_string()).collect();
        work.by_id(Action::Delete, id.as_str(), &queues).unwrap();
        assert_eq!(work.counts.deleted, 1);
        assert!(ids(&work, DEFERRED).is_empty());
        assert!(!log.exists());
        // Again: nothing there, nothing counted.
        work.by_id(Action::Delete, id.as_str(), &queues).unwrap();
        assert_eq!(work.counts.deleted, 1);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn hold_release_and_expire() {
        let (dir, mut work, id) = setup("hold", DEFERRED);
        let queues: Vec<String> = MESSAGE_QUEUES.iter().map(|q| q.to_string()).collect();
        work.by_id(Action::Hold, id.as_str(), &queues).unwrap();
        assert_eq!(ids(&work, HOLD), std::slice::from_ref(&id));
        // Already on hold: -h does not look in hold/.
        work.by_id(Action::Hold, id.as_str(), &queues).unwrap();
        assert_eq!(work.counts.held, 1);
        work.by_id(Action::Expire, id.as_str(), &queues).unwrap();
        work.by_id(Action::Expire, id.as_str(), &queues).unwrap();
        assert_eq!(work.counts.expired, 1, "expiring twice counts once");
        assert_eq!(
            ids(&work, HOLD),
            std::slice::from_ref(&id),
            "-e leaves held mail held"
        );
        work.by_id(Action::ExpireRelease, id.as_str(), &queues)
            .unwrap();
        assert_eq!((work.counts.expired, work.counts.released), (1, 1));
        let path = work.queue.path(DEFERRED, &id);
        let meta = fs::metadata(&path).unwrap();
        assert!(is_forced_expire(meta.mode()));
        let age = SystemTime::now().duration_since(meta.modified().unwrap());
        assert!(
            age.map_or(true, |a| a.as_secs() < 60),
            "released mail is due now"
        );
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn requeue_moves_to_maildrop_ready_for_pickup() {
        let (dir, mut work, id) = setup("requeue", ACTIVE);
        let queues: Vec<String> = MESSAGE_QUEUES.iter().map(|q| q.to_string()).collect();
        let path = work.queue.path(ACTIVE, &id);
        fs::set_permissions(&path, Permissions::from_mode(0o710)).unwrap();
        work.by_id(Action::Requeue, id.as_str(), &queues).unwrap();
        assert_eq!(work.counts.requeued, 1);
        let moved = work.queue.path(MAILDROP, &id);
        assert_eq!(fs::metadata(moved).unwrap().mode() & 0o7777, READY_MODE);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn delivered_mail_in_active_is_left_to_qmgr() {
        let (dir, mut work, id) = setup("delivered", ACTIVE);
        let path = work.queue.path(ACTIVE, &id);
        let file = QueueFile::open(&path).unwrap();
        let offsets: Vec<u64> = file.envelope().pending().map(|r| r.offset).collect();
        libmail::queue::mark_recipients_done(&path, &offsets).unwrap();
        let queues = vec![ACTIVE.to_string()];
        work.by_id(Action::Delete, id.as_str(), &queues).unwrap();
        assert_eq!(work.counts.deleted, 0);
        assert!(path.exists());
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn bad_names_touch_nothing() {
        let (dir, mut work, id) = setup("badnames", INCOMING);
        let queues = vec![INCOMING.to_string()];
        for text in ["../incoming", "x.y", "", "lowercase1"] {
            work.by_id(Action::Delete, text, &queues).unwrap();
        }
        assert_eq!(ids(&work, INCOMING), [id]);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn actions_apply_to_their_queues() {
        assert!(applies(Action::Delete, MAILDROP));
        assert!(!applies(Action::Hold, MAILDROP));
        assert!(!applies(Action::Hold, HOLD));
        assert!(!applies(Action::Requeue, MAILDROP));
        assert!(applies(Action::Release, HOLD));
        assert!(!applies(Action::Release, DEFERRED));
        assert!(!applies(Action::Delete, DEFER));
    }
}
