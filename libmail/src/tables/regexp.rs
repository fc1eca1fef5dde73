//! regexp: tables (regexp_table(5)): POSIX regular expressions as glibc's
//! regcomp(3) reads them, matched byte by byte like Postfix does.
//!
//! Patterns are translated from POSIX syntax (extended by default, basic
//! with the `x` flag) into the `regex` crate's syntax, so that POSIX
//! bracket expressions (`[\d]` is a backslash or a `d`), `\<`, `\>` and
//! literal braces mean what they mean to Postfix. The `regex` crate has
//! no back-references; the rare pattern that uses `\1` goes to PCRE2.
//! Syntax errors are worded like glibc's regerror(3), which Postfix
//! prints. The file syntax is shared with pcre: tables (`pattern_file`).
//!
//! One known difference: where alternatives match different lengths,
//! glibc takes the longest overall match (`(foo|foobar)` captures
//! `foobar`) and the `regex` crate the first alternative (`foo`). Whether
//! a rule matches is the same; only a `$n` result can differ.

use std::fmt::Write;

use regex::bytes::{CaptureLocations, Regex, RegexBuilder};

use super::pattern_file::{Engine, PatternTable, CASELESS, EXTENDED, MULTILINE};
use super::pcre::{self, Pcre};

/// A regexp: table, compiled when opened (`PatternTable::open`).
pub type RegexpTable = PatternTable<Posix>;

/// A compiled POSIX pattern with room for its match offsets.
pub(crate) enum Posix {
    Rust {
        re: Regex,
        locs: CaptureLocations,
    },
    /// Patterns with back-references.
    Pcre(Pcre),
}

impl Engine for Posix {
    const KIND: &'static str = "regexp";
    const DEFAULT_FLAGS: u32 = CASELESS | EXTENDED;
    const FLAG_BITS: &'static [(char, u32)] = &[('i', CASELESS), ('m', MULTILINE), ('x', EXTENDED)];
    const OBSOLETE_FLAGS: &'static [char] = &[];
    const SECOND_PATTERN: bool = true;
    const UNCLOSED_ACTION: &'static str = "skipping";
    const ZERO_INDEX: &'static str = "out-of-range";

    fn compile(pattern: &str, flags: u32) -> Result<Self, String> {
        let syntax = Syntax {
            extended: flags & EXTENDED != 0,
            newline: flags & MULTILINE != 0,
        };
        let caseless = flags & CASELESS != 0;
        let rust = translate(pattern.as_bytes(), syntax, Target::Rust)?;
        if !rust.backrefs {
            return compile_rust(&rust.pattern, syntax, caseless);
        }
        let translated = translate(pattern.as_bytes(), syntax, Target::Pcre)?;
        let options = pcre::Options {
            caseless,
            multi_line: syntax.newline,
            dotall: !syntax.newline,
            extended: false,
        };
        match Pcre::build(&translated.pattern, options, false) {
            Ok(compiled) => Ok(Posix::Pcre(compiled)),
            Err(err) => Err(pcre::message(&err)),
        }
    }

    fn groups(&self) -> usize {
        match self {
            Posix::Rust { re, .. } => re.captures_len().saturating_sub(1),
            Posix::Pcre(compiled) => compiled.group_count(),
        }
    }

    fn exec(&mut self, key: &[u8], captures: bool) -> Result<bool, String> {
        match self {
            Posix::Rust { re, locs } if captures => Ok(re.captures_read(locs, key).is_some()),
            Posix::Rust { re, .. } => Ok(re.is_match(key)),
            Posix::Pcre(compiled) => compiled.find(key, captures),
        }
    }

    fn group(&self, n: usize) -> Option<(usize, usize)> {
        match self {
            Posix::Rust { locs, .. } => locs.get(n),
            Posix::Pcre(compiled) => compiled.offsets(n),
        }
    }
}

/// Builds the `regex` crate's matcher: byte-wise, ASCII case folding,
/// and REG_NEWLINE's rules for `.`, `^` and `$` under the `m` flag.
fn compile_rust(pattern: &str, syntax: Syntax, caseless: bool) -> Result<Posix, String> {
    let built = RegexBuilder::new(pattern)
        .unicode(false)
        .case_insensitive(caseless)
        .multi_line(syntax.newline)
        .dot_matches_new_line(!syntax.newline)
        .build();
    match built {
        Ok(re) => {
            let locs = re.capture_locations();
            Ok(Posix::Rust { re, locs })
        }
        Err(regex::Error::CompiledTooBig(_)) => Err(ESIZE.to_string()),
        Err(err) => Err(last_error_line(&err.to_string())),
    }
}

