//! Where the addresses are in an address header's value (To:, From:,
//! ...), as byte ranges, so that cleanup can rewrite them in place and
//! leave display names, comments, groups and folding as they were.
//!
//! Hand-written rather than a mail parsing crate's: cleanup must find
//! addresses that are not yet RFC 5322 addresses (a bare `bob` from
//! `mail -s x bob`, which it is about to qualify), and the crates
//! (mailparse's addrparse, for one) refuse those or rebuild the header.
//! Only the lexical structure is needed: quoted strings, comments,
//! angle brackets, group syntax and commas.

use std::ops::Range;

/// The address ranges in `value`, in order. An address in angle brackets
/// is what is between them; otherwise a mailbox's text without its
/// comments and surrounding white space. Group names (`list: ...;`) and
/// empty members are skipped.
pub fn spans(value: &str) -> Vec<Range<usize>> {
    let bytes = value.as_bytes();
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    let mut angle: Option<usize> = None;
    let mut angle_span: Option<Range<usize>> = None;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => i = skip_quoted(bytes, i),
            b'(' => i = skip_comment(bytes, i),
            b'<' if angle.is_none() => {
                angle = Some(i + 1);
                i += 1;
            }
            b'>' if angle.is_some() => {
                if let Some(open) = angle.take() {
                    angle_span = Some(trim(bytes, open..i));
                }
                i += 1;
            }
            b':' if angle.is_none() => {
                // A group's display name: not an address.
                start = i + 1;
                i += 1;
            }
            b',' | b';' if angle.is_none() => {
                push_mailbox(bytes, start..i, angle_span.take(), &mut out);
                start = i + 1;
                i += 1;
            }
            _ => i += 1,
        }
    }
    push_mailbox(bytes, start..bytes.len(), angle_span, &mut out);
    out
}

fn push_mailbox(
    bytes: &[u8],
    segment: Range<usize>,
    angle: Option<Range<usize>>,
    out: &mut Vec<Range<usize>>,
) {
    let span = match angle {
        Some(span) => span,
        None => bare_span(bytes, segment),
    };
    if !span.is_empty() {
        out.push(span);
    }
}

/// A mailbox without angle brackets: from its first to its last
/// character that is neither white space nor in a comment.
fn bare_span(bytes: &[u8], segment: Range<usize>) -> Range<usize> {
    let mut first = None;
    let mut last = segment.start;
    let mut i = segment.start;
    while i < segment.end {
        match bytes[i] {
            b'(' => {
                i = skip_comment(bytes, i).min(segment.end);
                continue;
            }
            b' ' | b'\t' | b'\r' | b'\n' => {}
            b'"' => {
                first.get_or_insert(i);
                i = skip_quoted(bytes, i).min(segment.end);
                last = i;
                continue;
            }
            _ => {
                first.get_or_insert(i);
                last = i + 1;
            }
        }
        i += 1;
    }
    match first {
        Some(first) => first..last,
        None => segment.start..segment.start,
    }
}

fn trim(bytes: &[u8], mut span: Range<usize>) -> Range<usize> {
    while span.start < span.end && bytes[span.start].is_ascii_whitespace() {
        span.start += 1;
    }
    while span.end > span.start && bytes[span.end - 1].is_ascii_whitespace() {
        span.end -= 1;
    }
    span
}

/// Past the closing quote of the quoted string at `at` (backslash
/// escapes honoured); the end when it is not closed.
fn skip_quoted(bytes: &[u8], at: usize) -> usize {
    let mut i = at + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    bytes.len()
}

/// Past the comment at `at`, nested comments included.
fn skip_comment(bytes: &[u8], at: usize) -> usize {
    let mut depth = 0usize;
    let mut i = at;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 1,
            b'(' => depth += 1,
            b')' => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    bytes.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(value: &str) -> Vec<&str> {
        spans(value).into_iter().map(|r| &value[r]).collect()
    }

    #[test]
    fn mailboxes_in_all_their_forms() {
        assert_eq!(
            found(" Alice <a@x.example>, b@y.example (Bee), friends: c@z.example, d;, bob"),
            ["a@x.example", "b@y.example", "c@z.example", "d", "bob"]
        );
        assert_eq!(
            found(" \"Doe, John\" <jd@x.example>,\n\t\"q u\"@x.example"),
            ["jd@x.example", "\"q u\"@x.example"]
        );
        assert_eq!(found(" (only (nested) comment) root"), ["root"]);
        assert_eq!(found(" <  spaced@x.example  >"), ["spaced@x.example"]);
    }

    #[test]
    fn nothing_to_find() {
        assert!(found(" undisclosed-recipients:;").is_empty());
        assert!(found("").is_empty());
        assert!(found(" ,, ").is_empty());
        assert!(found(" <>").is_empty());
    }

    #[test]
    fn broken_syntax_does_not_panic() {
        for value in [
            "\"unclosed",
            "(unclosed",
            "<unclosed",
            "a>b",
            "\\",
            "\"\\",
            "(\\",
        ] {
            let _ = spans(value);
        }
    }
}
