//! main.cf syntax: reading `name = value` definitions with Postfix's line
//! rules, and editing a file in place for `postconf -e`, `-#` and `-X`
//! while keeping every other byte.
//!
//! A line that starts with white space continues the previous logical line;
//! blank lines and lines whose first non-blank character is `#` are skipped
//! and do not end a logical line. Continuation lines are joined without the
//! newline; leading and trailing white space of the value is dropped.

use std::collections::HashMap;
use std::path::Path;

use super::edit::{is_continuation, is_skipped, LineEdit};
use super::error::ConfigError;

/// One `name = value` definition and the line where it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Definition {
    pub name: String,
    pub value: String,
    pub line: usize,
}

/// A non-fatal observation made while reading, already worded.
pub type Warning = String;

/// Joins physical lines into logical lines: (first line number, text).
pub fn logical_lines(text: &str) -> Vec<(usize, String)> {
    LogicalLines::new(text)
        .map(|(number, line)| (number, line.into_owned()))
        .collect()
}

/// `logical_lines` one at a time, borrowing from the text unless a line
/// is continued: large tables are read without a copy of every line.
pub struct LogicalLines<'a> {
    lines: std::iter::Peekable<std::iter::Enumerate<std::str::Lines<'a>>>,
}

impl<'a> LogicalLines<'a> {
    pub fn new(text: &'a str) -> Self {
        LogicalLines {
            lines: text.lines().enumerate().peekable(),
        }
    }
}

impl<'a> Iterator for LogicalLines<'a> {
    type Item = (usize, std::borrow::Cow<'a, str>);

    fn next(&mut self) -> Option<Self::Item> {
        let (index, first) = self.lines.find(|(_, line)| !is_skipped(line))?;
        let mut logical = std::borrow::Cow::Borrowed(first);
        // Skipped lines between a line and its continuation do not end it.
        while let Some(&(_, line)) = self.lines.peek() {
            if is_skipped(line) {
                self.lines.next();
            } else if is_continuation(line) {
                logical.to_mut().push_str(line);
                self.lines.next();
            } else {
                break;
            }
        }
        Some((index + 1, logical))
    }
}

/// Splits `name = value`; `None` when there is no `=`.
pub fn split_name_value(logical: &str) -> Option<(&str, &str)> {
    let (name, value) = logical.split_once('=')?;
    Some((name.trim(), value.trim()))
}

/// Reads all definitions of a main.cf text. A later definition of the same
/// name wins; the overridden one is reported as a warning.
pub fn parse(path: &Path, text: &str) -> Result<(Vec<Definition>, Vec<Warning>), ConfigError> {
    let mut defs: Vec<Definition> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut warnings = Vec::new();
    for (line, logical) in logical_lines(text) {
        let Some((name, value)) = split_name_value(&logical) else {
            return Err(ConfigError::MissingEquals {
                path: path.to_path_buf(),
                line,
                name: logical.trim().to_string(),
            });
        };
        if name.is_empty() {
            return Err(ConfigError::MissingName {
                path: path.to_path_buf(),
                line,
            });
        }
        let def = Definition {
            name: name.to_string(),
            value: value.to_string(),
            line,
        };
        if let Some(&earlier) = index.get(name) {
            warnings.push(format!(
                "{}, line {}: overriding earlier entry: {}={}",
                path.display(),
                line,
                name,
                printable(&defs[earlier].value)
            ));
            defs[earlier] = def;
        } else {
            index.insert(def.name.clone(), defs.len());
            defs.push(def);
        }
    }
    Ok((defs, warnings))
}

/// main.cf as text. Files are often UTF-8 but need not be (a comment in
/// GBK, say); bytes that are not UTF-8 are shown as U+FFFD when read.
pub fn decode(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Replaces control characters with `?`, as Postfix does in log text.
pub fn printable(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// What `postconf` does to one parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edit {
    /// `-e`: give it this value, where it stands, or append it.
    Set(String),
    /// `-#`: comment out its definition.
    CommentOut,
    /// `-X`: remove its definition.
    Remove,
}

/// Applies edits to main.cf. Every definition of an edited name is
/// rewritten (with its continuation lines); a `Set` for a name that is not
/// there is appended. All other bytes are kept, whatever their encoding.
pub fn edit(path: &Path, text: &[u8], edits: &[(String, Edit)]) -> (Vec<u8>, Vec<Warning>) {
    let line_edits: Vec<(String, LineEdit)> = edits
        .iter()
        .map(|(name, edit)| {
            let line_edit = match edit {
                Edit::Set(value) => LineEdit::Replace(format!("{name} = {value}")),
                Edit::CommentOut => LineEdit::CommentOut,
                Edit::Remove => LineEdit::Remove,
            };
            (name.clone(), line_edit)
        })
        .collect();
    // The name is what precedes `=` or white space, so that `-X foo` also
    // removes a broken line `foo` that has no `=`.
    let key_of = |line: &str| {
        line.split(|c: char| c == '=' || c.is_whitespace())
            .next()
            .filter(|name| !name.is_empty())
            .map(String::from)
    };
    let (out, seen) = super::edit::edit_entries(text, key_of, &line_edits);
    let mut warnings = Vec::new();
    for (name, _) in edits {
        if seen.get(name).is_some_and(|&n| n > 1) {
            warnings.push(format!(
                "{}: multiple entries for \"{}\"",
                path.display(),
                name
            ));
        }
    }
    (out, warnings)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defs(text: &str) -> Vec<(String, String, usize)> {
        let (d, _) = parse(Path::new("main.cf"), text).unwrap();
        d.into_iter().map(|d| (d.name, d.value, d.line)).collect()
    }

    #[test]
    fn simple_definitions_and_whitespace() {
        let got = defs("a = 1\n  \nb=2  \n\tc = x\n");
        assert_eq!(
            got,
            vec![
                ("a".into(), "1".into(), 1),
                ("b".into(), "2  \tc = x".into(), 3)
            ]
        );
    }

    #[test]
    fn continuation_joins_without_newline_across_comments() {
        let got = defs("a = one\n\t\ttwo\n# note\n\n    three\nb = 2\n");
        assert_eq!(got[0], ("a".into(), "one\t\ttwo    three".into(), 1));
        assert_eq!(got[1], ("b".into(), "2".into(), 6));
    }

    #[test]
    fn indented_comment_is_a_comment() {
        let got = defs("a = 1\n   # not a continuation\nb = 2\n");
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].1, "1");
    }

