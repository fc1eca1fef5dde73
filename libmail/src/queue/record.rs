//! The queue file format, record by record: how a record is encoded, and
//! a walker that reads records in file order and checks that they make a
//! complete, well-ordered queue file, reporting what is damaged instead
//! of failing in any other way, whatever the bytes.
//!
//! A file is an 8-byte header (`PFRSQF`, a NUL, the format version), then
//! records. A record is one type byte, its payload length as an unsigned
//! LEB128 varint, and the payload. The sections follow Postfix's:
//!
//! ```text
//! header
//! C message_size       fixed, first; filled in at commit
//! T arrival time       fixed, patched while the envelope is written
//! c create_time
//! S sender, R/D recipients, A named attributes, ...   (envelope)
//! M message_content    start of content
//! H header field ...   one record per header field, its bytes as given
//! B body ...           the body in chunks, its bytes as given
//! X extracted_info     envelope information learned from the content
//! R/D, A, ...
//! E message_end        last; its absence means the file is incomplete
//! ```
//!
//! Upper-case types must be understood by every reader; a reader skips a
//! record of another type it does not know, so later versions may add
//! optional information without breaking older programs (the critical and
//! ancillary chunks of PNG). A recipient's type byte is `R` until it has
//! been delivered and `D` after, so that the queue manager marks a
//! recipient done by writing one byte in place (as Postfix does).

use std::fs::{File, Metadata, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use thiserror::Error;

use super::QueueError;

/// The first bytes of every queue file.
pub const MAGIC: &[u8; 7] = b"PFRSQF\0";
/// The format version this code writes and reads.
pub const VERSION: u8 = 1;
/// Length of magic plus version.
pub const HEADER_LEN: u64 = 8;

/// Record types (the byte that starts each record).
pub mod kind {
    /// Sizes and offsets: fixed width, first record.
    pub const SIZE: u8 = b'C';
    /// Arrival time: seconds and microseconds, fixed width.
    pub const TIME: u8 = b'T';
    /// When the queue file was made (optional).
    pub const CREATE_TIME: u8 = b'c';
    pub const SENDER: u8 = b'S';
    /// The sender's full name, for a From: header (optional).
    pub const FULLNAME: u8 = b'f';
    /// A recipient still to be delivered.
    pub const RECIPIENT: u8 = b'R';
    /// A recipient that has been delivered (or bounced): the same record
    /// with its type byte changed in place.
    pub const DONE: u8 = b'D';
    /// `name=value`.
    pub const ATTRIBUTE: u8 = b'A';
    /// `transport:nexthop` that overrides the routing (FILTER action).
    pub const FILTER: u8 = b'L';
    /// Send to this address instead of the recipients (REDIRECT action).
    pub const REDIRECT: u8 = b'G';
    /// DSN ENVID (optional).
    pub const DSN_ENVID: u8 = b'i';
    /// DSN RET: FULL or HDRS (optional).
    pub const DSN_RET: u8 = b'<';
    /// Start of the message content.
    pub const CONTENT: u8 = b'M';
    /// One header field, continuation lines and line ends included.
    pub const HEADER: u8 = b'H';
    /// Body bytes (the empty line that ends the header comes first).
    pub const BODY: u8 = b'B';
    /// Start of the information extracted from the content.
    pub const EXTRACTED: u8 = b'X';
    /// The end of a complete file.
    pub const END: u8 = b'E';
}

/// Payload length of the size record: six 64-bit numbers.
pub const SIZE_LEN: usize = 48;
/// Payload length of the arrival time record: seconds and microseconds.
pub const TIME_LEN: usize = 12;
/// No record may be longer than this, whatever its length field says, so
/// that a damaged or hostile file (maildrop files come from users) cannot
/// make a reader allocate without bound.
pub const MAX_RECORD: u64 = 1 << 30;
/// Longest varint a 64-bit length needs.
const MAX_VARINT: usize = 10;
/// Records up to this size are read through the window; longer ones
/// straight into their own buffer.
const READ_CHUNK: usize = 64 * 1024;
/// How much the reader reads at a time: two chunks, so that one read
/// covers a full body record and the header of the next.
const WINDOW: usize = 2 * READ_CHUNK;

/// DSN NOTIFY flags (Postfix's numbers, which show in postcat output).
pub mod notify {
    pub const NEVER: u8 = 1 << 0;
    pub const SUCCESS: u8 = 1 << 1;
    pub const DELAY: u8 = 1 << 2;
    pub const FAILURE: u8 = 1 << 3;
}

/// DSN RET values (Postfix's numbers).
pub mod ret {
    pub const FULL: u8 = 1 << 0;
    pub const HDRS: u8 = 1 << 1;
}

/// Postfix's name for a record type, as postcat prints it.
pub fn record_name(kind: u8) -> &'static str {
    match kind {
        kind::SIZE => "message_size",
        kind::TIME => "message_arrival_time",
        kind::CREATE_TIME => "create_time",
        kind::SENDER => "sender",
        kind::FULLNAME => "sender_fullname",
        kind::RECIPIENT => "recipient",
        kind::DONE => "done_recipient",
        kind::ATTRIBUTE => "named_attribute",
        kind::FILTER => "content_filter",
        kind::REDIRECT => "redirect_to",
        kind::DSN_ENVID => "dsn_envelope_id",
        kind::DSN_RET => "dsn_return_flags",
        kind::CONTENT => "message_content",
        kind::HEADER => "header_text",
        kind::BODY => "body_text",
        kind::EXTRACTED => "extracted_info",
        kind::END => "message_end",
        _ => "unknown_record_type",
    }
}

