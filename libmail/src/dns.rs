//! DNS lookups for the SMTP client (MX, A, AAAA) and smtpd's client
//! checks (PTR, A for DNS blocklists, TXT for their reply texts), on
//! hickory-resolver. What matters to a mail system is the difference
//! between "this name has no such record" (bounce, reject) and "the
//! answer could not be had" (SERVFAIL, timeout: defer, 4xx), so every
//! lookup returns one or the other, never a bare error.
//!
//! The servers are those of /etc/resolv.conf, or those listed in the
//! postfix-rs extension parameter `dns_resolver_servers` (`127.0.0.1:5353`,
//! `[::1]:53`): tests point it at a name server of their own.
//!
//! `Lookup` is the interface the programs use; `Dns` is the real one and
//! `StaticDns` a fixed table for unit tests without a network.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

use hickory_resolver::config::{NameServerConfig, Protocol, ResolverConfig, ResolverOpts};
use hickory_resolver::error::{ResolveError, ResolveErrorKind};
use hickory_resolver::proto::op::{Message, Query, ResponseCode};
use hickory_resolver::proto::rr::{Name, RData, RecordType};
use hickory_resolver::Resolver;

use crate::config::{value::split_list, Config, ConfigError};

/// Why a lookup has no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    /// NXDOMAIN, or the name exists without records of the type: a
    /// permanent answer.
    #[error("Name service error for name={name} type={rtype}: {}", match .no_data {
        true => "Host found but no data record of requested type",
        false => "Host not found",
    })]
    NotFound {
        name: String,
        rtype: &'static str,
        /// The name exists, only not with this type.
        no_data: bool,
    },
    /// SERVFAIL, REFUSED, a timeout or no server to ask: try later.
    #[error("Name service error for name={name} type={rtype}: Host not found, try again")]
    TempFail {
        name: String,
        rtype: &'static str,
        /// What went wrong, for a warning in the log.
        detail: String,
    },
}

impl DnsError {
    pub fn is_temporary(&self) -> bool {
        matches!(self, DnsError::TempFail { .. })
    }

    pub fn not_found(name: &str, rtype: &'static str) -> DnsError {
        DnsError::NotFound {
            name: name.to_string(),
            rtype,
            no_data: false,
        }
    }

    pub fn temp_fail(name: &str, rtype: &'static str, detail: &str) -> DnsError {
        DnsError::TempFail {
            name: name.to_string(),
            rtype,
            detail: detail.to_string(),
        }
    }
}

/// One MX record; an empty exchange is the null MX of RFC 7505 (`0 .`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MxRecord {
    pub preference: u16,
    pub exchange: String,
}

impl MxRecord {
    pub fn is_null(&self) -> bool {
        self.exchange.is_empty()
    }
}

/// Which address families inet_protocols allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Families {
    pub ipv4: bool,
    pub ipv6: bool,
}

impl Families {
    pub const ALL: Families = Families {
        ipv4: true,
        ipv6: true,
    };

    pub fn from_config(config: &Config) -> Result<Families, ConfigError> {
        let value = config.string("inet_protocols")?;
        Families::parse(&value).map_err(|word| ConfigError::BadValue {
            location: config.location("inet_protocols"),
            reason: format!("unknown inet_protocols value \"{word}\""),
        })
    }

    /// `all`, `ipv4`, `ipv6`, `ipv4, ipv6`; the bad word otherwise.
    pub fn parse(value: &str) -> Result<Families, String> {
        let mut families = Families {
            ipv4: false,
            ipv6: false,
        };
        for word in split_list(value) {
            match word.to_ascii_lowercase().as_str() {
                "all" => families = Families::ALL,
                "ipv4" => families.ipv4 = true,
                "ipv6" => families.ipv6 = true,
                _ => return Err(word.to_string()),
            }
        }
        if !families.ipv4 && !families.ipv6 {
            return Err(value.to_string());
        }
        Ok(families)
    }