/// The `error: ...` line of the `regex` crate's multi-line message.
fn last_error_line(text: &str) -> String {
    let mut lines = text.lines().filter_map(|l| l.strip_prefix("error: "));
    lines.next_back().unwrap_or(text).to_string()
}

// glibc's regerror(3) texts, which Postfix prints.
const EBRACK: &str = "Unmatched [, [^, [:, [., or [=";
const EPAREN: &str = "Unmatched ( or \\(";
const EBRACE: &str = "Unmatched \\{";
const BADBR: &str = "Invalid content of \\{\\}";
const BADRPT: &str = "Invalid preceding regular expression";
const ERANGE: &str = "Invalid range end";
const ECTYPE: &str = "Invalid character class name";
const ECOLLATE: &str = "Invalid collation character";
const EESCAPE: &str = "Trailing backslash";
const ESUBREG: &str = "Invalid back reference";
const ESIZE: &str = "Regular expression too big";

/// The largest count in `{m,n}` (RE_DUP_MAX).
const DUP_MAX: u32 = 0x7fff;

/// The character class names of the POSIX locale.
const CLASSES: &[&str] = &[
    "alnum", "alpha", "blank", "cntrl", "digit", "graph", "lower", "print", "punct", "space",
    "upper", "xdigit",
];

/// How a pattern is read: ERE or BRE, and REG_NEWLINE.
#[derive(Debug, Clone, Copy)]
struct Syntax {
    extended: bool,
    newline: bool,
}

/// The engine a translation is written for; they differ in a few spellings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Rust,
    Pcre,
}

struct Translation {
    pattern: String,
    /// The pattern has back-references (only PCRE2 can match it).
    backrefs: bool,
}

/// Translates a POSIX pattern, or gives glibc's error text.
fn translate(src: &[u8], syntax: Syntax, target: Target) -> Result<Translation, String> {
    let mut translator = Translator {
        src,
        pos: 0,
        syntax,
        target,
        out: String::with_capacity(src.len() * 2),
        atom: None,
        repeated: false,
        at_start: true,
        open: Vec::new(),
        closed: Vec::new(),
        backrefs: false,
    };
    translator.run().map_err(str::to_string)?;
    Ok(Translation {
        pattern: translator.out,
        backrefs: translator.backrefs,
    })
}

type Step = Result<(), &'static str>;

/// One bracket-expression member.
enum Symbol {
    /// A byte, or `[.c.]`: either can be a range endpoint.
    Byte(u8),
    /// `[=c=]`, which cannot.
    Equivalent(u8),
    Class(&'static str),
}

struct Translator<'a> {
    src: &'a [u8],
    pos: usize,
    syntax: Syntax,
    target: Target,
    out: String,
    /// Where the item that a quantifier would repeat starts in `out`;
    /// `None` where POSIX has nothing to repeat (at the start, after `(`,
    /// `|` or an anchor).
    atom: Option<usize>,
    /// That item already carries a quantifier: POSIX `a+?` is `(a+)?`.
    repeated: bool,
    /// At the start of the pattern, a group or an alternative, where a
    /// BRE `^` is an anchor.
    at_start: bool,
    /// Groups not closed yet: (offset in `out`, group number).
    open: Vec<(usize, usize)>,
    /// Whether each group is closed; only those can be referred back to.
    closed: Vec<bool>,
    backrefs: bool,
}

