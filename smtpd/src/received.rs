//! The Received: header smtpd puts at the top of each message, in Postfix's
//! layout, and the RFC 5322 date it ends with.

use crate::settings::Stamp;

/// What the header says.
#[derive(Debug, Clone)]
pub struct ReceivedInfo<'a> {
    pub helo: Option<&'a str>,
    pub client_name: &'a str,
    /// The Received: form of the address (`IPv6:` prefixed for IPv6).
    pub client_rfc_addr: &'a str,
    pub myhostname: &'a str,
    pub mail_name: &'a str,
    pub protocol: &'a str,
    pub queue_id: &'a str,
    /// The recipient when there is exactly one.
    pub single_recipient: Option<&'a str>,
    pub stamp: &'a Stamp,
}

/// `Sat, 21 Nov 2026 10:00:00 +0000 (UTC)`, as Postfix's mail_date().
pub fn rfc5322_date(stamp: &Stamp) -> String {
    let base = stamp.time.format("%a, %d %b %Y %H:%M:%S %z").to_string();
    match &stamp.zone {
        Some(zone) => format!("{base} ({zone})"),
        None => base,
    }
}

/// The header with CRLF line ends, folded as Postfix folds it.
pub fn received_header(info: &ReceivedInfo) -> String {
    let from = info.helo.unwrap_or(info.client_name);
    let mut out = format!(
        "Received: from {from} ({} [{}])\r\n\tby {} ({}) with {} id {}",
        info.client_name,
        info.client_rfc_addr,
        info.myhostname,
        info.mail_name,
        info.protocol,
        info.queue_id
    );
    let date = rfc5322_date(info.stamp);
    match info.single_recipient {
        Some(rcpt) => out.push_str(&format!("\r\n\tfor <{rcpt}>; {date}\r\n")),
        None => out.push_str(&format!(";\r\n\t{date}\r\n")),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::DateTime;

    fn stamp() -> Stamp {
        Stamp {
            time: DateTime::parse_from_rfc3339("2026-11-21T10:00:00+00:00").unwrap(),
            zone: Some("UTC".into()),
        }
    }

    fn info<'a>(stamp: &'a Stamp, rcpt: Option<&'a str>) -> ReceivedInfo<'a> {
        ReceivedInfo {
            helo: Some("client.example"),
            client_name: "localhost",
            client_rfc_addr: "127.0.0.1",
            myhostname: "mx.example.com",
            mail_name: "Postfix",
            protocol: "ESMTP",
            queue_id: "8D9E798C583",
            single_recipient: rcpt,
            stamp,
        }
    }

    #[test]
    fn single_recipient_layout() {
        let s = stamp();
        assert_eq!(
            received_header(&info(&s, Some("u@localhost"))),
            "Received: from client.example (localhost [127.0.0.1])\r\n\tby mx.example.com (Postfix) with ESMTP id 8D9E798C583\r\n\tfor <u@localhost>; Sat, 21 Nov 2026 10:00:00 +0000 (UTC)\r\n"
        );
    }

    #[test]
    fn several_recipients_layout() {
        let s = stamp();
        assert_eq!(
            received_header(&info(&s, None)),
            "Received: from client.example (localhost [127.0.0.1])\r\n\tby mx.example.com (Postfix) with ESMTP id 8D9E798C583;\r\n\tSat, 21 Nov 2026 10:00:00 +0000 (UTC)\r\n"
        );
    }

    #[test]
    fn date_with_offset_and_no_zone_name() {
        let s = Stamp {
            time: DateTime::parse_from_rfc3339("2026-01-02T03:04:05-05:30").unwrap(),
            zone: None,
        };
        assert_eq!(rfc5322_date(&s), "Fri, 02 Jan 2026 03:04:05 -0530");
    }
}
