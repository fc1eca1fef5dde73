//! Writing a queue file: a builder that streams records into a file that
//! has no name in the queue yet, and `commit`, after which the file is
//! complete, on disk, and in its queue under its ID.
//!
//! Records collect in a buffer that is written when it passes 64 KiB and
//! at commit, so a small message costs one write(2). The size record
//! (first) and the arrival time (second) have fixed widths and are filled
//! in place: in the buffer while it still holds them, else with one
//! pwrite(2).
//!
//! Order: the envelope (sender, recipients, attributes) comes first, then
//! the header fields, then the body. Envelope information that arrives
//! after the content has started (recipients that `sendmail -t` takes from
//! the headers, say) goes to the extracted section after the content, as
//! in Postfix; the sender and arrival time cannot.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use nix::fcntl::AtFlags;

use super::id::QueueId;
use super::record::{
    attribute_payload, file_header, kind, put_record, time_payload, Recipient, Sizes, HEADER_LEN,
    SIZE_LEN,
};
use super::tree::{retry_with_dirs, Queue};
use super::QueueError;

/// Write the buffer out once it holds this much.
const FLUSH_AT: usize = 64 * 1024;
/// Body bytes per record.
const BODY_CHUNK: usize = 64 * 1024;
/// Where the size record's payload starts: after its type and length.
const SIZE_PAYLOAD_AT: u64 = HEADER_LEN + 2;
/// Where the arrival time's payload starts.
const TIME_PAYLOAD_AT: u64 = SIZE_PAYLOAD_AT + SIZE_LEN as u64 + 2;

/// Where the writer is in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Envelope,
    Headers,
    Body,
    Extracted,
}

/// How the file is kept out of sight until commit.
#[derive(Debug)]
enum Temp {
    /// An O_TMPFILE inode: no name at all.
    Unnamed,
    /// A temporary name in the queue directory that is not a queue ID.
    Named(PathBuf),
}

/// What `commit` made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    pub id: QueueId,
    pub queue: String,
    pub path: PathBuf,
    /// The message's size in bytes (headers and body), for the log.
    pub message_size: u64,
    pub recipient_count: u64,
}

/// A queue file being written. Dropping it without `commit` leaves
/// nothing behind.
#[derive(Debug)]
pub struct QueueWriter {
    queue: Queue,
    queue_name: String,
    id: QueueId,
    file: File,
    temp: Temp,
    /// Records not yet written to the file.
    buf: Vec<u8>,
    /// Bytes already written to the file.
    flushed: u64,
    /// Body bytes not yet made into a record.
    body: Vec<u8>,
    phase: Phase,
    sizes: Sizes,
    has_sender: bool,
    committed: bool,
}

impl QueueWriter {
    pub(crate) fn create(queue: Queue, queue_name: &str, mode: u32) -> Result<Self, QueueError> {
        let dir = queue.directory().join(queue_name);
        let (file, temp) = open_temp(&queue, &dir, mode)?;
        let writer = QueueWriter::start(queue, queue_name, file, temp, &dir)?;
        if mode & 0o077 != 0 {
            // The umask may have taken away what others need (pickup
            // reads maildrop files as mail_owner).
            let perms = fs::Permissions::from_mode(mode);
            writer
                .file
                .set_permissions(perms)
                .map_err(|e| writer.io("chmod", e))?;
        }
        Ok(writer)
    }

    /// Derives the ID from the file's inode and writes the fixed records.
    fn start(
        queue: Queue,
        queue_name: &str,
        file: File,
        temp: Temp,
        dir: &Path,
    ) -> Result<Self, QueueError> {
        let now = SystemTime::now();
        let inode = match file.metadata() {
            Ok(meta) => meta.ino(),
            Err(err) => return Err(QueueError::io("fstat", dir, err)),
        };
        let id = QueueId::new(now, inode, queue.settings().long_ids);
        let mut buf = Vec::with_capacity(FLUSH_AT + 1024);
        buf.extend_from_slice(&file_header());
        put_record(&mut buf, kind::SIZE, &Sizes::default().encode());
        put_record(&mut buf, kind::TIME, &time_payload(now));
        let seconds = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        put_record(&mut buf, kind::CREATE_TIME, &seconds.to_le_bytes());
        Ok(QueueWriter {
            queue,
            queue_name: queue_name.to_string(),
            id,
            file,
            temp,
            buf,
            flushed: 0,
            body: Vec::new(),
            phase: Phase::Envelope,
            sizes: Sizes::default(),
            has_sender: false,
            committed: false,
        })
    }

