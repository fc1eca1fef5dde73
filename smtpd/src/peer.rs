//! Who the client is: its address, and its host names as Postfix's
//! smtpd_peer.c finds them. The reverse name is what the PTR lookup gave
//! (reverse_client_name); the client name is that name only if a forward
//! lookup of it gives the address back, `unknown` otherwise, with a
//! warning (`hostname X does not resolve to address A`). Each name has a
//! status (ok, temporary failure, not found, forged) for
//! reject_unknown_client_hostname and reject_unknown_reverse_client_hostname.
//!
//! Lookups go through the system resolver (getnameinfo/getaddrinfo, so
//! /etc/hosts counts, as for Postfix), or through libmail::dns when
//! dns_resolver_servers names servers of its own.

use std::net::{IpAddr, SocketAddr};

use libmail::dns::{DnsError, Lookup};
use libmail::restrict::NameStatus;

use crate::settings::Client;

/// How the client's names are looked up.
#[derive(Clone, Copy)]
pub enum Naming<'a> {
    /// smtpd_peername_lookup = no.
    Off,
    /// The system resolver.
    System,
    /// The DNS, through these servers.
    Dns(&'a dyn Lookup),
}

/// Why a lookup gave no answer, with the resolver's words for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Failure {
    Temporary(String),
    Permanent(String),
}

impl Failure {
    fn status(&self) -> NameStatus {
        match self {
            Failure::Temporary(_) => NameStatus::TempFail,
            Failure::Permanent(_) => NameStatus::NotFound,
        }
    }

    fn text(&self) -> &str {
        match self {
            Failure::Temporary(text) | Failure::Permanent(text) => text,
        }
    }
}

/// The client at `peer`, and the warning its lookups gave, if any.
pub fn client(peer: SocketAddr, naming: Naming) -> (Client, Option<String>) {
    let addr = plain_address(peer.ip());
    let mut client = Client::new("unknown", &addr.to_string(), peer.port());
    let warning = match naming {
        Naming::Off => None,
        _ => look_up_names(&mut client, addr, naming),
    };
    (client, warning)
}

