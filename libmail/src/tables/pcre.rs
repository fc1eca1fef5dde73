//! pcre: tables (pcre_table(5)): Perl-compatible patterns through PCRE2.
//! Like Debian's Postfix, matching is byte by byte (no UTF mode): `.`
//! matches one byte and case folding is ASCII only.
//!
//! The file syntax is shared with regexp: tables (`pattern_file`). Flags
//! that the pcre2 crate's builder cannot set are emulated: `A` by
//! accepting only a match that starts at the beginning of the key, `U` by
//! a leading `(?U)`, and `E` by writing `$` as `\z`.

use std::borrow::Cow;

use pcre2::bytes::{CaptureLocations, Regex, RegexBuilder};

use super::pattern_file::{
    Engine, PatternTable, ANCHORED, CASELESS, DOLLAR_ENDONLY, DOTALL, EXTENDED, MULTILINE, UNGREEDY,
};

/// A pcre: table, compiled when opened (`PatternTable::open`).
pub type PcreTable = PatternTable<Pcre>;

/// The PCRE2 options that the builder sets directly.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Options {
    pub(crate) caseless: bool,
    pub(crate) multi_line: bool,
    pub(crate) dotall: bool,
    pub(crate) extended: bool,
}

/// One compiled PCRE2 pattern with room for its match offsets, so that a
/// lookup allocates nothing.
pub(crate) struct Pcre {
    re: Regex,
    locs: CaptureLocations,
    anchored: bool,
}

impl Pcre {
    /// Compiles `pattern`; `anchored` accepts only matches at offset 0.
    pub(crate) fn build(
        pattern: &str,
        options: Options,
        anchored: bool,
    ) -> Result<Pcre, pcre2::Error> {
        let re = RegexBuilder::new()
            .caseless(options.caseless)
            .multi_line(options.multi_line)
            .dotall(options.dotall)
            .extended(options.extended)
            .jit_if_available(true)
            .build(pattern)?;
        let locs = re.capture_locations();
        Ok(Pcre { re, locs, anchored })
    }

    pub(crate) fn group_count(&self) -> usize {
        self.re.captures_len().saturating_sub(1)
    }

    /// Matches `key`. The first match PCRE finds is the leftmost one, so
    /// an anchored pattern matches exactly when that one starts at 0.
    pub(crate) fn find(&mut self, key: &[u8], captures: bool) -> Result<bool, String> {
        let start = if captures || self.anchored {
            self.re
                .captures_read(&mut self.locs, key)
                .map(|found| found.map(|m| m.start()))
        } else {
            self.re.is_match(key).map(|found| found.then_some(0))
        };
        match start {
            Ok(Some(start)) => Ok(!self.anchored || start == 0),
            Ok(None) => Ok(false),
            Err(err) => Err(message(&err)),
        }
    }

    pub(crate) fn offsets(&self, n: usize) -> Option<(usize, usize)> {
        self.locs.get(n)
    }
}

impl Engine for Pcre {
    const KIND: &'static str = "pcre";
    // Postfix turns DOTALL on by default: header values span lines.
    const DEFAULT_FLAGS: u32 = CASELESS | DOTALL;
    const FLAG_BITS: &'static [(char, u32)] = &[
        ('i', CASELESS),
        ('m', MULTILINE),
        ('s', DOTALL),
        ('x', EXTENDED),
        ('A', ANCHORED),
        ('E', DOLLAR_ENDONLY),
        ('U', UNGREEDY),
    ];
    // PCRE_EXTRA has no PCRE2 equivalent; Postfix 3.7 warns and goes on.
    const OBSOLETE_FLAGS: &'static [char] = &['X'];
    const SECOND_PATTERN: bool = false;
    const UNCLOSED_ACTION: &'static str = "ignoring";
    const ZERO_INDEX: &'static str = "out of range";

    fn compile(pattern: &str, flags: u32) -> Result<Self, String> {
        let options = Options {
            caseless: flags & CASELESS != 0,
            multi_line: flags & MULTILINE != 0,
            dotall: flags & DOTALL != 0,
            extended: flags & EXTENDED != 0,
        };
        let anchored = flags & ANCHORED != 0;
        let rewritten = rewrite(pattern, flags);
        Pcre::build(&rewritten, options, anchored).map_err(|err| {
            // Report the error at its offset in the pattern as written.
            let err = match rewritten {
                Cow::Owned(_) => Pcre::build(pattern, options, anchored).err().unwrap_or(err),
                Cow::Borrowed(_) => err,
            };
            let offset = err.offset().unwrap_or(0);
            format!("error in regex at offset {offset}: {}", message(&err))
        })
    }

    fn groups(&self) -> usize {
        self.group_count()
    }

    fn exec(&mut self, key: &[u8], captures: bool) -> Result<bool, String> {
        self.find(key, captures)
    }

    fn group(&self, n: usize) -> Option<(usize, usize)> {
        self.offsets(n)
    }
}

