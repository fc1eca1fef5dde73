//! One log record as text: the severity word, the cleaned message, and the
//! maillog_file line `Mon DD HH:MM:SS HOST TAG[PID]: [severity: ]text`,
//! byte for byte as Postfix 3.7 writes it (msg_logger.c: strftime
//! `%b %d %H:%M:%S`, so the day is zero-padded, `Nov 01`, unlike
//! syslogd's `Nov  1`; and only the first label of $myhostname).

use chrono::NaiveDateTime;
use std::fmt::Write as _;

/// Postfix cuts a logged text at 2000 bytes (MSG_LOGGER_RECLEN,
/// MSG_SYSLOG_RECLEN) so that one record stays one datagram and one write.
pub const MAX_TEXT: usize = 2000;

/// The host name Postfix logs when $myhostname is empty.
const NO_HOSTNAME: &str = "amnesiac";

/// How bad a logged event is; the order is Postfix's (info lowest).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Info,
    Warning,
    Error,
    Fatal,
    Panic,
}

impl Severity {
    /// The word that precedes the text (`warning: ...`); info has none.
    pub fn label(self) -> Option<&'static str> {
        match self {
            Severity::Info => None,
            Severity::Warning => Some("warning"),
            Severity::Error => Some("error"),
            Severity::Fatal => Some("fatal"),
            Severity::Panic => Some("panic"),
        }
    }

    /// A severity name as postlog(1) `-p` takes it, in any case: info,
    /// warn or warning, error or err, fatal or crit, panic.
    pub fn from_name(name: &str) -> Option<Severity> {
        let severity = match name.to_ascii_lowercase().as_str() {
            "info" => Severity::Info,
            "warn" | "warning" => Severity::Warning,
            "error" | "err" => Severity::Error,
            "fatal" | "crit" => Severity::Fatal,
            "panic" => Severity::Panic,
            _ => return None,
        };
        Some(severity)
    }

    /// `text`, or `label: text`.
    pub fn prefixed(self, text: &str) -> String {
        match self.label() {
            Some(label) => format!("{label}: {text}"),
            None => text.to_string(),
        }
    }
}

/// The text as Postfix logs it: each control character (newline, tab,
/// escape...) becomes `?` (Postfix's printable()), so that one message is
/// always one line and cannot forge another record or a terminal escape.
pub fn clean(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// At most `MAX_TEXT` bytes of `text`, cut at a character boundary.
pub fn truncate(text: &str) -> &str {
    if text.len() <= MAX_TEXT {
        return text;
    }
    let mut end = MAX_TEXT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// The host part of a maillog_file line: the first label of $myhostname.
pub fn short_host(myhostname: &str) -> &str {
    match myhostname.split('.').next() {
        Some(label) if !label.is_empty() => label,
        _ => NO_HOSTNAME,
    }
}

/// `syslog_name/SERVICE` (Postfix's mail_task()): the service is reduced
/// to its base name, so `/usr/libexec/postfix/smtpd` gives `postfix/smtpd`.
pub fn ident(syslog_name: &str, service: &str) -> String {
    let base = match service.rsplit('/').next() {
        Some(base) if !base.is_empty() => base,
        _ => service,
    };
    format!("{syslog_name}/{base}")
}

/// One maillog_file line, newline included. `text` is already cleaned.
pub fn file_line(
    time: &NaiveDateTime,
    host: &str,
    tag: &str,
    pid: u32,
    severity: Severity,
    text: &str,
) -> String {
    let mut line = String::with_capacity(48 + tag.len() + text.len());
    // Writing to a String cannot fail, and every item of this fixed
    // format is valid, so the result is ignored rather than unwrapped.
    let _ = write!(line, "{} ", time.format("%b %d %H:%M:%S"));
    let _ = write!(line, "{host} {tag}[{pid}]: ");
    if let Some(label) = severity.label() {
        line.push_str(label);
        line.push_str(": ");
    }
    line.push_str(truncate(text));
    line.push('\n');
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn at(month: u32, day: u32, h: u32, m: u32, s: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(2024, month, day)
            .and_then(|d| d.and_hms_opt(h, m, s))
            .expect("valid test date")
    }

    #[test]
    fn line_format_matches_postfix() {
        let line = file_line(
            &at(11, 21, 22, 18, 11),
            "mail",
            "postfix/postlog",
            29199,
            Severity::Info,
            "hello world",
        );
        assert_eq!(
            line,
            "Nov 21 22:18:11 mail postfix/postlog[29199]: hello world\n"
        );
    }

    #[test]
    fn single_digit_day_and_hour_are_zero_padded() {
        let line = file_line(
            &at(3, 1, 4, 5, 6),
            "mx",
            "postfix/smtpd",
            7,
            Severity::Info,
            "x",
        );
        assert_eq!(line, "Mar 01 04:05:06 mx postfix/smtpd[7]: x\n");
    }

    #[test]
    fn severity_prefixes() {
        let when = at(1, 2, 3, 4, 5);
        let cases = [
            (Severity::Info, "t[1]: text\n"),
            (Severity::Warning, "t[1]: warning: text\n"),
            (Severity::Error, "t[1]: error: text\n"),
            (Severity::Fatal, "t[1]: fatal: text\n"),
            (Severity::Panic, "t[1]: panic: text\n"),
        ];
        for (severity, tail) in cases {
            let line = file_line(&when, "h", "t", 1, severity, "text");
            assert!(line.ends_with(&format!(" h {tail}")), "{line:?}");
        }
        assert_eq!(Severity::Warning.prefixed("x"), "warning: x");
        assert_eq!(Severity::Info.prefixed("x"), "x");
    }

    #[test]
    fn postlog_severity_names() {
        for (name, want) in [
            ("info", Severity::Info),
            ("warn", Severity::Warning),
            ("WARNING", Severity::Warning),
            ("err", Severity::Error),
            ("error", Severity::Error),
            ("crit", Severity::Fatal),
            ("fatal", Severity::Fatal),
            ("Panic", Severity::Panic),
        ] {
            assert_eq!(Severity::from_name(name), Some(want), "{name}");
        }
        assert_eq!(Severity::from_name("notice"), None);
        assert_eq!(Severity::from_name(""), None);
    }

    #[test]
    fn control_characters_become_question_marks() {
        assert_eq!(clean("a\nb\tc\x1b[0m\u{85}"), "a?b?c?[0m?");
        assert_eq!(clean("naïve ünïcode"), "naïve ünïcode");
    }

    #[test]
    fn long_text_is_cut_at_a_character_boundary() {
        let long = "é".repeat(MAX_TEXT);
        let cut = truncate(&long);
        assert!(cut.len() <= MAX_TEXT && cut.len() >= MAX_TEXT - 1);
        assert!(cut.chars().all(|c| c == 'é'));
        assert_eq!(truncate("short"), "short");
    }

    #[test]
    fn host_is_first_label() {
        assert_eq!(short_host("mail.example.com"), "mail");
        assert_eq!(short_host("localhost"), "localhost");
        assert_eq!(short_host(""), "amnesiac");
    }

    #[test]
    fn ident_uses_base_name() {
        assert_eq!(ident("postfix", "smtpd"), "postfix/smtpd");
        assert_eq!(
            ident("postfix-out", "/usr/libexec/postfix/qmgr"),
            "postfix-out/qmgr"
        );
    }
}
