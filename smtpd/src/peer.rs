//! Who the client is: its address, and its host name from a reverse
//! lookup confirmed by a forward lookup, through the system resolver
//! (getnameinfo/getaddrinfo, so /etc/hosts counts, as for Postfix with
//! the default smtp_host_lookup). A name that does not lead back to the
//! address is `unknown`, as Postfix logs it: `unknown[192.0.2.1]`.

use std::net::{IpAddr, SocketAddr};

use crate::settings::Client;

/// The client at `peer`; `lookup` is smtpd_peername_lookup.
pub fn client(peer: SocketAddr, lookup: bool) -> Client {
    let addr = plain_address(peer.ip());
    let name = match lookup {
        true => verified_name(addr).unwrap_or_else(|| "unknown".to_string()),
        false => "unknown".to_string(),
    };
    Client {
        name,
        addr: addr.to_string(),
        port: peer.port(),
    }
}

/// An IPv4 client on a dual-stack socket arrives as `::ffff:a.b.c.d`;
/// Postfix shows and matches it as `a.b.c.d`.
pub fn plain_address(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// The reverse name of `addr` if a forward lookup of that name gives
/// `addr` back.
fn verified_name(addr: IpAddr) -> Option<String> {
    let name = dns_lookup::lookup_addr(&addr).ok()?;
    if !is_host_name(&name) {
        return None;
    }
    let forward = dns_lookup::lookup_host(&name).ok()?;
    forward
        .into_iter()
        .any(|ip| plain_address(ip) == addr)
        .then_some(name)
}

/// getnameinfo returns the numeric address when there is no name, and
/// a resolver may return junk: only a syntactically valid host name
/// counts.
fn is_host_name(name: &str) -> bool {
    name.parse::<IpAddr>().is_err()
        && !name.is_empty()
        && name.len() <= 255
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_localhost() {
        // /etc/hosts maps 127.0.0.1 to localhost on every Debian system.
        let c = client("127.0.0.1:2525".parse().unwrap(), true);
        assert_eq!(c.name, "localhost");
        assert_eq!(c.log_name(), "localhost[127.0.0.1]");
        assert_eq!(c.port, 2525);
    }

    #[test]
    fn lookups_can_be_turned_off() {
        let c = client("127.0.0.1:25".parse().unwrap(), false);
        assert_eq!(c.log_name(), "unknown[127.0.0.1]");
    }

    #[test]
    fn mapped_ipv4_is_shown_as_ipv4() {
        let c = client("[::ffff:127.0.0.1]:25".parse().unwrap(), false);
        assert_eq!(c.addr, "127.0.0.1");
    }

    #[test]
    fn host_name_syntax() {
        assert!(is_host_name("mail.example.com"));
        assert!(!is_host_name("127.0.0.1"));
        assert!(!is_host_name("bad..name"));
        assert!(!is_host_name("-x.example"));
        assert!(!is_host_name("a b.example"));
    }
}
