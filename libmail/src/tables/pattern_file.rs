//! The file syntax that regexp: and pcre: tables share: `/pattern/flags
//! result`, `!/pattern/ result`, nestable `if /pattern/` ... `endif`, and
//! `$n` substitution in results. The two table types differ only in their
//! regular expression engine, which plugs in through `Engine`.
//!
//! A rule with a bad regular expression (one that does not compile, an
//! unknown flag, a `$n` beyond the pattern's groups) stops the table from
//! opening: the program reports it as fatal with file and line, rather
//! than running with a filter that silently lacks a rule. Lesser problems
//! (a stray ENDIF, a missing result) are warnings, as in Postfix, and the
//! rule is skipped. Messages are collected in a `Log` while parsing (so
//! that tests can read them) and printed when the table is opened. cidr:
//! tables use the same `Log` and line reading.

use std::fmt::Display;

use super::{Lookup, Table, TableError};
use crate::config::main_cf::logical_lines;

/// Flag bits; each engine decides which letters toggle which bit.
pub(crate) const CASELESS: u32 = 1;
pub(crate) const MULTILINE: u32 = 1 << 1;
pub(crate) const DOTALL: u32 = 1 << 2;
pub(crate) const EXTENDED: u32 = 1 << 3;
pub(crate) const ANCHORED: u32 = 1 << 4;
pub(crate) const DOLLAR_ENDONLY: u32 = 1 << 5;
pub(crate) const UNGREEDY: u32 = 1 << 6;

/// What one regular expression engine brings to the shared file syntax.
pub(crate) trait Engine: Sized {
    /// `regexp` or `pcre`, as warnings name the map.
    const KIND: &'static str;
    /// Flag bits before any flag letter toggles them.
    const DEFAULT_FLAGS: u32;
    /// Flag letters and the bit each toggles.
    const FLAG_BITS: &'static [(char, u32)];
    /// Flag letters accepted with a warning and otherwise ignored.
    const OBSOLETE_FLAGS: &'static [char];
    /// regexp: only: the undocumented `/pattern1/!/pattern2/ result` form,
    /// where flags end at `!`.
    const SECOND_PATTERN: bool;
    /// What the "no closing regexp delimiter" warning says happens.
    const UNCLOSED_ACTION: &'static str;
    /// How the warning about `$0` spells "out of range".
    const ZERO_INDEX: &'static str;

    /// Compiles a pattern; the error is the warning text without the
    /// `KIND map PATH, line N:` prefix.
    fn compile(pattern: &str, flags: u32) -> Result<Self, String>;
    /// The number of `(...)` groups.
    fn groups(&self) -> usize;
    /// Matches `key`, recording group offsets when `captures` is set; an
    /// error (such as a backtracking limit) is worded for a warning.
    fn exec(&mut self, key: &[u8], captures: bool) -> Result<bool, String>;
    /// Byte offsets of group `n` in the key of the last `exec`.
    fn group(&self, n: usize) -> Option<(usize, usize)>;
}

/// Warnings gathered while a table file is read, in Postfix's words.
pub(crate) struct Log<'a> {
    kind: &'static str,
    path: &'a str,
    /// The line that `warn` reports.
    pub(crate) line: usize,
    pub(crate) messages: Vec<String>,
    /// The first error that keeps the table from opening: line and text.
    pub(crate) failure: Option<(usize, String)>,
}

impl<'a> Log<'a> {
    pub(crate) fn new(kind: &'static str, path: &'a str) -> Self {
        Log {
            kind,
            path,
            line: 0,
            messages: Vec::new(),
            failure: None,
        }
    }

    /// `KIND map PATH, line N: TEXT` for the current line.
    pub(crate) fn warn(&mut self, text: impl Display) {
        self.warn_at(self.line, text);
    }

    pub(crate) fn warn_at(&mut self, line: usize, text: impl Display) {
        let message = format!("{} map {}, line {line}: {text}", self.kind, self.path);
        self.messages.push(message);
    }

