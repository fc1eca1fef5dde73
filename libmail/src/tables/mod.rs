//! Lookup tables: one interface for every `type:name` that main.cf names
//! (`hash:/etc/postfix/access`, `regexp:/etc/postfix/header_checks`,
//! `mysql:/etc/postfix/mysql-aliases.cf` ...).
//!
//! A lookup answers found, not found, or a temporary failure; the last is a
//! `LookupError` so that no caller can mistake a database that is down for
//! a key that is absent. Opening a table can fail for good (a missing file,
//! a bad pattern): that is a `TableError`, which programs report as fatal.
//!
//! Postfix's search conventions (case folding, the access(5) search order,
//! recipient_delimiter) live in `search`, once, for every caller.

mod cidr;
mod hash;
mod inline;
mod mysql;
mod pattern_file;
mod pcre;
mod regexp;
pub mod search;
pub mod source;
mod texthash;
mod unix;

pub use hash::{build as build_indexed, BuildOptions, IndexedKind};
pub use search::Maps;

use std::borrow::Cow;

use thiserror::Error;

/// Every table type this build implements, as `postconf -m` lists them.
pub const TYPES: &[&str] = crate::features::TABLE_TYPES;

/// Why a table cannot be opened. Programs report these as `fatal:`.
#[derive(Debug, Error)]
pub enum TableError {
    #[error("unsupported dictionary type: {0}")]
    UnsupportedType(String),
    #[error("open dictionary: expecting \"type:name\" form instead of \"{0}\"")]
    NotTypeName(String),
    #[error("open {path}: {reason}")]
    Open { path: String, reason: String },
    /// A source or configuration file line that cannot be used, as
    /// `FILE, line N: reason`.
    #[error("{path}, line {line}: {reason}")]
    Syntax {
        path: String,
        line: usize,
        reason: String,
    },
    /// Anything else, already in Postfix's words (`mysql:/etc/x.cf: ...`).
    #[error("{0}")]
    Other(String),
}

/// A temporary failure of one lookup: the caller must defer (4xx), never
/// treat the key as absent.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{table}: {reason}")]
pub struct LookupError {
    /// The table as `type:name`.
    pub table: String,
    pub reason: String,
}

/// Found (`Some(value)`), not found (`None`), or a temporary failure.
pub type Lookup = Result<Option<String>, LookupError>;

/// One table type's lookups. Keys arrive already case-folded when the
/// table is a fixed-string table (see `Dict`).
pub trait Table {
    fn lookup(&mut self, key: &str) -> Lookup;

    /// Pattern tables (regexp, pcre, cidr) match whole strings only: the
    /// access(5) search skips partial keys such as parent domains for them.
    fn is_pattern(&self) -> bool {
        false
    }

    /// Every `(key, value)`, for `postmap -s`; `None` when the type has no
    /// sequential access.
    fn entries(&mut self) -> Option<Result<Vec<(String, String)>, LookupError>> {
        None
    }
}

/// How a table is opened.
#[derive(Debug, Clone, Copy)]
pub struct OpenOptions {
    /// Fold fixed-string keys to lower case before lookup (Postfix's
    /// default; `postmap -f` turns it off).
    pub fold: bool,
    /// Fold all of Unicode (smtputf8_enable = yes) rather than ASCII only.
    pub utf8: bool,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            fold: true,
            utf8: true,
        }
    }
}

impl OpenOptions {
    /// `key` as fixed-string tables store and look it up.
    pub fn fold_key<'a>(&self, key: &'a str) -> Cow<'a, str> {
        if !self.fold {
            Cow::Borrowed(key)
        } else if self.utf8 && !key.is_ascii() {
            if key.chars().any(char::is_uppercase) {
                Cow::Owned(key.to_lowercase())
            } else {
                Cow::Borrowed(key)
            }
        } else if key.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(key.to_ascii_lowercase())
        } else {
            Cow::Borrowed(key)
        }
    }
}

/// An open table, named as main.cf names it.
pub struct Dict {
    spec: String,
    options: OpenOptions,
    table: Box<dyn Table>,
}

impl Dict {
    /// `type:name` as given.
    pub fn spec(&self) -> &str {
        &self.spec
    }

    pub fn is_pattern(&self) -> bool {
        self.table.is_pattern()
    }

    /// Looks up `key`, folded to lower case for fixed-string tables.
    pub fn lookup(&mut self, key: &str) -> Lookup {
        if self.table.is_pattern() {
            self.table.lookup(key)
        } else {
            self.table.lookup(&self.options.fold_key(key))
        }
    }

