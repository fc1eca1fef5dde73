//! Reading a queue file: its envelope as one typed value, checked from
//! the first record to the end marker without reading the content in
//! between; the content on demand, whole or in pieces; and marking
//! recipients done in place.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::record::{kind, Damage, Data, Entry, Recipient, Sizes, Walker};
use super::QueueError;

/// Everything in a queue file but the content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub sizes: Sizes,
    pub arrival_time: SystemTime,
    pub create_time: Option<SystemTime>,
    /// Empty for the null sender.
    pub sender: String,
    pub sender_fullname: Option<String>,
    /// In file order, envelope section first, then extracted ones.
    pub recipients: Vec<Recipient>,
    /// Named attributes in file order.
    pub attributes: Vec<(String, String)>,
    pub content_filter: Option<String>,
    pub redirect_to: Option<String>,
    pub dsn_envid: Option<String>,
    /// DSN RET flags (`ret::*`), 0 when not given.
    pub dsn_ret: u8,
}

impl Envelope {
    /// The value of a named attribute; the last one wins, so that the
    /// extracted section overrides the envelope (as in Postfix).
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Recipients not yet done.
    pub fn pending(&self) -> impl Iterator<Item = &Recipient> {
        self.recipients.iter().filter(|r| !r.done)
    }

    fn new(sizes: Sizes) -> Envelope {
        Envelope {
            sizes,
            arrival_time: SystemTime::UNIX_EPOCH,
            create_time: None,
            sender: String::new(),
            sender_fullname: None,
            recipients: Vec::new(),
            attributes: Vec::new(),
            content_filter: None,
            redirect_to: None,
            dsn_envid: None,
            dsn_ret: 0,
        }
    }

    /// Takes in one envelope record.
    fn add(&mut self, entry: Entry) {
        match entry {
            Entry::Size(sizes) => self.sizes = sizes,
            Entry::Arrival(time) => self.arrival_time = time,
            Entry::Created(time) => self.create_time = Some(time),
            Entry::Sender(sender) => self.sender = sender,
            Entry::Fullname(name) => self.sender_fullname = Some(name),
            Entry::Recipient(rcpt) => self.recipients.push(rcpt),
            Entry::Attribute(name, value) => self.attributes.push((name, value)),
            Entry::ContentFilter(filter) => self.content_filter = Some(filter),
            Entry::Redirect(address) => self.redirect_to = Some(address),
            Entry::DsnEnvid(envid) => self.dsn_envid = Some(envid),
            Entry::DsnRet(flags) => self.dsn_ret = flags,
            _ => {}
        }
    }
}

/// A piece of the message content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// One header field, as written.
    Header(Vec<u8>),
    /// Body bytes.
    Body(Vec<u8>),
}

/// The whole content in memory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Content {
    pub headers: Vec<Vec<u8>>,
    pub body: Vec<u8>,
}

impl Content {
    /// The message as one text: header fields, then the body.
    pub fn text(&self) -> Vec<u8> {
        let mut text = self.headers.concat();
        text.extend_from_slice(&self.body);
        text
    }
}

/// An open queue file whose envelope has been read and checked.
#[derive(Debug)]
pub struct QueueFile {
    path: PathBuf,
    data: Data,
    envelope: Envelope,
    /// The file's permission bits (0 for bytes in memory).
    mode: u32,
}

impl QueueFile {
    /// Opens and checks a queue file: header, envelope, extracted
    /// section, end marker. A file that is incomplete or damaged in any
    /// of those is an error that names the damage.
    pub fn open(path: &Path) -> Result<QueueFile, QueueError> {
        let (data, meta) = Data::open_stat(path, false)?;
        QueueFile::read(path, data, meta.mode())
    }

    /// `open` for a file whose recipients will be marked done.
    pub fn open_for_update(path: &Path) -> Result<QueueFile, QueueError> {
        let (data, meta) = Data::open_stat(path, true)?;
        QueueFile::read(path, data, meta.mode())
    }

    /// Reads a queue file a delivery agent holds locked.
    pub fn read_locked(locked: &super::lock::LockedFile) -> Result<QueueFile, QueueError> {
        let path = locked.path();
        let (data, meta) = Data::read_stat(locked.file(), path)?;
        QueueFile::read(path, data, meta.mode())
    }

    /// A queue file held in memory; `name` stands for it in errors.
    pub fn from_bytes(name: &str, bytes: Vec<u8>) -> Result<QueueFile, QueueError> {
        QueueFile::read(Path::new(name), Data::Bytes(bytes), 0)
    }

    fn read(path: &Path, data: Data, mode: u32) -> Result<QueueFile, QueueError> {
        let envelope = read_envelope(&data, path)?;
        Ok(QueueFile {
            path: path.to_path_buf(),
            data,
            envelope,
            mode: mode & 0o7777,
        })
    }

