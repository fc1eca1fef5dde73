//! qmgr's main.cf and master.cf settings, read once at start: the scan
//! and memory limits, the retry policy, and per transport the scheduler
//! limits, each from `TRANSPORT_NAME` when the transport has that
//! parameter (built in, as local_destination_concurrency_limit, defined
//! by a master.cf service, or set in main.cf) and `default_NAME`
//! otherwise.

use std::time::Duration;

use libmail::config::master_cf::{MasterCf, ServiceType};
use libmail::config::{Config, ConfigError};

use crate::retry::Policy;
use crate::scheduler::TransportLimits;

/// What qmgr reads from main.cf.
#[derive(Debug, Clone)]
pub struct Settings {
    pub queue_run_delay: Duration,
    pub message_active_limit: usize,
    pub message_recipient_limit: usize,
    pub policy: Policy,
}

impl Settings {
    pub fn from_config(config: &Config) -> Result<Settings, ConfigError> {
        let count = |name: &str| config.int(name).map(|n| n.max(1) as usize);
        Ok(Settings {
            queue_run_delay: Duration::from_secs(config.time("queue_run_delay")?.max(1)),
            message_active_limit: count("qmgr_message_active_limit")?,
            message_recipient_limit: count("qmgr_message_recipient_limit")?,
            policy: Policy::from_config(config)?,
        })
    }
}

/// `TRANSPORT_SUFFIX` when it exists, `FALLBACK` otherwise.
fn per_transport(
    config: &Config,
    transport: &str,
    suffix: &str,
    fallback: &str,
) -> Result<i64, ConfigError> {
    let own = format!("{transport}_{suffix}");
    if config.get(&own)?.is_some() {
        return config.int(&own);
    }
    config.int(fallback)
}

/// The scheduler limits of `transport`.
pub fn transport_limits(
    config: &Config,
    master: Option<&MasterCf>,
    transport: &str,
) -> Result<TransportLimits, ConfigError> {
    let default =
        |suffix: &str| per_transport(config, transport, suffix, &format!("default_{suffix}"));
    let positive = |n: i64| n.max(1);
    let recipient_limit = positive(default("destination_recipient_limit")?);
    let concurrency_limit = positive(default("destination_concurrency_limit")?);
    let initial = per_transport(
        config,
        transport,
        "initial_destination_concurrency",
        "initial_destination_concurrency",
    )?;
    let cohorts = default("destination_concurrency_failed_cohort_limit")?;
    Ok(TransportLimits {
        recipient_limit: recipient_limit as usize,
        concurrency_limit: concurrency_limit.min(u32::MAX as i64) as u32,
        initial_concurrency: positive(initial).min(concurrency_limit) as u32,
        failed_cohort_limit: cohorts.clamp(0, u32::MAX as i64) as u32,
        process_limit: process_limit(config, master, transport)?,
    })
}

/// The agent's maxproc in master.cf; `-`, 0 (no limit) or no entry:
/// default_process_limit, so that qmgr never runs an unbounded number
/// of delivery threads.
fn process_limit(
    config: &Config,
    master: Option<&MasterCf>,
    transport: &str,
) -> Result<usize, ConfigError> {
    let written = master.and_then(|m| {
        m.entries
            .iter()
            .find(|e| e.service == transport && e.kind == ServiceType::Unix)
            .and_then(|e| e.max_process())
            .filter(|&n| n > 0)
    });
    match written {
        Some(n) => Ok(n as usize),
        None => Ok(config.int("default_process_limit")?.max(1) as usize),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const MASTER: &str = "\
smtp      unix  -       -       n       -       -       smtp
local     unix  -       n       n       -       7       local
relay     unix  -       -       n       -       0       smtp
";

    fn setup(main_cf: &str) -> (Config, MasterCf) {
        let dir = Path::new("/nonexistent");
        let mut config = Config::from_text(dir, main_cf).unwrap();
        let master = MasterCf::parse(&dir.join("master.cf"), MASTER).unwrap();
        config.add_service_defaults(&master);
        (config, master)
    }

    #[test]
    fn postfix_defaults_per_transport() {
        let (config, master) = setup("");
        let local = transport_limits(&config, Some(&master), "local").unwrap();
        assert_eq!(local.recipient_limit, 1);
        assert_eq!(local.concurrency_limit, 2);
        assert_eq!(local.initial_concurrency, 2);
        assert_eq!(local.process_limit, 7);
        let smtp = transport_limits(&config, Some(&master), "smtp").unwrap();
        assert_eq!(smtp.recipient_limit, 50);
        assert_eq!(smtp.concurrency_limit, 20);
        assert_eq!(smtp.initial_concurrency, 5);
        assert_eq!(smtp.failed_cohort_limit, 1);
        assert_eq!(smtp.process_limit, 100);
        let relay = transport_limits(&config, Some(&master), "relay").unwrap();
        assert_eq!(relay.process_limit, 100);
        // Not in master.cf at all: the defaults.
        let other = transport_limits(&config, None, "other").unwrap();
        assert_eq!(other.recipient_limit, 50);
    }

    #[test]
    fn main_cf_overrides_per_transport_and_defaults() {
        let (config, master) = setup(
            "default_destination_concurrency_limit = 8\n\
             smtp_destination_recipient_limit = 3\n\
             other_destination_concurrency_limit = 4\n\
             initial_destination_concurrency = 2\n",
        );
        let smtp = transport_limits(&config, Some(&master), "smtp").unwrap();
        assert_eq!(smtp.recipient_limit, 3);
        assert_eq!(smtp.concurrency_limit, 8);
        assert_eq!(smtp.initial_concurrency, 2);
        let other = transport_limits(&config, None, "other").unwrap();
        assert_eq!(other.concurrency_limit, 4);
    }

    #[test]
    fn global_settings() {
        let (config, _) = setup("queue_run_delay = 60s\n");
        let s = Settings::from_config(&config).unwrap();
        assert_eq!(s.queue_run_delay, Duration::from_secs(60));
        assert_eq!(s.message_active_limit, 20_000);
        assert_eq!(s.policy.minimal_backoff, Duration::from_secs(300));
        assert_eq!(s.policy.queue_lifetime, Duration::from_secs(5 * 86_400));
    }
}