/// Must every reader understand this type?
fn is_required(kind: u8) -> bool {
    kind.is_ascii_uppercase()
}

/// What is wrong with a queue file. Offsets are those of the record.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Damage {
    #[error("input is not a valid queue file")]
    NotQueueFile,
    #[error("unsupported queue file version {0}")]
    Version(u8),
    #[error("truncated record at offset {0}")]
    Truncated(u64),
    #[error("bad record length at offset {0}")]
    BadLength(u64),
    #[error("record too long at offset {0}")]
    TooLong(u64),
    #[error("unknown record type {kind} at offset {offset}")]
    UnknownRecord { kind: u8, offset: u64 },
    #[error("malformed {what} record at offset {offset}")]
    Malformed { what: &'static str, offset: u64 },
    #[error("{what} record out of order at offset {offset}")]
    OutOfOrder { what: &'static str, offset: u64 },
    #[error("duplicate {what} record at offset {offset}")]
    Duplicate { what: &'static str, offset: u64 },
    #[error("missing {0} record")]
    Missing(&'static str),
    #[error("missing end marker")]
    MissingEnd,
    #[error("data after end marker at offset {0}")]
    TrailingData(u64),
    #[error("message_size record disagrees with the file: {0}")]
    SizeMismatch(&'static str),
}

/// The size record (Postfix's message_size: `data_size data_offset
/// rcpt_count qmgr_opts cont_length smtputf8`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sizes {
    /// Bytes of the content section in the file: from `content_offset` to
    /// the extracted_info record.
    pub content_size: u64,
    /// Offset of the first record after the message_content record.
    pub content_offset: u64,
    /// Recipient records in the file, done or not.
    pub recipient_count: u64,
    /// Postfix's per-message queue manager options; none are used yet.
    pub qmgr_options: u64,
    /// The message's length in bytes (headers and body), the `size=` of
    /// the log.
    pub message_size: u64,
    /// SMTPUTF8 requested (Postfix's smtputf8 flags).
    pub smtputf8: u64,
}

impl Sizes {
    pub fn encode(&self) -> [u8; SIZE_LEN] {
        let mut out = [0u8; SIZE_LEN];
        let fields = [
            self.content_size,
            self.content_offset,
            self.recipient_count,
            self.qmgr_options,
            self.message_size,
            self.smtputf8,
        ];
        for (chunk, value) in out.chunks_exact_mut(8).zip(fields) {
            chunk.copy_from_slice(&value.to_le_bytes());
        }
        out
    }

    fn decode(payload: &[u8]) -> Option<Sizes> {
        if payload.len() != SIZE_LEN {
            return None;
        }
        let field = |i: usize| {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(&payload[i * 8..i * 8 + 8]);
            u64::from_le_bytes(bytes)
        };
        Some(Sizes {
            content_size: field(0),
            content_offset: field(1),
            recipient_count: field(2),
            qmgr_options: field(3),
            message_size: field(4),
            smtputf8: field(5),
        })
    }

    /// Offset of the extracted_info record.
    pub fn extracted_offset(&self) -> Option<u64> {
        self.content_offset.checked_add(self.content_size)
    }
}

/// One recipient and its DSN information.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recipient {
    /// The address to deliver to (after rewriting).
    pub address: String,
    /// The address as the client gave it, before rewriting (Postfix's
    /// original_recipient; empty when unknown).
    pub orig_recipient: String,
    /// DSN ORCPT as `type;address` (`rfc822;user@example.com`), or empty.
    pub dsn_orcpt: String,
    /// DSN NOTIFY flags (`notify::*`), 0 when not given.
    pub dsn_notify: u8,
    /// Delivered (or bounced): nothing more to do.
    pub done: bool,
    /// Offset of the record in the file (set by the reader), which
    /// `QueueFile::mark_done` takes.
    pub offset: u64,
}

impl Recipient {
    /// A recipient with no DSN information.
    pub fn new(address: &str) -> Recipient {
        Recipient {
            address: address.to_string(),
            ..Recipient::default()
        }
    }

    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        put_string(out, &self.address);
        put_string(out, &self.orig_recipient);
        put_string(out, &self.dsn_orcpt);
        out.push(self.dsn_notify);
    }

    fn decode(payload: &[u8], done: bool, offset: u64) -> Option<Recipient> {
        let mut rest = payload;
        let address = take_string(&mut rest)?;
        let orig_recipient = take_string(&mut rest)?;
        let dsn_orcpt = take_string(&mut rest)?;
        let (&dsn_notify, tail) = rest.split_first()?;
        tail.is_empty().then_some(Recipient {
            address,
            orig_recipient,
            dsn_orcpt,
            dsn_notify,
            done,
            offset,
        })
    }
}

/// A decoded record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Size(Sizes),
    Arrival(SystemTime),
    Created(SystemTime),
    Sender(String),
    Fullname(String),
    Recipient(Recipient),
    Attribute(String, String),
    ContentFilter(String),
    Redirect(String),
    DsnEnvid(String),
    DsnRet(u8),
    ContentStart,
    Header(Vec<u8>),
    Body(Vec<u8>),
    ExtractedStart,
    End,
    /// An optional record of a type this version does not know.
    Skipped,
}

