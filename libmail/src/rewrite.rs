//! Address rewriting as cleanup does it: qualifying bare addresses
//! (append_at_myorigin, append_dot_mydomain, source routes, the percent
//! hack, bang paths), canonical mapping, masquerading, and recursive
//! virtual alias expansion with Postfix's limits. Lookups go through
//! libmail::tables; a table that cannot answer makes the whole rewrite a
//! temporary failure, so the message is deferred rather than misrouted.

use crate::tables::search::{mail_addr_keys, split_address};
use crate::tables::{LookupError, Maps};

/// What qualifying an address needs from main.cf.
#[derive(Debug, Clone)]
pub struct Qualify {
    pub myorigin: String,
    pub mydomain: String,
    pub append_at_myorigin: bool,
    pub append_dot_mydomain: bool,
    pub allow_percent_hack: bool,
    pub swap_bangpath: bool,
}

impl Qualify {
    /// `root` → `root@$myorigin`, `user@host` → `user@host.$mydomain`
    /// (when asked), `@a,@b:user@c` → `user@c`, `user%host` → `user@host`,
    /// `host!user` → `user@host`. The null sender stays empty.
    pub fn qualify(&self, address: &str) -> String {
        if address.is_empty() {
            return String::new();
        }
        let mut address = strip_source_route(address).to_string();
        if !address.contains('@') {
            if self.swap_bangpath {
                if let Some((host, user)) = address.split_once('!') {
                    address = format!("{user}@{host}");
                }
            }
            if self.allow_percent_hack && !address.contains('@') {
                if let Some((user, host)) = address.rsplit_once('%') {
                    address = format!("{user}@{host}");
                }
            }
        }
        let (localpart, domain) = split_address(&address);
        match domain {
            None if self.append_at_myorigin => format!("{localpart}@{}", self.myorigin),
            Some(domain)
                if self.append_dot_mydomain
                    && !domain.contains('.')
                    && !domain.starts_with('[') =>
            {
                format!("{localpart}@{domain}.{}", self.mydomain)
            }
            _ => address,
        }
    }
}

/// `@a,@b:user@c` is `user@c`: source routes are ignored, as RFC 5321
/// allows and Postfix does.
fn strip_source_route(address: &str) -> &str {
    if address.starts_with('@') {
        if let Some((_, rest)) = address.split_once(':') {
            return rest;
        }
    }
    address
}

/// Looks an address up in maps the virtual(5)/canonical(5) way and
/// applies the result: `@domain` results keep the user part.
fn map_once(
    maps: &mut Maps,
    address: &str,
    delimiters: &str,
    local: bool,
) -> Result<Option<String>, LookupError> {
    let keys = mail_addr_keys(address, delimiters, local);
    let Some(found) = maps.search(&keys)? else {
        return Ok(None);
    };
    let value = found.value.trim();
    if let Some(domain) = value.strip_prefix('@') {
        let (localpart, _) = split_address(address);
        return Ok(Some(format!("{localpart}@{domain}")));
    }
    Ok(Some(value.to_string()))
}

/// canonical_maps (and the sender/recipient variants): applied until the
/// result no longer changes, at most 10 times (a loop in the table must
/// not hang cleanup).
pub fn canonical(
    maps: &mut Maps,
    address: &str,
    delimiters: &str,
    local: bool,
) -> Result<String, LookupError> {
    let mut current = address.to_string();
    for _ in 0..10 {
        match map_once(maps, &current, delimiters, local)? {
            Some(next) if next != current && !next.is_empty() => current = next,
            _ => break,
        }
    }
    Ok(current)
}

/// masquerade_domains: `user@host.sub.example.com` becomes
/// `user@example.com` for `example.com`; `!sub.example.com` keeps that
/// domain; users in masquerade_exceptions are never masqueraded.
pub fn masquerade(address: &str, domains: &[String], exceptions: &[String]) -> String {
    let (localpart, Some(domain)) = split_address(address) else {
        return address.to_string();
    };
    if exceptions
        .iter()
        .any(|user| user.eq_ignore_ascii_case(localpart))
    {
        return address.to_string();
    }
    let lower = domain.to_ascii_lowercase();
    for pattern in domains {
        let (negated, name) = match pattern.strip_prefix('!') {
            Some(rest) => (true, rest.to_ascii_lowercase()),
            None => (false, pattern.to_ascii_lowercase()),
        };
        let is_sub = lower.ends_with(&format!(".{name}"));
        if negated && (lower == name || is_sub) {
            return address.to_string();
        }
        if !negated && is_sub {
            return format!("{localpart}@{name}");
        }
    }
    address.to_string()
}

/// Limits of virtual alias expansion (virtual_alias_recursion_limit,
/// virtual_alias_expansion_limit).
#[derive(Debug, Clone, Copy)]
pub struct AliasLimits {
    pub recursion: usize,
    pub expansion: usize,
}

/// What an address expanded to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expansion {
    pub addresses: Vec<String>,
    /// The limits cut the expansion short (cleanup defers the message).
    pub limited: bool,
}

/// virtual_alias_maps, recursively: each result is a list of addresses,
/// each expanded again; an address that expands to itself is kept as is;
/// duplicates are dropped.
pub fn expand_virtual(
    maps: &mut Maps,
    address: &str,
    delimiters: &str,
    limits: AliasLimits,
) -> Result<Expansion, LookupError> {
    let mut expansion = Expansion {
        addresses: Vec::new(),
        limited: false,
    };
    expand_into(maps, address, delimiters, limits, 0, &mut expansion)?;
    Ok(expansion)
}