    /// An error in the current line that makes the table unusable; the
    /// first one is reported when the table is opened.
    /// It is also logged with the warnings, so that tests see every
    /// problem of a file in one list.
    pub(crate) fn fail(&mut self, text: impl Display) {
        let text = text.to_string();
        if self.failure.is_none() {
            self.failure = Some((self.line, text.clone()));
        }
        self.warn(text);
    }

    /// The error that stops the table from opening, if any, worded as
    /// `KIND map PATH, line N: TEXT`.
    pub(crate) fn failure(&self) -> Option<TableError> {
        let (line, reason) = self.failure.clone()?;
        Some(TableError::Syntax {
            path: format!("{} map {}", self.kind, self.path),
            line,
            reason,
        })
    }

    /// A warning without the map and line prefix.
    pub(crate) fn plain(&mut self, text: String) {
        self.messages.push(text);
    }

    /// Prints every warning, as the program that opens the table.
    pub(crate) fn emit(self) {
        for message in self.messages {
            crate::msg::warning(message);
        }
    }
}

/// The rules of a pattern table: from its file, or from the name itself
/// when that is an inline table (`regexp:{ {/a/ x}, {/b/ y} }`, as Postfix
/// 3.7 allows), one rule per line as if read from a file.
pub(crate) fn table_text(kind: &str, name: &str) -> Result<String, TableError> {
    let Some(inner) = name.strip_prefix('{') else {
        return super::read_text(name);
    };
    let no_brace = |text: &str| {
        TableError::Other(format!(
            "{kind} map: no '{{' at start of text in \"{text}\""
        ))
    };
    let inner = inner.strip_suffix('}').ok_or_else(|| {
        TableError::Other(format!("{kind} map: no '}}' at end of text in \"{name}\""))
    })?;
    let mut text = String::new();
    for item in crate::config::value::split_list(inner) {
        let rule = item
            .strip_prefix('{')
            .and_then(|rest| rest.strip_suffix('}'))
            .ok_or_else(|| no_brace(item))?;
        text.push_str(rule.trim());
        text.push('\n');
    }
    Ok(text)
}

/// Postfix's idea of white space (C `isspace` in the C locale).
pub(crate) fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c')
}

/// The logical lines of a table file, trailing white space removed. A
/// logical line cannot start with white space (that would continue the
/// line before); only the file's first line can, and it is dropped with
/// Postfix's warning.
pub(crate) fn table_lines(log: &mut Log, text: &str) -> Vec<(usize, String)> {
    let mut lines = Vec::new();
    for (number, line) in logical_lines(text) {
        if line.starts_with(is_space) {
            let warning = format!(
                "{}: logical line must not start with whitespace: \"{line}\"",
                log.path
            );
            log.plain(warning);
            continue;
        }
        let trimmed = line.trim_end_matches(is_space);
        if !trimmed.is_empty() {
            lines.push((number, trimmed.to_string()));
        }
    }
    lines
}

/// `text` after the keyword `word` (any case) when the keyword is not
/// followed by a letter or digit: `if/a/` is an IF, `iffy` is not.
pub(crate) fn keyword<'t>(text: &'t str, word: &str) -> Option<&'t str> {
    let head = text.get(..word.len())?;
    let rest = &text[word.len()..];
    let joined = rest
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric());
    (head.eq_ignore_ascii_case(word) && !joined).then_some(rest)
}

/// Strips leading `!` and white space in any mix; each `!` negates.
pub(crate) fn negations(mut text: &str) -> (bool, &str) {
    let mut negate = false;
    while let Some(c) = text.chars().next().filter(|&c| c == '!' || is_space(c)) {
        negate ^= c == '!';
        text = &text[c.len_utf8()..];
    }
    (negate, text)
}

/// One `[!]/pattern/flags` as written.
struct Written<'t> {
    pattern: &'t str,
    flags: u32,
    negate: bool,
}

