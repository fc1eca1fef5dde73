//! The main.cf parameters local(8) uses, read once per process.

use std::time::Duration;

use libmail::config::{Config, ConfigError};
use libmail::mailbox::{LockMethods, MboxSettings};

/// Why the settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Bad(String),
}

/// Where a destination came from, for allow_mail_to_commands/files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Alias,
    Forward,
    Include,
}

/// Which sources a permission list names.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Allowed {
    pub alias: bool,
    pub forward: bool,
    pub include: bool,
}

impl Allowed {
    fn parse(name: &str, words: &[String]) -> Result<Allowed, SettingsError> {
        let mut allowed = Allowed::default();
        for word in words {
            match word.to_ascii_lowercase().as_str() {
                "alias" => allowed.alias = true,
                "forward" => allowed.forward = true,
                "include" => allowed.include = true,
                other => {
                    return Err(SettingsError::Bad(format!(
                        "bad {name} value: {other} (legal: alias, forward, include)"
                    )))
                }
            }
        }
        Ok(allowed)
    }

    pub fn allows(&self, source: Source) -> bool {
        match source {
            Source::Alias => self.alias,
            Source::Forward => self.forward,
            Source::Include => self.include,
        }
    }
}

/// prepend_delivered_header: where Delivered-To: is added besides
/// mailboxes (which always get it).
#[derive(Debug, Clone, Copy, Default)]
pub struct DeliveredTo {
    pub command: bool,
    pub file: bool,
    pub forward: bool,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub myhostname: String,
    pub recipient_delimiter: String,
    pub alias_maps: String,
    pub allow_commands: Allowed,
    pub allow_files: Allowed,
    pub default_privs: String,
    pub forward_path: String,
    pub forward_filter: String,
    pub mailbox_command: String,
    pub command_filter: String,
    pub home_mailbox: String,
    pub mail_spool_directory: String,
    pub command_time_limit: Duration,
    pub local_command_shell: String,
    pub command_execution_directory: String,
    pub export_environment: Vec<String>,
    pub mbox: MboxSettings,
    pub strict_mailbox_ownership: bool,
    pub delivered_to: DeliveredTo,
    pub enable_original_recipient: bool,
    pub owner_request_special: bool,
    pub expand_owner_alias: bool,
}

impl Settings {
    pub fn from_config(config: &Config) -> Result<Settings, SettingsError> {
        let raw = |name: &str| -> Result<String, SettingsError> {
            Ok(config.get(name)?.unwrap_or_default())
        };
        let locks = LockMethods::parse(&config.list("mailbox_delivery_lock")?)
            .map_err(SettingsError::Bad)?;
        let prepend = config.list("prepend_delivered_header")?;
        let has = |word: &str| prepend.iter().any(|w| w.eq_ignore_ascii_case(word));
        Ok(Settings {
            myhostname: config.string("myhostname")?,
            recipient_delimiter: config.string("recipient_delimiter")?,
            alias_maps: config.string("alias_maps")?,
            allow_commands: Allowed::parse(
                "allow_mail_to_commands",
                &config.list("allow_mail_to_commands")?,
            )?,
            allow_files: Allowed::parse(
                "allow_mail_to_files",
                &config.list("allow_mail_to_files")?,
            )?,
            default_privs: config.string("default_privs")?,
            forward_path: raw("forward_path")?,
            forward_filter: config.string("forward_expansion_filter")?,
            mailbox_command: raw("mailbox_command")?,
            command_filter: config.string("command_expansion_filter")?,
            home_mailbox: config.string("home_mailbox")?,
            mail_spool_directory: config.string("mail_spool_directory")?,
            command_time_limit: Duration::from_secs(config.time("command_time_limit")?),
            local_command_shell: config.string("local_command_shell")?,
            command_execution_directory: raw("command_execution_directory")?,
            export_environment: config.list("export_environment")?,
            mbox: MboxSettings {
                locks,
                lock_attempts: config.int("deliver_lock_attempts")?.clamp(1, 1000) as u32,
                lock_delay: Duration::from_secs(config.time("deliver_lock_delay")?),
                stale_lock_time: Duration::from_secs(config.time("stale_lock_time")?),
                size_limit: config.size("mailbox_size_limit")?,
                required_owner: None,
            },
            strict_mailbox_ownership: config.bool("strict_mailbox_ownership")?,
            delivered_to: DeliveredTo {
                command: has("command"),
                file: has("file"),
                forward: has("forward"),
            },
            enable_original_recipient: config.bool("enable_original_recipient")?,
            owner_request_special: config.bool("owner_request_special")?,
            expand_owner_alias: config.bool("expand_owner_alias")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_permission_lists() {
        let dir = std::env::temp_dir();
        let config = Config::from_text(&dir, "allow_mail_to_files = alias\n").unwrap();
        let s = Settings::from_config(&config).unwrap();
        assert!(s.allow_commands.allows(Source::Forward));
        assert!(!s.allow_commands.allows(Source::Include));
        assert!(!s.allow_files.allows(Source::Forward));
        assert_eq!(s.command_time_limit, Duration::from_secs(1000));
        assert_eq!(s.mbox.size_limit, 51_200_000);
        assert!(s.mbox.locks.fcntl && s.mbox.locks.dotlock);
        assert!(s.forward_path.starts_with("$home/.forward"));
        let bad = Config::from_text(&dir, "allow_mail_to_files = everything\n").unwrap();
        assert!(Settings::from_config(&bad).is_err());
    }
}
