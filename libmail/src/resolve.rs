//! Address resolution, Postfix's trivial-rewrite as a library: which
//! address class a recipient domain belongs to (local, virtual alias,
//! virtual mailbox, relay, or default), and so which transport and next
//! hop deliver it, with transport_maps overriding. smtpd uses the class
//! for relay control (reject_unauth_destination), qmgr the transport.

use std::net::IpAddr;

use crate::config::{value::split_list, Config, ConfigError};
use crate::match_list::DomainList;
use crate::tables::search::{domain_keys, split_address, SearchKey};
use crate::tables::{LookupError, Maps, OpenOptions, TableError};

/// The address classes of ADDRESS_CLASS_README.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressClass {
    Local,
    VirtualAlias,
    VirtualMailbox,
    Relay,
    Default,
}

/// Where a recipient goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub class: AddressClass,
    pub transport: String,
    pub nexthop: String,
    pub recipient: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Table(#[from] TableError),
}

/// The settings and tables resolution needs, opened once per daemon.
pub struct Resolver {
    myhostname: String,
    mydestination: DomainList,
    interfaces: Vec<IpAddr>,
    virtual_alias_domains: DomainList,
    virtual_mailbox_domains: DomainList,
    relay_domains: DomainList,
    transport_maps: Option<Maps>,
    parent_for_transport: bool,
    local_transport: String,
    virtual_transport: String,
    relay_transport: String,
    default_transport: String,
    relayhost: String,
}

impl Resolver {
    pub fn new(config: &Config) -> Result<Resolver, ResolveError> {
        let parents = config.list("parent_domain_matches_subdomains")?;
        let parent = |name: &str| parents.iter().any(|p| p == name);
        let domains = |name: &str| -> Result<DomainList, ResolveError> {
            Ok(DomainList::new(&config.string(name)?, parent(name))?)
        };
        let transport_maps = config.string("transport_maps")?;
        Ok(Resolver {
            myhostname: config.string("myhostname")?,
            mydestination: domains("mydestination")?,
            interfaces: interface_addresses(config, &["inet_interfaces", "proxy_interfaces"])?,
            virtual_alias_domains: domains("virtual_alias_domains")?,
            virtual_mailbox_domains: domains("virtual_mailbox_domains")?,
            relay_domains: domains("relay_domains")?,
            transport_maps: if transport_maps.trim().is_empty() {
                None
            } else {
                Some(Maps::open(
                    "transport_maps",
                    &transport_maps,
                    OpenOptions::default(),
                )?)
            },
            parent_for_transport: parent("transport_maps"),
            local_transport: config.string("local_transport")?,
            virtual_transport: config.string("virtual_transport")?,
            relay_transport: config.string("relay_transport")?,
            default_transport: config.string("default_transport")?,
            relayhost: config.string("relayhost")?,
        })
    }

    /// The class of a recipient domain (empty: a local address).
    pub fn classify(&mut self, domain: &str) -> Result<AddressClass, LookupError> {
        if domain.is_empty() || self.is_local_domain(domain)? {
            return Ok(AddressClass::Local);
        }
        if self.virtual_alias_domains.matches(domain)? {
            return Ok(AddressClass::VirtualAlias);
        }
        if self.virtual_mailbox_domains.matches(domain)? {
            return Ok(AddressClass::VirtualMailbox);
        }
        if self.relay_domains.matches(domain)? {
            return Ok(AddressClass::Relay);
        }
        Ok(AddressClass::Default)
    }

    /// mydestination, or an address literal of this machine (`[127.0.0.1]`).
    fn is_local_domain(&mut self, domain: &str) -> Result<bool, LookupError> {
        if let Some(literal) = domain.strip_prefix('[').and_then(|d| d.strip_suffix(']')) {
            let literal = literal.strip_prefix("IPv6:").unwrap_or(literal);
            return Ok(literal
                .parse::<IpAddr>()
                .is_ok_and(|ip| self.interfaces.contains(&ip)));
        }
        self.mydestination.matches(domain)
    }

    /// Class, transport and next hop for a recipient.
    pub fn resolve(&mut self, recipient: &str) -> Result<Resolved, LookupError> {
        let (_, domain) = split_address(recipient);
        let domain = domain.unwrap_or("");
        let class = self.classify(domain)?;
        let (transport, nexthop) = self.default_route(class, domain);
        let (transport, nexthop) = match self.transport_override(recipient, domain)? {
            Some((t, n)) => (
                if t.is_empty() { transport } else { t },
                if n.is_empty() { nexthop } else { n },
            ),
            None => (transport, nexthop),
        };
        Ok(Resolved {
            class,
            transport,
            nexthop,
            recipient: recipient.to_string(),
        })
    }

    fn default_route(&self, class: AddressClass, domain: &str) -> (String, String) {
        let split = |value: &str, nexthop: &str| match value.split_once(':') {
            Some((t, n)) if !n.is_empty() => (t.to_string(), n.to_string()),
            Some((t, _)) => (t.to_string(), nexthop.to_string()),
            None => (value.to_string(), nexthop.to_string()),
        };
        match class {
            AddressClass::Local => split(&self.local_transport, &self.myhostname),
            AddressClass::VirtualAlias => (
                "error".to_string(),
                "User unknown in virtual alias table".to_string(),
            ),
            AddressClass::VirtualMailbox => split(&self.virtual_transport, domain),
            AddressClass::Relay => split(&self.relay_transport, domain),
            AddressClass::Default => {
                let nexthop = if self.relayhost.is_empty() {
                    domain
                } else {
                    &self.relayhost
                };
                split(&self.default_transport, nexthop)
            }
        }
    }