/// Reads `[!]/pattern/flags` from the start of `text`; returns it and the
/// text after the flags, or `None` after a warning.
fn take_pattern<'t, E: Engine>(text: &'t str, log: &mut Log) -> Option<(Written<'t>, &'t str)> {
    let (negate, text) = negations(text);
    let Some(delimiter) = text.chars().next() else {
        log.warn("no regexp: skipping this rule");
        return None;
    };
    // Postfix reads the delimiter as one byte, so a multi-byte one ends
    // at the next character that starts with the same byte.
    let bytes = text.as_bytes();
    let Some(end) = closing_delimiter(&bytes[1..], bytes[0]) else {
        let (shown, action) = (shown(delimiter), E::UNCLOSED_ACTION);
        log.warn(format_args!(
            "no closing regexp delimiter \"{shown}\": {action} this rule"
        ));
        return None;
    };
    if !delimiter.is_ascii() {
        // The "flags" then start with the rest of that character.
        log.warn("unknown regexp option \"?\": skipping this rule");
        return None;
    }
    let (flags, rest) = take_flags::<E>(&text[end + 2..], log)?;
    let written = Written {
        pattern: &text[1..end + 1],
        flags,
        negate,
    };
    Some((written, rest))
}

/// Where the closing delimiter byte is; a backslash hides the byte after
/// it (and stays in the pattern).
fn closing_delimiter(body: &[u8], delimiter: u8) -> Option<usize> {
    let mut at = 0;
    while let Some(&b) = body.get(at) {
        if b == b'\\' {
            body.get(at + 1)?;
            at += 2;
        } else if b == delimiter {
            return Some(at);
        } else {
            at += 1;
        }
    }
    None
}

/// A character as Postfix's warnings show a single byte: `?` unless it
/// is printable ASCII.
fn shown(c: char) -> char {
    if c.is_ascii_graphic() || c == ' ' {
        c
    } else {
        '?'
    }
}

/// Reads flag letters up to white space (or, for regexp:, `!`).
fn take_flags<'t, E: Engine>(text: &'t str, log: &mut Log) -> Option<(u32, &'t str)> {
    let mut flags = E::DEFAULT_FLAGS;
    for (at, c) in text.char_indices() {
        if is_space(c) || (E::SECOND_PATTERN && c == '!') {
            return Some((flags, &text[at..]));
        }
        if let Some((_, bit)) = E::FLAG_BITS.iter().find(|(letter, _)| *letter == c) {
            flags ^= bit;
        } else if E::OBSOLETE_FLAGS.contains(&c) {
            log.warn(format_args!("ignoring obsolete regexp option \"{c}\""));
        } else {
            let c = shown(c);
            log.fail(format_args!("unknown regexp option \"{c}\""));
            return None;
        }
    }
    Some((flags, ""))
}

/// A piece of a result: text, or the text a group matched.
#[derive(Debug, PartialEq)]
enum Piece {
    Text(String),
    Group(usize),
}

/// A result with its `$n` references resolved at open time.
#[derive(Debug)]
pub(crate) struct Replacement {
    pieces: Vec<Piece>,
    /// The largest `$n`; 0 when the result is fixed text.
    max_group: usize,
}

impl Replacement {
    /// Parses `$n`, `${n}`, `$(n)` and `$$` as Postfix's macro parser
    /// does; `None` after a warning.
    pub(crate) fn parse(text: &str, log: &mut Log, zero: &str) -> Option<Replacement> {
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut max_group = 0;
        let mut rest = text;
        while let Some(at) = rest.find('$') {
            literal.push_str(&rest[..at]);
            let after = &rest[at + 1..];
            if let Some(tail) = after.strip_prefix('$') {
                literal.push('$');
                rest = tail;
                continue;
            }
            let (name, tail) = macro_name(text, after, log)?;
            let group = group_number(name, log, zero)?;
            if !literal.is_empty() {
                pieces.push(Piece::Text(std::mem::take(&mut literal)));
            }
            pieces.push(Piece::Group(group));
            max_group = max_group.max(group);
            rest = tail;
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            pieces.push(Piece::Text(literal));
        }
        Some(Replacement { pieces, max_group })
    }

