//! Queue IDs as Postfix makes them, and the hashed directory a queue file
//! lives in.
//!
//! A queue ID is derived from the queue file's inode number and the time
//! the file was made, so two files that exist at the same time on one
//! file system never share an ID, whichever processes made them
//! (Postfix's mail_queue_enter(), after Zmailer).
//!
//! - Short IDs (the default): the microseconds as exactly five upper-case
//!   hex digits, then the inode number in upper-case hex, `B822221522`.
//!   They repeat in the course of time.
//! - Long IDs (`enable_long_queue_ids = yes`): the seconds (six or more
//!   digits) and the microseconds (exactly four digits) in base 52, a `z`,
//!   then the inode number in base 51, `4Qg5Kx3Rm8zJZ1t`. The alphabet is
//!   Postfix's "safe" one: digits and letters without vowels, so an ID
//!   never spells a word; `z` is its last letter, which the inode part
//!   (base 51) never uses, so the last `z` of an ID separates the two.
//!
//! Hashed queues (`hash_queue_names`) spread files over subdirectories
//! named by the first `hash_queue_depth` characters of the hex
//! microseconds: the ID's own first characters for a short ID, the
//! microseconds decoded and written as five hex digits for a long one, so
//! both kinds share the same `0`..`F` subdirectories (Postfix's
//! mail_queue_dir() and dir_forest()).

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

/// Postfix's safe alphabet, in digit order.
const SAFE: &[u8; 52] = b"0123456789BCDFGHJKLMNPQRSTVWXYZbcdfghjklmnpqrstvwxyz";
/// Base of the time fields of a long ID.
const TIME_BASE: u64 = 52;
/// Base of the inode field of a long ID: the alphabet without `z`.
const INODE_BASE: u64 = 51;
/// The separator between time and inode in a long ID.
const SEPARATOR: u8 = b'z';
/// Minimum width of the seconds field of a long ID.
const LONG_SECONDS_WIDTH: usize = 6;
/// Exact width of the microseconds field of a long ID.
const LONG_MICROS_WIDTH: usize = 4;
/// Exact width of the microseconds field of a short ID.
const SHORT_MICROS_WIDTH: usize = 5;
/// Postfix accepts file names up to a host name's length (255).
const MAX_NAME: usize = 255;

/// A queue ID that has the form Postfix gives queue file names.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueueId(String);

impl QueueId {
    /// The ID for a file with inode number `inode` made at `time`.
    pub fn new(time: SystemTime, inode: u64, long: bool) -> QueueId {
        let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
        let micros = since.subsec_micros();
        if long {
            QueueId::long(since.as_secs(), micros, inode)
        } else {
            QueueId::short(micros, inode)
        }
    }

    /// `%05X%lX`: microseconds, then inode.
    fn short(micros: u32, inode: u64) -> QueueId {
        QueueId(format!("{micros:05X}{inode:X}"))
    }

    fn long(seconds: u64, micros: u32, inode: u64) -> QueueId {
        let mut id = encode(seconds, TIME_BASE, LONG_SECONDS_WIDTH);
        id.push_str(&encode(u64::from(micros), TIME_BASE, LONG_MICROS_WIDTH));
        id.push(char::from(SEPARATOR));
        id.push_str(&encode(inode, INODE_BASE, 1));
        QueueId(id)
    }

