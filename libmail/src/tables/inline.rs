//! Tables whose contents are in their name: `inline:{ key=value, { key =
//! value with spaces } }` and `static:value` (`static:{ value with spaces
//! }`), for small rules kept in main.cf itself.

use super::source::{Duplicates, Records};
use super::{Lookup, OpenOptions, Table, TableError};
use crate::config::value::split_list;

/// Reads `inline:{...}` into records; a key given twice keeps its last
/// value, as in Postfix. `spec` is the whole `inline:{...}` for messages;
/// `name` the braces.
pub fn open_inline(spec: &str, name: &str, options: OpenOptions) -> Result<Records, TableError> {
    let need = |what: String| {
        TableError::Other(format!(
            "{what}: \"{spec}\"; need \"inline:{{name=value...}}\""
        ))
    };
    let inner = strip_braces(name)
        .filter(|inner| !inner.trim().is_empty())
        .ok_or_else(|| need("bad syntax".to_string()))?;
    let mut records = Records::default();
    for item in split_list(inner) {
        let item = strip_braces(item).unwrap_or(item);
        let Some((key, value)) = item.split_once('=') else {
            return Err(need("missing '=' after attribute name".to_string()));
        };
        let key = options.fold_key(key.trim()).into_owned();
        records.add(key, value.trim().to_string(), Duplicates::Replace);
    }
    Ok(records)
}

/// The text between `{` and `}`, if `text` is braced.
fn strip_braces(text: &str) -> Option<&str> {
    text.trim().strip_prefix('{')?.strip_suffix('}')
}

/// `static:value`: every key finds the same value.
pub struct StaticTable {
    value: String,
}

impl StaticTable {
    pub fn open(name: &str) -> Result<StaticTable, TableError> {
        let value = strip_braces(name).map(str::trim).unwrap_or(name);
        Ok(StaticTable {
            value: value.to_string(),
        })
    }
}

impl Table for StaticTable {
    fn lookup(&mut self, _key: &str) -> Lookup {
        Ok(Some(self.value.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inline(name: &str) -> Result<Records, TableError> {
        open_inline(&format!("inline:{name}"), name, OpenOptions::default())
    }

    #[test]
    fn inline_pairs_and_groups() {
        let mut table = inline("{a=1, { b = x y }, c=3 ,A=9}").unwrap();
        assert_eq!(table.lookup("a").unwrap().as_deref(), Some("9"));
        assert_eq!(table.lookup("b").unwrap().as_deref(), Some("x y"));
        assert_eq!(table.lookup("d").unwrap(), None);
        let keys: Vec<String> = table
            .entries()
            .unwrap()
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(keys, ["a", "b", "c"]);
    }

    #[test]
    fn inline_errors_read_like_postfix() {
        let err = inline("a=b").err().unwrap();
        assert_eq!(
            err.to_string(),
            "bad syntax: \"inline:a=b\"; need \"inline:{name=value...}\""
        );
        let err = inline("{a=1, b}").err().unwrap();
        assert_eq!(
            err.to_string(),
            "missing '=' after attribute name: \"inline:{a=1, b}\"; need \"inline:{name=value...}\""
        );
        assert!(inline("{}").is_err());
    }

    #[test]
    fn static_values() {
        let mut table = StaticTable::open("{ hello  world }").unwrap();
        assert_eq!(table.lookup("x").unwrap().as_deref(), Some("hello  world"));
        let mut table = StaticTable::open("OK").unwrap();
        assert_eq!(table.lookup("x").unwrap().as_deref(), Some("OK"));
    }
}