impl Translator<'_> {
    fn run(&mut self) -> Step {
        while let Some(&c) = self.src.get(self.pos) {
            self.pos += 1;
            self.token(c)?;
        }
        if self.open.is_empty() {
            Ok(())
        } else {
            Err(EPAREN)
        }
    }

    fn token(&mut self, c: u8) -> Step {
        let ere = self.syntax.extended;
        match c {
            b'\\' => self.escape(),
            b'[' => self.bracket(),
            b'.' => self.item("."),
            b'*' => self.star(),
            b'^' => self.caret(),
            b'$' => self.dollar(),
            b'+' if ere => self.quantify("+"),
            b'?' if ere => self.quantify("?"),
            b'{' if ere => self.interval(),
            b'(' if ere => self.open_group(),
            // An unmatched `)` is an ordinary character in an ERE.
            b')' if ere && !self.open.is_empty() => self.close_group(),
            b'|' if ere => self.alternate(),
            _ => self.literal(c),
        }
    }

    fn escape(&mut self) -> Step {
        let Some(&c) = self.src.get(self.pos) else {
            return Err(EESCAPE);
        };
        self.pos += 1;
        let bre = !self.syntax.extended;
        match c {
            b'1'..=b'9' => self.backref(usize::from(c - b'0')),
            b'w' => self.item("\\w"),
            b'W' => self.item("\\W"),
            b's' => self.item("\\s"),
            b'S' => self.item("\\S"),
            b'b' => self.anchor("\\b"),
            b'B' => self.anchor("\\B"),
            b'<' => self.anchor(self.word_start()),
            b'>' => self.anchor(self.word_end()),
            b'`' => self.anchor("\\A"),
            b'\'' => self.anchor("\\z"),
            b'(' if bre => self.open_group(),
            b')' if bre => self.close_group(),
            b'|' if bre => self.alternate(),
            b'{' if bre => self.interval(),
            b'+' | b'?' if bre => self.gnu_repeat(c),
            // Any other escaped character stands for itself.
            _ => self.literal(c),
        }
    }

    /// GNU's BRE `\+` and `\?`; with nothing to repeat, literal.
    fn gnu_repeat(&mut self, c: u8) -> Step {
        match (self.atom, c) {
            (None, _) => self.literal(c),
            (Some(_), b'+') => self.quantify("+"),
            (Some(_), _) => self.quantify("?"),
        }
    }

    fn word_start(&self) -> &'static str {
        match self.target {
            Target::Rust => "\\b{start}",
            Target::Pcre => "\\b(?=\\w)",
        }
    }

    fn word_end(&self) -> &'static str {
        match self.target {
            Target::Rust => "\\b{end}",
            Target::Pcre => "\\b(?<=\\w)",
        }
    }

    /// Starts an item that a quantifier can repeat.
    fn begin_item(&mut self) {
        self.atom = Some(self.out.len());
        self.repeated = false;
        self.at_start = false;
    }

    fn item(&mut self, text: &str) -> Step {
        self.begin_item();
        self.out.push_str(text);
        Ok(())
    }

    fn literal(&mut self, c: u8) -> Step {
        self.begin_item();
        push_byte(&mut self.out, c);
        Ok(())
    }

    /// A zero-width assertion, which nothing may repeat.
    fn anchor(&mut self, text: &str) -> Step {
        self.out.push_str(text);
        self.atom = None;
        self.repeated = false;
        self.at_start = false;
        Ok(())
    }

    /// `^` is always an anchor in an ERE; in a BRE only at a start.
    fn caret(&mut self) -> Step {
        if self.syntax.extended || self.at_start {
            self.anchor("^")
        } else {
            self.literal(b'^')
        }
    }

    /// `$` is always an anchor in an ERE; in a BRE only at an end.
    fn dollar(&mut self) -> Step {
        let rest = &self.src[self.pos..];
        let bre_end = rest.is_empty() || rest.starts_with(b"\\)") || rest.starts_with(b"\\|");
        if !self.syntax.extended && !bre_end {
            return self.literal(b'$');
        }
        // PCRE's `$` would also match before a final newline.
        if self.target == Target::Pcre && !self.syntax.newline {
            self.anchor("\\z")
        } else {
            self.anchor("$")
        }
    }

    /// `*`; in a BRE literal where nothing precedes it, and (as in glibc)
    /// an error after another `*` or interval.
    fn star(&mut self) -> Step {
        if self.syntax.extended {
            return self.quantify("*");
        }
        match (self.atom, self.repeated) {
            (None, _) => self.literal(b'*'),
            (Some(_), true) => Err(BADRPT),
            (Some(_), false) => self.quantify("*"),
        }
    }

    fn quantify(&mut self, quantifier: &str) -> Step {
        let Some(start) = self.atom else {
            return Err(BADRPT);
        };
        if self.repeated {
            self.out.insert_str(start, "(?:");
            self.out.push(')');
        }
        self.out.push_str(quantifier);
        self.repeated = true;
        Ok(())
    }

    /// `{m}`, `{m,}`, `{m,n}` or `{,n}` after the opening brace.
    fn interval(&mut self) -> Step {
        let bre_stacked = !self.syntax.extended && self.repeated;
        if self.atom.is_none() || bre_stacked {
            return Err(BADRPT);
        }
        let min = self.number();
        let comma = self.eat(b",");
        let max = if comma { self.number() } else { min };
        let close: &[u8] = if self.syntax.extended { b"}" } else { b"\\}" };
        if !self.eat(close) {
            return Err(if self.pos >= self.src.len() {
                EBRACE
            } else {
                BADBR
            });
        }
        if min.is_none() && !comma {
            return Err(BADBR);
        }
        let min = min.unwrap_or(0);
        match max {
            Some(max) if max < min => Err(BADBR),
            _ if min.max(max.unwrap_or(0)) > DUP_MAX => Err(ESIZE),
            Some(max) if comma => self.quantify(&format!("{{{min},{max}}}")),
            Some(_) => self.quantify(&format!("{{{min}}}")),
            None => self.quantify(&format!("{{{min},}}")),
        }
    }

    /// Decimal digits at the current position, saturating.
    fn number(&mut self) -> Option<u32> {
        let rest = &self.src[self.pos..];
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 {
            return None;
        }
        self.pos += digits;
        let value = rest[..digits].iter().fold(0u32, |n, d| {
            n.saturating_mul(10).saturating_add(u32::from(d - b'0'))
        });
        Some(value)
    }

    fn eat(&mut self, text: &[u8]) -> bool {
        let found = self.src[self.pos..].starts_with(text);
        if found {
            self.pos += text.len();
        }
        found
    }

    fn open_group(&mut self) -> Step {
        self.closed.push(false);
        self.open.push((self.out.len(), self.closed.len()));
        self.out.push('(');
        self.atom = None;
        self.repeated = false;
        self.at_start = true;
        Ok(())
    }

    fn close_group(&mut self) -> Step {
        // glibc words an unmatched BRE `\)` like an unmatched `\(`.
        let Some((start, number)) = self.open.pop() else {
            return Err(EPAREN);
        };
        self.out.push(')');
        if let Some(closed) = self.closed.get_mut(number - 1) {
            *closed = true;
        }
        self.atom = Some(start);
        self.repeated = false;
        self.at_start = false;
        Ok(())
    }

    fn alternate(&mut self) -> Step {
        self.out.push('|');
        self.atom = None;
        self.repeated = false;
        self.at_start = true;
        Ok(())
    }

    fn backref(&mut self, n: usize) -> Step {
        if !self.closed.get(n - 1).copied().unwrap_or(false) {
            return Err(ESUBREG);
        }
        self.backrefs = true;
        // `\g{n}` so that a digit after it is not read as part of it.
        self.item(&format!("\\g{{{n}}}"))
    }

    /// A bracket expression after its `[`. Inside it a backslash is an
    /// ordinary character, and `]` first is a member.
    fn bracket(&mut self) -> Step {
        let negate = self.eat(b"^");
        let mut class = String::from(if negate { "[^" } else { "[" });
        let mut first = true;
        loop {
            let Some(&c) = self.src.get(self.pos) else {
                return Err(EBRACK);
            };
            self.pos += 1;
            if c == b']' && !first {
                break;
            }
            first = false;
            self.bracket_member(c, &mut class)?;
        }
        // Under REG_NEWLINE a non-matching list does not match a newline.
        if negate && self.syntax.newline {
            class.push_str("\\n");
        }
        class.push(']');
        self.item(&class)
    }

    /// One member starting with `c`: a byte, a range, or `[:class:]`.
    fn bracket_member(&mut self, c: u8, class: &mut String) -> Step {
        let low = match self.symbol(c)? {
            Symbol::Class(name) => {
                let _ = write!(class, "[:{name}:]");
                return self.no_range();
            }
            Symbol::Equivalent(b) => {
                push_byte(class, b);
                return self.no_range();
            }
            Symbol::Byte(low) => low,
        };
        push_byte(class, low);
        let Some(c) = self.range_end() else {
            return Ok(());
        };
        let Symbol::Byte(high) = self.symbol(c)? else {
            return Err(ERANGE);
        };
        if high < low {
            return Err(ERANGE);
        }
        class.push('-');
        push_byte(class, high);
        Ok(())
    }

    /// The first byte of a range end, when `-` and one follow.
    fn range_end(&mut self) -> Option<u8> {
        match self.src.get(self.pos..self.pos + 2)? {
            [b'-', c] if *c != b']' => {
                self.pos += 2;
                Some(*c)
            }
            _ => None,
        }
    }

    /// After a class or `[=c=]`, which cannot start a range.
    fn no_range(&mut self) -> Step {
        match self.range_end() {
            Some(_) => Err(ERANGE),
            None => Ok(()),
        }
    }

    /// `c` itself, or the `[:name:]`, `[=c=]` or `[.c.]` it starts.
    fn symbol(&mut self, c: u8) -> Result<Symbol, &'static str> {
        let kind = match (c, self.src.get(self.pos)) {
            (b'[', Some(&kind @ (b':' | b'=' | b'.'))) => kind,
            _ => return Ok(Symbol::Byte(c)),
        };
        let rest = &self.src[self.pos + 1..];
        let Some(len) = rest.windows(2).position(|w| w == [kind, b']']) else {
            return Err(EBRACK);
        };
        let name = &rest[..len];
        self.pos += 1 + len + 2;
        if kind == b':' {
            let found = CLASSES.iter().find(|class| class.as_bytes() == name);
            return found.map(|class| Symbol::Class(class)).ok_or(ECTYPE);
        }
        match (name, kind) {
            ([one], b'=') => Ok(Symbol::Equivalent(*one)),
            ([one], _) => Ok(Symbol::Byte(*one)),
            _ => Err(ECOLLATE),
        }
    }
}

