//! The TCP port of a service name, as Postfix finds it: a number, then
//! known_tcp_ports (`lmtp=24, smtp=25, smtps=submissions=465,
//! submission=587`), then /etc/services. master uses it for inet
//! listeners, smtp for `host:service` nexthops.

use crate::config::value::split_list;

/// `port` as a number, or the port of that service name.
pub fn tcp_port(port: &str, known_tcp_ports: &str) -> Result<u16, String> {
    if let Ok(number) = port.parse::<u16>() {
        return Ok(number);
    }
    known_port(port, known_tcp_ports)
        .or_else(|| services_port(port))
        .ok_or_else(|| format!("unknown service: {port}/tcp"))
}

/// `name=name=number` entries of known_tcp_ports.
fn known_port(port: &str, known_tcp_ports: &str) -> Option<u16> {
    split_list(known_tcp_ports).into_iter().find_map(|entry| {
        let mut names: Vec<&str> = entry.split('=').map(str::trim).collect();
        let number = names.pop()?.parse().ok()?;
        names.contains(&port).then_some(number)
    })
}

fn services_port(port: &str) -> Option<u16> {
    let services = std::fs::read_to_string("/etc/services").unwrap_or_default();
    services
        .lines()
        .filter_map(|line| {
            let line = line.split('#').next()?;
            let mut words = line.split_whitespace();
            let name = words.next()?;
            let (number, proto) = words.next()?.split_once('/')?;
            let aliases: Vec<&str> = words.collect();
            (proto == "tcp" && (name == port || aliases.contains(&port))).then_some(number)
        })
        .find_map(|number| number.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KNOWN: &str = "lmtp=24, smtp=25, smtps=submissions=465, submission=587";

    #[test]
    fn numbers_known_names_and_services() {
        assert_eq!(tcp_port("2525", ""), Ok(2525));
        assert_eq!(tcp_port("submission", KNOWN), Ok(587));
        assert_eq!(tcp_port("submissions", KNOWN), Ok(465));
        if std::path::Path::new("/etc/services").exists() {
            assert_eq!(tcp_port("smtp", ""), Ok(25));
        }
        assert!(tcp_port("no-such-service-x", KNOWN).is_err());
    }
}
