//! Opening the listeners master.cf asks for: inet sockets on each address
//! of inet_interfaces (or the entry's own `host:port`), UNIX-domain stream
//! and datagram sockets and fifos in the queue directory's private/ and
//! public/, with Postfix's modes (the directory decides who may connect).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, ToSocketAddrs};
use std::os::fd::OwnedFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixDatagram, UnixListener};
use std::path::{Path, PathBuf};

use libmail::config::master_cf::{MasterEntry, ServiceType};
use libmail::config::value::split_list;
use libmail::config::Config;
use libmail::error::strerror;
use libmail::service_port::tcp_port;

/// Where a service listens, to tell on reload whether it moved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Inet(Vec<SocketAddr>),
    Path(ServiceType, PathBuf),
}

/// The endpoint of an entry, or why it has none.
pub fn endpoint(entry: &MasterEntry, config: &Config) -> Result<Endpoint, String> {
    match entry.kind {
        ServiceType::Inet => inet_addresses(entry, config).map(Endpoint::Inet),
        kind => {
            let queue = config
                .string("queue_directory")
                .map_err(|e| e.to_string())?;
            let dir = if entry.private() { "private" } else { "public" };
            Ok(Endpoint::Path(
                kind,
                Path::new(&queue).join(dir).join(&entry.service),
            ))
        }
    }
}

/// Opens an endpoint; one descriptor per inet address.
pub fn open(endpoint: &Endpoint) -> Result<Vec<OwnedFd>, String> {
    match endpoint {
        Endpoint::Inet(addresses) => addresses.iter().map(open_inet).collect(),
        Endpoint::Path(kind, path) => open_local(*kind, path).map(|fd| vec![fd]),
    }
}

fn open_inet(address: &SocketAddr) -> Result<OwnedFd, String> {
    // std sets SO_REUSEADDR on Unix, so a restart does not wait out
    // TIME_WAIT; listen(2) backlog is std's 128.
    let listener =
        TcpListener::bind(address).map_err(|e| format!("bind {address}: {}", strerror(&e)))?;
    Ok(listener.into())
}

fn open_local(kind: ServiceType, path: &Path) -> Result<OwnedFd, String> {
    let shown = path.display();
    // A socket or fifo left by a master that died is in the way.
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(format!("remove {shown}: {}", strerror(&e)))
        }
        _ => {}
    }
    let fd: OwnedFd = match kind {
        ServiceType::Fifo => open_fifo(path)?,
        ServiceType::UnixDgram => UnixDatagram::bind(path)
            .map_err(|e| format!("bind {shown}: {}", strerror(&e)))?
            .into(),
        _ => UnixListener::bind(path)
            .map_err(|e| format!("bind {shown}: {}", strerror(&e)))?
            .into(),
    };
    let mode = if kind == ServiceType::Fifo {
        0o622
    } else {
        0o666
    };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("chmod {shown}: {}", strerror(&e)))?;
    Ok(fd)
}

/// A fifo opened for reading and writing, so that it never reads as
/// end-of-file when the last writer goes.
fn open_fifo(path: &Path) -> Result<OwnedFd, String> {
    let shown = path.display();
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o622))
        .map_err(|e| format!("mkfifo {shown}: {}", e.desc()))?;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| format!("open {shown}: {}", strerror(&e)))?;
    Ok(file.into())
}

/// The addresses an inet entry listens on: its own host, or every
/// inet_interfaces address, for the protocols in inet_protocols.
fn inet_addresses(entry: &MasterEntry, config: &Config) -> Result<Vec<SocketAddr>, String> {
    let address = entry
        .inet_address()
        .ok_or_else(|| format!("bad inet service address: \"{}\"", entry.service))?;
    let known = config
        .string("known_tcp_ports")
        .map_err(|e| e.to_string())?;
    let port = tcp_port(&address.port, &known)?;
    let (ipv4, ipv6) = protocols(config)?;
    let hosts = match &address.host {
        Some(host) => vec![host.clone()],
        None => {
            let interfaces = config
                .string("inet_interfaces")
                .map_err(|e| e.to_string())?;
            split_list(&interfaces)
                .into_iter()
                .map(str::to_string)
                .collect()
        }
    };
    let mut out = Vec::new();
    for host in hosts {
        for ip in host_addresses(&host, ipv4, ipv6)? {
            let address = SocketAddr::new(ip, port);
            if !out.contains(&address) {
                out.push(address);
            }
        }
    }
    if out.is_empty() {
        return Err(format!(
            "no usable address for inet service \"{}\"",
            entry.service
        ));
    }
    Ok(out)
}

fn protocols(config: &Config) -> Result<(bool, bool), String> {
    let value = config.string("inet_protocols").map_err(|e| e.to_string())?;
    let words = split_list(&value);
    let all = words.contains(&"all");
    Ok((
        all || words.contains(&"ipv4"),
        all || words.contains(&"ipv6"),
    ))
}

fn host_addresses(host: &str, ipv4: bool, ipv6: bool) -> Result<Vec<IpAddr>, String> {
    let wanted = |ip: &IpAddr| (ip.is_ipv4() && ipv4) || (ip.is_ipv6() && ipv6);
    let candidates: Vec<IpAddr> = match host {
        "all" => vec![Ipv4Addr::UNSPECIFIED.into(), Ipv6Addr::UNSPECIFIED.into()],
        "loopback-only" | "localhost" => {
            vec![Ipv4Addr::LOCALHOST.into(), Ipv6Addr::LOCALHOST.into()]
        }
        _ => match host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        {
            Ok(ip) => vec![ip],
            Err(_) => (host, 0)
                .to_socket_addrs()
                .map_err(|e| format!("host not found: {host}: {}", strerror(&e)))?
                .map(|a| a.ip())
                .collect(),
        },
    };
    Ok(candidates.into_iter().filter(wanted).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_follows_protocols() {
        let v4 = host_addresses("loopback-only", true, false).unwrap();
        assert_eq!(v4, vec![IpAddr::from(Ipv4Addr::LOCALHOST)]);
        let both = host_addresses("127.0.0.1", true, true).unwrap();
        assert_eq!(both.len(), 1);
    }
}
