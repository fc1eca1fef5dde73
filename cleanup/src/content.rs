//! Message content arrives in chunks cut anywhere (even between the CR
//! and the LF of a line end). `Lines` turns them into whole lines without
//! their line ends; CRLF and LF both end a line, a CR not followed by LF
//! is content.

#[derive(Debug, Default)]
pub struct Lines {
    partial: Vec<u8>,
    /// The last chunk ended in CR: whether it ends a line depends on the
    /// next byte.
    pending_cr: bool,
}

impl Lines {
    pub fn new() -> Lines {
        Lines::default()
    }

    /// Takes a chunk, calls `line` for each line it completes.
    pub fn push<E>(
        &mut self,
        mut chunk: &[u8],
        mut line: impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        if self.pending_cr {
            self.pending_cr = false;
            if chunk.first() == Some(&b'\n') {
                line(&self.partial)?;
                self.partial.clear();
                chunk = &chunk[1..];
            } else {
                self.partial.push(b'\r');
            }
        }
        while let Some(at) = chunk.iter().position(|&b| b == b'\n') {
            let mut text = &chunk[..at];
            if let Some(stripped) = text.strip_suffix(b"\r") {
                text = stripped;
            }
            if self.partial.is_empty() {
                line(text)?;
            } else {
                self.partial.extend_from_slice(text);
                line(&self.partial)?;
                self.partial.clear();
            }
            chunk = &chunk[at + 1..];
        }
        if let Some(rest) = chunk.strip_suffix(b"\r") {
            self.pending_cr = true;
            chunk = rest;
        }
        self.partial.extend_from_slice(chunk);
        Ok(())
    }

    /// Text after the last line end is a last line of its own.
    pub fn finish<E>(&mut self, mut line: impl FnMut(&[u8]) -> Result<(), E>) -> Result<(), E> {
        if std::mem::take(&mut self.pending_cr) {
            self.partial.push(b'\r');
        }
        if !self.partial.is_empty() {
            let last = std::mem::take(&mut self.partial);
            line(&last)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(chunks: &[&[u8]]) -> Vec<String> {
        let mut lines = Lines::new();
        let mut out = Vec::new();
        let mut take = |l: &[u8]| -> Result<(), ()> {
            out.push(String::from_utf8_lossy(l).into_owned());
            Ok(())
        };
        for chunk in chunks {
            lines.push(chunk, &mut take).unwrap();
        }
        lines.finish(&mut take).unwrap();
        out
    }

    #[test]
    fn crlf_and_lf_end_lines() {
        assert_eq!(split(&[b"a\r\nb\nc\r\n"]), ["a", "b", "c"]);
        assert_eq!(split(&[b"\r\n\n"]), ["", ""]);
    }

    #[test]
    fn crlf_split_across_chunks() {
        assert_eq!(
            split(&[b"Subject: x\r", b"\nbody\r", b"\n"]),
            ["Subject: x", "body"]
        );
        assert_eq!(split(&[b"ab", b"c\r", b"\r\n"]), ["abc\r"]);
        assert_eq!(split(&[b"a", b"", b"b\n"]), ["ab"]);
    }

    #[test]
    fn stray_cr_is_content_and_last_line_is_kept() {
        assert_eq!(split(&[b"a\rb\n"]), ["a\rb"]);
        assert_eq!(split(&[b"a\r", b"b"]), ["a\rb"]);
        assert_eq!(split(&[b"tail"]), ["tail"]);
        assert_eq!(split(&[b"x\r"]), ["x\r"]);
    }
}
