//! `texthash:FILE`: a postmap source file read straight into memory at
//! open, without a `.db` file (handy for tables that change rarely and are
//! small, and for configurations kept under version control).

use super::source::{looks_like_alias, map_lines, Duplicates, MapLine, Records};
use super::{read_text, OpenOptions, TableError};
use crate::msg::warning;

/// Reads a texthash: table's records into memory.
pub fn open(path: &str, options: OpenOptions) -> Result<Records, TableError> {
    // Postfix words it as the database it stands in for.
    let text = read_text(path).map_err(|err| match err {
        TableError::Open { path, reason } => {
            TableError::Other(format!("open database {path}: {reason}"))
        }
        other => other,
    })?;
    let mut records = Records::default();
    for entry in map_lines(&text) {
        match entry {
            MapLine::MissingValue { line } => warning(format!(
                "{path}, line {line}: expected format: key whitespace value -- ignoring this line"
            )),
            MapLine::Entry { line, key, value } => {
                if looks_like_alias(&key) {
                    warning(format!(
                        "{path}, line {line}: record is in \"key: value\" format; is this an alias file?"
                    ));
                }
                let folded = options.fold_key(&key).into_owned();
                if !records.add(folded, value, Duplicates::KeepFirst) {
                    warning(format!("{path}, line {line}: duplicate entry: \"{key}\""));
                }
            }
        }
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tables::Table;

    #[test]
    fn reads_source_first_entry_wins() {
        let path = std::env::temp_dir().join(format!("texthash-{}", std::process::id()));
        std::fs::write(&path, "Foo bar\nfoo again\nlong a\n  b\n").unwrap();
        let path = path.to_string_lossy().into_owned();
        let mut table = open(&path, OpenOptions::default()).unwrap();
        assert_eq!(table.lookup("foo").unwrap().as_deref(), Some("bar"));
        assert_eq!(table.lookup("long").unwrap().as_deref(), Some("a  b"));
        assert_eq!(table.entries().unwrap().unwrap().len(), 2);
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn missing_file_is_named() {
        let err = open("/nonexistent/x", OpenOptions::default())
            .err()
            .unwrap();
        assert_eq!(
            err.to_string(),
            "open database /nonexistent/x: No such file or directory"
        );
    }
}
