//! Message content: DATA's dot-unstuffing and end detection, and BDAT's
//! line-end normalization. Only `<CR><LF>.<CR><LF>` ends DATA unless
//! smtpd_forbid_bare_newline = no; a `.` line that does not qualify is
//! dropped, as Postfix drops it. The output is CRLF text for the sink.

use crate::settings::BareNewline;

/// Reads DATA content incrementally, in any split of the input.
#[derive(Debug)]
pub struct DataReader {
    mode: BareNewline,
    /// Longest line kept whole; longer lines flow out in pieces.
    line_limit: usize,
    /// The current line so far (without its line end).
    line: Vec<u8>,
    /// The current line is a continuation of an overlong line.
    continued: bool,
    /// The previous line ended in `<CR><LF>` (or DATA did).
    prev_crlf: bool,
    /// A bare `<LF>` was seen anywhere.
    pub bare_lf: bool,
}

impl DataReader {
    pub fn new(mode: BareNewline, line_limit: usize, command_crlf: bool) -> DataReader {
        DataReader {
            mode,
            line_limit: line_limit.max(8),
            line: Vec::new(),
            continued: false,
            prev_crlf: command_crlf,
            bare_lf: false,
        }
    }

    /// Consumes input up to and including the end of data. Appends content
    /// to `out`; returns the number of bytes used and whether the end was
    /// reached.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> (usize, bool) {
        let mut used = 0;
        while used < input.len() {
            let rest = &input[used..];
            let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
                self.take_partial(rest, out);
                return (input.len(), false);
            };
            self.line.extend_from_slice(&rest[..nl]);
            used += nl + 1;
            if self.end_line(out) {
                return (used, true);
            }
        }
        (used, false)
    }

    /// Buffers a partial line; flushes all but its last byte (a possible
    /// `<CR>`) when it grows past the line limit.
    fn take_partial(&mut self, part: &[u8], out: &mut Vec<u8>) {
        self.line.extend_from_slice(part);
        if self.line.len() <= self.line_limit {
            return;
        }
        let keep = self.line.split_off(self.line.len() - 1);
        let piece = std::mem::replace(&mut self.line, keep);
        let piece = match self.continued {
            true => &piece[..],
            false => unstuff(&piece),
        };
        out.extend_from_slice(piece);
        self.continued = true;
    }

    /// A complete line: returns true at the end of data.
    fn end_line(&mut self, out: &mut Vec<u8>) -> bool {
        let crlf = self.line.last() == Some(&b'\r');
        if crlf {
            self.line.pop();
        } else {
            self.bare_lf = true;
        }
        let line = std::mem::take(&mut self.line);
        let continued = std::mem::replace(&mut self.continued, false);
        let prev_crlf = std::mem::replace(&mut self.prev_crlf, crlf);
        if !continued && line == b"." {
            return self.dot_line(crlf, prev_crlf);
        }
        let text = if continued { &line[..] } else { unstuff(&line) };
        out.extend_from_slice(text);
        out.extend_from_slice(b"\r\n");
        false
    }

    /// A lone `.`: the end, unless bare `<LF>`s surround it in a strict mode.
    fn dot_line(&self, crlf: bool, prev_crlf: bool) -> bool {
        match self.mode {
            BareNewline::No => true,
            BareNewline::Normalize | BareNewline::Reject => crlf && prev_crlf,
        }
    }
}

/// Removes the leading dot of a stuffed line.
fn unstuff(line: &[u8]) -> &[u8] {
    line.strip_prefix(b".").unwrap_or(line)
}

/// Normalizes BDAT chunks: bare `<LF>` becomes `<CR><LF>` (and is noted for
/// smtpd_forbid_bare_newline = reject); content is otherwise untouched.
#[derive(Debug, Default)]
pub struct BdatReader {
    prev_cr: bool,
    /// Bytes of content so far (after normalization).
    pub size: u64,
    pub bare_lf: bool,
    /// The content so far ends with a line end.
    ends_with_newline: bool,
}

