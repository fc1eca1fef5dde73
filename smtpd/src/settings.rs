//! What main.cf (and the accepted connection) give a session: the smtpd_*
//! parameters the protocol engine obeys, with Postfix 3.7's defaults.

use std::time::Duration;

use chrono::{DateTime, FixedOffset, Utc};
use libmail::restrict::NameStatus;

/// smtpd_forbid_bare_newline: what a line ending in a bare `<LF>` means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BareNewline {
    /// Legacy (vulnerable to SMTP smuggling): `<LF>` is a line end,
    /// `<LF>.<LF>` ends DATA.
    No,
    /// Accept bare `<LF>` as a line end, but only `<CR><LF>.<CR><LF>` ends DATA.
    Normalize,
    /// Reject with smtpd_forbid_bare_newline_reject_code.
    Reject,
}

impl BareNewline {
    /// Parses a main.cf value (case does not matter; `yes` means normalize).
    pub fn parse(value: &str) -> Option<BareNewline> {
        match value.to_ascii_lowercase().as_str() {
            "no" => Some(BareNewline::No),
            "yes" | "normalize" => Some(BareNewline::Normalize),
            "reject" => Some(BareNewline::Reject),
            _ => None,
        }
    }
}

/// The time a Received: header carries, with the zone name Postfix shows in
/// parentheses (`+0000 (UTC)`); `None` omits the parenthesized name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    pub time: DateTime<FixedOffset>,
    pub zone: Option<String>,
}

/// The system clock in UTC, the default clock.
pub fn utc_now() -> Stamp {
    Stamp {
        time: Utc::now().fixed_offset(),
        zone: Some("UTC".to_string()),
    }
}

/// The remote client as the daemon resolved it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    /// Verified host name, or `unknown`.
    pub name: String,
    /// Printable address, e.g. `127.0.0.1` or `::1`.
    pub addr: String,
    pub port: u16,
    /// The name the PTR lookup gave, verified or not, or `unknown`
    /// (Postfix's reverse_client_name).
    pub reverse_name: String,
    /// How the lookups of `name` and `reverse_name` ended, for
    /// reject_unknown_client_hostname and its reverse variant.
    pub name_status: NameStatus,
    pub reverse_name_status: NameStatus,
}

impl Client {
    /// A client whose name needs no lookup: `unknown` counts as not found.
    pub fn new(name: &str, addr: &str, port: u16) -> Client {
        let status = match name {
            "unknown" => NameStatus::NotFound,
            _ => NameStatus::Ok,
        };
        Client {
            name: name.to_string(),
            addr: addr.to_string(),
            port,
            reverse_name: name.to_string(),
            name_status: status,
            reverse_name_status: status,
        }
    }

    /// `name[addr]`, as in every smtpd log line.
    pub fn log_name(&self) -> String {
        format!("{}[{}]", self.name, self.addr)
    }

    /// The address in Received: headers: `IPv6:` prefixed for IPv6.
    pub fn rfc_addr(&self) -> String {
        if self.addr.contains(':') {
            format!("IPv6:{}", self.addr)
        } else {
            self.addr.clone()
        }
    }
}

/// Everything a session needs from main.cf and the connection.
#[derive(Debug, Clone)]
pub struct Settings {
    pub myhostname: String,
    /// mail_name, shown in Received: headers.
    pub mail_name: String,
    /// $smtpd_banner, already expanded (without the `220 `).
    pub banner: String,
    pub message_size_limit: u64,
    pub recipient_limit: usize,
    pub recipient_overshoot_limit: usize,
    pub line_length_limit: usize,
    pub hard_error_limit: u32,
    pub soft_error_limit: u32,
    pub error_sleep_time: Duration,
    /// Not enforced here: cleanup applies it to the headers it writes.
    pub header_size_limit: usize,
    pub disable_vrfy_command: bool,
    /// smtpd_discard_ehlo_keywords, lower case.
    pub discard_ehlo_keywords: Vec<String>,
    pub forbid_bare_newline: BareNewline,
    pub bare_newline_reject_code: u16,
    pub forbid_unauth_pipelining: bool,
    /// smtpd_forbidden_commands' plain names (upper case).
    pub forbidden_commands: Vec<String>,
    pub delay_reject: bool,
    pub helo_required: bool,
    /// smtpd_junk_command_limit: NOOP, VRFY, ETRN and RSET beyond it are errors.
    pub junk_command_limit: u32,
    pub smtputf8_enable: bool,
    pub client: Client,
    /// The clock for Received: headers (tests pin it).
    pub clock: fn() -> Stamp,
}

impl Settings {
    /// Postfix 3.7's defaults for a client, with $myhostname.
    pub fn new(myhostname: &str, client: Client) -> Settings {
        Settings {
            myhostname: myhostname.to_string(),
            mail_name: "Postfix".to_string(),
            banner: format!("{myhostname} ESMTP Postfix"),
            message_size_limit: 10_240_000,
            recipient_limit: 1000,
            recipient_overshoot_limit: 1000,
            line_length_limit: 2048,
            hard_error_limit: 20,
            soft_error_limit: 10,
            error_sleep_time: Duration::from_secs(1),
            header_size_limit: 102_400,
            disable_vrfy_command: false,
            discard_ehlo_keywords: Vec::new(),
            forbid_bare_newline: BareNewline::Normalize,
            bare_newline_reject_code: 550,
            forbid_unauth_pipelining: false,
            forbidden_commands: vec!["CONNECT".into(), "GET".into(), "POST".into()],
            delay_reject: true,
            helo_required: false,
            junk_command_limit: 100,
            smtputf8_enable: true,
            client,
            clock: utc_now,
        }
    }

    /// Whether an EHLO keyword survives smtpd_discard_ehlo_keywords.
    pub fn offers(&self, keyword: &str) -> bool {
        let k = keyword.to_ascii_lowercase();
        !self.discard_ehlo_keywords.contains(&k)
    }
}
