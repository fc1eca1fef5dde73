//! Sites (the destinations a fast flush log is kept for) and the names of
//! their logs in $queue_directory/flush/.
//!
//! A site is a domain name or an address literal (`[192.0.2.1]`),
//! compared in lower case. Its log file is named by this encoding: ASCII
//! letters, digits, `-`, `_` and `.` stand for themselves, except a `.`
//! at the start; every other byte of the site's UTF-8 text (`/`, `[`,
//! `]`, `:`, `%`, a leading `.`, ...) is written `%XX` with two
//! upper-case hexadecimal digits. So `[192.0.2.1]` is logged in
//! `%5B192.0.2.1%5D`. The encoding is one-to-one (unlike Postfix's, which
//! folds every other character to `_`), never yields `/`, `.` or `..`,
//! and any name a directory listing shows either decodes back to the one
//! site that owns it or is not a log.

use std::net::IpAddr;

use libmail::config::{Config, ConfigError};
use libmail::match_list::{DomainList, NetworkList};
use libmail::tables::{LookupError, TableError};

/// The longest file name the file systems we run on take.
const MAX_FILE_NAME: usize = 255;

/// A site name as the logs know it: lower case, no trailing dot.
pub fn normalize(site: &str) -> String {
    site.trim().trim_end_matches('.').to_lowercase()
}

/// The log file name for a normalized site; `None` for a site that has
/// no name (empty) or whose encoded name would be too long.
pub fn file_name(site: &str) -> Option<String> {
    if site.is_empty() {
        return None;
    }
    let mut name = String::with_capacity(site.len());
    for (i, byte) in site.bytes().enumerate() {
        let plain =
            byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_' || (byte == b'.' && i > 0);
        if plain {
            name.push(char::from(byte));
        } else {
            name.push_str(&format!("%{byte:02X}"));
        }
    }
    (name.len() <= MAX_FILE_NAME).then_some(name)
}

/// The site a log file name stands for; `None` for a name this encoding
/// never produces (another program's file, a temporary file).
pub fn from_file_name(name: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(name.len());
    let mut rest = name.as_bytes();
    while let Some((&byte, tail)) = rest.split_first() {
        if byte == b'%' {
            let hex = tail.get(..2)?;
            let text = std::str::from_utf8(hex).ok()?;
            if text.bytes().any(|b| b.is_ascii_lowercase()) {
                return None;
            }
            bytes.push(u8::from_str_radix(text, 16).ok()?);
            rest = &tail[2..];
        } else {
            bytes.push(byte);
            rest = tail;
        }
    }
    let site = String::from_utf8(bytes).ok()?;
    // Only the canonical spelling is a log: `%41` for `A` is not.
    (file_name(&site).as_deref() == Some(name)).then_some(site)
}

/// The address inside an address literal: `[192.0.2.1]`,
/// `[ipv6:2001:db8::1]`.
fn literal_address(site: &str) -> Option<IpAddr> {
    let inner = site.strip_prefix('[')?.strip_suffix(']')?;
    let inner = match inner.get(..5) {
        Some(prefix) if prefix.eq_ignore_ascii_case("ipv6:") => &inner[5..],
        _ => inner,
    };
    inner.parse().ok()
}

/// fast_flush_domains: which sites get a log.
pub struct Eligible {
    domains: DomainList,
    /// The same list read as networks, for address literals: an entry
    /// `192.0.2.1` or `192.0.2.0/24` makes `[192.0.2.1]` eligible.
    networks: NetworkList,
}

#[derive(Debug, thiserror::Error)]
pub enum EligibleError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("fast_flush_domains: {0}")]
    Table(#[from] TableError),
}

impl Eligible {
    pub fn from_config(config: &Config) -> Result<Eligible, EligibleError> {
        let value = config.string("fast_flush_domains")?;
        let parent = config
            .list("parent_domain_matches_subdomains")?
            .iter()
            .any(|name| name == "fast_flush_domains");
        Eligible::new(&value, parent)
    }

    pub fn new(value: &str, parent_matches: bool) -> Result<Eligible, EligibleError> {
        Ok(Eligible {
            domains: DomainList::new(value, parent_matches)?,
            networks: NetworkList::new(value)?,
        })
    }

    /// Whether a normalized site is in fast_flush_domains; a table that
    /// cannot answer is an error, not a no.
    pub fn allows(&mut self, site: &str) -> Result<bool, LookupError> {
        match literal_address(site) {
            Some(address) => {
                Ok(self.domains.matches(site)? || self.networks.matches(address, None)?)
            }
            None => self.domains.matches(site),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_safe_and_reversible() {
        for site in [
            "example.com",
            "[192.0.2.1]",
            "[ipv6:2001:db8::1]",
            ".hidden",
            "..",
            "a/b",
            "100%",
            "ünïcode.example",
            "under_score-dash",
        ] {
            let name = file_name(site).unwrap();
            assert!(!name.contains('/'), "{name}");
            assert!(!name.starts_with('.'), "{name}");
            assert_eq!(from_file_name(&name).as_deref(), Some(site));
        }
        assert_eq!(file_name("[192.0.2.1]").unwrap(), "%5B192.0.2.1%5D");
        assert_eq!(file_name("example.com").unwrap(), "example.com");
        assert_eq!(file_name(""), None);
        assert_eq!(file_name(&"a".repeat(300)), None);
    }

    #[test]
    fn foreign_names_are_not_logs() {
        for name in [".tmp", "%41", "%4", "%zz", "%2e", "x%FF"] {
            assert_eq!(from_file_name(name), None, "{name}");
        }
    }

    #[test]
    fn normalize_folds_case_and_root_dot() {
        assert_eq!(normalize("Example.COM."), "example.com");
    }

    #[test]
    fn eligibility_follows_the_domain_list() {
        let mut list = Eligible::new("relay.example, !no.example, 192.0.2.0/24", true).unwrap();
        assert!(list.allows("relay.example").unwrap());
        assert!(list.allows("sub.relay.example").unwrap());
        assert!(!list.allows("other.example").unwrap());
        assert!(!list.allows("no.example").unwrap());
        assert!(list.allows("[192.0.2.7]").unwrap());
        assert!(!list.allows("[198.51.100.1]").unwrap());
        let mut strict = Eligible::new("relay.example", false).unwrap();
        assert!(!strict.allows("sub.relay.example").unwrap());
        let mut none = Eligible::new("", true).unwrap();
        assert!(!none.allows("relay.example").unwrap());
    }
}
