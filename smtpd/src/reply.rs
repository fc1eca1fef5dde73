//! What the engine asks its caller to do: SMTP replies (already formatted
//! with CRLF and multi-line continuation), pauses (smtpd_error_sleep_time),
//! log lines and closing the connection.

use std::time::Duration;

/// One SMTP reply: a three-digit code, an optional enhanced status code
/// (RFC 3463) and one or more text lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub enhanced: Option<String>,
    pub lines: Vec<String>,
}

impl Reply {
    /// A one-line reply with an enhanced status code, e.g. `250 2.1.0 Ok`.
    pub fn new(code: u16, enhanced: &str, text: impl Into<String>) -> Reply {
        Reply {
            code,
            enhanced: Some(enhanced.to_string()).filter(|e| !e.is_empty()),
            lines: vec![text.into()],
        }
    }

    /// A one-line reply without an enhanced code, e.g. `250 Queuing started`.
    pub fn plain(code: u16, text: impl Into<String>) -> Reply {
        Reply {
            code,
            enhanced: None,
            lines: vec![text.into()],
        }
    }

    /// 4xx and 5xx replies are errors for the error counters.
    pub fn is_error(&self) -> bool {
        self.code >= 400
    }

    /// The first line without the code: what Postfix logs after `reject:`.
    pub fn text(&self) -> String {
        let first = self.lines.first().map_or("", String::as_str);
        match &self.enhanced {
            Some(e) => format!("{} {} {}", self.code, e, first),
            None => format!("{} {}", self.code, first),
        }
    }

    /// The bytes on the wire: `250-line` for all but the last line.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let last = self.lines.len().saturating_sub(1);
        for (i, line) in self.lines.iter().enumerate() {
            let sep = if i == last { ' ' } else { '-' };
            out.extend_from_slice(format!("{}{}", self.code, sep).as_bytes());
            if let Some(e) = &self.enhanced {
                out.extend_from_slice(e.as_bytes());
                out.push(b' ');
            }
            out.extend_from_slice(line.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out
    }
}

/// One step for the caller, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Bytes to send to the client (one complete reply).
    Reply(Vec<u8>),
    /// Pause before the next reply (error sleep).
    Sleep(Duration),
    /// A line for the mail log, without the `postfix/smtpd[pid]: ` prefix.
    Log(String),
    /// Close the connection; nothing follows.
    Close,
}