/// A record as read: where it starts, its type byte, what it says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub offset: u64,
    pub kind: u8,
    pub entry: Entry,
}

// --- encoding ----------------------------------------------------------

/// Appends `value` as an unsigned LEB128 varint.
pub fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Reads a varint from the front of `bytes`: (value, bytes used). None
/// if it is incomplete; Err for one longer than 64 bits.
fn get_varint(bytes: &[u8]) -> Result<Option<(u64, usize)>, ()> {
    let mut value = 0u64;
    for (i, &b) in bytes.iter().enumerate().take(MAX_VARINT) {
        let bits = u64::from(b & 0x7f);
        if i == MAX_VARINT - 1 && b > 1 {
            return Err(());
        }
        value |= bits << (7 * i);
        if b & 0x80 == 0 {
            return Ok(Some((value, i + 1)));
        }
    }
    if bytes.len() >= MAX_VARINT {
        return Err(());
    }
    Ok(None)
}

fn put_string(out: &mut Vec<u8>, text: &str) {
    put_varint(out, text.len() as u64);
    out.extend_from_slice(text.as_bytes());
}

fn take_string(rest: &mut &[u8]) -> Option<String> {
    let (len, used) = get_varint(rest).ok()??;
    let len = usize::try_from(len).ok()?;
    let bytes = rest.get(used..used.checked_add(len)?)?;
    *rest = &rest[used + len..];
    String::from_utf8(bytes.to_vec()).ok()
}