    #[test]
    fn last_definition_wins_with_warning() {
        let (d, w) = parse(Path::new("/x/main.cf"), "b = 1\nb = 2\n").unwrap();
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].value, "2");
        assert_eq!(d[0].line, 2);
        assert_eq!(w, vec!["/x/main.cf, line 2: overriding earlier entry: b=1"]);
    }

    #[test]
    fn missing_equals_is_fatal_with_line() {
        let err = parse(Path::new("/etc/postfix/main.cf"), "a = 1\n\nfoo\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "/etc/postfix/main.cf, line 3: missing '=' after attribute name: \"foo\""
        );
    }

    #[test]
    fn missing_name_is_fatal() {
        let err = parse(Path::new("m"), "= 1\n").unwrap_err();
        assert_eq!(err.to_string(), "m, line 1: missing attribute name");
    }

    #[test]
    fn value_may_contain_equals_and_hash() {
        let got = defs("a = b=c # not a comment\n");
        assert_eq!(got[0].1, "b=c # not a comment");
    }

    fn run(text: &str, edits: &[(&str, Edit)]) -> (String, Vec<String>) {
        let edits: Vec<(String, Edit)> = edits
            .iter()
            .map(|(n, e)| (n.to_string(), e.clone()))
            .collect();
        let (out, warnings) = edit(Path::new("main.cf"), text.as_bytes(), &edits);
        (String::from_utf8(out).unwrap(), warnings)
    }

    const SAMPLE: &str = "# head\na = one\n\t\ttwo  \n\n   \n    four\nb=x  \nb = second\n# tail\n";

    #[test]
    fn set_replaces_in_place_and_appends() {
        let (out, w) = run(
            SAMPLE,
            &[
                ("b", Edit::Set("new".into())),
                ("c", Edit::Set("cval".into())),
                ("a", Edit::Set("aa".into())),
            ],
        );
        assert_eq!(
            out,
            "# head\na = aa\n\n   \nb = new\nb = new\n# tail\nc = cval\n"
        );
        assert_eq!(w, vec!["main.cf: multiple entries for \"b\""]);
    }

    #[test]
    fn comment_out_marks_continuations() {
        let (out, _) = run(SAMPLE, &[("a", Edit::CommentOut)]);
        assert_eq!(
            out,
            "# head\n#a = one\n#\t\ttwo  \n\n   \n#    four\nb=x  \nb = second\n# tail\n"
        );
    }

    #[test]
    fn remove_drops_definition_and_continuations() {
        let (out, _) = run(SAMPLE, &[("a", Edit::Remove), ("b", Edit::Remove)]);
        assert_eq!(out, "# head\n\n   \n# tail\n");
    }

    #[test]
    fn append_to_file_without_final_newline() {
        let (out, _) = run("a = 1", &[("b", Edit::Set("2".into()))]);
        assert_eq!(out, "a = 1\nb = 2\n");
    }

    #[test]
    fn broken_line_can_be_removed() {
        let (out, _) = run("foo\n  bar\nx = 1\n", &[("foo", Edit::Remove)]);
        assert_eq!(out, "x = 1\n");
    }

    #[test]
    fn crlf_and_unrelated_lines_kept() {
        let text = "x = 1\r\nweird line without equals\ny = 2\n";
        let (out, _) = run(text, &[("y", Edit::Set("3".into()))]);
        assert_eq!(out, "x = 1\r\nweird line without equals\ny = 3\n");
    }
}