    /// The queue ID, final from the start (smtpd logs it and cleanup puts
    /// it in the Received: header before the file is committed).
    pub fn id(&self) -> &QueueId {
        &self.id
    }

    /// The queue the file goes to at commit.
    pub fn queue_name(&self) -> &str {
        &self.queue_name
    }

    /// Commits into `queue` instead of the queue named at create (cleanup
    /// puts a held message in hold/ rather than incoming/). The file has
    /// no name in any queue until commit, so this is only a new target.
    pub fn set_queue(&mut self, queue: &str) -> Result<(), QueueError> {
        if !super::tree::is_queue_name(queue) {
            return Err(QueueError::BadQueueName(queue.to_string()));
        }
        self.queue_name = queue.to_string();
        Ok(())
    }

    /// Replaces the arrival time (default: when the file was made), for
    /// a message that arrived earlier (pickup keeps the maildrop file's).
    pub fn set_arrival_time(&mut self, time: SystemTime) -> Result<(), QueueError> {
        self.envelope_only("arrival time after message content")?;
        self.patch(TIME_PAYLOAD_AT, &time_payload(time))
    }

    /// The envelope sender; empty for the null sender `<>`. Exactly once,
    /// before the content.
    pub fn sender(&mut self, address: &str) -> Result<(), QueueError> {
        self.envelope_only("sender after message content")?;
        if std::mem::replace(&mut self.has_sender, true) {
            return Err(self.usage("duplicate sender"));
        }
        self.emit(kind::SENDER, address.as_bytes())
    }

    /// The sender's full name (sendmail -F).
    pub fn sender_fullname(&mut self, name: &str) -> Result<(), QueueError> {
        self.envelope_info()?;
        self.emit(kind::FULLNAME, name.as_bytes())
    }

    /// A recipient, still to be delivered (`done` and `offset` are
    /// ignored).
    pub fn recipient(&mut self, recipient: &Recipient) -> Result<(), QueueError> {
        self.envelope_info()?;
        let mut payload = Vec::with_capacity(recipient.address.len() * 2 + 8);
        recipient.encode(&mut payload);
        self.sizes.recipient_count += 1;
        self.emit(kind::RECIPIENT, &payload)
    }

    /// A named attribute, `name=value` (see `attr`). The name must not be
    /// empty or contain `=`.
    pub fn attribute(&mut self, name: &str, value: &str) -> Result<(), QueueError> {
        if name.is_empty() || name.contains('=') {
            return Err(self.usage("bad attribute name"));
        }
        self.envelope_info()?;
        self.emit(kind::ATTRIBUTE, &attribute_payload(name, value))
    }

    /// `transport:nexthop` for every recipient (the FILTER action).
    pub fn content_filter(&mut self, filter: &str) -> Result<(), QueueError> {
        self.envelope_info()?;
        self.emit(kind::FILTER, filter.as_bytes())
    }

    /// Deliver to this address instead of the recipients (REDIRECT).
    pub fn redirect_to(&mut self, address: &str) -> Result<(), QueueError> {
        self.envelope_info()?;
        self.emit(kind::REDIRECT, address.as_bytes())
    }

    /// DSN ENVID.
    pub fn dsn_envid(&mut self, envid: &str) -> Result<(), QueueError> {
        self.envelope_info()?;
        self.emit(kind::DSN_ENVID, envid.as_bytes())
    }

    /// DSN RET (`ret::FULL` or `ret::HDRS`).
    pub fn dsn_ret(&mut self, flags: u8) -> Result<(), QueueError> {
        self.envelope_info()?;
        self.emit(kind::DSN_RET, &[flags])
    }

    /// SMTPUTF8 was requested (any time before commit).
    pub fn set_smtputf8(&mut self, flags: u64) {
        self.sizes.smtputf8 = flags;
    }

    /// One header field: its bytes exactly, continuation lines and line
    /// ends included. All header fields come before the body.
    pub fn header(&mut self, field: &[u8]) -> Result<(), QueueError> {
        self.start_content()?;
        if self.phase != Phase::Headers {
            return Err(self.usage("header after body"));
        }
        self.sizes.message_size += field.len() as u64;
        self.emit(kind::HEADER, field)
    }

    /// Body bytes, appended to what came before; any amount, in pieces of
    /// any size (lines, say). The empty line that ends the header is the
    /// body's first line.
    pub fn body(&mut self, bytes: &[u8]) -> Result<(), QueueError> {
        self.start_content()?;
        if self.phase == Phase::Extracted {
            return Err(self.usage("body after extracted information"));
        }
        self.phase = Phase::Body;
        self.sizes.message_size += bytes.len() as u64;
        self.body.extend_from_slice(bytes);
        while self.body.len() >= BODY_CHUNK {
            let rest = self.body.split_off(BODY_CHUNK);
            let chunk = std::mem::replace(&mut self.body, rest);
            self.emit_now(kind::BODY, &chunk)?;
        }
        Ok(())
    }