/// Appends one record.
pub fn put_record(out: &mut Vec<u8>, kind: u8, payload: &[u8]) {
    out.push(kind);
    put_varint(out, payload.len() as u64);
    out.extend_from_slice(payload);
}

/// The payload of a named attribute record.
pub fn attribute_payload(name: &str, value: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(name.len() + value.len() + 2);
    put_string(&mut out, name);
    out.extend_from_slice(value.as_bytes());
    out
}

/// The payload of an arrival time record.
pub fn time_payload(time: SystemTime) -> [u8; TIME_LEN] {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let mut out = [0u8; TIME_LEN];
    out[..8].copy_from_slice(&since.as_secs().to_le_bytes());
    out[8..].copy_from_slice(&since.subsec_micros().to_le_bytes());
    out
}

/// The file header.
pub fn file_header() -> [u8; HEADER_LEN as usize] {
    let mut out = [0u8; HEADER_LEN as usize];
    out[..MAGIC.len()].copy_from_slice(MAGIC);
    out[MAGIC.len()] = VERSION;
    out
}

// --- decoding ----------------------------------------------------------

fn decode_time(payload: &[u8]) -> Option<SystemTime> {
    if payload.len() != TIME_LEN {
        return None;
    }
    let mut secs = [0u8; 8];
    secs.copy_from_slice(&payload[..8]);
    let mut micros = [0u8; 4];
    micros.copy_from_slice(&payload[8..]);
    let micros = u32::from_le_bytes(micros);
    if micros >= 1_000_000 {
        return None;
    }
    let since = Duration::new(u64::from_le_bytes(secs), micros * 1000);
    UNIX_EPOCH.checked_add(since)
}

fn decode_seconds(payload: &[u8]) -> Option<SystemTime> {
    let bytes: [u8; 8] = payload.try_into().ok()?;
    UNIX_EPOCH.checked_add(Duration::from_secs(u64::from_le_bytes(bytes)))
}

fn decode_text(payload: &[u8]) -> Option<String> {
    String::from_utf8(payload.to_vec()).ok()
}

fn decode_attribute(payload: &[u8]) -> Option<Entry> {
    let mut rest = payload;
    let name = take_string(&mut rest)?;
    let value = decode_text(rest)?;
    (!name.is_empty()).then_some(Entry::Attribute(name, value))
}

/// What a record of a known type says; None if its payload is malformed.
fn decode(kind: u8, payload: Vec<u8>, offset: u64) -> Option<Entry> {
    let empty = payload.is_empty();
    let entry = match kind {
        kind::SIZE => Entry::Size(Sizes::decode(&payload)?),
        kind::TIME => Entry::Arrival(decode_time(&payload)?),
        kind::CREATE_TIME => Entry::Created(decode_seconds(&payload)?),
        kind::SENDER => Entry::Sender(decode_text(&payload)?),
        kind::FULLNAME => Entry::Fullname(decode_text(&payload)?),
        kind::RECIPIENT => Entry::Recipient(Recipient::decode(&payload, false, offset)?),
        kind::DONE => Entry::Recipient(Recipient::decode(&payload, true, offset)?),
        kind::ATTRIBUTE => decode_attribute(&payload)?,
        kind::FILTER => Entry::ContentFilter(decode_text(&payload)?),
        kind::REDIRECT => Entry::Redirect(decode_text(&payload)?),
        kind::DSN_ENVID => Entry::DsnEnvid(decode_text(&payload)?),
        kind::DSN_RET => match payload.as_slice() {
            [flags] => Entry::DsnRet(*flags),
            _ => return None,
        },
        kind::HEADER => Entry::Header(payload),
        kind::BODY => Entry::Body(payload),
        kind::CONTENT if empty => Entry::ContentStart,
        kind::EXTRACTED if empty => Entry::ExtractedStart,
        kind::END if empty => Entry::End,
        kind::CONTENT | kind::EXTRACTED | kind::END => return None,
        _ => Entry::Skipped,
    };
    Some(entry)
}

