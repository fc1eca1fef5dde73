//! The message as sendmail reads it from standard input: line ends made
//! LF (sendmail_fix_line_endings), leading `From ` lines dropped, and a
//! lone "." ending the input unless `-i` was given. Nothing else is
//! changed; 8-bit bytes pass through. The reader hands out the result in
//! pieces, so a large message is never held whole in memory.

use std::io::{self, BufRead};

/// Bytes per piece handed out.
const PIECE: usize = 64 * 1024;
/// The most header text kept for the `-t` recipient check.
const HEADER_KEEP: usize = 1024 * 1024;

/// sendmail_fix_line_endings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FixEol {
    /// Remove CR before LF on every line.
    Always,
    /// Do that only if the first line ends in CRLF.
    Strict,
    /// Leave line ends alone.
    Never,
}

impl FixEol {
    pub fn parse(value: &str) -> Option<FixEol> {
        match value {
            "always" => Some(FixEol::Always),
            "strict" => Some(FixEol::Strict),
            "never" => Some(FixEol::Never),
            _ => None,
        }
    }
}

/// Reads the message from `input`, one piece at a time.
pub struct MessageReader<R> {
    input: R,
    fix: FixEol,
    dot_ends_input: bool,
    /// Still before the first line that is not a `From ` line.
    at_start: bool,
    /// Still in the header (until the first empty line).
    in_header: bool,
    header: Vec<u8>,
    done: bool,
    /// The number of bytes handed out.
    pub size: u64,
}

impl<R: BufRead> MessageReader<R> {
    pub fn new(input: R, fix: FixEol, dot_ends_input: bool) -> MessageReader<R> {
        MessageReader {
            input,
            fix,
            dot_ends_input,
            at_start: true,
            in_header: true,
            header: Vec::new(),
            done: false,
            size: 0,
        }
    }

    /// The next piece of the message; `None` at the end.
    pub fn next_piece(&mut self) -> io::Result<Option<Vec<u8>>> {
        let mut piece = Vec::new();
        let mut line = Vec::new();
        while !self.done && piece.len() < PIECE {
            line.clear();
            if self.input.read_until(b'\n', &mut line)? == 0 {
                self.done = true;
                break;
            }
            if let Some(text) = self.convert(&mut line) {
                piece.extend_from_slice(text);
            }
        }
        self.size += piece.len() as u64;
        Ok((!piece.is_empty()).then_some(piece))
    }

    /// One input line as it goes into the message, or `None` to drop it.
    fn convert<'a>(&mut self, line: &'a mut Vec<u8>) -> Option<&'a [u8]> {
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        let strip = match self.fix {
            FixEol::Always => true,
            FixEol::Strict => {
                if self.at_start {
                    self.fix = match line.last() == Some(&b'\r') {
                        true => FixEol::Always,
                        false => FixEol::Never,
                    };
                }
                self.fix == FixEol::Always
            }
            FixEol::Never => false,
        };
        if strip {
            while line.last() == Some(&b'\r') {
                line.pop();
            }
        }
        if self.at_start {
            let unquoted = line.iter().position(|&b| b != b'>').unwrap_or(line.len());
            if line[unquoted..].starts_with(b"From ") {
                return None;
            }
            self.at_start = false;
        }
        if self.dot_ends_input && line.as_slice() == b"." {
            self.done = true;
            return None;
        }
        line.push(b'\n');
        self.keep_header(line);
        Some(line.as_slice())
    }

    fn keep_header(&mut self, line: &[u8]) {
        if !self.in_header {
            return;
        }
        if line == b"\n" || line == b"\r\n" {
            self.in_header = false;
        } else if self.header.len() + line.len() <= HEADER_KEEP {
            self.header.extend_from_slice(line);
        }
    }

    /// Whether the header names a recipient (To:, Cc:, Bcc:, or their
    /// Resent- forms): what `sendmail -t` will find.
    pub fn header_has_recipients(&self) -> bool {
        header_has_recipients(&self.header)
    }
}

