//! Postfix's lookup conventions, once for every caller: which keys to try,
//! in which order, for an email address (access(5) and virtual(5)), a host
//! name with its parent domains, and an IP address with its shorter
//! prefixes; the recipient_delimiter rule (`user+ext`); and `Maps`, a list
//! of tables searched in order (`alias_maps = hash:/etc/aliases, ...`).
//!
//! Keys marked partial are never given to pattern tables (regexp, pcre,
//! cidr): those see whole strings only, as access(5) documents.

use super::{open_with, Dict, Lookup, LookupError, OpenOptions, TableError};
use crate::config::value::split_list;

/// One key to try, and whether it is only part of what is looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchKey {
    pub key: String,
    pub partial: bool,
}

fn full(key: impl Into<String>) -> SearchKey {
    SearchKey {
        key: key.into(),
        partial: false,
    }
}

fn partial(key: impl Into<String>) -> SearchKey {
    SearchKey {
        key: key.into(),
        partial: true,
    }
}

/// Splits `user+ext` at the first of the recipient_delimiter characters.
/// Like Postfix, never splits postmaster, MAILER-DAEMON, or (when `-` is a
/// delimiter) `owner-list` and `list-request`.
pub fn split_extension<'a>(localpart: &'a str, delimiters: &str) -> Option<(&'a str, &'a str)> {
    if delimiters.is_empty() {
        return None;
    }
    let lower = localpart.to_ascii_lowercase();
    if lower == "postmaster" || lower == "mailer-daemon" {
        return None;
    }
    if delimiters.contains('-') && (lower.starts_with("owner-") || lower.ends_with("-request")) {
        return None;
    }
    let at = localpart.find(|c| delimiters.contains(c))?;
    if at == 0 {
        return None;
    }
    Some((&localpart[..at], &localpart[at..]))
}

/// `user+ext@domain` without its extension, if it has one.
pub fn strip_extension(address: &str, delimiters: &str) -> Option<String> {
    let (localpart, domain) = split_address(address);
    let (base, _) = split_extension(localpart, delimiters)?;
    Some(match domain {
        Some(domain) => format!("{base}@{domain}"),
        None => base.to_string(),
    })
}

/// `(localpart, Some(domain))` at the last `@`.
pub fn split_address(address: &str) -> (&str, Option<&str>) {
    match address.rsplit_once('@') {
        Some((localpart, domain)) => (localpart, Some(domain)),
        None => (address, None),
    }
}

/// A host name and its parent domains: `a.example.com`, then
/// `example.com` and `com` when parent_domain_matches_subdomains names the
/// feature, else `.example.com` and `.com`.
pub fn domain_keys(domain: &str, parent_matches_subdomains: bool) -> Vec<SearchKey> {
    let mut keys = vec![partial(domain)];
    let mut rest = domain;
    // Each round moves `rest` to the next `.parent` suffix.
    while let Some(dot) = rest.get(1..).and_then(|tail| tail.find('.')) {
        rest = &rest[dot + 1..];
        let parent = if parent_matches_subdomains {
            &rest[1..]
        } else {
            rest
        };
        if parent.is_empty() || parent == "." {
            break;
        }
        keys.push(partial(parent));
    }
    keys
}

/// A client or HELO host name as access(5) searches it: the whole name
/// (given to pattern tables too), then its parent domains.
pub fn host_keys(host: &str, parent_matches_subdomains: bool) -> Vec<SearchKey> {
    let mut keys = domain_keys(host, parent_matches_subdomains);
    keys[0].partial = false;
    keys
}

/// access(5)'s order for a mail address: `user+ext@domain`, `user@domain`,
/// the domain and its parents, `user+ext@`, `user@`.
pub fn mail_access_keys(
    address: &str,
    delimiters: &str,
    parent_matches_subdomains: bool,
) -> Vec<SearchKey> {
    let mut keys = vec![full(address)];
    let (localpart, domain) = split_address(address);
    let base = split_extension(localpart, delimiters).map(|(base, _)| base);
    let Some(domain) = domain else {
        keys.extend(base.map(partial));
        return keys;
    };
    if let Some(base) = base {
        keys.push(partial(format!("{base}@{domain}")));
    }
    if !domain.is_empty() {
        keys.extend(domain_keys(domain, parent_matches_subdomains));
    }
    keys.push(partial(format!("{localpart}@")));
    if let Some(base) = base {
        keys.push(partial(format!("{base}@")));
    }
    keys
}

/// virtual(5)/canonical(5)'s order for a mail address: `user+ext@domain`,
/// `user@domain`, then for a local domain `user+ext` and `user`, then
/// `@domain`.
pub fn mail_addr_keys(address: &str, delimiters: &str, local_domain: bool) -> Vec<SearchKey> {
    let mut keys = vec![full(address)];
    let (localpart, domain) = split_address(address);
    let base = split_extension(localpart, delimiters).map(|(base, _)| base);
    if let (Some(base), Some(domain)) = (base, domain) {
        keys.push(partial(format!("{base}@{domain}")));
    }
    if local_domain || domain.is_none() {
        if domain.is_some() {
            keys.push(partial(localpart));
        }
        keys.extend(base.map(partial));
    }
    if let Some(domain) = domain {
        keys.push(partial(format!("@{domain}")));
    }
    keys
}

/// access(5)'s order for a client address: `1.2.3.4`, `1.2.3`, `1.2`,
/// `1`; for IPv6 the same at each `:` from the right.
pub fn address_keys(address: &str) -> Vec<SearchKey> {
    let delimiter = if address.contains(':') { ':' } else { '.' };
    let mut keys = vec![full(address)];
    let mut rest = address;
    while let Some(at) = rest.rfind(delimiter) {
        rest = &rest[..at];
        if rest.is_empty() {
            break;
        }
        keys.push(partial(rest));
    }
    keys
}