fn expand_into(
    maps: &mut Maps,
    address: &str,
    delimiters: &str,
    limits: AliasLimits,
    depth: usize,
    out: &mut Expansion,
) -> Result<(), LookupError> {
    if depth >= limits.recursion || out.addresses.len() >= limits.expansion {
        out.limited = true;
        return Ok(());
    }
    let Some(value) = map_once(maps, address, delimiters, false)? else {
        push_unique(out, address, limits);
        return Ok(());
    };
    for target in value.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        if target.eq_ignore_ascii_case(address) {
            push_unique(out, target, limits);
        } else {
            expand_into(maps, target, delimiters, limits, depth + 1, out)?;
        }
    }
    Ok(())
}

fn push_unique(out: &mut Expansion, address: &str, limits: AliasLimits) {
    if out
        .addresses
        .iter()
        .any(|a| a.eq_ignore_ascii_case(address))
    {
        return;
    }
    if out.addresses.len() >= limits.expansion {
        out.limited = true;
        return;
    }
    out.addresses.push(address.to_string());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tables::OpenOptions;

    fn qualify() -> Qualify {
        Qualify {
            myorigin: "example.com".into(),
            mydomain: "example.com".into(),
            append_at_myorigin: true,
            append_dot_mydomain: true,
            allow_percent_hack: true,
            swap_bangpath: true,
        }
    }

    fn maps(value: &str) -> Maps {
        Maps::open("test", value, OpenOptions::default()).unwrap()
    }

    #[test]
    fn qualifying_bare_addresses() {
        let q = qualify();
        assert_eq!(q.qualify("root"), "root@example.com");
        assert_eq!(q.qualify("user@host"), "user@host.example.com");
        assert_eq!(q.qualify("user@host.other"), "user@host.other");
        assert_eq!(q.qualify("user@[10.0.0.1]"), "user@[10.0.0.1]");
        assert_eq!(q.qualify("@a,@b:user@c.example"), "user@c.example");
        assert_eq!(q.qualify("user%host.other"), "user@host.other");
        assert_eq!(q.qualify("host.other!user"), "user@host.other");
        assert_eq!(q.qualify(""), "");
        let plain = Qualify {
            append_dot_mydomain: false,
            allow_percent_hack: false,
            swap_bangpath: false,
            ..qualify()
        };
        assert_eq!(plain.qualify("user@host"), "user@host");
        assert_eq!(plain.qualify("user%host"), "user%host@example.com");
    }

    #[test]
    fn canonical_maps_with_domain_results_and_loops() {
        let mut m = maps("inline:{ {root@example.com = admin@example.com}, {@old.example = @new.example}, {a@x.example = b@x.example}, {b@x.example = a@x.example} }");
        assert_eq!(
            canonical(&mut m, "root@example.com", "", false).unwrap(),
            "admin@example.com"
        );
        assert_eq!(
            canonical(&mut m, "joe@old.example", "", false).unwrap(),
            "joe@new.example"
        );
        assert_eq!(
            canonical(&mut m, "other@example.com", "", false).unwrap(),
            "other@example.com"
        );
        // A loop ends after the limit instead of hanging.
        let looped = canonical(&mut m, "a@x.example", "", false).unwrap();
        assert!(looped == "a@x.example" || looped == "b@x.example");
    }

    #[test]
    fn masquerading() {
        let domains = vec!["!sub.example.com".to_string(), "example.com".to_string()];
        let exceptions = vec!["root".to_string()];
        assert_eq!(
            masquerade("u@host.example.com", &domains, &exceptions),
            "u@example.com"
        );
        assert_eq!(
            masquerade("u@example.com", &domains, &exceptions),
            "u@example.com"
        );
        assert_eq!(
            masquerade("u@a.sub.example.com", &domains, &exceptions),
            "u@a.sub.example.com"
        );
        assert_eq!(
            masquerade("root@host.example.com", &domains, &exceptions),
            "root@host.example.com"
        );
        assert_eq!(
            masquerade("u@other.net", &domains, &exceptions),
            "u@other.net"
        );
    }

    #[test]
    fn virtual_alias_expansion() {
        let mut m = maps(
            "inline:{ {list@v.example = a@v.example, b@v.example, ext@other.net}, {a@v.example = alice@real.example}, \
             {b@v.example = b@v.example, bob@real.example}, {@catch.example = catchall@real.example}, \
             {loop1@v.example = loop2@v.example}, {loop2@v.example = loop1@v.example} }",
        );
        let limits = AliasLimits {
            recursion: 1000,
            expansion: 1000,
        };
        let got = expand_virtual(&mut m, "list@v.example", "", limits).unwrap();
        assert_eq!(
            got.addresses,
            [
                "alice@real.example",
                "b@v.example",
                "bob@real.example",
                "ext@other.net"
            ]
        );
        assert!(!got.limited);
        let got = expand_virtual(&mut m, "anyone@catch.example", "", limits).unwrap();
        assert_eq!(got.addresses, ["catchall@real.example"]);
        let got = expand_virtual(
            &mut m,
            "loop1@v.example",
            "",
            AliasLimits {
                recursion: 20,
                expansion: 1000,
            },
        )
        .unwrap();
        assert!(got.limited);
        let got = expand_virtual(
            &mut m,
            "list@v.example",
            "",
            AliasLimits {
                recursion: 1000,
                expansion: 2,
            },
        )
        .unwrap();
        assert_eq!(got.addresses.len(), 2);
        assert!(got.limited);
    }
}