    /// The result for a match of `key`; only this string is allocated.
    pub(crate) fn expand<E: Engine>(&self, key: &[u8], engine: &E) -> String {
        if self.max_group == 0 {
            return match self.pieces.first() {
                Some(Piece::Text(text)) => text.clone(),
                _ => String::new(),
            };
        }
        let mut out = Vec::with_capacity(key.len() + 16);
        for piece in &self.pieces {
            match piece {
                Piece::Text(text) => out.extend_from_slice(text.as_bytes()),
                Piece::Group(n) => {
                    if let Some((start, end)) = engine.group(*n) {
                        out.extend_from_slice(key.get(start..end).unwrap_or_default());
                    }
                }
            }
        }
        // A byte-wise pattern can cut a multi-byte character in two.
        String::from_utf8(out)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
    }
}

/// The macro name after a `$` (`after` starts just past it) and the text
/// after the name. `whole` is the full result, which warnings quote.
fn macro_name<'t>(whole: &str, after: &'t str, log: &mut Log) -> Option<(&'t str, &'t str)> {
    let bracket = match after.chars().next() {
        Some('{') => Some(('{', '}')),
        Some('(') => Some(('(', ')')),
        _ => None,
    };
    let (name, tail) = match bracket {
        Some((open, close)) => {
            let Some(end) = matching_close(after, open, close) else {
                log.plain(format!("truncated macro reference: \"{whole}\""));
                return None;
            };
            (&after[1..end], &after[end + 1..])
        }
        None => {
            let len = after
                .bytes()
                .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
                .count();
            after.split_at(len)
        }
    };
    if name.is_empty() {
        log.plain(format!("empty macro name: \"{whole}\""));
        return None;
    }
    Some((name, tail))
}

/// The index of the bracket that closes the one `text` starts with,
/// counting nested brackets of the same kind.
fn matching_close(text: &str, open: char, close: char) -> Option<usize> {
    let mut depth = 0usize;
    for (at, c) in text.char_indices() {
        if c == open {
            depth += 1;
        } else if c == close {
            depth -= 1;
            if depth == 0 {
                return Some(at);
            }
        }
    }
    None
}

/// A macro name as a group number; `None` after a warning.
fn group_number(name: &str, log: &mut Log, zero: &str) -> Option<usize> {
    if !name.bytes().all(|b| b.is_ascii_digit()) {
        log.warn(format_args!("non-numeric replacement index \"{name}\""));
        return None;
    }
    // As C's atoi() reads it: saturated to a long, then cut to an int; a
    // negative result becomes a huge index that is out of range.
    let n = name.parse::<i64>().unwrap_or(i64::MAX) as i32;
    if n == 0 {
        log.warn(format_args!("{zero} replacement index \"{name}\""));
        return None;
    }
    Some(n as usize)
}

/// A compiled pattern and whether a match or a non-match counts.
struct Test<E> {
    engine: E,
    negate: bool,
}

impl<E: Engine> Test<E> {
    fn compile(written: &Written, log: &mut Log) -> Option<Self> {
        match E::compile(written.pattern, written.flags) {
            Ok(engine) => Some(Test {
                engine,
                negate: written.negate,
            }),
            Err(text) => {
                log.fail(text);
                None
            }
        }
    }

    /// Whether the rule applies to `key`. A matching error is a warning
    /// and counts as "does not apply", whichever way the test points.
    fn holds(&mut self, key: &[u8], captures: bool, path: &str, line: usize) -> bool {
        match self.engine.exec(key, captures) {
            Ok(matched) => matched != self.negate,
            Err(text) => {
                crate::msg::warning(format!("{} map {path}, line {line}: {text}", E::KIND));
                false
            }
        }
    }
}