/// PCRE2's own text for an error, without the crate's prefix
/// ("PCRE2: error compiling pattern at offset 2: ").
pub(crate) fn message(err: &pcre2::Error) -> String {
    let text = err.to_string();
    match text.splitn(3, ": ").nth(2) {
        Some(own) => own.to_string(),
        None => text,
    }
}

/// The pattern with the `E` and `U` flags written into it.
fn rewrite(pattern: &str, flags: u32) -> Cow<'_, str> {
    let mut text = Cow::Borrowed(pattern);
    // DOLLAR_ENDONLY is ignored in multi-line mode.
    if flags & DOLLAR_ENDONLY != 0 && flags & MULTILINE == 0 {
        text = Cow::Owned(dollar_end_only(&text, flags & EXTENDED != 0));
    }
    if flags & UNGREEDY != 0 {
        // Option-setting verbs such as (*UTF) must stay first.
        let at = after_leading_verbs(&text);
        text = Cow::Owned(format!("{}(?U){}", &text[..at], &text[at..]));
    }
    text
}

/// Where the leading `(*VERB)` items end.
fn after_leading_verbs(pattern: &str) -> usize {
    let mut at = 0;
    while pattern[at..].starts_with("(*") {
        match pattern[at..].find(')') {
            Some(end) => at += end + 1,
            None => break,
        }
    }
    at
}

/// Replaces each `$` that is an anchor with `\z`, leaving escapes,
/// `\Q...\E` quotes, classes and comments alone.
fn dollar_end_only(pattern: &str, extended: bool) -> String {
    let bytes = pattern.as_bytes();
    let mut out = String::with_capacity(pattern.len() + 8);
    let mut copied = 0;
    let mut at = 0;
    while let Some(&b) = bytes.get(at) {
        at = match b {
            b'\\' if bytes.get(at + 1) == Some(&b'Q') => skip_past(bytes, at + 2, b"\\E"),
            b'\\' => at + 2,
            b'[' => skip_class(bytes, at + 1),
            b'(' if bytes[at..].starts_with(b"(?#") => skip_past(bytes, at, b")"),
            b'#' if extended => skip_past(bytes, at, b"\n"),
            b'$' => {
                out.push_str(&pattern[copied..at]);
                out.push_str("\\z");
                copied = at + 1;
                at + 1
            }
            _ => at + 1,
        };
    }
    out.push_str(&pattern[copied..]);
    out
}

/// The index after the first `end` at or after `from` (or the length).
fn skip_past(bytes: &[u8], from: usize, end: &[u8]) -> usize {
    let rest = bytes.get(from..).unwrap_or_default();
    match rest.windows(end.len()).position(|w| w == end) {
        Some(found) => from + found + end.len(),
        None => bytes.len(),
    }
}