    /// transport(5): the address, then the domain and its parents; the
    /// result is `transport:nexthop` where either part may be empty.
    fn transport_override(
        &mut self,
        recipient: &str,
        domain: &str,
    ) -> Result<Option<(String, String)>, LookupError> {
        let Some(maps) = &mut self.transport_maps else {
            return Ok(None);
        };
        let mut keys = vec![SearchKey {
            key: recipient.to_string(),
            partial: false,
        }];
        if !domain.is_empty() {
            keys.extend(domain_keys(domain, self.parent_for_transport));
        }
        let Some(found) = maps.search(&keys)? else {
            return Ok(None);
        };
        Ok(Some(match found.value.split_once(':') {
            Some((t, n)) => (t.trim().to_string(), n.trim().to_string()),
            None => (found.value.trim().to_string(), String::new()),
        }))
    }
}

/// The addresses of the named parameters (inet_interfaces,
/// proxy_interfaces): `all` means every address of this machine.
pub fn interface_addresses(config: &Config, names: &[&str]) -> Result<Vec<IpAddr>, ConfigError> {
    let mut out: Vec<IpAddr> = Vec::new();
    for name in names {
        for word in split_list(&config.string(name)?) {
            match word {
                "all" => out.extend(
                    crate::config::computed::interface_addresses()
                        .into_iter()
                        .map(|i| i.address),
                ),
                "loopback-only" | "localhost" => out.extend(
                    ["127.0.0.1", "::1"]
                        .iter()
                        .filter_map(|a| a.parse::<IpAddr>().ok()),
                ),
                other => out.extend(other.trim_matches(['[', ']']).parse::<IpAddr>()),
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolver(main_cf: &str) -> Resolver {
        let base = "myhostname = mail.example.com\nmydomain = example.com\ninet_interfaces = 127.0.0.1\ncompatibility_level = 3.7\n";
        let config = Config::from_text(
            std::path::Path::new("/nonexistent"),
            &format!("{base}{main_cf}"),
        )
        .unwrap();
        Resolver::new(&config).unwrap()
    }

    #[test]
    fn classes() {
        let mut r = resolver(
            "virtual_alias_domains = alias.example\nvirtual_mailbox_domains = box.example\nrelay_domains = relay.example\n",
        );
        assert_eq!(r.classify("mail.example.com").unwrap(), AddressClass::Local);
        assert_eq!(r.classify("LOCALHOST").unwrap(), AddressClass::Local);
        assert_eq!(r.classify("[127.0.0.1]").unwrap(), AddressClass::Local);
        assert_eq!(r.classify("[10.9.9.9]").unwrap(), AddressClass::Default);
        assert_eq!(r.classify("").unwrap(), AddressClass::Local);
        assert_eq!(
            r.classify("alias.example").unwrap(),
            AddressClass::VirtualAlias
        );
        assert_eq!(
            r.classify("box.example").unwrap(),
            AddressClass::VirtualMailbox
        );
        assert_eq!(r.classify("relay.example").unwrap(), AddressClass::Relay);
        // relay_domains matches subdomains (parent_domain_matches_subdomains).
        assert_eq!(r.classify("a.relay.example").unwrap(), AddressClass::Relay);
        assert_eq!(r.classify("other.example").unwrap(), AddressClass::Default);
    }

    #[test]
    fn transports_and_nexthops() {
        let mut r = resolver("relayhost = [smarthost.example]\nrelay_domains = relay.example\n");
        let local = r.resolve("root@localhost").unwrap();
        assert_eq!(
            (local.transport.as_str(), local.nexthop.as_str()),
            ("local", "mail.example.com")
        );
        let relay = r.resolve("u@relay.example").unwrap();
        assert_eq!(
            (relay.transport.as_str(), relay.nexthop.as_str()),
            ("relay", "relay.example")
        );
        let other = r.resolve("u@other.example").unwrap();
        assert_eq!(
            (other.transport.as_str(), other.nexthop.as_str()),
            ("smtp", "[smarthost.example]")
        );
    }

    #[test]
    fn transport_maps_override() {
        let mut r = resolver(
            "transport_maps = inline:{ {special@other.example = local:}, {.sub.example = smtp:[10.0.0.1]:2525}, {plain.example = error:nope} }\n",
        );
        let special = r.resolve("special@other.example").unwrap();
        assert_eq!(
            (special.transport.as_str(), special.nexthop.as_str()),
            ("local", "other.example")
        );
        let sub = r.resolve("u@a.sub.example").unwrap();
        assert_eq!(
            (sub.transport.as_str(), sub.nexthop.as_str()),
            ("smtp", "[10.0.0.1]:2525")
        );
        let plain = r.resolve("u@plain.example").unwrap();
        assert_eq!(
            (plain.transport.as_str(), plain.nexthop.as_str()),
            ("error", "nope")
        );
    }
}
