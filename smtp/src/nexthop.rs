//! From a nexthop to the hosts to try, in order: `[host]:port` and
//! `[address]` go straight to that host; a domain goes to its MX hosts
//! by preference (equal preferences shuffled), or to its own address
//! when it has no MX (RFC 5321 §5.1). A null MX (RFC 7505) or a best MX
//! that is this very host ends the delivery with a bounce.

use std::net::IpAddr;

use rand::seq::SliceRandom;

use libmail::dns::{host_addresses, DnsError, Families, Lookup, MxRecord};
use libmail::service_port::tcp_port;

/// The default SMTP port.
pub const SMTP_PORT: u16 = 25;

/// A parsed nexthop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nexthop {
    pub host: String,
    pub port: u16,
    /// `[host]`: no MX lookup.
    pub literal: bool,
}

impl Nexthop {
    /// `domain`, `domain:port`, `[host]`, `[host]:port`, `[ipv6]:port`;
    /// a port may be a service name (`smtp`, `submission`), found through
    /// known_tcp_ports and /etc/services.
    pub fn parse(text: &str, known_tcp_ports: &str) -> Result<Nexthop, String> {
        let text = text.trim();
        let text = text.strip_prefix("inet:").unwrap_or(text);
        let (host, rest, literal) = match text.strip_prefix('[') {
            Some(inner) => {
                let (host, rest) = inner
                    .split_once(']')
                    .ok_or_else(|| format!("malformed nexthop: \"{text}\""))?;
                (host, rest, true)
            }
            None => match text.split_once(':') {
                Some((host, _)) => (host, &text[host.len()..], false),
                None => (text, "", false),
            },
        };
        let port = match rest.strip_prefix(':') {
            Some(port) => match tcp_port(port, known_tcp_ports)? {
                0 => return Err(format!("unknown service: {port}/tcp")),
                number => number,
            },
            None if rest.is_empty() => SMTP_PORT,
            None => return Err(format!("malformed nexthop: \"{text}\"")),
        };
        let host = host.strip_prefix("IPv6:").unwrap_or(host);
        if host.is_empty() {
            return Err(format!("malformed nexthop: \"{text}\""));
        }
        Ok(Nexthop {
            host: host.to_string(),
            port,
            literal,
        })
    }
}

/// One address to try.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The host name as logged (`mx1.example.com`, or the address).
    pub host: String,
    pub addr: IpAddr,
    pub port: u16,
}

impl Target {
    /// `mx.example.com[192.0.2.1]:25`, the `relay=` of the log.
    pub fn relay(&self) -> String {
        format!("{}[{}]:{}", self.host, self.addr, self.port)
    }

    /// `mx.example.com[192.0.2.1]`, as in `host X said:`.
    pub fn name_addr(&self) -> String {
        format!("{}[{}]", self.host, self.addr)
    }
}

/// Why there is nothing to connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteFailure {
    pub permanent: bool,
    pub dsn: &'static str,
    pub reason: String,
}

impl RouteFailure {
    fn dns(error: &DnsError) -> RouteFailure {
        RouteFailure {
            permanent: !error.is_temporary(),
            dsn: if error.is_temporary() {
                "4.4.3"
            } else {
                "5.4.4"
            },
            reason: format!("Host or domain name not found. {error}"),
        }
    }
}

/// What the route lookup needs to know about this host.
pub struct Myself<'a> {
    pub hostname: &'a str,
    /// inet_interfaces and proxy_interfaces addresses.
    pub addresses: &'a [IpAddr],
}

impl Myself<'_> {
    fn is_me(&self, host: &str, addrs: &[IpAddr]) -> bool {
        host.eq_ignore_ascii_case(self.hostname) || addrs.iter().any(|a| self.addresses.contains(a))
    }
}

/// The addresses to try for `nexthop`, best first, at most `limit`.
pub fn targets(
    dns: &dyn Lookup,
    nexthop: &Nexthop,
    families: Families,
    myself: &Myself,
    limit: usize,
) -> Result<Vec<Target>, RouteFailure> {
    if nexthop.literal {
        return host_targets(dns, &nexthop.host, nexthop.port, families);
    }
    let mx = match dns.mx(&nexthop.host) {
        Ok(records) => records,
        // No MX (the name exists): the domain is its own mail host.
        Err(DnsError::NotFound { no_data: true, .. }) => Vec::new(),
        Err(error) => return Err(RouteFailure::dns(&error)),
    };
    if mx.is_empty() {
        let found = host_targets(dns, &nexthop.host, nexthop.port, families)?;
        if found.iter().any(|t| myself.addresses.contains(&t.addr)) {
            return Err(loops_back(&nexthop.host));
        }
        return Ok(found);
    }
    if mx.iter().any(MxRecord::is_null) {
        return Err(RouteFailure {
            permanent: true,
            dsn: "5.1.0",
            reason: format!("Domain {} does not accept mail (nullMX)", nexthop.host),
        });
    }
    mx_targets(
        dns,
        &nexthop.host,
        sorted(mx),
        nexthop.port,
        families,
        myself,
        limit,
    )
}

/// MX records by preference, equal preferences in random order.
fn sorted(mut mx: Vec<MxRecord>) -> Vec<MxRecord> {
    mx.shuffle(&mut rand::thread_rng());
    mx.sort_by_key(|r| r.preference);
    mx
}