/// `/pattern/ result`, with regexp:'s optional second pattern.
struct MatchRule<E> {
    line: usize,
    first: Test<E>,
    second: Option<Test<E>>,
    result: Replacement,
}

impl<E: Engine> MatchRule<E> {
    fn applies(&mut self, key: &[u8], path: &str) -> bool {
        let captures = self.result.max_group > 0;
        if !self.first.holds(key, captures, path, self.line) {
            return false;
        }
        match &mut self.second {
            Some(second) => second.holds(key, false, path, self.line),
            None => true,
        }
    }
}

enum Rule<E> {
    Match(MatchRule<E>),
    /// When the test fails, lookup continues at rule `end` (past the
    /// matching ENDIF, or past the last rule when there is none).
    If {
        line: usize,
        test: Test<E>,
        end: usize,
    },
}

impl<E: Engine> Table for PatternTable<E> {
    fn lookup(&mut self, key: &str) -> Lookup {
        Ok(PatternTable::lookup(self, key))
    }

    fn is_pattern(&self) -> bool {
        true
    }
}

/// A parsed regexp: or pcre: table.
pub(crate) struct PatternTable<E> {
    path: String,
    rules: Vec<Rule<E>>,
}

impl<E: Engine> PatternTable<E> {
    /// Reads and compiles `path`, printing warnings for skipped rules.
    pub(crate) fn open(path: &str) -> Result<Self, TableError> {
        let text = table_text(E::KIND, path)?;
        let mut log = Log::new(E::KIND, path);
        let table = Self::parse(path, &text, &mut log);
        // A table that does not open is reported once, as fatal.
        if let Some(err) = log.failure() {
            return Err(err);
        }
        log.emit();
        Ok(table)
    }

    /// Parses table text; warnings go to `log`.
    pub(crate) fn parse(path: &str, text: &str, log: &mut Log) -> Self {
        let mut parser = Parser {
            log,
            rules: Vec::new(),
            open_ifs: Vec::new(),
        };
        for (line, text) in table_lines(parser.log, text) {
            parser.log.line = line;
            parser.line(&text);
        }
        parser.finish();
        PatternTable {
            path: path.to_string(),
            rules: parser.rules,
        }
    }

    /// The first applicable rule's result for `key`.
    pub(crate) fn lookup(&mut self, key: &str) -> Option<String> {
        let key = key.as_bytes();
        let Self { path, rules } = self;
        let mut at = 0;
        while let Some(rule) = rules.get_mut(at) {
            at = match rule {
                Rule::If { line, test, end } => {
                    if test.holds(key, false, path, *line) {
                        at + 1
                    } else {
                        *end
                    }
                }
                Rule::Match(rule) => {
                    if rule.applies(key, path) {
                        return Some(rule.result.expand(key, &rule.first.engine));
                    }
                    at + 1
                }
            };
        }
        None
    }
}

/// The state of reading one file: rules so far and the open IFs.
struct Parser<'p, 'a, E> {
    log: &'p mut Log<'a>,
    rules: Vec<Rule<E>>,
    /// (index in `rules`, line) of each IF without ENDIF yet.
    open_ifs: Vec<(usize, usize)>,
}

