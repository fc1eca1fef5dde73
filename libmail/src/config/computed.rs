//! Defaults that Postfix computes at run time: the host name, the domain,
//! and the trusted networks derived from the machine's interfaces.

use std::net::IpAddr;

/// The domain used when neither the host name nor main.cf supplies one.
pub const DEFAULT_DOMAIN: &str = "localdomain";

/// The system host name as gethostname(2) reports it.
pub fn system_host_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

/// `myhostname`: the host name if it is qualified, else the host name plus
/// `mydomain` (when main.cf sets it) or `localdomain`.
pub fn myhostname(host: &str, explicit_mydomain: Option<&str>) -> String {
    if host.contains('.') {
        host.to_string()
    } else {
        format!("{host}.{}", explicit_mydomain.unwrap_or(DEFAULT_DOMAIN))
    }
}

/// `mydomain`: `myhostname` without its first label, provided what is left
/// still has a dot; otherwise `localdomain`.
pub fn mydomain(myhostname: &str) -> String {
    match myhostname.split_once('.') {
        Some((_, rest)) if rest.contains('.') => rest.to_string(),
        _ => DEFAULT_DOMAIN.to_string(),
    }
}

/// One configured interface address and its netmask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InterfaceAddress {
    pub address: IpAddr,
    pub netmask: IpAddr,
}

/// The addresses of this machine's interfaces (IPv4 and IPv6).
pub fn interface_addresses() -> Vec<InterfaceAddress> {
    let Ok(list) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for ifa in list {
        let (Some(addr), Some(mask)) = (ifa.address, ifa.netmask) else {
            continue;
        };
        let pair = match (addr.as_sockaddr_in(), mask.as_sockaddr_in()) {
            (Some(a), Some(m)) => Some((IpAddr::V4(a.ip()), IpAddr::V4(m.ip()))),
            _ => match (addr.as_sockaddr_in6(), mask.as_sockaddr_in6()) {
                (Some(a), Some(m)) => Some((IpAddr::V6(a.ip()), IpAddr::V6(m.ip()))),
                _ => None,
            },
        };
        if let Some((address, netmask)) = pair {
            out.push(InterfaceAddress { address, netmask });
        }
    }
    out
}

/// `mynetworks` for a `mynetworks_style` (host, subnet or class) and the
/// address families of `inet_protocols`: IPv4 networks first, then IPv6,
/// each once, in interface order.
pub fn mynetworks(addrs: &[InterfaceAddress], style: &str, ipv4: bool, ipv6: bool) -> String {
    let mut nets: Vec<String> = Vec::new();
    for want_v4 in [true, false] {
        if (want_v4 && !ipv4) || (!want_v4 && !ipv6) {
            continue;
        }
        for ifa in addrs.iter().filter(|a| a.address.is_ipv4() == want_v4) {
            let net = network(ifa, style);
            if !nets.contains(&net) {
                nets.push(net);
            }
        }
    }
    nets.join(" ")
}

fn network(ifa: &InterfaceAddress, style: &str) -> String {
    match (ifa.address, ifa.netmask) {
        (IpAddr::V4(addr), IpAddr::V4(mask)) => {
            let bits = u32::from(addr);
            let prefix = match style {
                "host" => 32,
                "class" => class_prefix(bits),
                _ => u32::from(mask).count_ones(),
            };
            let masked = if prefix == 0 {
                0
            } else {
                bits & (u32::MAX << (32 - prefix))
            };
            format!("{}/{}", std::net::Ipv4Addr::from(masked), prefix)
        }
        (IpAddr::V6(addr), IpAddr::V6(mask)) => {
            let bits = u128::from(addr);
            let prefix = if style == "host" {
                128
            } else {
                u128::from(mask).count_ones()
            };
            let masked = if prefix == 0 {
                0
            } else {
                bits & (u128::MAX << (128 - prefix))
            };
            format!("[{}]/{}", std::net::Ipv6Addr::from(masked), prefix)
        }
        (addr, _) => format!("{addr}"),
    }
}

/// The classful prefix of an IPv4 address (A /8, B /16, C /24).
fn class_prefix(bits: u32) -> u32 {
    match bits >> 24 {
        0..=127 => 8,
        128..=191 => 16,
        192..=223 => 24,
        _ => 32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ifa(address: &str, netmask: &str) -> InterfaceAddress {
        InterfaceAddress {
            address: address.parse().unwrap(),
            netmask: netmask.parse().unwrap(),
        }
    }

    fn sample() -> Vec<InterfaceAddress> {
        vec![
            ifa("127.0.0.1", "255.0.0.0"),
            ifa("::1", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
            ifa("192.0.2.2", "255.255.255.0"),
            ifa("fd00::2", "ffff:ffff:ffff:ffff::"),
            ifa("172.16.5.9", "255.255.255.0"),
        ]
    }

    #[test]
    fn host_and_domain() {
        assert_eq!(myhostname("vm", None), "vm.localdomain");
        assert_eq!(myhostname("vm", Some("example.org")), "vm.example.org");
        assert_eq!(myhostname("mail.example.com", None), "mail.example.com");
        assert_eq!(mydomain("mail.example.com"), "example.com");
        assert_eq!(mydomain("vm.localdomain"), "localdomain");
        assert_eq!(mydomain("example.com"), "localdomain");
        assert_eq!(mydomain("vm"), "localdomain");
    }

    #[test]
    fn networks_by_style() {
        let a = sample();
        assert_eq!(
            mynetworks(&a, "subnet", true, true),
            "127.0.0.0/8 192.0.2.0/24 172.16.5.0/24 [::1]/128 [fd00::]/64"
        );
        assert_eq!(
            mynetworks(&a, "host", true, true),
            "127.0.0.1/32 192.0.2.2/32 172.16.5.9/32 [::1]/128 [fd00::2]/128"
        );
        assert_eq!(
            mynetworks(&a, "class", true, false),
            "127.0.0.0/8 192.0.2.0/24 172.16.0.0/16"
        );
        assert_eq!(
            mynetworks(&a, "subnet", false, true),
            "[::1]/128 [fd00::]/64"
        );
    }

    #[test]
    fn this_machine_has_a_loopback() {
        let a = interface_addresses();
        assert!(a.iter().any(|i| i.address.is_loopback()), "{a:?}");
    }
}
