//! Dates in message headers (Postfix's mail_date): RFC 5322 form in
//! local time, as in the Date: header cleanup adds and pickup's
//! Received: header.

use std::time::SystemTime;

/// `Sat, 21 Nov 2026 10:00:00 +0100` (the day space-padded, as Postfix).
pub fn mail_date(time: SystemTime) -> String {
    let local: chrono::DateTime<chrono::Local> = time.into();
    local.format("%a, %e %b %Y %H:%M:%S %z").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc5322_layout() {
        let date =
            mail_date(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000));
        let words: Vec<&str> = date.split_whitespace().collect();
        assert_eq!(words.len(), 6, "{date}");
        assert!(words[0].ends_with(','), "{date}");
        assert!(
            words[5].starts_with(['+', '-']) && words[5].len() == 5,
            "{date}"
        );
    }
}
