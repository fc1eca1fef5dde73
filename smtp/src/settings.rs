//! What smtp(8) reads from main.cf (and master.cf's -o overrides) once
//! at start: timeouts, the HELO name, the TLS policy, connection reuse
//! and the address families.

use std::net::IpAddr;
use std::time::Duration;

use libmail::config::{Config, ConfigError};
use libmail::dns::Families;

use crate::tls::{Level, TlsPolicy};

/// The smtp_*_timeout parameters.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub connect: Duration,
    pub helo: Duration,
    pub starttls: Duration,
    pub mail: Duration,
    pub rcpt: Duration,
    pub data_init: Duration,
    pub data_xfer: Duration,
    pub data_done: Duration,
    pub rset: Duration,
    pub quit: Duration,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub helo_name: String,
    pub myhostname: String,
    /// inet_interfaces and proxy_interfaces: an MX that is one of these
    /// is this host.
    pub my_addresses: Vec<IpAddr>,
    pub families: Families,
    pub timeouts: Timeouts,
    pub never_send_ehlo: bool,
    pub skip_5xx_greeting: bool,
    pub mx_address_limit: usize,
    pub mx_session_limit: usize,
    pub cache_time_limit: Duration,
    pub reuse_count_limit: u64,
    pub reuse_time_limit: Duration,
    pub tls: TlsPolicy,
    /// Service names for `host:service` nexthops.
    pub known_tcp_ports: String,
}

impl Settings {
    pub fn from_config(config: &Config) -> Result<Settings, ConfigError> {
        let time = |name: &str| -> Result<Duration, ConfigError> {
            Ok(Duration::from_secs(config.time(name)?.max(1)))
        };
        let count = |name: &str| -> Result<i64, ConfigError> { config.int(name) };
        Ok(Settings {
            helo_name: config.string("smtp_helo_name")?,
            myhostname: config.string("myhostname")?,
            my_addresses: libmail::resolve::interface_addresses(
                config,
                &["inet_interfaces", "proxy_interfaces"],
            )?,
            families: Families::from_config(config)?,
            timeouts: Timeouts {
                connect: time("smtp_connect_timeout")?,
                helo: time("smtp_helo_timeout")?,
                starttls: time("smtp_starttls_timeout")?,
                mail: time("smtp_mail_timeout")?,
                rcpt: time("smtp_rcpt_timeout")?,
                data_init: time("smtp_data_init_timeout")?,
                data_xfer: time("smtp_data_xfer_timeout")?,
                data_done: time("smtp_data_done_timeout")?,
                rset: time("smtp_rset_timeout")?,
                quit: time("smtp_quit_timeout")?,
            },
            never_send_ehlo: config.bool("smtp_never_send_ehlo")?,
            skip_5xx_greeting: config.bool("smtp_skip_5xx_greeting")?,
            mx_address_limit: count("smtp_mx_address_limit")?.max(1) as usize,
            mx_session_limit: count("smtp_mx_session_limit")?.max(1) as usize,
            cache_time_limit: match config.bool("smtp_connection_cache_on_demand")? {
                true => Duration::from_secs(config.time("smtp_connection_cache_time_limit")?),
                false => Duration::ZERO,
            },
            reuse_count_limit: count("smtp_connection_reuse_count_limit")?.max(0) as u64,
            reuse_time_limit: time("smtp_connection_reuse_time_limit")?,
            tls: tls_policy(config)?,
            known_tcp_ports: config.string("known_tcp_ports")?,
        })
    }
}

/// smtp_tls_security_level, or the obsolete smtp_enforce_tls /
/// smtp_use_tls when it is empty (Postfix's order).
fn tls_policy(config: &Config) -> Result<TlsPolicy, ConfigError> {
    let written = config.string("smtp_tls_security_level")?;
    let level = match written.trim() {
        "" if config.bool("smtp_enforce_tls")? => Level::Verify,
        "" if config.bool("smtp_use_tls")? => Level::May,
        "" => Level::None,
        other => Level::parse(other).ok_or_else(|| ConfigError::BadValue {
            location: config.location("smtp_tls_security_level"),
            reason: format!("invalid smtp_tls_security_level value \"{other}\""),
        })?,
    };
    Ok(TlsPolicy {
        level,
        ca_file: config.string("smtp_tls_CAfile")?,
        ca_path: config.string("smtp_tls_CApath")?,
        loglevel: config.int("smtp_tls_loglevel")?,
    })
}