// --- reading -----------------------------------------------------------

fn file_meta(file: &File, path: &Path) -> Result<Metadata, QueueError> {
    file.metadata()
        .map_err(|e| QueueError::io("fstat", path, e))
}

/// Where records are read from: an open file, or bytes in memory
/// (standard input, tests).
#[derive(Debug)]
pub enum Data {
    File { file: File, len: u64 },
    Bytes(Vec<u8>),
}

impl Data {
    /// Opens a file for reading (and writing, for marking recipients).
    pub fn open(path: &Path, write: bool) -> Result<Data, QueueError> {
        Data::open_stat(path, write).map(|(data, _)| data)
    }

    /// `open`, with the file's status from the same fstat (qmgr wants
    /// its mode, for the forced-expire flag).
    pub fn open_stat(path: &Path, write: bool) -> Result<(Data, Metadata), QueueError> {
        let file = OpenOptions::new()
            .read(true)
            .write(write)
            .open(path)
            .map_err(|e| QueueError::io("open", path, e))?;
        let meta = file_meta(&file, path)?;
        let data = match write {
            true => Data::File {
                len: meta.len(),
                file,
            },
            false => Data::read_len(&file, path, meta.len())?,
        };
        Ok((data, meta))
    }

    /// The data of a file someone else keeps open (a delivery agent's
    /// locked queue file), with its status.
    pub fn read_stat(file: &File, path: &Path) -> Result<(Data, Metadata), QueueError> {
        let meta = file_meta(file, path)?;
        Ok((Data::read_len(file, path, meta.len())?, meta))
    }

    /// A small file is read once, whole: the envelope and then the
    /// content would otherwise each cost a read.
    fn read_len(file: &File, path: &Path, len: u64) -> Result<Data, QueueError> {
        if len <= WINDOW as u64 {
            let mut bytes = vec![0u8; len as usize];
            file.read_exact_at(&mut bytes, 0)
                .map_err(|e| QueueError::io("read", path, e))?;
            return Ok(Data::Bytes(bytes));
        }
        let file = file
            .try_clone()
            .map_err(|e| QueueError::io("dup", path, e))?;
        Ok(Data::File { file, len })
    }

    pub fn len(&self) -> u64 {
        match self {
            Data::File { len, .. } => *len,
            Data::Bytes(bytes) => bytes.len() as u64,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Fills `buf` from `offset`; the caller has checked the length.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        match self {
            Data::File { file, .. } => file.read_exact_at(buf, offset),
            Data::Bytes(bytes) => {
                let start = usize::try_from(offset).map_err(|_| short_read())?;
                let end = start.checked_add(buf.len()).ok_or_else(short_read)?;
                let source = bytes.get(start..end).ok_or_else(short_read)?;
                buf.copy_from_slice(source);
                Ok(())
            }
        }
    }
}

fn short_read() -> io::Error {
    io::Error::from(io::ErrorKind::UnexpectedEof)
}

/// Reads records one after another through a window of the file, so a
/// small file costs one read.
struct Reader<'a> {
    data: &'a Data,
    pos: u64,
    window: Vec<u8>,
    window_start: u64,
}