    /// Completes the file and makes it durable: the end marker, fsync,
    /// the link into the queue under its ID, fsync of the directory. When
    /// this returns Ok the message is safe; say so to the client.
    pub fn commit(mut self) -> Result<Committed, QueueError> {
        self.start_content()?;
        self.end_content()?;
        self.emit(kind::END, &[])?;
        self.patch(SIZE_PAYLOAD_AT, &self.sizes.encode())?;
        self.flush()?;
        self.file.sync_data().map_err(|e| self.io("fsync", e))?;
        let path = self.link()?;
        self.committed = true;
        Ok(Committed {
            id: self.id.clone(),
            queue: self.queue_name.clone(),
            path,
            message_size: self.sizes.message_size,
            recipient_count: self.sizes.recipient_count,
        })
    }

    /// Gives up on the file; the same as dropping it.
    pub fn abort(self) {}

    // --- record plumbing ---------------------------------------------

    fn position(&self) -> u64 {
        self.flushed + self.buf.len() as u64
    }

    /// Appends a record, after any pending body bytes.
    fn emit(&mut self, kind: u8, payload: &[u8]) -> Result<(), QueueError> {
        if !self.body.is_empty() {
            let body = std::mem::take(&mut self.body);
            self.emit_now(kind::BODY, &body)?;
        }
        self.emit_now(kind, payload)
    }