    pub fn allows(&self, ip: &IpAddr) -> bool {
        match ip {
            IpAddr::V4(_) => self.ipv4,
            IpAddr::V6(_) => self.ipv6,
        }
    }
}

/// The lookups the mail programs make.
pub trait Lookup {
    /// MX records, in the order the server gave them.
    fn mx(&self, domain: &str) -> Result<Vec<MxRecord>, DnsError>;
    fn a(&self, host: &str) -> Result<Vec<Ipv4Addr>, DnsError>;
    fn aaaa(&self, host: &str) -> Result<Vec<Ipv6Addr>, DnsError>;
    /// Host names of an address (PTR), without the trailing dot.
    fn ptr(&self, addr: IpAddr) -> Result<Vec<String>, DnsError>;
    /// TXT records, each one's strings joined.
    fn txt(&self, name: &str) -> Result<Vec<String>, DnsError>;
}

/// The addresses of `host` in the allowed families, IPv4 first. Not
/// found only when no allowed family has one; a temporary failure of
/// one family is the answer when the other has nothing.
pub fn host_addresses(
    lookup: &dyn Lookup,
    host: &str,
    families: Families,
) -> Result<Vec<IpAddr>, DnsError> {
    let mut found = Vec::new();
    let mut failure: Option<DnsError> = None;
    let mut keep = |error: DnsError| match &failure {
        Some(old) if old.is_temporary() => {}
        _ => failure = Some(error),
    };
    if families.ipv4 {
        match lookup.a(host) {
            Ok(list) => found.extend(list.into_iter().map(IpAddr::V4)),
            Err(e) => keep(e),
        }
    }
    if families.ipv6 {
        match lookup.aaaa(host) {
            Ok(list) => found.extend(list.into_iter().map(IpAddr::V6)),
            Err(e) => keep(e),
        }
    }
    match (found.is_empty(), failure) {
        (false, _) => Ok(found),
        (true, Some(error)) => Err(error),
        (true, None) => Err(DnsError::not_found(host, "A")),
    }
}

/// `name.` : names are asked as they are, never with a search domain
/// appended (Postfix does not set RES_DNSRCH for these lookups).
fn absolute(name: &str) -> String {
    match name.ends_with('.') {
        true => name.to_string(),
        false => format!("{name}."),
    }
}

/// The resolver, set up from main.cf.
pub struct Dns {
    resolver: Resolver,
    /// The servers the resolver asks, for the questions it will not
    /// send (see `loopback_ptr`).
    servers: Vec<SocketAddr>,
    timeout: Duration,
}

impl Dns {
    pub fn from_config(config: &Config) -> Result<Dns, ConfigError> {
        let servers = config.string("dns_resolver_servers")?;
        let bad = |reason: String| ConfigError::BadValue {
            location: config.location("dns_resolver_servers"),
            reason: format!("dns_resolver_servers: {reason}"),
        };
        let addresses = parse_servers(&servers).map_err(bad)?;
        Dns::new(&addresses).map_err(|e| bad(format!("cannot set up the resolver: {e}")))
    }

    /// A resolver asking `servers`, or /etc/resolv.conf's when empty.
    pub fn new(servers: &[SocketAddr]) -> std::io::Result<Dns> {
        let (resolver, servers, timeout) = if servers.is_empty() {
            let (config, mut options) = hickory_resolver::system_conf::read_system_conf()
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            tune(&mut options);
            let mut addresses: Vec<SocketAddr> = config
                .name_servers()
                .iter()
                .map(|s| s.socket_addr)
                .collect();
            addresses.dedup();
            let timeout = options.timeout;
            (Resolver::new(config, options)?, addresses, timeout)
        } else {
            let mut config = ResolverConfig::new();
            for server in servers {
                config.add_name_server(NameServerConfig::new(*server, Protocol::Udp));
                config.add_name_server(NameServerConfig::new(*server, Protocol::Tcp));
            }
            let mut options = ResolverOpts::default();
            tune(&mut options);
            // A test server answers at once; do not wait 5s for one that
            // is down.
            options.timeout = Duration::from_secs(2);
            let timeout = options.timeout;
            (Resolver::new(config, options)?, servers.to_vec(), timeout)
        };
        Ok(Dns {
            resolver,
            servers,
            timeout,
        })
    }