impl<E: Engine> Parser<'_, '_, E> {
    /// One logical line: a rule when it starts with a non-alphanumeric
    /// character (the delimiter or `!`), else IF or ENDIF.
    fn line(&mut self, text: &str) {
        let starts_alnum = text
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric());
        if !starts_alnum {
            self.match_rule(text);
        } else if let Some(rest) = keyword(text, "if") {
            self.if_rule(rest);
        } else if let Some(rest) = keyword(text, "endif") {
            self.endif(rest);
        } else {
            self.log.warn("ignoring unrecognized request");
        }
    }

    fn match_rule(&mut self, text: &str) {
        if let Some(rule) = Self::parse_match(text, self.log) {
            self.rules.push(Rule::Match(rule));
        }
    }

    /// Checks in Postfix's order, so that the first problem is reported.
    fn parse_match(text: &str, log: &mut Log) -> Option<MatchRule<E>> {
        let (first, rest) = take_pattern::<E>(text, log)?;
        let (second, rest) = Self::second_pattern(rest, log)?;
        let result = Self::result(rest, log, first.negate)?;
        let first = Test::<E>::compile(&first, log)?;
        if result.max_group > first.engine.groups() {
            // Postfix prints the index as a C int.
            let n = result.max_group as i32;
            log.fail(format_args!("out of range replacement index \"{n}\""));
            return None;
        }
        let second = match second {
            Some(written) => Some(Test::compile(&written, log)?),
            None => None,
        };
        let line = log.line;
        Some(MatchRule {
            line,
            first,
            second,
            result,
        })
    }

    /// regexp:'s `!/pattern2/` right after the flags, if any.
    fn second_pattern<'t>(rest: &'t str, log: &mut Log) -> Option<(Option<Written<'t>>, &'t str)> {
        if !(E::SECOND_PATTERN && rest.starts_with('!')) {
            return Some((None, rest));
        }
        let (second, rest) = take_pattern::<E>(rest, log)?;
        Some((Some(second), rest))
    }

    /// The result text after the pattern(s), checked as Postfix does.
    fn result(rest: &str, log: &mut Log, negate: bool) -> Option<Replacement> {
        let text = rest.trim_start_matches(is_space);
        if text.is_empty() {
            log.warn("no replacement text: using empty string");
        }
        let Some(result) = Replacement::parse(text, log, E::ZERO_INDEX) else {
            log.warn("bad replacement syntax: skipping this rule");
            return None;
        };
        if result.max_group > 0 && negate {
            log.warn("$number found in negative match replacement text: skipping this rule");
            return None;
        }
        Some(result)
    }

    fn if_rule(&mut self, rest: &str) {
        let Some(test) = Self::parse_if(rest, self.log) else {
            return;
        };
        let line = self.log.line;
        self.open_ifs.push((self.rules.len(), line));
        self.rules.push(Rule::If {
            line,
            test,
            end: usize::MAX,
        });
    }

    fn parse_if(rest: &str, log: &mut Log) -> Option<Test<E>> {
        let rest = rest.trim_start_matches(is_space);
        let (written, extra) = take_pattern::<E>(rest, log)?;
        let extra = extra.trim_start_matches(is_space);
        if !extra.is_empty() {
            log.warn(format_args!(
                "ignoring extra text after IF statement: \"{extra}\""
            ));
            log.warn("do not prepend whitespace to statements between IF and ENDIF");
        }
        Test::compile(&written, log)
    }

    fn endif(&mut self, rest: &str) {
        let Some((index, _)) = self.open_ifs.pop() else {
            self.log.warn("ignoring ENDIF without matching IF");
            return;
        };
        if !rest.trim_start_matches(is_space).is_empty() {
            self.log.warn("ignoring extra text after ENDIF");
        }
        let next = self.rules.len();
        if let Some(Rule::If { end, .. }) = self.rules.get_mut(index) {
            *end = next;
        }
    }

    /// IFs left open skip the rest of the file when they fail.
    fn finish(&mut self) {
        while let Some((_, line)) = self.open_ifs.pop() {
            self.log.warn_at(line, "IF has no matching ENDIF");
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A temporary file that is removed when dropped.
    #[test]
    fn inline_tables() {
        let text = table_text("regexp", "{{/^a(b)/ got-$1}, { /x/ y }}").unwrap();
        assert_eq!(text, "/^a(b)/ got-$1\n/x/ y\n");
        assert_eq!(table_text("regexp", "{}").unwrap(), "");
        let err = table_text("regexp", "{/^a/ x}").err().unwrap();
        assert_eq!(
            err.to_string(),
            "regexp map: no '{' at start of text in \"/^a/\""
        );
        let err = table_text("regexp", "{{/^a/ x} junk}").err().unwrap();
        assert_eq!(
            err.to_string(),
            "regexp map: no '{' at start of text in \"junk\""
        );
    }

    pub(crate) struct TempFile(pub(crate) std::path::PathBuf);

    impl TempFile {
        pub(crate) fn new(tag: &str, text: &str) -> TempFile {
            use std::sync::atomic::{AtomicUsize, Ordering};
            static COUNT: AtomicUsize = AtomicUsize::new(0);
            let n = COUNT.fetch_add(1, Ordering::Relaxed);
            let name = format!("postfix-rs-{tag}-{}-{n}", std::process::id());
            let path = std::env::temp_dir().join(name);
            std::fs::write(&path, text).expect("write temp file");
            TempFile(path)
        }

        pub(crate) fn path(&self) -> &str {
            self.0.to_str().expect("utf-8 temp path")
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn replacement(text: &str) -> (Option<Replacement>, Vec<String>) {
        let mut log = Log::new("regexp", "f");
        log.line = 1;
        let result = Replacement::parse(text, &mut log, "out-of-range");
        (result, log.messages)
    }

    #[test]
    fn replacement_forms() {
        let (r, _) = replacement("x$1-${2}-$(3)-$$-$$1");
        let r = r.unwrap();
        assert_eq!(r.max_group, 3);
        assert_eq!(
            r.pieces,
            vec![
                Piece::Text("x".into()),
                Piece::Group(1),
                Piece::Text("-".into()),
                Piece::Group(2),
                Piece::Text("-".into()),
                Piece::Group(3),
                Piece::Text("-$-$1".into()),
            ]
        );
        let (r, _) = replacement("550 Use $$ sign");
        assert_eq!(
            r.unwrap().pieces,
            vec![Piece::Text("550 Use $ sign".into())]
        );
    }

    #[test]
    fn replacement_errors_are_worded_like_postfix() {
        let cases = [
            ("x$", "empty macro name: \"x$\""),
            ("x${}", "empty macro name: \"x${}\""),
            ("x${1", "truncated macro reference: \"x${1\""),
            ("x$(1}", "truncated macro reference: \"x$(1}\""),
            (
                "$1b",
                "regexp map f, line 1: non-numeric replacement index \"1b\"",
            ),
            (
                "${{1}}",
                "regexp map f, line 1: non-numeric replacement index \"{1}\"",
            ),
            (
                "$0",
                "regexp map f, line 1: out-of-range replacement index \"0\"",
            ),
        ];
        for (text, warning) in cases {
            let (r, messages) = replacement(text);
            assert!(r.is_none(), "{text}");
            assert_eq!(messages, vec![warning.to_string()], "{text}");
        }
    }

    #[test]
    fn keywords_need_a_non_alphanumeric_after() {
        assert_eq!(keyword("if /a/", "if"), Some(" /a/"));
        assert_eq!(keyword("IF/a/", "if"), Some("/a/"));
        assert_eq!(keyword("iffy", "if"), None);
        assert_eq!(keyword("endif", "endif"), Some(""));
        assert_eq!(keyword("endiffoo", "endif"), None);
        assert_eq!(keyword("é", "if"), None);
    }

    #[test]
    fn negations_toggle() {
        assert_eq!(negations("!/a/"), (true, "/a/"));
        assert_eq!(negations("! ! /a/"), (false, "/a/"));
        assert_eq!(negations("/a/"), (false, "/a/"));
    }

    #[test]
    fn first_line_with_leading_space_is_dropped() {
        let mut log = Log::new("regexp", "f");
        let lines = table_lines(&mut log, " /a/ x\n z\n/b/ y  \n");
        assert_eq!(lines, vec![(3, "/b/ y".to_string())]);
        assert_eq!(
            log.messages,
            vec!["f: logical line must not start with whitespace: \" /a/ x z\"".to_string()]
        );
    }
}