    fn emit_now(&mut self, kind: u8, payload: &[u8]) -> Result<(), QueueError> {
        put_record(&mut self.buf, kind, payload);
        if self.buf.len() >= FLUSH_AT {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), QueueError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        (&self.file)
            .write_all(&self.buf)
            .map_err(|e| self.io("write", e))?;
        self.flushed += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    /// Overwrites bytes of a fixed-width record.
    fn patch(&mut self, offset: u64, bytes: &[u8]) -> Result<(), QueueError> {
        if offset >= self.flushed {
            let at = (offset - self.flushed) as usize;
            self.buf[at..at + bytes.len()].copy_from_slice(bytes);
            return Ok(());
        }
        self.file
            .write_all_at(bytes, offset)
            .map_err(|e| self.io("write", e))
    }

    // --- phases ------------------------------------------------------

    fn envelope_only(&self, what: &'static str) -> Result<(), QueueError> {
        match self.phase {
            Phase::Envelope => Ok(()),
            _ => Err(self.usage(what)),
        }
    }

    /// Envelope information after the content goes to the extracted
    /// section.
    fn envelope_info(&mut self) -> Result<(), QueueError> {
        match self.phase {
            Phase::Headers | Phase::Body => self.end_content(),
            Phase::Envelope | Phase::Extracted => Ok(()),
        }
    }

    fn start_content(&mut self) -> Result<(), QueueError> {
        if self.phase != Phase::Envelope {
            return Ok(());
        }
        if !self.has_sender {
            return Err(self.usage("message content before sender"));
        }
        self.emit(kind::CONTENT, &[])?;
        self.sizes.content_offset = self.position();
        self.phase = Phase::Headers;
        Ok(())
    }

    fn end_content(&mut self) -> Result<(), QueueError> {
        if !matches!(self.phase, Phase::Headers | Phase::Body) {
            return Ok(());
        }
        if !self.body.is_empty() {
            let body = std::mem::take(&mut self.body);
            self.emit_now(kind::BODY, &body)?;
        }
        self.sizes.content_size = self.position() - self.sizes.content_offset;
        self.phase = Phase::Extracted;
        self.emit(kind::EXTRACTED, &[])
    }

    fn usage(&self, what: &'static str) -> QueueError {
        QueueError::Usage {
            id: self.id.to_string(),
            what,
        }
    }

    /// An I/O error, naming the temporary file, or the unnamed file by
    /// the name it is to have.
    fn io(&self, op: &'static str, err: io::Error) -> QueueError {
        let path = match &self.temp {
            Temp::Named(path) => path.clone(),
            Temp::Unnamed => self.queue.path(&self.queue_name, &self.id),
        };
        QueueError::io(op, &path, err)
    }

    // --- making it visible -------------------------------------------

    /// Gives the file its name in the queue, then makes that durable.
    fn link(&self) -> Result<PathBuf, QueueError> {
        let in_queue = self.queue.name_in_queue(&self.queue_name, &self.id);
        let target = self.queue.path(&self.queue_name, &self.id);
        let made_dirs = match &self.temp {
            Temp::Unnamed => self.link_unnamed(&in_queue, &target),
            Temp::Named(temp) => {
                let made = retry_with_dirs(&target, || fs::hard_link(temp, &target));
                if made.is_ok() {
                    // The file is in the queue; a leftover second name is
                    // harmless, so a failure here is not the sender's.
                    let _ = fs::remove_file(temp);
                }
                made
            }
        }
        .map_err(|e| QueueError::io("link", &target, e))?;
        self.sync_dirs(&in_queue, made_dirs)?;
        Ok(target)
    }

    /// linkat(2) through /proc/self/fd: the only way to name an O_TMPFILE
    /// inode without privileges. It fails with EEXIST rather than replace
    /// a file.
    fn link_unnamed(&self, in_queue: &Path, target: &Path) -> io::Result<bool> {
        let dir = self.queue.queue_dir(&self.queue_name).map_err(to_io)?;
        let source = PathBuf::from(format!("/proc/self/fd/{}", self.file.as_raw_fd()));
        let linked = retry_with_dirs(target, || {
            nix::unistd::linkat(
                None,
                source.as_path(),
                Some(dir.as_raw_fd()),
                in_queue,
                AtFlags::AT_SYMLINK_FOLLOW,
            )
            .map_err(io::Error::from)
        });
        if matches!(&linked, Err(e) if e.kind() == io::ErrorKind::NotFound) && !source.exists() {
            // /proc went away (a chroot after the Queue was made): this
            // file cannot be named; the next ones get temporary names.
            self.queue.use_named_temp();
        }
        linked
    }

    /// fsyncs the directory that now holds the file, and the ones above
    /// it up to the queue directory if they were just made.
    fn sync_dirs(&self, in_queue: &Path, made_dirs: bool) -> Result<(), QueueError> {
        let queue_dir = self.queue.directory().join(&self.queue_name);
        let mut dir = in_queue.parent().unwrap_or(Path::new(""));
        loop {
            if dir.as_os_str().is_empty() {
                let open = self.queue.queue_dir(&self.queue_name)?;
                return open
                    .sync_all()
                    .map_err(|e| QueueError::io("fsync", &queue_dir, e));
            }
            let path = queue_dir.join(dir);
            File::open(&path)
                .and_then(|d| d.sync_all())
                .map_err(|e| QueueError::io("fsync", &path, e))?;
            if !made_dirs {
                return Ok(());
            }
            dir = dir.parent().unwrap_or(Path::new(""));
        }
    }
}

impl Drop for QueueWriter {
    fn drop(&mut self) {
        if let (false, Temp::Named(temp)) = (self.committed, &self.temp) {
            let _ = fs::remove_file(temp);
        }
    }
}

fn to_io(err: QueueError) -> io::Error {
    match err {
        QueueError::Io { source, .. } => source,
        other => io::Error::other(other.to_string()),
    }
}

/// A new file in `dir` that is not visible as a queue file: unnamed if
/// the system can, else under a name that is not a queue ID.
fn open_temp(queue: &Queue, dir: &Path, mode: u32) -> Result<(File, Temp), QueueError> {
    if !queue.uses_named_temp() {
        let opened = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(nix::libc::O_TMPFILE)
            .mode(mode)
            .open(dir);
        match opened {
            Ok(file) => return Ok((file, Temp::Unnamed)),
            Err(err) if no_tmpfile(&err) => queue.use_named_temp(),
            Err(err) => return Err(QueueError::io("create file", dir, err)),
        }
    }
    open_named(dir, mode)
}

/// The errors that mean "this file system or kernel has no O_TMPFILE".
fn no_tmpfile(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(nix::libc::EOPNOTSUPP | nix::libc::EISDIR | nix::libc::EINVAL)
    )
}

/// Postfix's temporary names, `microseconds.pid`: the `.` keeps them from
/// ever being taken for a queue ID.
fn open_named(dir: &Path, mode: u32) -> Result<(File, Temp), QueueError> {
    loop {
        let micros = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .subsec_micros();
        let path = dir.join(format!("{micros}.{}", std::process::id()));
        let opened = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&path);
        match opened {
            Ok(file) => return Ok((file, Temp::Named(path))),
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(err) => return Err(QueueError::io("create file", &path, err)),
        }
    }
}

#[cfg(test)]
impl QueueWriter {
    /// Where the temporary file is, when it has a name.
    pub(crate) fn temp_path(&self) -> Option<&Path> {
        match &self.temp {
            Temp::Named(path) => Some(path),
            Temp::Unnamed => None,
        }
    }
}