    /// PTR for a loopback address, asked of the servers directly: the
    /// resolver library answers `localhost` itself for all of 127/8 and
    /// ::1 (RFC 6761), where the system resolver, and so Postfix, asks
    /// the DNS.
    fn loopback_ptr(&self, name: &str) -> Result<Vec<String>, DnsError> {
        let fail = |detail: String| DnsError::temp_fail(name, "PTR", &detail);
        let query_name = Name::from_ascii(absolute(name)).map_err(|e| fail(e.to_string()))?;
        let mut message = Message::new();
        let id = std::process::id() as u16
            ^ std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos() as u16)
                .unwrap_or(0);
        message.set_id(id).set_recursion_desired(true);
        message.add_query(Query::query(query_name, RecordType::PTR));
        let request = message.to_vec().map_err(|e| fail(e.to_string()))?;
        let mut detail = "no name server to ask".to_string();
        for server in &self.servers {
            match exchange(*server, &request, id, self.timeout) {
                Ok(answer) => return ptr_records(name, &answer),
                Err(err) => detail = format!("{server}: {err}"),
            }
        }
        Err(fail(detail))
    }

    fn records(&self, name: &str, rtype: RecordType) -> Result<Vec<RData>, DnsError> {
        let label = type_label(rtype);
        match self.resolver.lookup(absolute(name), rtype) {
            Ok(lookup) => {
                let data: Vec<RData> = lookup
                    .record_iter()
                    .filter(|r| r.record_type() == rtype)
                    .filter_map(|r| r.data().cloned())
                    .collect();
                match data.is_empty() {
                    true => Err(DnsError::NotFound {
                        name: name.to_string(),
                        rtype: label,
                        no_data: true,
                    }),
                    false => Ok(data),
                }
            }
            Err(err) => Err(classify(name, label, &err)),
        }
    }
}

