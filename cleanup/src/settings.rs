//! What cleanup takes from main.cf, read once per process: limits,
//! rewriting settings, and the tables (canonical, virtual, the checks),
//! opened at start so that a message costs no table opens.

use libmail::config::{Config, ConfigError};
use libmail::header_checks::Checks;
use libmail::resolve::{AddressClass, ResolveError, Resolver};
use libmail::rewrite::{AliasLimits, Qualify};
use libmail::tables::search::split_address;
use libmail::tables::{LookupError, Maps, OpenOptions, TableError};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum SettingsError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Table(#[from] TableError),
    #[error("{0}")]
    Resolve(#[from] ResolveError),
    #[error("unknown {name} value: \"{value}\"")]
    BadClass { name: &'static str, value: String },
}

/// The address classes of canonical_classes and masquerade_classes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Classes {
    pub envelope_sender: bool,
    pub envelope_recipient: bool,
    pub header_sender: bool,
    pub header_recipient: bool,
}

impl Classes {
    fn parse(name: &'static str, words: &[String]) -> Result<Classes, SettingsError> {
        let mut classes = Classes::default();
        for word in words {
            match word.to_ascii_lowercase().as_str() {
                "envelope_sender" => classes.envelope_sender = true,
                "envelope_recipient" => classes.envelope_recipient = true,
                "header_sender" => classes.header_sender = true,
                "header_recipient" => classes.header_recipient = true,
                _ => {
                    return Err(SettingsError::BadClass {
                        name,
                        value: word.clone(),
                    })
                }
            }
        }
        Ok(classes)
    }
}

/// Plain values from main.cf.
#[derive(Debug, Clone)]
pub struct Settings {
    pub qualify: Qualify,
    /// remote_header_rewrite_domain: empty means headers of remote mail
    /// are left alone.
    pub remote_domain: String,
    pub myhostname: String,
    pub delimiters: String,
    pub canonical_classes: Classes,
    pub sender_canonical_classes: Classes,
    pub recipient_canonical_classes: Classes,
    pub masquerade_classes: Classes,
    pub masquerade_domains: Vec<String>,
    pub masquerade_exceptions: Vec<String>,
    pub alias_limits: AliasLimits,
    pub enable_original_recipient: bool,
    pub duplicate_filter_limit: usize,
    pub always_add_missing_headers: bool,
    pub undisclosed_recipients_header: String,
    /// `obsolete` puts the full name in a comment after the address.
    pub obsolete_from_format: bool,
    pub drop_headers: Vec<String>,
    pub header_size_limit: usize,
    pub hopcount_limit: usize,
    /// 0: no limit.
    pub message_size_limit: u64,
    pub body_checks_size_limit: usize,
}

impl Settings {
    pub fn from_config(config: &Config) -> Result<Settings, SettingsError> {
        let classes = |name: &'static str| Classes::parse(name, &config.list(name)?);
        let count = |name: &str| -> Result<usize, SettingsError> {
            Ok(usize::try_from(config.int(name)?.max(0)).unwrap_or(usize::MAX))
        };
        let size = |name: &str| -> Result<usize, SettingsError> {
            Ok(usize::try_from(config.size(name)?).unwrap_or(usize::MAX))
        };
        Ok(Settings {
            qualify: Qualify {
                myorigin: config.string("myorigin")?,
                mydomain: config.string("mydomain")?,
                append_at_myorigin: config.bool("append_at_myorigin")?,
                append_dot_mydomain: config.bool("append_dot_mydomain")?,
                allow_percent_hack: config.bool("allow_percent_hack")?,
                swap_bangpath: config.bool("swap_bangpath")?,
            },
            remote_domain: config.string("remote_header_rewrite_domain")?,
            myhostname: config.string("myhostname")?,
            delimiters: config.string("recipient_delimiter")?,
            canonical_classes: classes("canonical_classes")?,
            sender_canonical_classes: classes("sender_canonical_classes")?,
            recipient_canonical_classes: classes("recipient_canonical_classes")?,
            masquerade_classes: classes("masquerade_classes")?,
            masquerade_domains: config.list("masquerade_domains")?,
            masquerade_exceptions: config.list("masquerade_exceptions")?,
            alias_limits: AliasLimits {
                recursion: count("virtual_alias_recursion_limit")?,
                expansion: count("virtual_alias_expansion_limit")?,
            },
            enable_original_recipient: config.bool("enable_original_recipient")?,
            duplicate_filter_limit: count("duplicate_filter_limit")?,
            always_add_missing_headers: config.bool("always_add_missing_headers")?,
            undisclosed_recipients_header: config.string("undisclosed_recipients_header")?,
            obsolete_from_format: config
                .string("header_from_format")?
                .eq_ignore_ascii_case("obsolete"),
            drop_headers: config
                .list("message_drop_headers")?
                .into_iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
            header_size_limit: size("header_size_limit")?,
            hopcount_limit: count("hopcount_limit")?,
            message_size_limit: config.size("message_size_limit")?,
            body_checks_size_limit: size("body_checks_size_limit")?,
        })
    }
}

/// The tables, opened once.
pub struct Tables {
    pub sender_canonical: Option<Maps>,
    pub recipient_canonical: Option<Maps>,
    pub canonical: Option<Maps>,
    pub virtual_alias: Option<Maps>,
    pub header_checks: Option<Checks>,
    pub body_checks: Option<Checks>,
    /// Knows which domains are local (canonical(5) then also looks up the
    /// bare user name).
    pub resolver: Resolver,
}

impl Tables {
    pub fn open(config: &Config) -> Result<Tables, SettingsError> {
        let maps = |name: &str| -> Result<Option<Maps>, SettingsError> {
            let value = config.string(name)?;
            let maps = Maps::open(name, &value, OpenOptions::default())?;
            Ok((!maps.dicts.is_empty()).then_some(maps))
        };
        let checks = |name: &str| -> Result<Option<Checks>, SettingsError> {
            Ok(Checks::open(name, &config.string(name)?)?)
        };
        Ok(Tables {
            sender_canonical: maps("sender_canonical_maps")?,
            recipient_canonical: maps("recipient_canonical_maps")?,
            canonical: maps("canonical_maps")?,
            virtual_alias: maps("virtual_alias_maps")?,
            header_checks: checks("header_checks")?,
            body_checks: checks("body_checks")?,
            resolver: Resolver::new(config)?,
        })
    }

    /// Whether `address` is in a local domain (mydestination).
    pub fn is_local(&mut self, address: &str) -> Result<bool, LookupError> {
        let (_, domain) = split_address(address);
        Ok(self.resolver.classify(domain.unwrap_or(""))? == AddressClass::Local)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_parse_and_refuse_unknown_words() {
        let words = [
            "envelope_sender".to_string(),
            "Header_Recipient".to_string(),
        ];
        let classes = Classes::parse("masquerade_classes", &words).unwrap();
        assert!(classes.envelope_sender && classes.header_recipient);
        assert!(!classes.envelope_recipient && !classes.header_sender);
        let bad = ["envelope".to_string()];
        let err = Classes::parse("masquerade_classes", &bad).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown masquerade_classes value: \"envelope\""
        );
    }

    #[test]
    fn defaults_are_postfix_defaults() {
        let dir = std::env::temp_dir();
        let config = Config::from_text(&dir, "myhostname = mail.example.com\n").unwrap();
        let settings = Settings::from_config(&config).unwrap();
        assert!(settings.masquerade_classes.envelope_sender);
        assert!(!settings.masquerade_classes.envelope_recipient);
        assert_eq!(
            settings.drop_headers,
            ["bcc", "content-length", "resent-bcc", "return-path"]
        );
        assert_eq!(settings.hopcount_limit, 50);
        assert_eq!(settings.header_size_limit, 102400);
        assert_eq!(settings.message_size_limit, 10240000);
        assert_eq!(settings.qualify.myorigin, "mail.example.com");
    }
}