impl<'a> Reader<'a> {
    fn new(data: &'a Data, pos: u64) -> Reader<'a> {
        Reader {
            data,
            pos,
            window: Vec::new(),
            window_start: 0,
        }
    }

    /// Up to `want` bytes at `pos` (fewer only at the end of the data).
    fn peek(&mut self, want: usize) -> io::Result<&[u8]> {
        if self.pos >= self.data.len() {
            return Ok(&[]);
        }
        let end = self.pos.saturating_add(want as u64).min(self.data.len());
        let window_end = self.window_start + self.window.len() as u64;
        if self.pos < self.window_start || end > window_end {
            let len = (self.data.len().saturating_sub(self.pos)).min(WINDOW.max(want) as u64);
            self.window.resize(len as usize, 0);
            self.data.read_exact_at(&mut self.window, self.pos)?;
            self.window_start = self.pos;
        }
        let from = (self.pos - self.window_start) as usize;
        let to = (end - self.window_start) as usize;
        Ok(&self.window[from..to])
    }

    /// The next `len` bytes, which the caller knows are there.
    fn take(&mut self, len: u64) -> io::Result<Vec<u8>> {
        let bytes = if len as usize <= READ_CHUNK {
            self.peek(len as usize)?.to_vec()
        } else {
            let mut buf = vec![0u8; len as usize];
            self.data.read_exact_at(&mut buf, self.pos)?;
            buf
        };
        self.pos += len;
        Ok(bytes)
    }

    /// The next record's type and payload; None at the end of the data.
    fn next_raw(&mut self) -> Result<Option<(u8, Vec<u8>)>, ReadError> {
        let offset = self.pos;
        let remaining = self.data.len().saturating_sub(offset);
        if remaining == 0 {
            return Ok(None);
        }
        let head = self.peek(1 + MAX_VARINT)?;
        let kind = head[0];
        let (len, used) = match get_varint(&head[1..]) {
            Ok(Some(found)) => found,
            Ok(None) => return Err(Damage::Truncated(offset).into()),
            Err(()) => return Err(Damage::BadLength(offset).into()),
        };
        if len > MAX_RECORD {
            return Err(Damage::TooLong(offset).into());
        }
        let header = 1 + used as u64;
        if len > remaining - header {
            return Err(Damage::Truncated(offset).into());
        }
        self.pos += header;
        Ok(Some((kind, self.take(len)?)))
    }
}

/// Damage, or a failure to read at all.
#[derive(Debug)]
enum ReadError {
    Damage(Damage),
    Io(io::Error),
}

impl From<Damage> for ReadError {
    fn from(damage: Damage) -> Self {
        ReadError::Damage(damage)
    }
}

impl From<io::Error> for ReadError {
    fn from(err: io::Error) -> Self {
        ReadError::Io(err)
    }
}

/// Where in the file the walker is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Section {
    Envelope,
    Headers,
    Body,
    Extracted,
    Finished,
}

/// Reads records in file order and checks the rules of the format as it
/// goes; yields each record, or one error and then nothing more.
pub struct Walker<'a> {
    reader: Reader<'a>,
    path: &'a Path,
    section: Section,
    sizes: Option<Sizes>,
    seen_time: bool,
    seen_sender: bool,
    seen_created: bool,
    recipients: u64,
    failed: bool,
}