/// One question to one server over UDP, again over TCP when the answer
/// did not fit.
fn exchange(
    server: SocketAddr,
    request: &[u8],
    id: u16,
    timeout: Duration,
) -> std::io::Result<Message> {
    let bad = |e: hickory_resolver::proto::error::ProtoError| std::io::Error::other(e.to_string());
    let local: SocketAddr = match server {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local)?;
    socket.set_read_timeout(Some(timeout))?;
    socket.connect(server)?;
    socket.send(request)?;
    let mut buf = vec![0u8; 4096];
    let answer = loop {
        let n = socket.recv(&mut buf)?;
        let answer = Message::from_vec(&buf[..n]).map_err(bad)?;
        if answer.id() == id {
            break answer;
        }
    };
    if !answer.truncated() {
        return Ok(answer);
    }
    let mut stream = TcpStream::connect_timeout(&server, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    let length = u16::try_from(request.len()).map_err(std::io::Error::other)?;
    stream.write_all(&length.to_be_bytes())?;
    stream.write_all(request)?;
    let mut length = [0u8; 2];
    stream.read_exact(&mut length)?;
    let mut body = vec![0u8; usize::from(u16::from_be_bytes(length))];
    stream.read_exact(&mut body)?;
    Message::from_vec(&body).map_err(bad)
}

/// The PTR names of an answer, or why there are none.
fn ptr_records(name: &str, answer: &Message) -> Result<Vec<String>, DnsError> {
    match answer.response_code() {
        ResponseCode::NoError => {}
        ResponseCode::NXDomain => return Err(DnsError::not_found(name, "PTR")),
        other => {
            let detail = format!("server answered {other}");
            return Err(DnsError::temp_fail(name, "PTR", &detail));
        }
    }
    let names: Vec<String> = answer
        .answers()
        .iter()
        .filter_map(|r| match r.data() {
            Some(RData::PTR(p)) => Some(name_text(&p.0)),
            _ => None,
        })
        .collect();
    match names.is_empty() {
        true => Err(DnsError::NotFound {
            name: name.to_string(),
            rtype: "PTR",
            no_data: true,
        }),
        false => Ok(names),
    }
}

fn tune(options: &mut ResolverOpts) {
    // Names are asked fully qualified; the hosts file is not DNS.
    options.ndots = 0;
    options.use_hosts_file = false;
    options.preserve_intermediates = false;
}

/// `127.0.0.1:5353 [::1]:53 192.0.2.1` (port 53 when none is given).
pub fn parse_servers(value: &str) -> Result<Vec<SocketAddr>, String> {
    split_list(value)
        .into_iter()
        .map(|word| {
            word.parse::<SocketAddr>()
                .or_else(|_| {
                    word.trim_matches(['[', ']'])
                        .parse::<IpAddr>()
                        .map(|ip| SocketAddr::new(ip, 53))
                })
                .map_err(|_| format!("bad name server address \"{word}\""))
        })
        .collect()
}

fn type_label(rtype: RecordType) -> &'static str {
    match rtype {
        RecordType::MX => "MX",
        RecordType::A => "A",
        RecordType::AAAA => "AAAA",
        RecordType::PTR => "PTR",
        RecordType::TXT => "TXT",
        _ => "other",
    }
}

fn classify(name: &str, rtype: &'static str, err: &ResolveError) -> DnsError {
    match err.kind() {
        ResolveErrorKind::NoRecordsFound { response_code, .. } => match *response_code {
            ResponseCode::NXDomain => DnsError::not_found(name, rtype),
            ResponseCode::NoError => DnsError::NotFound {
                name: name.to_string(),
                rtype,
                no_data: true,
            },
            other => DnsError::temp_fail(name, rtype, &format!("server answered {other}")),
        },
        _ => DnsError::temp_fail(name, rtype, &err.to_string()),
    }
}

/// A domain name from the wire, without the root dot.
fn name_text(name: &hickory_resolver::proto::rr::Name) -> String {
    let text = name.to_ascii();
    text.strip_suffix('.').unwrap_or(&text).to_string()
}

impl Lookup for Dns {
    fn mx(&self, domain: &str) -> Result<Vec<MxRecord>, DnsError> {
        Ok(self
            .records(domain, RecordType::MX)?
            .into_iter()
            .filter_map(|d| match d {
                RData::MX(mx) => Some(MxRecord {
                    preference: mx.preference(),
                    exchange: name_text(mx.exchange()),
                }),
                _ => None,
            })
            .collect())
    }

    fn a(&self, host: &str) -> Result<Vec<Ipv4Addr>, DnsError> {
        Ok(self
            .records(host, RecordType::A)?
            .into_iter()
            .filter_map(|d| match d {
                RData::A(a) => Some(a.0),
                _ => None,
            })
            .collect())
    }

    fn aaaa(&self, host: &str) -> Result<Vec<Ipv6Addr>, DnsError> {
        Ok(self
            .records(host, RecordType::AAAA)?
            .into_iter()
            .filter_map(|d| match d {
                RData::AAAA(a) => Some(a.0),
                _ => None,
            })
            .collect())
    }

    fn ptr(&self, addr: IpAddr) -> Result<Vec<String>, DnsError> {
        let name = reverse_name(addr);
        if addr.is_loopback() {
            return self.loopback_ptr(&name);
        }
        Ok(self
            .records(&name, RecordType::PTR)?
            .into_iter()
            .filter_map(|d| match d {
                RData::PTR(p) => Some(name_text(&p.0)),
                _ => None,
            })
            .collect())
    }