/// Fills in the names and their status: the reverse name first, then
/// the forward confirmation that makes it the client name.
fn look_up_names(client: &mut Client, addr: IpAddr, naming: Naming) -> Option<String> {
    let name = match reverse(addr, naming) {
        Ok(name) => name,
        Err(failure) => {
            client.name_status = failure.status();
            client.reverse_name_status = failure.status();
            return None;
        }
    };
    client.reverse_name = name.clone();
    client.reverse_name_status = NameStatus::Ok;
    let (status, warning) = match forward(&name, addr, naming) {
        Ok(list) if list.contains(&addr) => (NameStatus::Ok, None),
        Ok(_) => (
            NameStatus::Forged,
            Some(format!(
                "hostname {name} does not resolve to address {addr}"
            )),
        ),
        Err(failure) => (
            match failure {
                Failure::Temporary(_) => NameStatus::TempFail,
                Failure::Permanent(_) => NameStatus::Forged,
            },
            Some(format!(
                "hostname {name} does not resolve to address {addr}: {}",
                failure.text()
            )),
        ),
    };
    client.name_status = status;
    if status == NameStatus::Ok {
        client.name = name;
    }
    warning
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

/// The PTR name. A numeric or malformed answer is no name: an address
/// posing as a name would slip past address-based access rules.
fn reverse(addr: IpAddr, naming: Naming) -> Result<String, Failure> {
    let name = match naming {
        Naming::Dns(dns) => dns
            .ptr(addr)
            .map_err(|e| dns_failure(&e))?
            .into_iter()
            .next()
            .ok_or_else(|| Failure::Permanent(NO_NAME.to_string()))?,
        _ => system_reverse(addr)?,
    };
    match is_host_name(&name) {
        true => Ok(name),
        false => Err(Failure::Permanent(NO_NAME.to_string())),
    }
}

/// The addresses of `name` in the client's address family.
fn forward(name: &str, addr: IpAddr, naming: Naming) -> Result<Vec<IpAddr>, Failure> {
    match naming {
        Naming::Dns(dns) => {
            let found = match addr {
                IpAddr::V4(_) => dns.a(name).map(|l| l.into_iter().map(IpAddr::V4).collect()),
                IpAddr::V6(_) => dns
                    .aaaa(name)
                    .map(|l| l.into_iter().map(IpAddr::V6).collect()),
            };
            found.map_err(|e| dns_failure(&e))
        }
        _ => system_forward(name, addr),
    }
}

/// glibc's words (gai_strerror) for what the DNS answered.
const NO_NAME: &str = "Name or service not known";
const NO_DATA: &str = "No address associated with hostname";
const TRY_AGAIN: &str = "Temporary failure in name resolution";

fn dns_failure(err: &DnsError) -> Failure {
    match err {
        DnsError::TempFail { .. } => Failure::Temporary(TRY_AGAIN.to_string()),
        DnsError::NotFound { no_data: true, .. } => Failure::Permanent(NO_DATA.to_string()),
        DnsError::NotFound { .. } => Failure::Permanent(NO_NAME.to_string()),
    }
}

fn system_reverse(addr: IpAddr) -> Result<String, Failure> {
    let socket = SocketAddr::new(addr, 0);
    dns_lookup::getnameinfo(&socket, libc::NI_NAMEREQD)
        .map(|(name, _)| name)
        .map_err(system_failure)
}

fn system_forward(name: &str, addr: IpAddr) -> Result<Vec<IpAddr>, Failure> {
    let family = match addr {
        IpAddr::V4(_) => libc::AF_INET,
        IpAddr::V6(_) => libc::AF_INET6,
    };
    let hints = dns_lookup::AddrInfoHints {
        address: family,
        socktype: libc::SOCK_STREAM,
        ..dns_lookup::AddrInfoHints::default()
    };
    let found = dns_lookup::getaddrinfo(Some(name), None, Some(hints)).map_err(system_failure)?;
    Ok(found
        .filter_map(|entry| entry.ok())
        .map(|entry| plain_address(entry.sockaddr.ip()))
        .collect())
}

/// EAI_AGAIN, EAI_MEMORY and EAI_SYSTEM are temporary, as in Postfix's
/// TEMP_AI_ERROR; the text is gai_strerror's.
fn system_failure(err: dns_lookup::LookupError) -> Failure {
    use dns_lookup::LookupErrorKind as Kind;
    let temporary = matches!(err.kind(), Kind::Again | Kind::Memory | Kind::System);
    let text = std::io::Error::from(err).to_string();
    let text = text
        .strip_prefix("failed to lookup address information: ")
        .unwrap_or(&text)
        .to_string();
    match temporary {
        true => Failure::Temporary(text),
        false => Failure::Permanent(text),
    }
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
    use libmail::dns::StaticDns;

    fn at(addr: &str, naming: Naming) -> (Client, Option<String>) {
        client(SocketAddr::new(addr.parse().unwrap(), 2525), naming)
    }

    #[test]
    fn loopback_is_localhost() {
        // /etc/hosts maps 127.0.0.1 to localhost on every Debian system.
        let (c, warning) = at("127.0.0.1", Naming::System);
        assert_eq!(c.name, "localhost");
        assert_eq!(c.log_name(), "localhost[127.0.0.1]");
        assert_eq!(c.port, 2525);
        assert_eq!(c.name_status, NameStatus::Ok);
        assert_eq!(warning, None);
    }

    #[test]
    fn lookups_can_be_turned_off() {
        let (c, _) = at("127.0.0.1", Naming::Off);
        assert_eq!(c.log_name(), "unknown[127.0.0.1]");
        assert_eq!(c.reverse_name, "unknown");
        assert_eq!(c.name_status, NameStatus::NotFound);
        assert_eq!(c.reverse_name_status, NameStatus::NotFound);
    }

    #[test]
    fn mapped_ipv4_is_shown_as_ipv4() {
        let (c, _) = client("[::ffff:127.0.0.1]:25".parse().unwrap(), Naming::Off);
        assert_eq!(c.addr, "127.0.0.1");
    }

    fn dns() -> StaticDns {
        StaticDns::new()
            .with_ptr("192.0.2.1", "good.example")
            .with_a("good.example", "192.0.2.1")
            .with_ptr("192.0.2.2", "forged.example")
            .with_a("forged.example", "192.0.2.99")
            .with_ptr("192.0.2.3", "gone.example")
            .with_ptr("192.0.2.4", "broken.example")
            .with_servfail("broken.example")
            .with_servfail(&libmail::dns::reverse_name("192.0.2.5".parse().unwrap()))
            .with_ptr("192.0.2.6", "192.0.2.6")
            .with_ptr("192.0.2.7", "v6only.example")
            .with_a("v6only.example", "2001:db8::7")
    }

    #[test]
    fn confirmed_and_unconfirmed_names() {
        let dns = dns();
        let names = |addr: &str| {
            let (c, warning) = at(addr, Naming::Dns(&dns));
            (
                c.name,
                c.name_status,
                c.reverse_name,
                c.reverse_name_status,
                warning,
            )
        };
        let ok = NameStatus::Ok;
        assert_eq!(
            names("192.0.2.1"),
            ("good.example".into(), ok, "good.example".into(), ok, None)
        );
        let forged = |name: &str, addr: &str, detail: &str| {
            Some(format!(
                "hostname {name} does not resolve to address {addr}{detail}"
            ))
        };
        assert_eq!(
            names("192.0.2.2"),
            (
                "unknown".into(),
                NameStatus::Forged,
                "forged.example".into(),
                ok,
                forged("forged.example", "192.0.2.2", "")
            )
        );
        assert_eq!(
            names("192.0.2.3"),
            (
                "unknown".into(),
                NameStatus::Forged,
                "gone.example".into(),
                ok,
                forged("gone.example", "192.0.2.3", ": Name or service not known")
            )
        );
        assert_eq!(
            names("192.0.2.4"),
            (
                "unknown".into(),
                NameStatus::TempFail,
                "broken.example".into(),
                ok,
                forged(
                    "broken.example",
                    "192.0.2.4",
                    ": Temporary failure in name resolution"
                )
            )
        );
        let temp = NameStatus::TempFail;
        let unknown = || "unknown".to_string();
        assert_eq!(names("192.0.2.5"), (unknown(), temp, unknown(), temp, None));
        let gone = NameStatus::NotFound;
        assert_eq!(names("192.0.2.9"), (unknown(), gone, unknown(), gone, None));
        // A numeric PTR answer is no name at all.
        assert_eq!(names("192.0.2.6"), (unknown(), gone, unknown(), gone, None));
        // Only the client's own address family counts.
        assert_eq!(names("192.0.2.7").1, NameStatus::Forged);
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
