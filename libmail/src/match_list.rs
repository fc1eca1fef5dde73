//! Postfix's match lists: the values of mydestination, relay_domains,
//! virtual_alias_domains (domain lists) and mynetworks (network lists).
//! A list is patterns separated by commas or white space, tried in order:
//! `!pattern` negates (a match ends the search with "no"), `/file/name`
//! holds more patterns, `type:table` is looked up, and anything else is a
//! literal domain or network. A table that cannot answer now makes the
//! match a temporary failure, never a "no".

use std::net::IpAddr;

use ipnet::IpNet;

use crate::config::value::split_list;
use crate::tables::{self, Dict, LookupError, TableError};

enum Pattern {
    Domain(String),
    Network(IpNet),
    Address(IpAddr),
    Table(Box<Dict>),
}

struct Entry {
    negated: bool,
    pattern: Pattern,
}

/// Reads the patterns of a list value, expanding `/file/name` entries.
fn parse(value: &str, depth: usize) -> Result<Vec<Entry>, TableError> {
    let mut entries = Vec::new();
    for word in split_list(value) {
        let (negated, word) = match word.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, word),
        };
        if word.starts_with('/') {
            if depth > 10 {
                return Err(TableError::Other(format!("{word}: file nesting too deep")));
            }
            let text = tables::read_text(word)?;
            let mut inner = parse(&strip_comments(&text), depth + 1)?;
            if negated {
                inner.iter_mut().for_each(|e| e.negated = !e.negated);
            }
            entries.extend(inner);
            continue;
        }
        let pattern = if tables::has_type(word) && !word.starts_with('[') {
            Pattern::Table(Box::new(tables::open(word)?))
        } else if let Some(network) = parse_network(word) {
            network
        } else {
            Pattern::Domain(word.to_ascii_lowercase())
        };
        entries.push(Entry { negated, pattern });
    }
    Ok(entries)
}