    fn txt(&self, name: &str) -> Result<Vec<String>, DnsError> {
        Ok(self
            .records(name, RecordType::TXT)?
            .into_iter()
            .filter_map(|d| match d {
                RData::TXT(t) => Some(
                    t.iter()
                        .map(|part| String::from_utf8_lossy(part).into_owned())
                        .collect::<String>(),
                ),
                _ => None,
            })
            .collect())
    }
}

/// `4.3.2.1.in-addr.arpa` / the nibbles under `ip6.arpa`.
pub fn reverse_name(addr: IpAddr) -> String {
    match addr {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.{}.in-addr.arpa", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(v6) => {
            let mut out = String::new();
            for byte in v6.octets().iter().rev() {
                out.push_str(&format!("{:x}.{:x}.", byte & 0xf, byte >> 4));
            }
            out.push_str("ip6.arpa");
            out
        }
    }
}

/// What `StaticDns` answers for one name and type.
#[derive(Debug, Clone)]
enum Answer {
    Records(Vec<String>),
    ServFail,
}

/// A fixed table of answers, for tests: names without an entry are
/// NXDOMAIN, a name with entries of other types only is "no data".
#[derive(Debug, Clone, Default)]
pub struct StaticDns {
    answers: HashMap<(String, &'static str), Answer>,
}

impl StaticDns {
    pub fn new() -> StaticDns {
        StaticDns::default()
    }

    fn add(mut self, name: &str, rtype: &'static str, value: String) -> StaticDns {
        let key = (name.to_ascii_lowercase(), rtype);
        match self
            .answers
            .entry(key)
            .or_insert(Answer::Records(Vec::new()))
        {
            Answer::Records(list) => list.push(value),
            Answer::ServFail => {}
        }
        self
    }

    /// `exchange` "" is a null MX.
    pub fn with_mx(self, domain: &str, preference: u16, exchange: &str) -> StaticDns {
        self.add(domain, "MX", format!("{preference} {exchange}"))
    }

    pub fn with_a(self, host: &str, ip: &str) -> StaticDns {
        let rtype = match ip.contains(':') {
            true => "AAAA",
            false => "A",
        };
        self.add(host, rtype, ip.to_string())
    }

    pub fn with_ptr(self, addr: &str, name: &str) -> StaticDns {
        let ip: IpAddr = addr.parse().unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        self.add(&reverse_name(ip), "PTR", name.to_string())
    }

    pub fn with_txt(self, name: &str, text: &str) -> StaticDns {
        self.add(name, "TXT", text.to_string())
    }

    /// Every lookup of `name` fails temporarily.
    pub fn with_servfail(mut self, name: &str) -> StaticDns {
        for rtype in ["MX", "A", "AAAA", "PTR", "TXT"] {
            self.answers
                .insert((name.to_ascii_lowercase(), rtype), Answer::ServFail);
        }
        self
    }

    fn get(&self, name: &str, rtype: &'static str) -> Result<Vec<String>, DnsError> {
        let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
        match self.answers.get(&(name.clone(), rtype)) {
            Some(Answer::Records(list)) => Ok(list.clone()),
            Some(Answer::ServFail) => Err(DnsError::temp_fail(&name, rtype, "SERVFAIL")),
            None => Err(DnsError::NotFound {
                no_data: self.answers.keys().any(|(n, _)| *n == name),
                name,
                rtype,
            }),
        }
    }
}

impl Lookup for StaticDns {
    fn mx(&self, domain: &str) -> Result<Vec<MxRecord>, DnsError> {
        Ok(self
            .get(domain, "MX")?
            .iter()
            .filter_map(|v| {
                let (pref, exchange) = v.split_once(' ')?;
                Some(MxRecord {
                    preference: pref.parse().ok()?,
                    exchange: exchange.trim_end_matches('.').to_string(),
                })
            })
            .collect())
    }