/// What a search found: the key that matched and its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub key: String,
    pub value: String,
}

/// Tries `keys` in order against one table; the first found wins, and a
/// temporary failure stops the search.
pub fn search(dict: &mut Dict, keys: &[SearchKey]) -> Result<Option<Found>, LookupError> {
    for key in keys {
        if key.partial && dict.is_pattern() {
            continue;
        }
        if let Some(value) = dict.lookup(&key.key)? {
            return Ok(Some(Found {
                key: key.key.clone(),
                value,
            }));
        }
    }
    Ok(None)
}

/// A list of tables searched in order, as a `*_maps` parameter names them.
pub struct Maps {
    /// The parameter the list came from, for messages.
    pub title: String,
    pub dicts: Vec<Dict>,
}

impl Maps {
    /// Opens every `type:name` in `value` (commas or spaces between them).
    pub fn open(title: &str, value: &str, options: OpenOptions) -> Result<Maps, TableError> {
        let dicts = split_list(value)
            .into_iter()
            .map(|spec| open_with(spec, options))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Maps {
            title: title.to_string(),
            dicts,
        })
    }

    /// The first table that has `key` answers; a temporary failure of any
    /// table consulted first is the answer.
    pub fn find(&mut self, key: &str, partial: bool) -> Lookup {
        for dict in &mut self.dicts {
            if partial && dict.is_pattern() {
                continue;
            }
            if let Some(value) = dict.lookup(key)? {
                return Ok(Some(value));
            }
        }
        Ok(None)
    }

    /// Tries each key against all tables before the next key.
    pub fn search(&mut self, keys: &[SearchKey]) -> Result<Option<Found>, LookupError> {
        for key in keys {
            if let Some(value) = self.find(&key.key, key.partial)? {
                return Ok(Some(Found {
                    key: key.key.clone(),
                    value,
                }));
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tables::open;

    fn keys(found: Vec<SearchKey>) -> Vec<String> {
        found
            .into_iter()
            .map(|k| {
                if k.partial {
                    k.key
                } else {
                    format!("={}", k.key)
                }
            })
            .collect()
    }

    #[test]
    fn access_order_for_addresses() {
        assert_eq!(
            keys(mail_access_keys("user+foo@mail.example.com", "+", true)),
            [
                "=user+foo@mail.example.com",
                "user@mail.example.com",
                "mail.example.com",
                "example.com",
                "com",
                "user+foo@",
                "user@"
            ]
        );
        assert_eq!(
            keys(mail_access_keys("user@mail.example.com", "", false)),
            [
                "=user@mail.example.com",
                "mail.example.com",
                ".example.com",
                ".com",
                "user@"
            ]
        );
        assert_eq!(keys(mail_access_keys("user", "+", true)), ["=user"]);
    }

    #[test]
    fn access_order_for_client_addresses() {
        assert_eq!(
            keys(address_keys("192.168.2.10")),
            ["=192.168.2.10", "192.168.2", "192.168", "192"]
        );
        assert_eq!(
            keys(address_keys("2001:db8::1")),
            ["=2001:db8::1", "2001:db8:", "2001:db8", "2001"]
        );
    }

    #[test]
    fn host_order() {
        assert_eq!(
            keys(host_keys("mail.example.com", false)),
            ["=mail.example.com", ".example.com", ".com"]
        );
        assert_eq!(
            keys(host_keys("example.com.", true)),
            ["=example.com.", "com."]
        );
    }

    #[test]
    fn virtual_order() {
        assert_eq!(
            keys(mail_addr_keys("user+x@example.com", "+", true)),
            [
                "=user+x@example.com",
                "user@example.com",
                "user+x",
                "user",
                "@example.com"
            ]
        );
        assert_eq!(
            keys(mail_addr_keys("user@example.com", "+", false)),
            ["=user@example.com", "@example.com"]
        );
    }

    #[test]
    fn recipient_delimiter_rules() {
        assert_eq!(
            split_extension("user+foo+bar", "+"),
            Some(("user", "+foo+bar"))
        );
        assert_eq!(split_extension("user-foo", "+-"), Some(("user", "-foo")));
        assert_eq!(split_extension("owner-list", "-"), None);
        assert_eq!(split_extension("list-request", "-"), None);
        assert_eq!(split_extension("owner+list", "+"), Some(("owner", "+list")));
        assert_eq!(split_extension("postmaster", "+"), None);
        assert_eq!(split_extension("+x", "+"), None);
        assert_eq!(strip_extension("a+b@c", "+").as_deref(), Some("a@c"));
    }

    #[test]
    fn search_skips_partial_keys_for_patterns_and_stops_at_first() {
        let mut dict = open("inline:{example.com=OK, user@=REJECT}").unwrap();
        let found = search(&mut dict, &mail_access_keys("User@Example.COM", "+", true)).unwrap();
        assert_eq!(
            found,
            Some(Found {
                key: "Example.COM".into(),
                value: "OK".into()
            })
        );
        let mut maps = Maps::open(
            "test",
            "inline:{a=1}, inline:{a=2, b=3}",
            OpenOptions::default(),
        )
        .unwrap();
        assert_eq!(maps.find("a", false).unwrap().as_deref(), Some("1"));
        assert_eq!(maps.find("b", false).unwrap().as_deref(), Some("3"));
        assert_eq!(maps.find("c", false).unwrap(), None);
    }
}