impl<'a> Walker<'a> {
    /// Checks the file header and starts at the first record. `path`
    /// names the file in errors.
    pub fn new(data: &'a Data, path: &'a Path) -> Result<Walker<'a>, QueueError> {
        let mut reader = Reader::new(data, 0);
        let head = reader
            .peek(HEADER_LEN as usize)
            .map_err(|e| QueueError::io("read", path, e))?;
        if head.len() < MAGIC.len() || &head[..MAGIC.len()] != MAGIC {
            return Err(QueueError::damaged(path, Damage::NotQueueFile));
        }
        match head.get(MAGIC.len()) {
            Some(&VERSION) => {}
            Some(&other) => return Err(QueueError::damaged(path, Damage::Version(other))),
            None => return Err(QueueError::damaged(path, Damage::Truncated(0))),
        }
        reader.pos = HEADER_LEN;
        Ok(Walker {
            reader,
            path,
            section: Section::Envelope,
            sizes: None,
            seen_time: false,
            seen_sender: false,
            seen_created: false,
            recipients: 0,
            failed: false,
        })
    }

    /// Offset of the next record.
    pub fn position(&self) -> u64 {
        self.reader.pos
    }

    /// The size record, once read.
    pub fn sizes(&self) -> Option<Sizes> {
        self.sizes
    }

    /// Jumps from the start of the content to the extracted_info record,
    /// which the size record locates, without reading the content.
    pub fn skip_content(&mut self) -> Result<(), QueueError> {
        let target = self
            .sizes
            .filter(|_| self.section == Section::Headers)
            .and_then(|sizes| sizes.extracted_offset());
        match target {
            Some(offset) if offset <= self.reader.data.len() => {
                self.reader.pos = offset;
                self.section = Section::Body;
                Ok(())
            }
            _ => Err(self.fail(Damage::MissingEnd)),
        }
    }

    fn fail(&mut self, damage: Damage) -> QueueError {
        self.failed = true;
        QueueError::damaged(self.path, damage)
    }

    fn next_record(&mut self) -> Result<Option<Record>, QueueError> {
        let offset = self.reader.pos;
        let raw = match self.reader.next_raw() {
            Ok(raw) => raw,
            Err(ReadError::Damage(damage)) => return Err(self.fail(damage)),
            Err(ReadError::Io(err)) => {
                self.failed = true;
                return Err(QueueError::io("read", self.path, err));
            }
        };
        let Some((kind, payload)) = raw else {
            if self.section == Section::Finished {
                return Ok(None);
            }
            return Err(self.fail(Damage::MissingEnd));
        };
        let what = record_name(kind);
        if what == "unknown_record_type" && is_required(kind) {
            return Err(self.fail(Damage::UnknownRecord { kind, offset }));
        }
        let Some(entry) = decode(kind, payload, offset) else {
            return Err(self.fail(Damage::Malformed { what, offset }));
        };
        if let Err(damage) = self.check(kind, &entry, offset) {
            return Err(self.fail(damage));
        }
        Ok(Some(Record {
            offset,
            kind,
            entry,
        }))
    }

    /// The ordering rules: the state machine of sections.
    fn check(&mut self, kind: u8, entry: &Entry, offset: u64) -> Result<(), Damage> {
        let what = record_name(kind);
        let out_of_order = Damage::OutOfOrder { what, offset };
        if self.sizes.is_none() && !matches!(entry, Entry::Size(_)) {
            return Err(Damage::Missing("message_size"));
        }
        match (self.section, entry) {
            (Section::Finished, _) => Err(Damage::TrailingData(offset)),
            (Section::Envelope, Entry::Size(sizes)) => self.first_size(*sizes, offset),
            (_, Entry::Size(_)) => Err(Damage::Duplicate { what, offset }),
            (Section::Envelope, Entry::Arrival(_)) => once(&mut self.seen_time, what, offset),
            (Section::Envelope, Entry::Created(_)) => once(&mut self.seen_created, what, offset),
            (Section::Envelope, Entry::Sender(_)) => once(&mut self.seen_sender, what, offset),
            (Section::Envelope, Entry::ContentStart) => self.content_start(),
            (Section::Envelope | Section::Extracted, entry) if is_envelope_info(entry) => {
                if matches!(entry, Entry::Recipient(_)) {
                    self.recipients += 1;
                }
                Ok(())
            }
            (Section::Headers, Entry::Header(_)) => Ok(()),
            (Section::Headers | Section::Body, Entry::Body(_)) => {
                self.section = Section::Body;
                Ok(())
            }
            (Section::Headers | Section::Body, Entry::ExtractedStart) => self.extracted(offset),
            (Section::Extracted, Entry::End) => self.end(),
            (_, Entry::Skipped) => Ok(()),
            _ => Err(out_of_order),
        }
    }

    fn first_size(&mut self, sizes: Sizes, offset: u64) -> Result<(), Damage> {
        let what = "message_size";
        if self.sizes.is_some() {
            return Err(Damage::Duplicate { what, offset });
        }
        if offset != HEADER_LEN {
            return Err(Damage::OutOfOrder { what, offset });
        }
        self.sizes = Some(sizes);
        Ok(())
    }

    fn content_start(&mut self) -> Result<(), Damage> {
        if !self.seen_time {
            return Err(Damage::Missing("message_arrival_time"));
        }
        if !self.seen_sender {
            return Err(Damage::Missing("sender"));
        }
        let sizes = self.sizes.unwrap_or_default();
        if sizes.content_offset != self.reader.pos {
            return Err(Damage::SizeMismatch("content offset"));
        }
        self.section = Section::Headers;
        Ok(())
    }

    fn extracted(&mut self, offset: u64) -> Result<(), Damage> {
        let sizes = self.sizes.unwrap_or_default();
        if sizes.extracted_offset() != Some(offset) {
            return Err(Damage::SizeMismatch("content size"));
        }
        self.section = Section::Extracted;
        Ok(())
    }

    fn end(&mut self) -> Result<(), Damage> {
        let sizes = self.sizes.unwrap_or_default();
        if sizes.recipient_count != self.recipients {
            return Err(Damage::SizeMismatch("recipient count"));
        }
        if self.reader.pos != self.reader.data.len() {
            return Err(Damage::TrailingData(self.reader.pos));
        }
        self.section = Section::Finished;
        Ok(())
    }

    /// Starts a walk of the content section only, for a file whose
    /// envelope has been read: from `sizes.content_offset` to the
    /// extracted_info record, which it yields last.
    pub fn content_only(
        data: &'a Data,
        path: &'a Path,
        sizes: Sizes,
    ) -> Result<Walker<'a>, QueueError> {
        let mut walker = Walker::new(data, path)?;
        walker.reader.pos = sizes.content_offset;
        walker.sizes = Some(sizes);
        walker.section = Section::Headers;
        Ok(walker)
    }

    /// Whether the walk has reached the extracted_info record.
    pub fn past_content(&self) -> bool {
        matches!(self.section, Section::Extracted | Section::Finished)
    }
}

