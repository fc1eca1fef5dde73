//! SMTP server replies as the client reads them: bytes in, complete
//! (possibly multi-line) replies out, with the enhanced status code
//! split off when the server gave one. No I/O here.

/// One complete reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    /// The enhanced status code (`4.3.0`) of the first line, if any.
    pub dsn: Option<String>,
    /// The text of each line, without the code and separator.
    pub lines: Vec<String>,
}

impl Reply {
    pub fn class(&self) -> u16 {
        self.code / 100
    }

    /// The enhanced status code, or `X.0.0` from the reply class when
    /// the server gave none (as Postfix does).
    pub fn status(&self) -> String {
        match &self.dsn {
            Some(dsn) => dsn.clone(),
            None => format!("{}.0.0", self.class().clamp(2, 5)),
        }
    }

    /// The reply as Postfix quotes it in logs and notifications: the
    /// code, then the lines joined by a space.
    pub fn text(&self) -> String {
        format!("{} {}", self.code, self.lines.join(" "))
            .trim_end()
            .to_string()
    }
}

/// Why the bytes are not a reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    #[error("malformed reply: {0}")]
    Malformed(String),
    #[error("reply too long")]
    TooLong,
}

/// Longest reply kept, all lines together: a server that sends more is
/// broken or hostile.
const MAX_REPLY: usize = 64 * 1024;

/// Collects bytes until a reply is complete.
#[derive(Debug, Default)]
pub struct ReplyReader {
    buffer: Vec<u8>,
    lines: Vec<String>,
    code: Option<u16>,
}

impl ReplyReader {
    pub fn new() -> ReplyReader {
        ReplyReader::default()
    }

    pub fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// The next complete reply in what was pushed, if there is one.
    pub fn next_reply(&mut self) -> Result<Option<Reply>, ReplyError> {
        while let Some(end) = self.buffer.iter().position(|&b| b == b'\n') {
            let raw: Vec<u8> = self.buffer.drain(..=end).collect();
            let line = String::from_utf8_lossy(&raw);
            let line = line.trim_end_matches(['\r', '\n']);
            if let Some(reply) = self.line(line)? {
                return Ok(Some(reply));
            }
        }
        if self.buffer.len() + self.lines.iter().map(String::len).sum::<usize>() > MAX_REPLY {
            return Err(ReplyError::TooLong);
        }
        Ok(None)
    }

    fn line(&mut self, line: &str) -> Result<Option<Reply>, ReplyError> {
        let bytes = line.as_bytes();
        if bytes.len() < 3 || !bytes[..3].iter().all(u8::is_ascii_digit) {
            return Err(ReplyError::Malformed(line.chars().take(100).collect()));
        }
        let code: u16 = line[..3].parse().unwrap_or(0);
        if !(200..600).contains(&code) || self.code.is_some_and(|c| c != code) {
            return Err(ReplyError::Malformed(line.chars().take(100).collect()));
        }
        self.code = Some(code);
        let more = bytes.get(3) == Some(&b'-');
        self.lines.push(line.get(4..).unwrap_or("").to_string());
        if more {
            if self.lines.iter().map(String::len).sum::<usize>() > MAX_REPLY {
                return Err(ReplyError::TooLong);
            }
            return Ok(None);
        }
        let lines = std::mem::take(&mut self.lines);
        self.code = None;
        Ok(Some(Reply {
            code,
            dsn: enhanced_code(&lines[0], code),
            lines,
        }))
    }
}

/// `X.Y.Z ` at the start of the text whose class matches the reply code.
fn enhanced_code(text: &str, code: u16) -> Option<String> {
    let word = text.split_whitespace().next()?;
    let parts: Vec<&str> = word.split('.').collect();
    let valid = parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()))
        && parts[0] == (code / 100).to_string();
    valid.then(|| word.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(bytes: &[u8]) -> Vec<Reply> {
        let mut reader = ReplyReader::new();
        reader.push(bytes);
        let mut out = Vec::new();
        while let Some(reply) = reader.next_reply().unwrap() {
            out.push(reply);
        }
        out
    }

    #[test]
    fn single_and_multi_line_replies() {
        let replies =
            read(b"220 mx.example ESMTP\r\n250-mx.example\r\n250-PIPELINING\r\n250 SIZE 1000\r\n");
        assert_eq!(replies.len(), 2);
        assert_eq!(replies[0].code, 220);
        assert_eq!(replies[1].lines, ["mx.example", "PIPELINING", "SIZE 1000"]);
        assert_eq!(replies[1].status(), "2.0.0");
    }

    #[test]
    fn enhanced_codes_and_text() {
        let r = &read(b"451 4.3.0 Error: queue file write error\r\n")[0];
        assert_eq!(r.dsn.as_deref(), Some("4.3.0"));
        assert_eq!(r.text(), "451 4.3.0 Error: queue file write error");
        // A code of the wrong class is not an enhanced status code.
        let r = &read(b"550 4.3.0 odd\r\n")[0];
        assert_eq!(r.status(), "5.0.0");
        let r = &read(b"250\r\n")[0];
        assert_eq!(r.text(), "250");
    }

    #[test]
    fn partial_input_waits_and_garbage_is_an_error() {
        let mut reader = ReplyReader::new();
        reader.push(b"250-a\r\n250 b");
        assert_eq!(reader.next_reply().unwrap(), None);
        reader.push(b"\r\n");
        assert_eq!(reader.next_reply().unwrap().unwrap().lines, ["a", "b"]);
        reader.push(b"hello\r\n");
        assert!(reader.next_reply().is_err());
        let mut reader = ReplyReader::new();
        reader.push(b"250-a\r\n251 b\r\n");
        assert!(reader.next_reply().is_err());
    }
}
