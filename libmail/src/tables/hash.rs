//! Indexed tables (`hash:`, `btree:`, `cdb:`): a source file compiled by
//! postmap or postalias into a constant database (CDB) beside it, `FILE.db`
//! for hash and btree, `FILE.cdb` for cdb (the same layout as Postfix's
//! own cdb: tables, so those files read here too).
//!
//! A build writes `FILE.db.tmp` under a lock and renames it into place, so
//! a reader sees the old table or the new one, never half of one. A reader
//! notices a rebuilt table (a new inode) within a second, without restart.

use std::fs::File;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

use cdb2::{CDBMake, CDB};

use super::source::Records;
use super::{Lookup, LookupError, Table, TableError};
use crate::error::strerror;

/// How often a reader looks whether its table was rebuilt.
const CHANGE_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// A CDB with no records is just its 2048-byte header, which cdb2 refuses
/// to open; such a table is simply empty.
const EMPTY_CDB_SIZE: u64 = 2048;

/// Which indexed type, which decides the file suffix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexedKind {
    Hash,
    Cdb,
}

impl IndexedKind {
    /// The indexed type for a `type:` name, if it is one.
    pub fn from_type(kind: &str) -> Option<IndexedKind> {
        match kind {
            "hash" | "btree" => Some(IndexedKind::Hash),
            "cdb" => Some(IndexedKind::Cdb),
            _ => None,
        }
    }

    pub fn suffix(self) -> &'static str {
        match self {
            IndexedKind::Hash => ".db",
            IndexedKind::Cdb => ".cdb",
        }
    }

    /// The database file for source file `name`.
    pub fn db_path(self, name: &str) -> String {
        format!("{name}{}", self.suffix())
    }
}

/// What identifies the file a reader has open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileIdentity {
    dev: u64,
    ino: u64,
}

pub struct IndexedTable {
    db_path: String,
    /// `None` for a table without records.
    cdb: Option<CDB>,
    identity: FileIdentity,
    checked_at: Instant,
}

impl IndexedTable {
    pub fn open(kind: IndexedKind, name: &str) -> Result<IndexedTable, TableError> {
        let db_path = kind.db_path(name);
        let (cdb, identity) = open_db(&db_path)?;
        warn_if_older_than_source(&db_path, name);
        Ok(IndexedTable {
            db_path,
            cdb,
            identity,
            checked_at: Instant::now(),
        })
    }

    /// Reopens the table when postmap has renamed a new one into place.
    fn reopen_if_rebuilt(&mut self) -> Result<(), LookupError> {
        if self.checked_at.elapsed() < CHANGE_CHECK_INTERVAL {
            return Ok(());
        }
        self.checked_at = Instant::now();
        let Ok(meta) = std::fs::metadata(&self.db_path) else {
            // Removed under us: keep answering from the table we have, as
            // Postfix's daemons do until they restart.
            return Ok(());
        };
        if identity(&meta) == self.identity {
            return Ok(());
        }
        let (cdb, identity) = open_db(&self.db_path).map_err(|err| LookupError {
            table: format!("hash:{}", self.db_path),
            reason: err.to_string(),
        })?;
        self.cdb = cdb;
        self.identity = identity;
        Ok(())
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, LookupError> {
        let Some(cdb) = &self.cdb else {
            return Ok(None);
        };
        match cdb.get(key) {
            None => Ok(None),
            Some(Ok(value)) => Ok(Some(value)),
            Some(Err(err)) => Err(LookupError {
                table: self.db_path.clone(),
                reason: format!("read: {}", strerror(&err)),
            }),
        }
    }
}

impl Table for IndexedTable {
    fn lookup(&mut self, key: &str) -> Lookup {
        self.reopen_if_rebuilt()?;
        // Tables built with `postmap -N` (or by a Postfix that stored the
        // terminating null) have "key\0" keys; try the plain key first.
        let value = match self.get(key.as_bytes())? {
            Some(value) => value,
            None => {
                let mut with_null = Vec::with_capacity(key.len() + 1);
                with_null.extend_from_slice(key.as_bytes());
                with_null.push(0);
                match self.get(&with_null)? {
                    Some(value) => value,
                    None => return Ok(None),
                }
            }
        };
        Ok(Some(text(&value)))
    }