/// Records that may appear in the envelope and in the extracted section.
fn is_envelope_info(entry: &Entry) -> bool {
    matches!(
        entry,
        Entry::Recipient(_)
            | Entry::Attribute(..)
            | Entry::ContentFilter(_)
            | Entry::Redirect(_)
            | Entry::DsnEnvid(_)
            | Entry::DsnRet(_)
            | Entry::Fullname(_)
    )
}

fn once(seen: &mut bool, what: &'static str, offset: u64) -> Result<(), Damage> {
    if std::mem::replace(seen, true) {
        return Err(Damage::Duplicate { what, offset });
    }
    Ok(())
}

impl Iterator for Walker<'_> {
    type Item = Result<Record, QueueError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        self.next_record().transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip() {
        for value in [
            0,
            1,
            127,
            128,
            300,
            16_383,
            16_384,
            u64::from(u32::MAX),
            u64::MAX,
        ] {
            let mut out = Vec::new();
            put_varint(&mut out, value);
            assert_eq!(get_varint(&out), Ok(Some((value, out.len()))), "{value}");
            assert_eq!(get_varint(&out[..out.len() - 1]), Ok(None));
        }
        assert_eq!(get_varint(&[0xff; 10]), Err(()));
        assert_eq!(
            get_varint(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02]),
            Err(())
        );
    }

    #[test]
    fn recipients_round_trip() {
        let rcpt = Recipient {
            address: "user@example.com".into(),
            orig_recipient: "User".into(),
            dsn_orcpt: "rfc822;user@example.com".into(),
            dsn_notify: notify::SUCCESS | notify::FAILURE,
            done: false,
            offset: 77,
        };
        let mut out = Vec::new();
        rcpt.encode(&mut out);
        assert_eq!(Recipient::decode(&out, false, 77), Some(rcpt.clone()));
        assert_eq!(Recipient::decode(&out[..out.len() - 1], false, 77), None);
        out.push(0);
        assert_eq!(Recipient::decode(&out, false, 77), None, "trailing byte");
    }

    #[test]
    fn bad_magic_and_version() {
        let path = Path::new("x");
        let data = Data::Bytes(b"From me\n".to_vec());
        let err = Walker::new(&data, path).err().unwrap();
        assert_eq!(err.to_string(), "x: input is not a valid queue file");
        let mut bytes = file_header().to_vec();
        bytes[7] = 9;
        let data = Data::Bytes(bytes);
        let err = Walker::new(&data, path).err().unwrap();
        assert_eq!(err.to_string(), "x: unsupported queue file version 9");
    }
}