impl BdatReader {
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        let start = out.len();
        let mut from = 0;
        for (i, &b) in chunk.iter().enumerate() {
            if b == b'\n' && !self.prev_cr {
                out.extend_from_slice(&chunk[from..i]);
                out.extend_from_slice(b"\r\n");
                from = i + 1;
                self.bare_lf = true;
            }
            self.prev_cr = b == b'\r';
        }
        out.extend_from_slice(&chunk[from..]);
        self.size += (out.len() - start) as u64;
        if let Some(&last) = chunk.last() {
            self.ends_with_newline = last == b'\n';
        }
    }

    /// Completes the last line if the client did not (Postfix's count
    /// includes that `<CR><LF>`).
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.size > 0 && !self.ends_with_newline {
            out.extend_from_slice(b"\r\n");
            self.size += 2;
            self.ends_with_newline = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in pieces of `step` bytes; returns content, bytes used, end.
    fn read(mode: BareNewline, input: &[u8], step: usize) -> (Vec<u8>, usize, bool) {
        let mut reader = DataReader::new(mode, 64, true);
        let mut out = Vec::new();
        let mut used = 0;
        for piece in input.chunks(step) {
            let (n, end) = reader.feed(piece, &mut out);
            used += n;
            if end {
                return (out, used, true);
            }
        }
        (out, used, false)
    }

    fn each_split(mode: BareNewline, input: &[u8]) -> (Vec<u8>, usize, bool) {
        let whole = read(mode, input, input.len().max(1));
        for step in 1..8 {
            assert_eq!(read(mode, input, step), whole, "step {step}");
        }
        whole
    }

    #[test]
    fn ends_at_crlf_dot_crlf() {
        let (out, used, end) = each_split(BareNewline::Normalize, b"a\r\nb\r\n.\r\nQUIT\r\n");
        assert_eq!(out, b"a\r\nb\r\n");
        assert_eq!(used, 9);
        assert!(end);
    }

    #[test]
    fn dot_unstuffing() {
        let (out, _, _) = each_split(BareNewline::Normalize, b"..x\r\n...\r\n.\r\n");
        assert_eq!(out, b".x\r\n..\r\n");
    }

    #[test]
    fn smuggling_forms_do_not_end_data() {
        for form in [
            &b"a\n.\nb\r\n"[..],
            b"a\r\n.\nb\r\n",
            b"a\n.\r\nb\r\n",
            b"a\r.\rb\r\n",
            b"a\r\n.\r b\r\n",
        ] {
            for mode in [BareNewline::Normalize, BareNewline::Reject] {
                let (_, _, end) = each_split(mode, form);
                assert!(!end, "{form:?} {mode:?}");
            }
        }
    }

    #[test]
    fn bare_lf_normalized_and_bare_dot_line_dropped() {
        let (out, _, end) = each_split(
            BareNewline::Normalize,
            b"a\r\n.\nb\r\n..x\n.\r\nc\r\nlast\n\r\n.\r\n",
        );
        assert!(end);
        assert_eq!(out, b"a\r\nb\r\n.x\r\nc\r\nlast\r\n\r\n");
    }

    #[test]
    fn legacy_mode_ends_at_lf_dot_lf() {
        let (out, used, end) = each_split(BareNewline::No, b"a\n.\nb\r\n");
        assert!(end);
        assert_eq!((out.as_slice(), used), (&b"a\r\n"[..], 4));
    }

    #[test]
    fn bare_lf_is_noted() {
        let mut r = DataReader::new(BareNewline::Reject, 64, true);
        let mut out = Vec::new();
        r.feed(b"a\nb\r\n.\r\n", &mut out);
        assert!(r.bare_lf);
    }

    #[test]
    fn overlong_lines_flow_through_and_keep_dots() {
        let mut input = b".".to_vec();
        input.resize(201, b'x');
        input.extend_from_slice(b"\r\n.\r\n");
        let (out, _, end) = each_split(BareNewline::Normalize, &input);
        assert!(end);
        assert_eq!(out.len(), 202);
        assert!(out.starts_with(b"xxx") && out.ends_with(b"x\r\n"));
    }

    #[test]
    fn continuation_starting_with_dot_is_not_an_end() {
        let mut input = vec![b'x'; 64];
        input.extend_from_slice(b".\r\n.\r\n");
        let (out, _, end) = read(BareNewline::Normalize, &input, 65);
        assert!(end);
        assert!(out.ends_with(b"x.\r\n"));
    }

    #[test]
    fn bdat_normalizes_across_chunks() {
        let mut r = BdatReader::default();
        let mut out = Vec::new();
        r.feed(b"a\r", &mut out);
        r.feed(b"\nb\nc", &mut out);
        r.finish(&mut out);
        assert_eq!(out, b"a\r\nb\r\nc\r\n");
        assert_eq!(r.size, 9);
        assert!(r.bare_lf);
    }
}