    /// Accepts exactly the names that `new` makes (either form).
    pub fn parse(text: &str) -> Option<QueueId> {
        let valid = match long_separator(text) {
            Some(at) => parse_long(text, at).is_some(),
            None => parse_short(text).is_some(),
        };
        valid.then(|| QueueId(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is a long (non-repeating) ID.
    pub fn is_long(&self) -> bool {
        long_separator(&self.0).is_some()
    }

    /// The inode number the ID was made from (for `postsuper -s`, which
    /// renames files whose inode no longer matches).
    pub fn inode(&self) -> u64 {
        match long_separator(&self.0) {
            Some(at) => parse_long(&self.0, at).map_or(0, |(_, inode)| inode),
            None => parse_short(&self.0).map_or(0, |(_, inode)| inode),
        }
    }

    /// The same time part with inode number `inode`: the name `postsuper
    /// -s` gives a file whose inode no longer matches its name (a queue
    /// restored from backup). `long` asks for a long ID; a short ID has no
    /// seconds to make one from, so it stays short.
    pub fn with_inode(&self, inode: u64, long: bool) -> QueueId {
        match long_separator(&self.0) {
            Some(at) if long => {
                let inode = encode(inode, INODE_BASE, 1);
                QueueId(format!("{}{}{inode}", &self.0[..at], char::from(SEPARATOR)))
            }
            Some(at) => {
                let micros = parse_long(&self.0, at).map_or(0, |(micros, _)| micros);
                QueueId::short(micros, inode)
            }
            None => QueueId(format!("{}{inode:X}", &self.0[..SHORT_MICROS_WIDTH])),
        }
    }

    /// The five hex digits of the microseconds, which hashed queues use.
    pub fn hash_key(&self) -> String {
        match long_separator(&self.0) {
            Some(at) => {
                let micros = parse_long(&self.0, at).map_or(0, |(micros, _)| micros);
                format!("{micros:05X}")
            }
            None => self.0.chars().take(SHORT_MICROS_WIDTH).collect(),
        }
    }
}

impl fmt::Display for QueueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for QueueId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Postfix's mail_queue_id_ok(): letters, digits and `_`, 1 to 255 of
/// them. Commands check names they are given with this before looking
/// them up (`postcat: fatal: bad mail queue ID: ...`).
pub fn is_safe_name(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= MAX_NAME
        && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// The hashed subdirectories for `key` at `depth` levels, `B/8/`:
/// one character per level, `_` for a missing or unsafe one (Postfix's
/// dir_forest()).
pub fn dir_forest(key: &str, depth: usize) -> String {
    let bytes = key.as_bytes();
    let mut path = String::with_capacity(depth * 2);
    for level in 0..depth {
        let ch = match bytes.get(level) {
            Some(&b) if b.is_ascii_alphanumeric() => char::from(b),
            _ => '_',
        };
        path.push(ch);
        path.push('/');
    }
    path
}

/// Where the time part of a long ID ends, if `text` is one.
fn long_separator(text: &str) -> Option<usize> {
    let at = text.rfind(char::from(SEPARATOR))?;
    (at >= LONG_SECONDS_WIDTH + LONG_MICROS_WIDTH).then_some(at)
}

/// (microseconds, inode) of a short ID.
fn parse_short(text: &str) -> Option<(u32, u64)> {
    let upper_hex = |s: &str| s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'A'..=b'F'));
    if text.len() <= SHORT_MICROS_WIDTH || !upper_hex(text) {
        return None;
    }
    let (micros, inode) = text.split_at(SHORT_MICROS_WIDTH);
    let micros = u32::from_str_radix(micros, 16)
        .ok()
        .filter(|&m| m < 1_000_000)?;
    Some((micros, u64::from_str_radix(inode, 16).ok()?))
}

/// (microseconds, inode) of a long ID whose separator is at `at`.
fn parse_long(text: &str, at: usize) -> Option<(u32, u64)> {
    let (time, inode) = (&text[..at], &text[at + 1..]);
    let (seconds, micros) = time.split_at(time.len() - LONG_MICROS_WIDTH);
    decode(seconds, TIME_BASE)?;
    let micros = decode(micros, TIME_BASE).filter(|&m| m < 1_000_000)?;
    let inode = decode(inode, INODE_BASE)?;
    Some((u32::try_from(micros).ok()?, inode))
}

/// `value` in Postfix's safe alphabet, most significant digit first,
/// padded with `0` to at least `width` digits (safe_ultostr()).
fn encode(mut value: u64, base: u64, width: usize) -> String {
    let mut digits = Vec::new();
    loop {
        digits.push(SAFE[(value % base) as usize]);
        value /= base;
        if value == 0 {
            break;
        }
    }
    while digits.len() < width {
        digits.push(b'0');
    }
    digits.iter().rev().map(|&b| char::from(b)).collect()
}

/// The inverse of `encode`; None for an empty string, a digit outside
/// the base, or overflow.
fn decode(text: &str, base: u64) -> Option<u64> {
    if text.is_empty() {
        return None;
    }
    text.bytes().try_fold(0u64, |acc, b| {
        let digit = SAFE.iter().position(|&s| s == b)? as u64;
        if digit >= base {
            return None;
        }
        acc.checked_mul(base)?.checked_add(digit)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::time::Duration;

    fn at(secs: u64, micros: u32) -> SystemTime {
        UNIX_EPOCH + Duration::new(secs, micros * 1000)
    }

    #[test]
    fn short_ids_are_hex_microseconds_then_inode() {
        let id = QueueId::new(at(1_763_719_200, 0xB8222), 0x21522, false);
        assert_eq!(id.as_str(), "B822221522");
        assert!(!id.is_long());
        assert_eq!(id.inode(), 0x21522);
        assert_eq!(id.hash_key(), "B8222");
        // Microseconds keep their five digits.
        assert_eq!(QueueId::new(at(5, 7), 0xABC, false).as_str(), "00007ABC");
    }

    #[test]
    fn long_ids_are_base52_time_z_base51_inode() {
        let id = QueueId::new(at(1_763_719_200, 654_321), 1_234_567, true);
        let text = id.as_str();
        assert!(id.is_long(), "{text}");
        let z = text.rfind('z').unwrap();
        assert_eq!(z, 10, "six digits of seconds, four of microseconds: {text}");
        assert!(!text[z + 1..].contains('z'));
        assert!(!text.bytes().any(|b| b"AEIOUaeiou".contains(&b)));
        assert_eq!(decode(&text[..6], 52), Some(1_763_719_200));
        assert_eq!(id.inode(), 1_234_567);
        assert_eq!(id.hash_key(), format!("{:05X}", 654_321));
        assert_eq!(QueueId::parse(text), Some(id.clone()));
    }

    #[test]
    fn with_inode_keeps_the_time_part() {
        let short = QueueId::new(at(1_763_719_200, 0xB8222), 0x21522, false);
        assert_eq!(short.with_inode(0xABC, false).as_str(), "B8222ABC");
        assert_eq!(short.with_inode(0xABC, true).as_str(), "B8222ABC");
        let long = QueueId::new(at(1_763_719_200, 654_321), 1_234_567, true);
        let relinked = long.with_inode(42, true);
        assert_eq!(relinked, QueueId::new(at(1_763_719_200, 654_321), 42, true));
        let shortened = long.with_inode(42, false);
        assert_eq!(
            shortened,
            QueueId::new(at(1_763_719_200, 654_321), 42, false)
        );
        assert_eq!(shortened.hash_key(), long.hash_key());
    }

    #[test]
    fn encoding_round_trips_at_the_edges() {
        for value in [0, 1, 50, 51, 52, 2703, u64::from(u32::MAX), u64::MAX] {
            assert_eq!(decode(&encode(value, 51, 1), 51), Some(value));
            assert_eq!(decode(&encode(value, 52, 6), 52), Some(value));
        }
        assert_eq!(encode(0, 52, 4), "0000");
        assert_eq!(decode("zzzzzzzzzzzzzzzzzzzz", 52), None, "overflow");
    }

    #[test]
    fn parse_accepts_only_what_new_makes() {
        for good in ["B822221522", "000001", "F423F0", "4Qg5Kx3Rm8zJZ1t"] {
            assert!(QueueId::parse(good).is_some(), "{good} should parse");
        }
        for bad in [
            "",
            "B8222",           // no inode part
            "b822221522",      // lower case hex
            "F42400123",       // microseconds >= 1,000,000
            "B8222.1522",      // temp name
            "12345.6789",      // Postfix's temp file names
            "4Qg5Kx3Rm8z",     // nothing after z
            "4Qg5Kx3Rm8zJZ1A", // vowel
            "4Qg5Kx3zJZ1t",    // time part too short: not long, not hex
            "../../etc/passwd",
        ] {
            assert_eq!(QueueId::parse(bad), None, "{bad} should not parse");
        }
    }

    #[test]
    fn many_ids_from_distinct_inodes_are_distinct() {
        let now = SystemTime::now();
        for long in [false, true] {
            let ids: HashSet<QueueId> = (0..10_000u64)
                .map(|inode| QueueId::new(now, inode * 7919, long))
                .collect();
            assert_eq!(ids.len(), 10_000);
            assert!(ids.iter().all(|id| QueueId::parse(id.as_str()).is_some()));
        }
    }

    #[test]
    fn forest_uses_first_characters() {
        assert_eq!(dir_forest("B8222", 1), "B/");
        assert_eq!(dir_forest("B8222", 2), "B/8/");
        assert_eq!(dir_forest("B8", 3), "B/8/_/");
        assert_eq!(dir_forest("a.b", 2), "a/_/");
        assert_eq!(dir_forest("B8222", 0), "");
    }

    #[test]
    fn safe_names() {
        assert!(is_safe_name("B822221522"));
        assert!(is_safe_name("example_com"));
        assert!(!is_safe_name(""));
        assert!(!is_safe_name("a/b"));
        assert!(!is_safe_name("a.b"));
        assert!(!is_safe_name(&"x".repeat(256)));
    }
}
