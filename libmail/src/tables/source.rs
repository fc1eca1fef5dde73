//! Source files of tables, as people write them: postmap's `key whitespace
//! value` (access, canonical, virtual, transport ... and texthash:) and
//! aliases(5)'s `name: value, value`. Lines that begin with whitespace
//! continue the previous line; blank lines and `#` comments are skipped.
//! Parsing only reports; the caller decides what to warn and what to keep.

use indexmap::map::Entry;
use indexmap::IndexMap;

use super::{Lookup, LookupError, Table};
use crate::config::main_cf::LogicalLines;

/// A source file's bytes as text: without a copy when they are UTF-8,
/// lossily when not (a GBK comment must not stop a table from building).
pub fn text_of(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes)
        .unwrap_or_else(|err| String::from_utf8_lossy(err.as_bytes()).into_owned())
}

/// One logical line of a postmap source file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MapLine {
    Entry {
        line: usize,
        key: String,
        value: String,
    },
    /// A key without a value: `expected format: key whitespace value`.
    MissingValue { line: usize },
}

/// Splits a postmap source file into entries, one at a time.
pub fn map_lines(text: &str) -> impl Iterator<Item = MapLine> + '_ {
    LogicalLines::new(text).map(|(line, logical)| {
        let logical = logical.trim_end();
        match logical.split_once(char::is_whitespace) {
            Some((key, value)) if !value.trim_start().is_empty() => MapLine::Entry {
                line,
                key: key.to_string(),
                value: value.trim_start().to_string(),
            },
            _ => MapLine::MissingValue { line },
        }
    })
}

/// `key:` as a postmap key is almost always an aliases file given to the
/// wrong command.
pub fn looks_like_alias(key: &str) -> bool {
    key.len() > 1 && key.ends_with(':')
}

/// One logical line of an aliases(5) file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AliasLine {
    Entry {
        line: usize,
        name: String,
        value: String,
    },
    /// No `name:` or nothing after it: `need name:value pair`.
    NeedPair { line: usize },
}

/// Splits an aliases file into entries, with names unquoted and values in
/// the canonical `a, b, c` form (see `normalize_alias_value`).
pub fn alias_lines(text: &str) -> impl Iterator<Item = AliasLine> + '_ {
    LogicalLines::new(text).map(|(line, logical)| match split_alias(&logical) {
        Some((name, value)) => AliasLine::Entry {
            line,
            name,
            value: normalize_alias_value(value),
        },
        None => AliasLine::NeedPair { line },
    })
}

/// `name: value` where name may be a quoted string; `None` without a
/// colon or without a value.
fn split_alias(logical: &str) -> Option<(String, &str)> {
    let text = logical.trim_start();
    let (name, rest) = if let Some(quoted) = text.strip_prefix('"') {
        let (name, used) = unquote(quoted)?;
        let rest = quoted[used..].trim_start();
        (name, rest.strip_prefix(':')?)
    } else {
        let (name, rest) = text.split_once(':')?;
        (name.trim_end().to_string(), rest)
    };
    let value = rest.trim();
    if name.is_empty() || value.is_empty() {
        return None;
    }
    Some((name, value))
}

/// The contents of a quoted string that started just before `text`, and
/// how many bytes of `text` it used (through the closing quote).
fn unquote(text: &str) -> Option<(String, usize)> {
    let mut out = String::new();
    let mut chars = text.char_indices();
    while let Some((at, c)) = chars.next() {
        match c {
            '"' => return Some((out, at + 1)),
            '\\' => out.push(chars.next()?.1),
            _ => out.push(c),
        }
    }
    None
}

/// A token of an RFC 822 address list, as far as aliases need them.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// An atom, or any run of non-special characters (`/var/mail/x`).
    Word(String),
    /// A quoted string, kept with its quotes and escapes.
    Quoted(String),
    /// A parenthesized comment, kept as written.
    Comment(String),
    /// One of `< > @ : ; . [ ]`.
    Special(char),
}