/// Appends byte `b` as a literal, escaped for both the `regex` crate and
/// PCRE2 (inside and outside classes); other bytes as `\xHH`, which
/// both match byte-wise.
fn push_byte(out: &mut String, b: u8) {
    const META: &[u8] = b"\\.+*?()|[]{}^$#&-~";
    if b.is_ascii_alphanumeric() {
        out.push(char::from(b));
    } else if b.is_ascii_graphic() {
        if META.contains(&b) {
            out.push('\\');
        }
        out.push(char::from(b));
    } else {
        let _ = write!(out, "\\x{b:02X}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tables::pattern_file::tests::TempFile;
    use crate::tables::pattern_file::Log;
    use crate::tables::Table;

    /// Parses `text` as a regexp: table; returns the table and warnings.
    fn table(text: &str) -> (PatternTable<Posix>, Vec<String>) {
        let mut log = Log::new("regexp", "f");
        let table = PatternTable::parse("f", text, &mut log);
        (table, log.messages)
    }

    fn lookup(text: &str, key: &str) -> Option<String> {
        table(text).0.lookup(key)
    }

    fn ere(pattern: &str) -> Result<String, String> {
        let syntax = Syntax {
            extended: true,
            newline: false,
        };
        translate(pattern.as_bytes(), syntax, Target::Rust).map(|t| t.pattern)
    }

    /// Whether `pattern` (default flags) matches `key`.
    fn matches(pattern: &str, key: &str) -> bool {
        lookup(&format!("/{pattern}/ y\n"), key).is_some()
    }

    #[test]
    fn first_match_wins() {
        let text = "/^postmaster@/ OK\n/[%!@].*[%!@]/ 550 routing\n/@/ third\n";
        assert_eq!(lookup(text, "postmaster@a@b").as_deref(), Some("OK"));
        assert_eq!(lookup(text, "a@b@c").as_deref(), Some("550 routing"));
        assert_eq!(lookup(text, "a@b").as_deref(), Some("third"));
        assert_eq!(lookup(text, "ab"), None);
    }

    #[test]
    fn case_insensitive_unless_i() {
        let text = "/^abc$/ folded\n/^xyz$/i exact\n";
        assert_eq!(lookup(text, "ABC").as_deref(), Some("folded"));
        assert_eq!(lookup(text, "XYZ"), None);
        assert_eq!(lookup(text, "xyz").as_deref(), Some("exact"));
    }

    #[test]
    fn substitution() {
        let text = "/^(a)(b)?/ x$1-$2-$$-${1}-$(1)y\n";
        assert_eq!(lookup(text, "ab").as_deref(), Some("xa-b-$-a-ay"));
        assert_eq!(lookup(text, "a").as_deref(), Some("xa--$-a-ay"));
        // Case is kept as the key has it.
        assert_eq!(lookup(text, "AB").as_deref(), Some("xA-B-$-A-Ay"));
        let ten = "/(a)(b)(c)(d)(e)(f)(g)(h)(i)(j)/ x$10\n";
        assert_eq!(lookup(ten, "abcdefghij").as_deref(), Some("xj"));
        assert_eq!(lookup("/(a)/ x$$1\n", "a").as_deref(), Some("x$1"));
    }

    #[test]
    fn negative_rules() {
        assert_eq!(lookup("!/a/ no a\n", "b").as_deref(), Some("no a"));
        assert_eq!(lookup("!/a/ no a\n", "a"), None);
        assert_eq!(lookup("!!/a/ y\n", "a").as_deref(), Some("y"));
        assert_eq!(lookup("! ! /a/ y\n", "a").as_deref(), Some("y"));
        assert_eq!(lookup("!/(a)/ $$\n", "b").as_deref(), Some("$"));
        // The undocumented second pattern: match the first, not the second.
        let text = "/a/!/b/ y\n";
        assert_eq!(lookup(text, "a").as_deref(), Some("y"));
        assert_eq!(lookup(text, "ab"), None);
    }

    #[test]
    fn delimiters() {
        assert_eq!(lookup("|a/b| y\n", "a/b").as_deref(), Some("y"));
        assert_eq!(
            lookup("~^[[:alnum:]+/]{4,}$~ OK\n", "ab+/").as_deref(),
            Some("OK")
        );
        assert_eq!(lookup("/a\\/b/ y\n", "a/b").as_deref(), Some("y"));
        // `#` starts a comment, not a pattern.
        assert_eq!(lookup("#a# x\n", "a"), None);
        // Postfix takes one byte as the delimiter, so `§` cannot be one.
        let (_, warnings) = table("§a§ y\n§a y\n/a/é y\n");
        assert_eq!(
            warnings,
            vec![
                "regexp map f, line 1: unknown regexp option \"?\": skipping this rule",
                "regexp map f, line 2: no closing regexp delimiter \"?\": skipping this rule",
                "regexp map f, line 3: unknown regexp option \"?\"",
            ]
        );
    }

    #[test]
    fn bad_regexp_stops_the_table() {
        let file = TempFile::new("badre", "/ok/ fine\n/a(b/ x\n/c/q y\n");
        let err = RegexpTable::open(file.path()).err().unwrap();
        assert_eq!(
            err.to_string(),
            format!("regexp map {}, line 2: Unmatched ( or \\(", file.path())
        );
    }

    #[test]
    fn if_endif_nest() {
        let text = "if /a/\nif !/c/\n/b/ ab-not-c\nendif\n/./ a\nendif\n/./ other\n";
        assert_eq!(lookup(text, "ab").as_deref(), Some("ab-not-c"));
        assert_eq!(lookup(text, "abc").as_deref(), Some("a"));
        assert_eq!(lookup(text, "b").as_deref(), Some("other"));
        assert_eq!(lookup("IF /a/\n/b/ x\nENDIF\n", "ab").as_deref(), Some("x"));
        assert_eq!(lookup("if/a/\n/b/ x\nendif\n", "b"), None);
    }

    #[test]
    fn if_endif_mistakes_are_warnings() {
        let (mut t, warnings) = table("endif\nif /a/\n/b/ x\nendif foo\nendif\n");
        assert_eq!(t.lookup("ab").as_deref(), Some("x"));
        assert_eq!(
            warnings,
            vec![
                "regexp map f, line 1: ignoring ENDIF without matching IF",
                "regexp map f, line 4: ignoring extra text after ENDIF",
                "regexp map f, line 5: ignoring ENDIF without matching IF",
            ]
        );
        let (mut t, warnings) = table("if /a/\n/b/ x\n");
        assert_eq!(t.lookup("b"), None);
        assert_eq!(
            warnings,
            vec!["regexp map f, line 1: IF has no matching ENDIF"]
        );
    }

    #[test]
    fn bad_rules_are_skipped_with_postfix_warnings() {
        let text = "/a(/ x\n/a/q x\n/(a)/ $2\n!/(a)/ $1\n/a x\naab x\n/a/ ${1\n/(a)/ x$0\n/./ ok\n";
        let (mut t, warnings) = table(text);
        assert_eq!(t.lookup("a").as_deref(), Some("ok"));
        assert_eq!(
            warnings,
            vec![
                "regexp map f, line 1: Unmatched ( or \\(",
                "regexp map f, line 2: unknown regexp option \"q\"",
                "regexp map f, line 3: out of range replacement index \"2\"",
                "regexp map f, line 4: $number found in negative match replacement text: \
                 skipping this rule",
                "regexp map f, line 5: no closing regexp delimiter \"/\": skipping this rule",
                "regexp map f, line 6: ignoring unrecognized request",
                "truncated macro reference: \"${1\"",
                "regexp map f, line 7: bad replacement syntax: skipping this rule",
                "regexp map f, line 8: out-of-range replacement index \"0\"",
                "regexp map f, line 8: bad replacement syntax: skipping this rule",
            ]
        );
    }

    #[test]
    fn empty_result_is_allowed_with_a_warning() {
        let (mut t, warnings) = table("/a/\n");
        assert_eq!(t.lookup("a").as_deref(), Some(""));
        assert_eq!(
            warnings,
            vec!["regexp map f, line 1: no replacement text: using empty string"]
        );
    }

    #[test]
    fn multi_line_results_join() {
        let text = "/^noddy@/\n 550 This user is\n a funny one.\n";
        assert_eq!(
            lookup(text, "noddy@x").as_deref(),
            Some("550 This user is a funny one.")
        );
    }

    #[test]
    fn posix_brackets() {
        assert!(matches("^[[:alpha:]]+$", "Foo"));
        assert!(!matches("^[[:alpha:]]+$", "f1"));
        // A backslash is an ordinary character in a bracket expression.
        assert!(matches("^[\\d]$", "d"));
        assert!(matches("^[\\d]$", "\\"));
        assert!(!matches("^[\\d]$", "1"));
        assert!(matches("^[]a]$", "]"));
        assert!(matches("^[^]a]$", "b"));
        assert!(matches("^[a-]$", "-"));
        assert!(matches("^[[.-.]]$", "-"));
        assert!(matches("^[a[b]+$", "[ab"));
        assert!(matches("^[a&&b]+$", "&"));
    }

    #[test]
    fn gnu_escapes_and_anchors() {
        assert!(matches("\\<foo\\>", "a foo b"));
        assert!(!matches("\\<foo\\>", "afoob"));
        assert!(matches("\\bfoo\\b", "a foo b"));
        assert!(matches("\\w+\\s\\S", "foo b"));
        assert!(matches("^\\W$", "%"));
        assert!(matches("^x\\%y$", "x%y"));
        assert!(matches("^a\\+$", "a+"));
        assert!(!matches("^a\\+$", "aa"));
        assert!(matches("^\\^a", "^a"));
        assert!(!matches("a^b", "a^b"));
        assert!(matches("^(a)\\1$", "aa"));
        assert!(!matches("^(a)\\1$", "ab"));
        // Back-references go to PCRE2 with POSIX meanings kept.
        assert_eq!(lookup("/^(a)\\1$/ [$1]\n", "AA").as_deref(), Some("[A]"));
        assert!(!matches("^(a)\\1$", "aa\n"));
        assert!(matches("\\<(a)\\1\\>", "x aa"));
    }

    #[test]
    fn repetition() {
        assert!(matches("^a{,2}$", "aa"));
        assert!(!matches("^a{,2}$", "aaa"));
        assert!(matches("^a{,}$", ""));
        assert!(matches("^x{1}{2}$", "xx"));
        assert!(matches("a**", "zz"));
        // POSIX `a+?` is `(a+)?`, not a lazy `a+`.
        assert_eq!(lookup("/^(a+?)/ [$1]\n", "aaa").as_deref(), Some("[aaa]"));
        assert!(matches("a)", "a)"));
        assert!(matches("a|", "zz"));
    }

    #[test]
    fn glibc_error_texts() {
        let cases = [
            ("*a", BADRPT),
            ("+a", BADRPT),
            ("a|*b", BADRPT),
            ("(*a)", BADRPT),
            ("^*a", BADRPT),
            ("{1}", BADRPT),
            ("a{", EBRACE),
            ("a{1", EBRACE),
            ("a{x}", BADBR),
            ("a{2,1}", BADBR),
            ("a{32768}", ESIZE),
            ("[a", EBRACK),
            ("[[:foo:]]", ECTYPE),
            ("[b-a]", ERANGE),
            ("(a", EPAREN),
            ("(a)\\2", ESUBREG),
            ("(a\\1)", ESUBREG),
            ("a\\", EESCAPE),
            ("[[:alpha:]-z]", ERANGE),
            ("[a-[:alpha:]]", ERANGE),
            ("[[=a=]-z]", ERANGE),
            ("[a-[=z=]]", ERANGE),
        ];
        for pattern in ["[[:alpha:]-]", "[[.a.]-z]", "a**", "a+*", "a*{2}"] {
            assert!(ere(pattern).is_ok(), "{pattern}");
        }
        let bre = |pattern: &str| {
            let syntax = Syntax {
                extended: false,
                newline: false,
            };
            translate(pattern.as_bytes(), syntax, Target::Rust).map(|t| t.pattern)
        };
        for pattern in ["a**", "a*\\{2\\}", "a\\{2\\}*", "a\\+*"] {
            assert_eq!(bre(pattern), Err(BADRPT.to_string()), "{pattern}");
        }
        assert_eq!(bre("a\\)"), Err(EPAREN.to_string()));
        assert!(bre("^**").is_ok());
        assert!(bre("a*\\+").is_ok());
        for (pattern, error) in cases {
            assert_eq!(ere(pattern), Err(error.to_string()), "{pattern}");
        }
    }

    #[test]
    fn basic_syntax_with_x() {
        let text = "/^a+$/x y\n";
        assert_eq!(lookup(text, "a+").as_deref(), Some("y"));
        assert_eq!(lookup(text, "aa"), None);
        assert_eq!(
            lookup("/^\\(a\\)\\{2\\}$/x $1\n", "aa").as_deref(),
            Some("a")
        );
        assert_eq!(lookup("/^(a)$/x y\n", "(a)").as_deref(), Some("y"));
        assert_eq!(lookup("/^a\\+$/x y\n", "aa").as_deref(), Some("y"));
        assert_eq!(lookup("/^a\\|b$/x y\n", "b").as_deref(), Some("y"));
        assert_eq!(lookup("/^a|b$/x y\n", "a|b").as_deref(), Some("y"));
        assert_eq!(lookup("/^*a$/x y\n", "*a").as_deref(), Some("y"));
        assert_eq!(lookup("/a$b/x y\n", "a$b").as_deref(), Some("y"));
        assert_eq!(lookup("/^^a/x y\n", "^a").as_deref(), Some("y"));
        assert_eq!(lookup("/a\\|^b/x y\n", "b").as_deref(), Some("y"));
        assert_eq!(lookup("/x$\\|y/x y\n", "x").as_deref(), Some("y"));
    }

    #[test]
    fn newlines_and_m() {
        // Without REG_NEWLINE `.` matches a newline and `$` only the end.
        assert!(matches("^a.b$", "a\nb"));
        assert!(!matches("^a$", "a\nb"));
        assert!(!matches("a$", "a\n"));
        assert_eq!(lookup("/^b$/m y\n", "a\nb").as_deref(), Some("y"));
        assert_eq!(lookup("/a.b/m y\n", "a\nb"), None);
        assert_eq!(lookup("/a[^x]b/m y\n", "a\nb"), None);
    }

    #[test]
    fn matching_is_bytewise() {
        assert_eq!(
            lookup("/^.$/ one\n/^..$/ two\n", "é").as_deref(),
            Some("two")
        );
        assert!(!matches("^é$", "É"));
        assert!(matches("^é$", "é"));
        assert!(!matches("^\\w+$", "é"));
    }

    #[test]
    fn opens_files() {
        let file = TempFile::new(
            "regexp",
            "/^(.*)-outgoing@(.*)$/ 550 Use ${1}@${2} instead\n",
        );
        let mut t = RegexpTable::open(file.path()).unwrap();
        assert!(t.is_pattern());
        assert_eq!(
            Table::lookup(&mut t, "list-outgoing@example.com")
                .unwrap()
                .as_deref(),
            Some("550 Use list@example.com instead")
        );
        assert_eq!(Table::lookup(&mut t, "list@example.com").unwrap(), None);
        let err = RegexpTable::open("/nonexistent/regexp").err().unwrap();
        assert_eq!(
            err.to_string(),
            "open /nonexistent/regexp: No such file or directory"
        );
    }
}