    pub fn entries(&mut self) -> Option<Result<Vec<(String, String)>, LookupError>> {
        self.table.entries()
    }
}

/// Splits `type:name`; the name may itself contain colons.
pub fn split_spec(spec: &str) -> Result<(&str, &str), TableError> {
    match spec.split_once(':') {
        Some((kind, name)) if !kind.is_empty() && !name.is_empty() && !kind.contains('/') => {
            Ok((kind, name))
        }
        _ => Err(TableError::NotTypeName(spec.to_string())),
    }
}

/// Whether `table` names its type (`hash:/etc/x`, also a malformed
/// `hash:`), as opposed to a bare path that takes the default type.
pub fn has_type(table: &str) -> bool {
    match table.split_once(':') {
        Some((kind, _)) => !kind.contains('/'),
        None => false,
    }
}

/// Opens `type:name` with the default options.
pub fn open(spec: &str) -> Result<Dict, TableError> {
    open_with(spec, OpenOptions::default())
}

/// Opens `type:name`.
pub fn open_with(spec: &str, options: OpenOptions) -> Result<Dict, TableError> {
    let (kind, name) = split_spec(spec)?;
    if kind == "proxy" {
        // proxymap shares tables between processes; each process opening
        // the table itself gets the same answers.
        let mut dict = open_with(name, options)?;
        dict.spec = spec.to_string();
        return Ok(dict);
    }
    let table: Box<dyn Table> = match kind {
        "hash" | "btree" => Box::new(hash::IndexedTable::open(IndexedKind::Hash, name)?),
        "cdb" => Box::new(hash::IndexedTable::open(IndexedKind::Cdb, name)?),
        "texthash" => Box::new(texthash::open(name, options)?),
        "inline" => Box::new(inline::open_inline(spec, name, options)?),
        "static" => Box::new(inline::StaticTable::open(name)?),
        "unix" => Box::new(unix::UnixTable::open(spec, name)?),
        "cidr" => Box::new(cidr::CidrTable::open(name)?),
        "regexp" => Box::new(regexp::RegexpTable::open(name)?),
        "pcre" => Box::new(pcre::PcreTable::open(name)?),
        "mysql" => Box::new(mysql::MysqlTable::open(name)?),
        other => return Err(TableError::UnsupportedType(other.to_string())),
    };
    Ok(Dict {
        spec: spec.to_string(),
        options,
        table,
    })
}

/// Reads a table's file as text (lossily, like main.cf: comments in GBK
/// must not stop a table from loading), with Postfix's error wording.
pub(crate) fn read_text(path: &str) -> Result<String, TableError> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(source::text_of(bytes)),
        Err(err) => Err(TableError::Open {
            path: path.to_string(),
            reason: crate::error::strerror(&err),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_and_name() {
        assert_eq!(
            split_spec("hash:/etc/aliases").unwrap(),
            ("hash", "/etc/aliases")
        );
        assert_eq!(split_spec("inline:{a=b:c}").unwrap(), ("inline", "{a=b:c}"));
        assert!(matches!(
            split_spec("/etc/aliases"),
            Err(TableError::NotTypeName(_))
        ));
    }

    #[test]
    fn every_listed_type_is_opened() {
        for kind in TYPES {
            let err = open(&format!("{kind}:/nonexistent/table")).err();
            assert!(
                !matches!(err, Some(TableError::UnsupportedType(_))),
                "{kind}"
            );
        }
    }

    #[test]
    fn proxy_opens_the_table_itself() {
        let mut dict = open("proxy:inline:{a=1}").unwrap();
        assert_eq!(dict.spec(), "proxy:inline:{a=1}");
        assert_eq!(dict.lookup("A").unwrap().as_deref(), Some("1"));
    }

    #[test]
    fn unknown_type_is_named() {
        let err = open("xyz:/etc/x").err().unwrap();
        assert_eq!(err.to_string(), "unsupported dictionary type: xyz");
    }

    #[test]
    fn fixed_tables_fold_keys_pattern_tables_do_not() {
        let mut dict = open("inline:{alice=one}").unwrap();
        assert_eq!(dict.lookup("ALICE").unwrap().as_deref(), Some("one"));
        let no_fold = OpenOptions {
            fold: false,
            ..OpenOptions::default()
        };
        let mut dict = open_with("inline:{alice=one}", no_fold).unwrap();
        assert_eq!(dict.lookup("ALICE").unwrap(), None);
    }
}