/// Rewrites an alias value the way Postfix stores it: addresses separated
/// by `, `, runs of blanks between words reduced to one space, a space
/// before `<` and around comments, backslash quoting removed outside
/// quoted strings. Empty elements stay, so `,,a` stays recognisable.
pub fn normalize_alias_value(value: &str) -> String {
    split_top_level(value)
        .iter()
        .map(|element| externalize(&tokenize(element)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Splits at commas that are outside quotes and comments.
fn split_top_level(value: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut quoted = false;
    let mut depth = 0usize;
    let mut escaped = false;
    for c in value.chars() {
        let current = out.last_mut().expect("out is never empty");
        if escaped {
            escaped = false;
            current.push(c);
            continue;
        }
        match c {
            '\\' => escaped = true,
            '"' if depth == 0 => quoted = !quoted,
            '(' if !quoted => depth += 1,
            ')' if !quoted && depth > 0 => depth -= 1,
            ',' if !quoted && depth == 0 => {
                out.push(String::new());
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    out
}

fn tokenize(element: &str) -> Vec<Token> {
    let mut tokens = Vec::new();
    let mut chars = element.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {}
            '"' => tokens.push(Token::Quoted(take_quoted(&mut chars))),
            '(' => tokens.push(Token::Comment(take_comment(&mut chars))),
            '<' | '>' | '@' | ':' | ';' | '.' | '[' | ']' => tokens.push(Token::Special(c)),
            _ => tokens.push(take_word(c, &mut chars)),
        }
    }
    tokens
}

type Chars<'a> = std::iter::Peekable<std::str::Chars<'a>>;

fn take_quoted(chars: &mut Chars) -> String {
    let mut out = String::from('"');
    while let Some(c) = chars.next() {
        out.push(c);
        match c {
            '\\' => out.extend(chars.next()),
            '"' => return out,
            _ => {}
        }
    }
    // Postfix closes an unterminated quoted string (but not a comment).
    out.push('"');
    out
}

fn take_comment(chars: &mut Chars) -> String {
    let mut out = String::from('(');
    let mut depth = 1;
    while let Some(c) = chars.next() {
        out.push(c);
        match c {
            '\\' => out.extend(chars.next()),
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return out;
                }
            }
            _ => {}
        }
    }
    out
}

/// A run of ordinary characters. A backslash takes the next character
/// literally; when that character could not stand in a word (`a\,b`), the
/// word is written as a quoted string so that it stays one address.
fn take_word(first: char, chars: &mut Chars) -> Token {
    let mut out = String::new();
    let mut needs_quotes = false;
    let mut c = first;
    loop {
        if c == '\\' {
            if let Some(escaped) = chars.next() {
                needs_quotes |= ends_word(escaped) || escaped == ',' || escaped == '\\';
                out.push(escaped);
            }
        } else {
            out.push(c);
        }
        match chars.peek() {
            Some(&next) if !ends_word(next) => {
                c = next;
                chars.next();
            }
            _ => break,
        }
    }
    if needs_quotes {
        Token::Quoted(quote(&out))
    } else {
        Token::Word(out)
    }
}

/// `text` as a quoted string.
fn quote(text: &str) -> String {
    let mut out = String::from('"');
    for c in text.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

fn ends_word(c: char) -> bool {
    c.is_whitespace() || "\"()<>@:;.[]".contains(c)
}

fn externalize(tokens: &[Token]) -> String {
    let mut out = String::new();
    for (i, token) in tokens.iter().enumerate() {
        if i > 0 && needs_space(&tokens[i - 1], token) {
            out.push(' ');
        }
        match token {
            Token::Word(text) | Token::Quoted(text) | Token::Comment(text) => out.push_str(text),
            Token::Special(c) => out.push(*c),
        }
    }
    out
}

fn needs_space(before: &Token, after: &Token) -> bool {
    let before_ok = !matches!(before, Token::Special(c) if *c != '>');
    let after_ok = !matches!(after, Token::Special(c) if *c != '<');
    before_ok && after_ok
}

/// What to do when a key appears twice: postmap's default warns and keeps
/// the first, `-r` replaces silently, `-w` keeps the first silently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Duplicates {
    WarnKeepFirst,
    Replace,
    KeepFirst,
}

/// Records in file order, one per key, under a duplicate policy.
#[derive(Debug, Default)]
pub struct Records {
    map: IndexMap<String, String>,
}

impl Records {
    pub fn new(existing: Vec<(String, String)>) -> Records {
        Records {
            map: existing.into_iter().collect(),
        }
    }

    /// Adds a record; returns false when the key was already there (the
    /// caller warns for `WarnKeepFirst`).
    pub fn add(&mut self, key: String, value: String, policy: Duplicates) -> bool {
        match self.map.entry(key) {
            Entry::Occupied(mut old) => {
                if policy == Duplicates::Replace {
                    old.insert(value);
                }
                false
            }
            Entry::Vacant(slot) => {
                slot.insert(value);
                true
            }
        }
    }

    /// Removes a key, keeping the order of the others; false when it was
    /// not there.
    pub fn remove(&mut self, key: &str) -> bool {
        self.map.shift_remove(key).is_some()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.map.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.map.get(key).map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// Records held in memory are a table of their own (texthash:, inline:).
impl Table for Records {
    fn lookup(&mut self, key: &str) -> Lookup {
        Ok(self.map.get(key).cloned())
    }

    fn entries(&mut self) -> Option<Result<Vec<(String, String)>, LookupError>> {
        Some(Ok(self
            .map
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postmap_lines() {
        let text =
            "# c\nfoo bar\nFoo  dup value  \nbaz\nlong value\n  more\n\n  # x\nlast  v1  v2\n";
        let lines: Vec<MapLine> = map_lines(text).collect();
        let entry = |line, key: &str, value: &str| MapLine::Entry {
            line,
            key: key.into(),
            value: value.into(),
        };
        assert_eq!(
            lines,
            vec![
                entry(2, "foo", "bar"),
                entry(3, "Foo", "dup value"),
                MapLine::MissingValue { line: 4 },
                entry(5, "long", "value  more"),
                entry(9, "last", "v1  v2"),
            ]
        );
        assert!(looks_like_alias("qux:"));
        assert!(!looks_like_alias(":"));
    }

    #[test]
    fn alias_values_are_canonical() {
        let cases = [
            ("a,b ,  c@example.com,   d", "a, b, c@example.com, d"),
            ("a   b  ,c", "a b, c"),
            (
                "x(c1) , \"q\\\"x\" , y<z@w>  ",
                "x (c1), \"q\\\"x\", y <z@w>",
            ),
            (",,a,,", ", , a, , "),
            ("a@b@c, @x:y@z", "a@b@c, @x:y@z"),
            ("a.b.c , d . e", "a.b.c, d.e"),
            (r#"a\,b, \"x\""#, r#""a,b", "\"x\"""#),
            ("(open comment", "(open comment"),
            ("\"|exec  two\", \\root", "\"|exec  two\", root"),
            (
                "/var/spool/file, :include:/etc/inc",
                "/var/spool/file, :include:/etc/inc",
            ),
            (
                "\"a b\"@c, <d@e>, f (comment)",
                "\"a b\"@c, <d@e>, f (comment)",
            ),
        ];
        for (raw, want) in cases {
            assert_eq!(normalize_alias_value(raw), want, "{raw}");
        }
    }

    #[test]
    fn alias_names() {
        let text = "root: admin\npostmaster:root\n\"quoted name\": x\n\"q\\\"n\": v\nbad line\nempty:\nsp1 :  a\n";
        let names: Vec<String> = alias_lines(text)
            .map(|line| match line {
                AliasLine::Entry { name, .. } => name,
                AliasLine::NeedPair { line } => format!("bad {line}"),
            })
            .collect();
        assert_eq!(
            names,
            [
                "root",
                "postmaster",
                "quoted name",
                "q\"n",
                "bad 5",
                "bad 6",
                "sp1"
            ]
        );
    }

    #[test]
    fn duplicate_policies() {
        let mut records = Records::new(vec![]);
        assert!(records.add("k".into(), "1".into(), Duplicates::WarnKeepFirst));
        assert!(!records.add("k".into(), "2".into(), Duplicates::WarnKeepFirst));
        assert_eq!(records.get("k"), Some("1"));
        assert!(!records.add("k".into(), "3".into(), Duplicates::Replace));
        assert_eq!(records.get("k"), Some("3"));
        assert!(records.add("j".into(), "x".into(), Duplicates::KeepFirst));
        assert!(records.remove("k"));
        assert!(!records.remove("k"));
        assert_eq!(records.iter().collect::<Vec<_>>(), vec![("j", "x")]);
    }
}