fn strip_comments(text: &str) -> String {
    text.lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `1.2.3.4`, `1.2.3.0/24`, `[::1]`, `[2001:db8::]/32`.
fn parse_network(word: &str) -> Option<Pattern> {
    let unbracketed = word.replacen('[', "", 1).replacen(']', "", 1);
    if let Ok(network) = unbracketed.parse::<IpNet>() {
        return Some(Pattern::Network(network.trunc()));
    }
    unbracketed.parse::<IpAddr>().ok().map(Pattern::Address)
}

/// A domain list such as mydestination or relay_domains.
pub struct DomainList {
    entries: Vec<Entry>,
    /// parent_domain_matches_subdomains names this list: `example.com`
    /// also matches its subdomains.
    parent_matches: bool,
}

impl DomainList {
    pub fn new(value: &str, parent_matches: bool) -> Result<DomainList, TableError> {
        Ok(DomainList {
            entries: parse(value, 0)?,
            parent_matches,
        })
    }

    /// Whether `domain` is in the list.
    pub fn matches(&mut self, domain: &str) -> Result<bool, LookupError> {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        let parent_matches = self.parent_matches;
        for entry in &mut self.entries {
            if domain_matches(&mut entry.pattern, &domain, parent_matches)? {
                return Ok(!entry.negated);
            }
        }
        Ok(false)
    }
}

fn domain_matches(pattern: &mut Pattern, domain: &str, parent: bool) -> Result<bool, LookupError> {
    match pattern {
        Pattern::Domain(name) => Ok(name_matches(name, domain, parent)),
        Pattern::Table(dict) => table_matches(dict, domain, parent),
        Pattern::Network(_) | Pattern::Address(_) => Ok(false),
    }
}

fn name_matches(pattern: &str, domain: &str, parent: bool) -> bool {
    if let Some(suffix) = pattern.strip_prefix('.') {
        return domain.ends_with(pattern) && domain.len() > suffix.len();
    }
    domain == pattern || (parent && domain.ends_with(&format!(".{pattern}")))
}

/// The domain itself, then (fixed-string tables only) its parents, as
/// `example.com` or `.example.com` depending on parent matching.
fn table_matches(dict: &mut Dict, domain: &str, parent: bool) -> Result<bool, LookupError> {
    if dict.lookup(domain)?.is_some() {
        return Ok(true);
    }
    if dict.is_pattern() {
        return Ok(false);
    }
    for key in tables::search::domain_keys(domain, parent)
        .into_iter()
        .skip(1)
    {
        if dict.lookup(&key.key)?.is_some() {
            return Ok(true);
        }
    }
    Ok(false)
}

/// A network list such as mynetworks.
pub struct NetworkList {
    entries: Vec<Entry>,
}

impl NetworkList {
    pub fn new(value: &str) -> Result<NetworkList, TableError> {
        Ok(NetworkList {
            entries: parse(value, 0)?,
        })
    }

    /// Whether the client (address, and host name when known) is listed.
    pub fn matches(&mut self, address: IpAddr, name: Option<&str>) -> Result<bool, LookupError> {
        let address = canonical(address);
        let text = address.to_string();
        for entry in &mut self.entries {
            let hit = match &mut entry.pattern {
                Pattern::Network(network) => network.contains(&address),
                Pattern::Address(single) => canonical(*single) == address,
                Pattern::Table(dict) => dict.lookup(&text)?.is_some(),
                Pattern::Domain(pattern) => {
                    name.is_some_and(|n| name_matches(pattern, &n.to_ascii_lowercase(), false))
                }
            };
            if hit {
                return Ok(!entry.negated);
            }
        }
        Ok(false)
    }
}

/// `::ffff:1.2.3.4` is the IPv4 client it stands for.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(address),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn domains_exact_subdomain_and_parent() {
        let mut list = DomainList::new(
            "example.com, .sub.example.net !bad.example.org example.org",
            false,
        )
        .unwrap();
        assert!(list.matches("Example.COM").unwrap());
        assert!(!list.matches("a.example.com").unwrap());
        assert!(list.matches("x.sub.example.net").unwrap());
        assert!(!list.matches("sub.example.net").unwrap());
        assert!(!list.matches("bad.example.org").unwrap());
        assert!(list.matches("example.org").unwrap());
        let mut parent = DomainList::new("example.com", true).unwrap();
        assert!(parent.matches("a.b.example.com").unwrap());
        assert!(!parent.matches("badexample.com").unwrap());
    }

    #[test]
    fn domains_from_tables_with_parents() {
        let mut list = DomainList::new("inline:{example.com=x, .example.net=y}", false).unwrap();
        assert!(list.matches("example.com").unwrap());
        assert!(!list.matches("a.example.com").unwrap());
        assert!(list.matches("a.example.net").unwrap());
        let mut parent = DomainList::new("inline:{example.com=x}", true).unwrap();
        assert!(parent.matches("a.example.com").unwrap());
    }

    #[test]
    fn networks() {
        let mut list =
            NetworkList::new("127.0.0.0/8, [::1]/128 !192.168.1.5 192.168.1.0/24 10.1.2.3")
                .unwrap();
        assert!(list.matches(ip("127.0.0.1"), None).unwrap());
        assert!(list.matches(ip("::1"), None).unwrap());
        assert!(list.matches(ip("::ffff:127.0.0.2"), None).unwrap());
        assert!(!list.matches(ip("192.168.1.5"), None).unwrap());
        assert!(list.matches(ip("192.168.1.6"), None).unwrap());
        assert!(list.matches(ip("10.1.2.3"), None).unwrap());
        assert!(!list.matches(ip("10.1.2.4"), None).unwrap());
        let mut cidr = NetworkList::new("cidr:{{10.0.0.0/8 OK}}").unwrap();
        assert!(cidr.matches(ip("10.9.9.9"), None).unwrap());
        assert!(!cidr.matches(ip("11.0.0.1"), None).unwrap());
    }

    #[test]
    fn file_patterns_and_errors() {
        let path = std::env::temp_dir().join(format!("match-list-{}", std::process::id()));
        std::fs::write(&path, "# relays\nexample.com\n  example.net\n").unwrap();
        let mut list = DomainList::new(&path.to_string_lossy(), false).unwrap();
        assert!(list.matches("example.net").unwrap());
        std::fs::remove_file(&path).unwrap();
        assert!(DomainList::new("/nonexistent/file", false).is_err());
        assert!(DomainList::new("xyz:/x", false).is_err());
    }
}