    /// The file's permission bits, as they were when it was opened:
    /// `lock::is_forced_expire` reads them.
    pub fn mode(&self) -> u32 {
        self.mode
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn envelope(&self) -> &Envelope {
        &self.envelope
    }

    pub fn into_envelope(self) -> Envelope {
        self.envelope
    }

    /// The content, piece by piece, read as it is consumed; it checks
    /// the content records as it goes.
    pub fn content_parts(&self) -> Result<ContentParts<'_>, QueueError> {
        let walker = Walker::content_only(&self.data, &self.path, self.envelope.sizes)?;
        Ok(ContentParts { walker })
    }

    /// The whole content in memory.
    pub fn content(&self) -> Result<Content, QueueError> {
        let mut content = Content::default();
        for part in self.content_parts()? {
            match part? {
                Part::Header(field) => content.headers.push(field),
                Part::Body(bytes) => content.body.extend_from_slice(&bytes),
            }
        }
        Ok(content)
    }

    /// Marks recipients done (delivered or bounced) by their record
    /// offsets, then fsyncs once. The file must have been opened with
    /// `open_for_update`.
    pub fn mark_done(&mut self, offsets: &[u64]) -> Result<(), QueueError> {
        if let Data::File { file, .. } = &self.data {
            mark_file(file, &self.path, offsets)?;
            sync(file, &self.path)?;
        }
        mark_in_memory(&mut self.envelope, offsets);
        Ok(())
    }
}

fn mark_in_memory(envelope: &mut Envelope, offsets: &[u64]) {
    for rcpt in &mut envelope.recipients {
        if offsets.contains(&rcpt.offset) {
            rcpt.done = true;
        }
    }
}

/// Marks recipients done in the file at `path` without reading the rest
/// of it: for each offset, checks that a recipient record starts there,
/// changes its type byte, then one fsync for all.
pub fn mark_recipients_done(path: &Path, offsets: &[u64]) -> Result<(), QueueError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| QueueError::io("open", path, e))?;
    mark_file(&file, path, offsets)?;
    sync(&file, path)
}

/// Marks recipients done in a file a delivery agent holds locked
/// (`lock::LockedFile`), without an fsync: qmgr fsyncs when it records the
/// message, and a crash before that may repeat a delivery, never lose one
/// (DESIGN.md §4). The mark is what postsuper sees once the lock is free.
pub fn mark_locked_recipients_done(
    locked: &super::lock::LockedFile,
    offsets: &[u64],
) -> Result<(), QueueError> {
    mark_file(locked.file(), locked.path(), offsets)
}

fn sync(file: &File, path: &Path) -> Result<(), QueueError> {
    file.sync_data()
        .map_err(|e| QueueError::io("fsync", path, e))
}

fn mark_file(file: &File, path: &Path, offsets: &[u64]) -> Result<(), QueueError> {
    for &offset in offsets {
        let mut byte = [0u8; 1];
        file.read_exact_at(&mut byte, offset)
            .map_err(|e| QueueError::io("read", path, e))?;
        match byte[0] {
            kind::DONE => continue,
            kind::RECIPIENT => {}
            _ => {
                let damage = Damage::Malformed {
                    what: "recipient",
                    offset,
                };
                return Err(QueueError::damaged(path, damage));
            }
        }
        file.write_all_at(&[kind::DONE], offset)
            .map_err(|e| QueueError::io("write", path, e))?;
    }
    Ok(())
}

/// Reads the envelope and the extracted section, skipping the content.
fn read_envelope(data: &Data, path: &Path) -> Result<Envelope, QueueError> {
    let mut walker = Walker::new(data, path)?;
    let mut envelope = Envelope::new(Sizes::default());
    while let Some(record) = walker.next() {
        let entry = record?.entry;
        match entry {
            Entry::ContentStart => walker.skip_content()?,
            Entry::End => return Ok(envelope),
            other => envelope.add(other),
        }
    }
    // The walker reports a missing end marker itself; this is for form.
    Err(QueueError::damaged(path, Damage::MissingEnd))
}

/// The content of a queue file, one piece at a time.
pub struct ContentParts<'a> {
    walker: Walker<'a>,
}

impl Iterator for ContentParts<'_> {
    type Item = Result<Part, QueueError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.walker.past_content() {
                return None;
            }
            let record = match self.walker.next()? {
                Ok(record) => record,
                Err(err) => return Some(Err(err)),
            };
            match record.entry {
                Entry::Header(field) => return Some(Ok(Part::Header(field))),
                Entry::Body(bytes) => return Some(Ok(Part::Body(bytes))),
                _ => continue,
            }
        }
    }
}