    fn entries(&mut self) -> Option<Result<Vec<(String, String)>, LookupError>> {
        Some(read_records(self.cdb.as_ref(), &self.db_path))
    }
}

/// Every record of a table (none for an empty one).
fn read_records(cdb: Option<&CDB>, db_path: &str) -> Result<Vec<(String, String)>, LookupError> {
    let Some(cdb) = cdb else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for record in cdb.iter() {
        let (key, value) = record.map_err(|err| LookupError {
            table: db_path.to_string(),
            reason: format!("read: {}", strerror(&err)),
        })?;
        out.push((text(&key), text(&value)));
    }
    Ok(out)
}

/// Bytes from the database as text, without a terminating null.
fn text(bytes: &[u8]) -> String {
    let bytes = bytes.strip_suffix(&[0]).unwrap_or(bytes);
    String::from_utf8_lossy(bytes).into_owned()
}

fn identity(meta: &std::fs::Metadata) -> FileIdentity {
    FileIdentity {
        dev: meta.dev(),
        ino: meta.ino(),
    }
}

fn open_db(db_path: &str) -> Result<(Option<CDB>, FileIdentity), TableError> {
    let open_error =
        |reason: String| TableError::Other(format!("open database {db_path}: {reason}"));
    let meta = std::fs::metadata(db_path).map_err(|err| open_error(strerror(&err)))?;
    if is_berkeley_db(db_path) {
        return Err(open_error(
            "this is a Berkeley DB file from another Postfix; rebuild it with this postmap or postalias"
                .to_string(),
        ));
    }
    if meta.len() == EMPTY_CDB_SIZE {
        return Ok((None, identity(&meta)));
    }
    let cdb = CDB::open(db_path).map_err(|err| open_error(strerror(&err)))?;
    Ok((Some(cdb), identity(&meta)))
}

/// Berkeley DB hash and btree files carry a magic number at offset 12;
/// naming them beats "Invalid file format" for someone upgrading.
fn is_berkeley_db(db_path: &str) -> bool {
    const MAGICS: [u32; 2] = [0x0006_1561, 0x0005_3162];
    let Ok(mut file) = File::open(db_path) else {
        return false;
    };
    let mut head = [0u8; 16];
    if std::io::Read::read_exact(&mut file, &mut head).is_err() {
        return false;
    }
    let word = [head[12], head[13], head[14], head[15]];
    let (le, be) = (u32::from_le_bytes(word), u32::from_be_bytes(word));
    MAGICS.contains(&le) || MAGICS.contains(&be)
}

fn warn_if_older_than_source(db_path: &str, source: &str) {
    let (Ok(db), Ok(src)) = (std::fs::metadata(db_path), std::fs::metadata(source)) else {
        return;
    };
    if src.mtime() > db.mtime() {
        crate::msg::warning(format!(
            "database {db_path} is older than source file {source}"
        ));
    }
}

/// How postmap writes a table.
#[derive(Debug, Clone, Copy, Default)]
pub struct BuildOptions {
    /// Store keys and values with a terminating null (`postmap -N`).
    pub null_terminate: bool,
    /// The new file's mode; `None` keeps 0644.
    pub mode: Option<u32>,
    /// The new file's owner and group, when running as root.
    pub owner: Option<(u32, u32)>,
    /// Give the old table's records to `merge` (postmap -i, -d); a full
    /// rebuild does not need them, and a large table is costly to read.
    pub keep_old: bool,
}

/// Writes the indexed table for source file `name`, replacing the old one
/// atomically. `merge` gets the old table's records (with `keep_old`;
/// empty when there is none) and returns the records to write; it runs
/// under the lock, so concurrent `postmap -i` runs do not lose each
/// other's keys.
pub fn build(
    kind: IndexedKind,
    name: &str,
    options: BuildOptions,
    merge: impl FnOnce(Vec<(String, String)>) -> Result<Records, String>,
) -> Result<(), TableError> {
    let db_path = kind.db_path(name);
    crate::atomic_file::rewrite_with(Path::new(&db_path), |file| {
        let old = if options.keep_old {
            read_existing(&db_path)?
        } else {
            Vec::new()
        };
        let records = merge(old)?;
        write_cdb(file, &records, options).map_err(|err| format!("write {db_path}.tmp: {err}"))
    })
    .map_err(|err| TableError::Other(err.to_string()))
}

/// The records of the current table; none when it does not exist yet.
fn read_existing(db_path: &str) -> Result<Vec<(String, String)>, String> {
    match std::fs::metadata(db_path) {
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        _ => {}
    }
    let (cdb, _) = open_db(db_path).map_err(|err| err.to_string())?;
    read_records(cdb.as_ref(), db_path).map_err(|err| err.to_string())
}

fn write_cdb(file: &File, records: &Records, options: BuildOptions) -> std::io::Result<()> {
    let mut maker = CDBMake::new(file.try_clone()?)?;
    let mut key_buf = Vec::new();
    let mut value_buf = Vec::new();
    for (key, value) in records.iter() {
        if options.null_terminate {
            key_buf.clear();
            key_buf.extend_from_slice(key.as_bytes());
            key_buf.push(0);
            value_buf.clear();
            value_buf.extend_from_slice(value.as_bytes());
            value_buf.push(0);
            maker.add(&key_buf, &value_buf)?;
        } else {
            maker.add(key.as_bytes(), value.as_bytes())?;
        }
    }
    maker.finish()?;
    file.set_permissions(std::fs::Permissions::from_mode(
        options.mode.unwrap_or(0o644) & 0o7777,
    ))?;
    if let Some((uid, gid)) = options.owner {
        std::os::unix::fs::fchown(file, Some(uid), Some(gid))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> String {
        let dir = crate::test_support::temp_dir(&format!("hash-test-{name}"));
        dir.join("table").to_string_lossy().into_owned()
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn records(list: &[(&str, &str)]) -> Records {
        Records::new(pairs(list))
    }

    #[test]
    fn builds_and_looks_up() {
        let name = scratch("build");
        let pairs = records(&[("alice", "OK"), ("bob", "REJECT no")]);
        build(IndexedKind::Hash, &name, BuildOptions::default(), |_| {
            Ok(pairs)
        })
        .unwrap();
        let mut table = IndexedTable::open(IndexedKind::Hash, &name).unwrap();
        assert_eq!(table.lookup("bob").unwrap().as_deref(), Some("REJECT no"));
        assert_eq!(table.lookup("carol").unwrap(), None);
        assert_eq!(table.entries().unwrap().unwrap().len(), 2);
    }

    #[test]
    fn empty_table_opens() {
        let name = scratch("empty");
        build(IndexedKind::Cdb, &name, BuildOptions::default(), |_| {
            Ok(Records::default())
        })
        .unwrap();
        let mut table = IndexedTable::open(IndexedKind::Cdb, &name).unwrap();
        assert_eq!(table.lookup("x").unwrap(), None);
    }

    #[test]
    fn null_terminated_keys_are_found() {
        let name = scratch("null");
        let options = BuildOptions {
            null_terminate: true,
            ..BuildOptions::default()
        };
        build(IndexedKind::Hash, &name, options, |_| {
            Ok(records(&[("k", "v")]))
        })
        .unwrap();
        let mut table = IndexedTable::open(IndexedKind::Hash, &name).unwrap();
        assert_eq!(table.lookup("k").unwrap().as_deref(), Some("v"));
    }

    #[test]
    fn reader_notices_rebuilt_table() {
        let name = scratch("rebuild");
        build(IndexedKind::Hash, &name, BuildOptions::default(), |_| {
            Ok(records(&[("k", "old")]))
        })
        .unwrap();
        let mut table = IndexedTable::open(IndexedKind::Hash, &name).unwrap();
        assert_eq!(table.lookup("k").unwrap().as_deref(), Some("old"));
        let keep_old = BuildOptions {
            keep_old: true,
            ..BuildOptions::default()
        };
        build(IndexedKind::Hash, &name, keep_old, |old| {
            assert_eq!(old, pairs(&[("k", "old")]));
            Ok(records(&[("k", "new")]))
        })
        .unwrap();
        std::thread::sleep(CHANGE_CHECK_INTERVAL + Duration::from_millis(50));
        assert_eq!(table.lookup("k").unwrap().as_deref(), Some("new"));
    }

    #[test]
    fn missing_database_is_named() {
        let name = scratch("missing");
        let err = IndexedTable::open(IndexedKind::Hash, &name).err().unwrap();
        assert_eq!(
            err.to_string(),
            format!("open database {name}.db: No such file or directory")
        );
    }

    #[test]
    fn berkeley_db_file_is_recognised() {
        let name = scratch("bdb");
        let mut head = vec![0u8; 4096];
        head[12..16].copy_from_slice(&0x0006_1561u32.to_le_bytes());
        std::fs::write(format!("{name}.db"), head).unwrap();
        let err = IndexedTable::open(IndexedKind::Hash, &name).err().unwrap();
        assert!(err.to_string().contains("Berkeley DB"), "{err}");
    }
}