    fn a(&self, host: &str) -> Result<Vec<Ipv4Addr>, DnsError> {
        Ok(self
            .get(host, "A")?
            .iter()
            .filter_map(|v| v.parse().ok())
            .collect())
    }

    fn aaaa(&self, host: &str) -> Result<Vec<Ipv6Addr>, DnsError> {
        Ok(self
            .get(host, "AAAA")?
            .iter()
            .filter_map(|v| v.parse().ok())
            .collect())
    }

    fn ptr(&self, addr: IpAddr) -> Result<Vec<String>, DnsError> {
        self.get(&reverse_name(addr), "PTR")
    }

    fn txt(&self, name: &str) -> Result<Vec<String>, DnsError> {
        self.get(name, "TXT")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reverse_names() {
        assert_eq!(
            reverse_name("192.0.2.1".parse().unwrap()),
            "1.2.0.192.in-addr.arpa"
        );
        let v6 = reverse_name("2001:db8::1".parse().unwrap());
        assert!(v6.starts_with("1.0.0.0.0.0.0.0."), "{v6}");
        assert!(v6.ends_with(".8.b.d.0.1.0.0.2.ip6.arpa"), "{v6}");
    }

    #[test]
    fn families() {
        assert_eq!(Families::parse("all"), Ok(Families::ALL));
        let v4 = Families::parse("ipv4").unwrap();
        assert!(v4.ipv4 && !v4.ipv6);
        assert_eq!(Families::parse("ipv4, ipv6"), Ok(Families::ALL));
        assert_eq!(Families::parse("IPv5"), Err("IPv5".to_string()));
    }

    #[test]
    fn servers() {
        assert_eq!(
            parse_servers("127.0.0.1:5353, [::1]:53 192.0.2.1").unwrap(),
            vec![
                "127.0.0.1:5353".parse().unwrap(),
                "[::1]:53".parse().unwrap(),
                "192.0.2.1:53".parse().unwrap()
            ]
        );
        assert!(parse_servers("nameserver").is_err());
        assert!(parse_servers("").unwrap().is_empty());
    }

    #[test]
    fn error_texts_are_postfix_texts() {
        let nx = DnsError::not_found("nosuch.example", "MX");
        assert_eq!(
            nx.to_string(),
            "Name service error for name=nosuch.example type=MX: Host not found"
        );
        let temp = DnsError::temp_fail("broken.example", "MX", "SERVFAIL");
        assert!(temp.is_temporary());
        assert_eq!(
            temp.to_string(),
            "Name service error for name=broken.example type=MX: Host not found, try again"
        );
    }

    #[test]
    fn static_answers_and_address_families() {
        let dns = StaticDns::new()
            .with_mx("example.com", 10, "mx.example.com")
            .with_a("mx.example.com", "192.0.2.1")
            .with_a("mx.example.com", "2001:db8::1")
            .with_a("v6only.example", "2001:db8::2")
            .with_servfail("broken.example");
        assert_eq!(dns.mx("example.com").unwrap()[0].exchange, "mx.example.com");
        let all = host_addresses(&dns, "mx.example.com", Families::ALL).unwrap();
        assert_eq!(all.len(), 2);
        let v4 = Families::parse("ipv4").unwrap();
        assert_eq!(host_addresses(&dns, "mx.example.com", v4).unwrap().len(), 1);
        // AAAA only, IPv4 only allowed: no data of the asked type.
        assert!(matches!(
            host_addresses(&dns, "v6only.example", v4),
            Err(DnsError::NotFound { no_data: true, .. })
        ));
        assert!(host_addresses(&dns, "broken.example", Families::ALL)
            .unwrap_err()
            .is_temporary());
        assert!(matches!(
            dns.mx("nosuch.example"),
            Err(DnsError::NotFound { no_data: false, .. })
        ));
    }
}
