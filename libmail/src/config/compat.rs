//! Backwards compatibility: with a `compatibility_level` below this
//! implementation's, some defaults keep their old, less safe values. Postfix
//! names each such setting when it is used, and asks the administrator to
//! raise the level once the logs show nothing depends on it.

use std::borrow::Cow;

use super::expand::{parse_level, Lookup};
use super::param::DefaultValue;
use super::{registry, Config, ConfigError};

/// The level whose defaults this implementation has.
pub const CURRENT_LEVEL: &str = "3.7";

/// The configuration as it would read at the current compatibility level.
struct AtCurrentLevel<'a>(&'a Config);

impl Lookup for AtCurrentLevel<'_> {
    fn raw(&self, name: &str) -> Option<Cow<'_, str>> {
        if name == "compatibility_level" {
            return Some(Cow::Borrowed(CURRENT_LEVEL));
        }
        self.0.raw(name)
    }
}

/// Is the configured level below the current one?
pub fn is_backwards_compatible(config: &Config) -> Result<bool, ConfigError> {
    let level = config.string("compatibility_level")?;
    let current = parse_level(CURRENT_LEVEL).unwrap_or_default();
    match parse_level(&level) {
        Ok(parsed) => Ok(parsed < current),
        Err(reason) => Err(ConfigError::BadValue {
            location: config.location("compatibility_level"),
            reason,
        }),
    }
}

/// Parameters left at a default that the compatibility level turns into an
/// old value: (name, value in use). Empty at the current level.
pub fn backwards_compatible_defaults(
    config: &Config,
) -> Result<Vec<(String, String)>, ConfigError> {
    let mut out = Vec::new();
    for param in registry::PARAMETERS {
        let DefaultValue::Fixed(default) = param.default else {
            continue;
        };
        if !default.contains("compatibility_level") || config.is_explicit(param.name) {
            continue;
        }
        let now = config.expand(default)?.value;
        let modern = super::expand::expand(default, &AtCurrentLevel(config))?.value;
        if now != modern {
            out.push((param.name.to_string(), now));
        }
    }
    Ok(out)
}

/// The warning a program logs when it relies on such a default.
pub fn default_warning(name: &str, value: &str) -> String {
    format!("using backwards-compatible default setting {name}={value}")
}

/// What `postfix start` and `postfix check` say when the level is old.
pub fn notice() -> [String; 3] {
    [
        "Postfix is using backwards-compatible default settings".to_string(),
        "See http://www.postfix.org/COMPATIBILITY_README.html for details".to_string(),
        format!(
            "To disable backwards compatibility use \"postconf compatibility_level={CURRENT_LEVEL}\" and \"postfix reload\""
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn cfg(text: &str) -> Config {
        Config::from_text(Path::new("/etc/postfix"), text).unwrap()
    }

    #[test]
    fn old_level_lists_old_defaults() {
        let c = cfg("myhostname = mail.example.com\n");
        assert!(is_backwards_compatible(&c).unwrap());
        let old = backwards_compatible_defaults(&c).unwrap();
        let names: Vec<&str> = old.iter().map(|(n, _)| n.as_str()).collect();
        for want in [
            "append_dot_mydomain",
            "mynetworks_style",
            "relay_domains",
            "smtputf8_enable",
            "smtpd_relay_restrictions",
        ] {
            assert!(names.contains(&want), "{want} missing from {names:?}");
        }
        assert!(old.contains(&("mynetworks_style".into(), "subnet".into())));
        assert_eq!(
            default_warning("mynetworks_style", "subnet"),
            "using backwards-compatible default setting mynetworks_style=subnet"
        );
    }

    #[test]
    fn explicit_settings_and_current_level_are_quiet() {
        let c = cfg("compatibility_level = 3.7\n");
        assert!(!is_backwards_compatible(&c).unwrap());
        assert!(backwards_compatible_defaults(&c).unwrap().is_empty());
        let c = cfg("compatibility_level = 2\nmynetworks_style = subnet\n");
        let old = backwards_compatible_defaults(&c).unwrap();
        assert!(!old.iter().any(|(n, _)| n == "mynetworks_style"));
        assert!(old.iter().any(|(n, _)| n == "respectful_logging"));
    }

    #[test]
    fn bad_level_is_an_error() {
        let c = cfg("compatibility_level = new\n");
        assert!(is_backwards_compatible(&c).is_err());
    }
}