/// The index after the `]` that closes a class opened just before `from`.
fn skip_class(bytes: &[u8], mut from: usize) -> usize {
    if bytes.get(from) == Some(&b'^') {
        from += 1;
    }
    // A `]` right after `[` or `[^` is a member, not the end.
    if bytes.get(from) == Some(&b']') {
        from += 1;
    }
    while let Some(&b) = bytes.get(from) {
        from = match b {
            b'\\' => from + 2,
            b'[' if bytes.get(from + 1) == Some(&b':') => skip_past(bytes, from + 2, b":]"),
            b']' => return from + 1,
            _ => from + 1,
        };
    }
    bytes.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tables::pattern_file::tests::TempFile;
    use crate::tables::pattern_file::Log;
    use crate::tables::{Table, TableError};

    /// Parses `text` as a pcre: table; returns the table and warnings.
    fn table(text: &str) -> (PatternTable<Pcre>, Vec<String>) {
        let mut log = Log::new("pcre", "f");
        let table = PatternTable::parse("f", text, &mut log);
        (table, log.messages)
    }

    fn lookup(text: &str, key: &str) -> Option<String> {
        table(text).0.lookup(key)
    }

    #[test]
    fn first_match_wins_and_substitutes() {
        let text = "/^(.*)-outgoing@(.*)$/ 550 Use ${1}@${2} instead\n/^x/ second\n/./ any\n";
        assert_eq!(
            lookup(text, "list-outgoing@example.com").as_deref(),
            Some("550 Use list@example.com instead")
        );
        assert_eq!(lookup(text, "xyz").as_deref(), Some("second"));
        assert_eq!(lookup(text, "").as_deref(), None);
    }

    #[test]
    fn lookaround_works() {
        let text = "/^(?!admin)\\w+@example\\.com$/ OK\n";
        assert_eq!(lookup(text, "bob@example.com").as_deref(), Some("OK"));
        assert_eq!(lookup(text, "admin@example.com"), None);
        let text = "/^(friend@(?!my\\.domain$).*)$/ 550 Stick $1\n";
        assert_eq!(
            lookup(text, "friend@x.org").as_deref(),
            Some("550 Stick friend@x.org")
        );
        assert_eq!(lookup(text, "friend@my.domain"), None);
    }

    #[test]
    fn case_insensitive_unless_i() {
        let text = "/^abc$/ folded\n/^xyz$/i exact\n";
        assert_eq!(lookup(text, "ABC").as_deref(), Some("folded"));
        assert_eq!(lookup(text, "XYZ"), None);
        assert_eq!(lookup(text, "xyz").as_deref(), Some("exact"));
    }

    #[test]
    fn dot_matches_newline_unless_s() {
        let text = "/^a.b$/ dotall\n";
        assert_eq!(lookup(text, "a\nb").as_deref(), Some("dotall"));
        assert_eq!(lookup("/^a.b$/s no\n", "a\nb"), None);
    }

    #[test]
    fn matching_is_bytewise() {
        // Debian's Postfix 3.7 does not use UTF mode.
        assert_eq!(
            lookup("/^.$/ one\n/^..$/ two\n", "é").as_deref(),
            Some("two")
        );
        assert_eq!(lookup("/^é$/ y\n", "É"), None);
    }

    #[test]
    fn other_flags() {
        assert_eq!(lookup("/b/A y\n", "ab"), None);
        assert_eq!(lookup("/b/A y\n", "ba").as_deref(), Some("y"));
        assert_eq!(lookup("/(a+)/U $1\n", "aaa").as_deref(), Some("a"));
        assert_eq!(lookup("/a b/x y\n", "ab").as_deref(), Some("y"));
        assert_eq!(lookup("/a$/ y\n", "a\n").as_deref(), Some("y"));
        assert_eq!(lookup("/a$/E y\n", "a\n"), None);
        assert_eq!(lookup("/a$/E y\n", "a").as_deref(), Some("y"));
        assert_eq!(lookup("/[$]$/E y\n", "$").as_deref(), Some("y"));
        assert_eq!(lookup("/^(a)$/m $1\n", "x\na").as_deref(), Some("a"));
    }

    #[test]
    fn obsolete_and_unknown_flags() {
        let (mut t, warnings) = table("/a/X y\n/b/q z\n");
        assert_eq!(t.lookup("a").as_deref(), Some("y"));
        assert_eq!(t.lookup("b"), None);
        assert_eq!(
            warnings,
            vec![
                "pcre map f, line 1: ignoring obsolete regexp option \"X\"",
                "pcre map f, line 2: unknown regexp option \"q\"",
            ]
        );
    }

    #[test]
    fn compile_error_names_line_and_offset() {
        let (mut t, warnings) = table("/ok/ fine\n/a(/ y\n/b/ z\n");
        assert_eq!(
            warnings,
            vec!["pcre map f, line 2: error in regex at offset 2: missing closing parenthesis"]
        );
        assert_eq!(t.lookup("b").as_deref(), Some("z"));
        // The offset is in the pattern as written, not as rewritten.
        let (_, warnings) = table("/a(/U y\n");
        assert_eq!(
            warnings,
            vec!["pcre map f, line 1: error in regex at offset 2: missing closing parenthesis"]
        );
    }

    #[test]
    fn substitution_checks() {
        let (mut t, warnings) = table("/(a)/ $2\n!/(a)/ $1\n/(a)/ x$0\n/a/ y\n");
        assert_eq!(t.lookup("a").as_deref(), Some("y"));
        assert_eq!(
            warnings,
            vec![
                "pcre map f, line 1: out of range replacement index \"2\"",
                "pcre map f, line 2: $number found in negative match replacement text: \
                 skipping this rule",
                "pcre map f, line 3: out of range replacement index \"0\"",
                "pcre map f, line 3: bad replacement syntax: skipping this rule",
            ]
        );
        assert_eq!(
            lookup("/(a)|(b)/ [$1][$2]\n", "b").as_deref(),
            Some("[][b]")
        );
    }

    #[test]
    fn no_second_pattern_and_unclosed_wording() {
        let (_, warnings) = table("/a/!/b/ y\n/a y\n");
        assert_eq!(
            warnings,
            vec![
                "pcre map f, line 1: unknown regexp option \"!\"",
                "pcre map f, line 2: no closing regexp delimiter \"/\": ignoring this rule",
            ]
        );
    }

    #[test]
    fn if_endif() {
        let text = "if /@example\\.com$/\n/^admin@/ REJECT\nendif\n/^admin@/ OK\n";
        assert_eq!(lookup(text, "admin@example.com").as_deref(), Some("REJECT"));
        assert_eq!(lookup(text, "admin@other.org").as_deref(), Some("OK"));
        let (mut t, warnings) = table("if /a/ x\nif /b/\n/./ y\n");
        assert_eq!(t.lookup("ab").as_deref(), Some("y"));
        assert_eq!(t.lookup("b"), None);
        assert_eq!(
            warnings,
            vec![
                "pcre map f, line 1: ignoring extra text after IF statement: \"x\"",
                "pcre map f, line 1: do not prepend whitespace to statements between IF and ENDIF",
                "pcre map f, line 2: IF has no matching ENDIF",
                "pcre map f, line 1: IF has no matching ENDIF",
            ]
        );
    }

    #[test]
    fn dollar_rewrite_skips_escapes_classes_and_comments() {
        assert_eq!(dollar_end_only("a$", false), "a\\z");
        assert_eq!(dollar_end_only("\\$[$]$", false), "\\$[$]\\z");
        assert_eq!(dollar_end_only("[]$]$", false), "[]$]\\z");
        assert_eq!(dollar_end_only("\\Q$\\E$(?#$)", false), "\\Q$\\E\\z(?#$)");
        assert_eq!(dollar_end_only("a$ # $", true), "a\\z # $");
        assert_eq!(after_leading_verbs("(*UTF)(*UCP)a"), 12);
    }

    #[test]
    fn opens_files() {
        let file = TempFile::new("pcre", "/^(\\w+)@/ user=$1\n");
        let mut t = PcreTable::open(file.path()).unwrap();
        assert!(t.is_pattern());
        assert_eq!(
            Table::lookup(&mut t, "Bob@x").unwrap().as_deref(),
            Some("user=Bob")
        );
        assert!(matches!(
            PcreTable::open("/nonexistent/pcre"),
            Err(TableError::Open { .. })
        ));
    }
}