/// The recipient check on header text.
pub fn header_has_recipients(header: &[u8]) -> bool {
    let text = String::from_utf8_lossy(header);
    let mut fields: Vec<String> = Vec::new();
    for line in text.lines() {
        match (line.starts_with([' ', '\t']), fields.last_mut()) {
            (true, Some(field)) => field.push_str(line),
            _ => fields.push(line.to_string()),
        }
    }
    fields.iter().any(|field| {
        let Some((name, value)) = field.split_once(':') else {
            return false;
        };
        let name = name.trim().to_ascii_lowercase();
        let name = name.strip_prefix("resent-").unwrap_or(&name);
        matches!(name, "to" | "cc" | "bcc")
            && crate::address::address_list(value)
                .iter()
                .any(|a| !a.is_empty())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(input: &[u8], fix: FixEol, dot: bool) -> Vec<u8> {
        let mut reader = MessageReader::new(input, fix, dot);
        let mut out = Vec::new();
        while let Some(piece) = reader.next_piece().unwrap() {
            out.extend(piece);
        }
        assert_eq!(reader.size, out.len() as u64);
        out
    }

    #[test]
    fn crlf_becomes_lf_and_eight_bit_passes() {
        let got = read_all(b"Subject: x\r\n\r\nb\xe9t\xff\r\n", FixEol::Always, true);
        assert_eq!(got, b"Subject: x\n\nb\xe9t\xff\n");
        let kept = read_all(b"a\r\n", FixEol::Never, true);
        assert_eq!(kept, b"a\r\n");
    }

    #[test]
    fn strict_follows_the_first_line() {
        assert_eq!(read_all(b"a\r\nb\r\n", FixEol::Strict, true), b"a\nb\n");
        assert_eq!(read_all(b"a\nb\r\n", FixEol::Strict, true), b"a\nb\r\n");
    }

    #[test]
    fn lone_dot_ends_input_unless_told_otherwise() {
        assert_eq!(read_all(b"a\n.\nb\n", FixEol::Always, true), b"a\n");
        assert_eq!(read_all(b"a\n.\r\nb\n", FixEol::Always, true), b"a\n");
        assert_eq!(read_all(b"a\n.\nb\n", FixEol::Always, false), b"a\n.\nb\n");
        assert_eq!(read_all(b"a\n..\n", FixEol::Always, true), b"a\n..\n");
    }

    #[test]
    fn leading_from_lines_are_dropped() {
        let input = b"From joe Mon Jan 1\n>From x\nSubject: s\n\nFrom here\n";
        assert_eq!(
            read_all(input, FixEol::Always, true),
            b"Subject: s\n\nFrom here\n"
        );
    }

    #[test]
    fn last_line_gets_its_newline_and_big_input_comes_in_pieces() {
        assert_eq!(
            read_all(b"a\nno newline", FixEol::Always, true),
            b"a\nno newline\n"
        );
        let big = "x".repeat(100).repeat(2000) + "\n";
        let mut reader = MessageReader::new(big.as_bytes(), FixEol::Always, true);
        let first = reader.next_piece().unwrap().unwrap();
        assert_eq!(first.len(), big.len());
        let many = "line\n".repeat(40_000);
        let mut reader = MessageReader::new(many.as_bytes(), FixEol::Always, true);
        let mut count = 0;
        while reader.next_piece().unwrap().is_some() {
            count += 1;
        }
        assert!(count > 1);
    }

    #[test]
    fn recipient_headers() {
        let mut r = MessageReader::new(
            &b"Subject: s\nTo: a@x\n\nCc: b@y\n"[..],
            FixEol::Always,
            true,
        );
        while r.next_piece().unwrap().is_some() {}
        assert!(r.header_has_recipients());
        assert!(header_has_recipients(b"Resent-Bcc:\n  a@x\n"));
        assert!(!header_has_recipients(
            b"Subject: s\nTo: undisclosed-recipients:;\n"
        ));
        let mut r = MessageReader::new(&b"Subject: s\n\nTo: b@y\n"[..], FixEol::Always, true);
        while r.next_piece().unwrap().is_some() {}
        assert!(!r.header_has_recipients());
    }
}
