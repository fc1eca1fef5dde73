//! Error text helpers shared by every program, so that messages read like
//! Postfix's (`open /etc/postfix/main.cf: No such file or directory`).

use std::io;

/// The system's text for an I/O error, without Rust's ` (os error N)` tail.
pub fn strerror(err: &io::Error) -> String {
    let text = err.to_string();
    match text.find(" (os error ") {
        Some(at) => text[..at].to_string(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_os_error_suffix() {
        let err = io::Error::from_raw_os_error(2);
        assert_eq!(strerror(&err), "No such file or directory");
    }

    #[test]
    fn keeps_custom_text() {
        let err = io::Error::other("short write");
        assert_eq!(strerror(&err), "short write");
    }
}