fn mx_targets(
    dns: &dyn Lookup,
    domain: &str,
    mx: Vec<MxRecord>,
    port: u16,
    families: Families,
    myself: &Myself,
    limit: usize,
) -> Result<Vec<Target>, RouteFailure> {
    let mut out = Vec::new();
    let mut failure: Option<RouteFailure> = None;
    for record in mx {
        let addrs = match host_addresses(dns, &record.exchange, families) {
            Ok(addrs) => addrs,
            Err(error) => {
                let this = RouteFailure::dns(&error);
                if !matches!(&failure, Some(f) if !f.permanent) {
                    failure = Some(this);
                }
                continue;
            }
        };
        // This host is an MX of the domain: only better ones may be
        // tried, or the mail would come back here.
        if myself.is_me(&record.exchange, &addrs) {
            if out.is_empty() {
                return Err(loops_back(domain));
            }
            break;
        }
        out.extend(addrs.into_iter().map(|addr| Target {
            host: record.exchange.clone(),
            addr,
            port,
        }));
    }
    if out.is_empty() {
        return Err(failure.unwrap_or_else(|| loops_back(domain)));
    }
    out.truncate(limit.max(1));
    Ok(out)
}

fn host_targets(
    dns: &dyn Lookup,
    host: &str,
    port: u16,
    families: Families,
) -> Result<Vec<Target>, RouteFailure> {
    if let Ok(addr) = host.parse::<IpAddr>() {
        return Ok(vec![Target {
            host: addr.to_string(),
            addr,
            port,
        }]);
    }
    let addrs = host_addresses(dns, host, families).map_err(|e| RouteFailure::dns(&e))?;
    Ok(addrs
        .into_iter()
        .map(|addr| Target {
            host: host.to_string(),
            addr,
            port,
        })
        .collect())
}

fn loops_back(domain: &str) -> RouteFailure {
    RouteFailure {
        permanent: true,
        dsn: "5.4.6",
        reason: format!("mail for {domain} loops back to myself"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KNOWN: &str = "lmtp=24, smtp=25, smtps=submissions=465, submission=587";
    use libmail::dns::StaticDns;

    fn me() -> Vec<IpAddr> {
        vec!["127.0.0.1".parse().unwrap()]
    }

    fn route(dns: &StaticDns, nexthop: &str) -> Result<Vec<Target>, RouteFailure> {
        let addrs = me();
        let myself = Myself {
            hostname: "mail.example.org",
            addresses: &addrs,
        };
        targets(
            dns,
            &Nexthop::parse(nexthop, KNOWN).unwrap(),
            Families::ALL,
            &myself,
            5,
        )
    }

    #[test]
    fn parse_nexthops() {
        let n = Nexthop::parse("[mx.example]:2525", KNOWN).unwrap();
        assert_eq!(
            (n.host.as_str(), n.port, n.literal),
            ("mx.example", 2525, true)
        );
        let n = Nexthop::parse("example.com", KNOWN).unwrap();
        assert_eq!(
            (n.host.as_str(), n.port, n.literal),
            ("example.com", 25, false)
        );
        let n = Nexthop::parse("example.com:submission", KNOWN).unwrap();
        assert_eq!(n.port, 587);
        let n = Nexthop::parse("[IPv6:::1]:26", KNOWN).unwrap();
        assert_eq!((n.host.as_str(), n.port), ("::1", 26));
        assert!(Nexthop::parse("[x", KNOWN).is_err());
        assert!(Nexthop::parse("x:nosuchservice", KNOWN).is_err());
    }

    #[test]
    fn mx_preference_order() {
        let dns = StaticDns::new()
            .with_mx("example.com", 20, "mx2.example.com")
            .with_mx("example.com", 10, "mx1.example.com")
            .with_a("mx1.example.com", "192.0.2.1")
            .with_a("mx2.example.com", "192.0.2.2");
        let t = route(&dns, "example.com").unwrap();
        assert_eq!(
            t.iter().map(|t| t.relay()).collect::<Vec<_>>(),
            [
                "mx1.example.com[192.0.2.1]:25",
                "mx2.example.com[192.0.2.2]:25"
            ]
        );
    }

    #[test]
    fn no_mx_falls_back_to_the_address() {
        let dns = StaticDns::new().with_a("plain.example", "192.0.2.9");
        assert_eq!(
            route(&dns, "plain.example").unwrap()[0].relay(),
            "plain.example[192.0.2.9]:25"
        );
        // A literal does not look for MX records at all.
        let dns = StaticDns::new()
            .with_mx("example.com", 10, "mx1.example.com")
            .with_a("example.com", "192.0.2.7");
        assert_eq!(
            route(&dns, "[example.com]:26").unwrap()[0].relay(),
            "example.com[192.0.2.7]:26"
        );
    }

    #[test]
    fn failures() {
        let dns = StaticDns::new()
            .with_mx("null.example", 0, "")
            .with_mx("self.example", 10, "mail.example.org")
            .with_a("mail.example.org", "127.0.0.1")
            .with_mx("better.example", 5, "mx.better.example")
            .with_mx("better.example", 10, "local.better.example")
            .with_a("mx.better.example", "192.0.2.3")
            .with_a("local.better.example", "127.0.0.1")
            .with_servfail("broken.example");
        let null = route(&dns, "null.example").unwrap_err();
        assert_eq!(
            (null.dsn, null.reason.as_str()),
            ("5.1.0", "Domain null.example does not accept mail (nullMX)")
        );
        let looped = route(&dns, "self.example").unwrap_err();
        assert_eq!(looped.reason, "mail for self.example loops back to myself");
        assert_eq!(route(&dns, "better.example").unwrap().len(), 1);
        let nx = route(&dns, "nosuch.example").unwrap_err();
        assert!(nx.permanent);
        assert_eq!(nx.reason, "Host or domain name not found. Name service error for name=nosuch.example type=MX: Host not found");
        let temp = route(&dns, "broken.example").unwrap_err();
        assert_eq!((temp.permanent, temp.dsn), (false, "4.4.3"));
    }
}
