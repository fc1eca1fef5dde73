//! Line-preserving edits of main.cf and master.cf: one logical entry (a
//! line and its continuation lines) is replaced, commented out or removed,
//! and every other byte of the file is kept. Both files share Postfix's
//! line rules, so `postconf -e` and `postconf -Me` share this code.

use std::collections::HashMap;

/// What happens to one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineEdit {
    /// Replace the entry with this text (one line, no newline), or append
    /// it when the entry is not there.
    Replace(String),
    /// Put `#` before each of its lines.
    CommentOut,
    /// Drop its lines.
    Remove,
}

/// Blank lines and comments: kept as they are, never part of an entry.
pub fn is_skipped(line: &str) -> bool {
    let text = line.trim_start();
    text.is_empty() || text.starts_with('#')
}

/// A line starting with white space continues the entry before it.
pub fn is_continuation(line: &str) -> bool {
    line.starts_with([' ', '\t'])
}

/// Bytes as text, one character per byte, so that an edit keeps every byte
/// it does not touch whatever the file's encoding (a GBK comment, say).
fn to_exact(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| char::from(b)).collect()
}

/// The inverse of `to_exact`.
fn from_exact(text: &str) -> Vec<u8> {
    text.chars().map(|c| c as u32 as u8).collect()
}

/// Applies `edits` (keyed by what `key_of` says of an entry's first line)
/// to a file's bytes; returns the new bytes and how many entries each key
/// matched. New text is written as UTF-8.
pub fn edit_entries(
    bytes: &[u8],
    key_of: impl Fn(&str) -> Option<String>,
    edits: &[(String, LineEdit)],
) -> (Vec<u8>, HashMap<String, usize>) {
    let exact = |text: &str| to_exact(text.as_bytes());
    let edits: Vec<(String, LineEdit)> = edits
        .iter()
        .map(|(key, edit)| {
            let edit = match edit {
                LineEdit::Replace(text) => LineEdit::Replace(exact(text)),
                other => other.clone(),
            };
            (exact(key), edit)
        })
        .collect();
    let (text, seen) = edit_text(&to_exact(bytes), key_of, &edits);
    let seen = seen
        .into_iter()
        .map(|(key, n)| (String::from_utf8_lossy(&from_exact(&key)).into_owned(), n))
        .collect();
    (from_exact(&text), seen)
}

fn edit_text(
    text: &str,
    key_of: impl Fn(&str) -> Option<String>,
    edits: &[(String, LineEdit)],
) -> (String, HashMap<String, usize>) {
    let wanted: HashMap<&str, &LineEdit> = edits.iter().map(|(k, e)| (k.as_str(), e)).collect();
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut out = String::with_capacity(text.len() + 64);
    let mut current: Option<&LineEdit> = None;
    for line in text.split_inclusive('\n') {
        let body = line.trim_end_matches(['\n', '\r']);
        if is_skipped(body) {
            out.push_str(line);
            continue;
        }
        if !is_continuation(body) {
            current = key_of(body).and_then(|key| {
                let edit = wanted.get(key.as_str()).copied();
                if edit.is_some() {
                    *seen.entry(key).or_insert(0) += 1;
                }
                edit
            });
            if let Some(LineEdit::Replace(new)) = current {
                out.push_str(new);
                out.push('\n');
                continue;
            }
        }
        match current {
            None => out.push_str(line),
            Some(LineEdit::CommentOut) => {
                out.push('#');
                out.push_str(line);
                if !line.ends_with('\n') {
                    out.push('\n');
                }
            }
            Some(LineEdit::Replace(_) | LineEdit::Remove) => {}
        }
    }
    for (key, edit) in edits {
        if let (LineEdit::Replace(new), false) = (edit, seen.contains_key(key)) {
            if !out.is_empty() && !out.ends_with('\n') {
                out.push('\n');
            }
            out.push_str(new);
            out.push('\n');
        }
    }
    (out, seen)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn first_word(line: &str) -> Option<String> {
        line.split_whitespace().next().map(String::from)
    }

    #[test]
    fn bytes_that_are_not_utf8_are_kept() {
        let text = b"# \xc4\xe3\xba\xc3\nname old\nother \xff\n";
        let edits = vec![(
            "name".to_string(),
            LineEdit::Replace("name \u{90ae}".into()),
        )];
        let (out, _) = edit_entries(text, first_word, &edits);
        let mut want = b"# \xc4\xe3\xba\xc3\nname ".to_vec();
        want.extend("\u{90ae}".as_bytes());
        want.extend(b"\nother \xff\n");
        assert_eq!(out, want);
    }

    #[test]
    fn replace_comment_remove_append() {
        let text = "a 1\n  a2\n# c\nb 2\n\tb2\nc 3\n";
        let edits = vec![
            ("a".to_string(), LineEdit::Replace("a new".into())),
            ("b".to_string(), LineEdit::CommentOut),
            ("c".to_string(), LineEdit::Remove),
            ("d".to_string(), LineEdit::Replace("d 4".into())),
        ];
        let (out, seen) = edit_entries(text.as_bytes(), first_word, &edits);
        assert_eq!(out, b"a new\n# c\n#b 2\n#\tb2\nd 4\n");
        assert_eq!(seen.get("a"), Some(&1));
        assert_eq!(seen.get("d"), None);
    }
}
