//! A session's `Settings` from main.cf (and the service's `-o`
//! overrides), read once per process; only the client changes per
//! connection.

use std::time::Duration;

use libmail::config::{Config, ConfigError};
use libmail::match_list::NetworkList;

use crate::settings::{BareNewline, Client, Settings};

/// Settings for `client`, from `config`.
pub fn settings(config: &Config, client: Client) -> Result<Settings, ConfigError> {
    let mut s = Settings::new(&config.string("myhostname")?, client);
    s.mail_name = config.string("mail_name")?;
    s.banner = config.string("smtpd_banner")?;
    s.message_size_limit = config.size("message_size_limit")?;
    s.recipient_limit = count(config, "smtpd_recipient_limit")?;
    s.recipient_overshoot_limit = count(config, "smtpd_recipient_overshoot_limit")?;
    s.line_length_limit = count(config, "line_length_limit")?;
    s.hard_error_limit = count(config, "smtpd_hard_error_limit")? as u32;
    s.soft_error_limit = count(config, "smtpd_soft_error_limit")? as u32;
    s.error_sleep_time = Duration::from_secs(config.time("smtpd_error_sleep_time")?);
    s.header_size_limit = count(config, "header_size_limit")?;
    s.disable_vrfy_command = config.bool("disable_vrfy_command")?;
    s.discard_ehlo_keywords = config
        .list("smtpd_discard_ehlo_keywords")?
        .iter()
        .map(|k| k.to_ascii_lowercase())
        .collect();
    s.forbid_bare_newline = bare_newline(config)?;
    s.bare_newline_reject_code = config.int("smtpd_forbid_bare_newline_reject_code")? as u16;
    s.forbid_unauth_pipelining = config.bool("smtpd_forbid_unauth_pipelining")?;
    s.forbidden_commands = config
        .list("smtpd_forbidden_commands")?
        .iter()
        .filter(|word| !word.contains(':'))
        .map(|word| word.to_ascii_uppercase())
        .collect();
    s.delay_reject = config.bool("smtpd_delay_reject")?;
    s.helo_required = config.bool("smtpd_helo_required")?;
    s.junk_command_limit = count(config, "smtpd_junk_command_limit")? as u32;
    s.smtputf8_enable = config.bool("smtputf8_enable")?;
    Ok(s)
}

fn count(config: &Config, name: &str) -> Result<usize, ConfigError> {
    Ok(config.int(name)?.max(0) as usize)
}

fn bare_newline(config: &Config) -> Result<BareNewline, ConfigError> {
    let value = config.string("smtpd_forbid_bare_newline")?;
    BareNewline::parse(&value).ok_or_else(|| ConfigError::BadValue {
        location: config.location("smtpd_forbid_bare_newline"),
        reason: format!(
            "bad smtpd_forbid_bare_newline value \"{value}\": specify normalize, reject or no"
        ),
    })
}

/// Clients in smtpd_forbid_bare_newline_exclusions are not rejected for
/// a bare newline; they still get the safe `normalize` treatment.
pub fn exclude_bare_newline(config: &Config, settings: &mut Settings) {
    if settings.forbid_bare_newline != BareNewline::Reject {
        return;
    }
    let Ok(addr) = settings.client.addr.parse() else {
        return;
    };
    let excluded = config
        .string("smtpd_forbid_bare_newline_exclusions")
        .ok()
        .and_then(|value| NetworkList::new(&value).ok())
        .and_then(|mut list| list.matches(addr, Some(&settings.client.name)).ok())
        .unwrap_or(false);
    if excluded {
        settings.forbid_bare_newline = BareNewline::Normalize;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> Client {
        Client::new("localhost", "127.0.0.1", 1025)
    }

    fn config(text: &str) -> Config {
        let base = "myhostname = mx.example.com\nmydomain = example.com\n";
        Config::from_text(
            std::path::Path::new("/nonexistent"),
            &format!("{base}{text}"),
        )
        .unwrap()
    }

    #[test]
    fn main_cf_values_reach_the_session() {
        let c = config(
            "smtpd_banner = $myhostname ESMTP ready\nmessage_size_limit = 5000\n\
             smtpd_discard_ehlo_keywords = CHUNKING, silent-discard\n\
             smtpd_recipient_limit = 7\nsmtpd_forbid_bare_newline = reject\n",
        );
        let s = settings(&c, client()).unwrap();
        assert_eq!(s.banner, "mx.example.com ESMTP ready");
        assert_eq!(s.message_size_limit, 5000);
        assert_eq!(s.recipient_limit, 7);
        assert!(!s.offers("CHUNKING") && s.offers("PIPELINING"));
        assert_eq!(s.forbid_bare_newline, BareNewline::Reject);
        assert_eq!(s.forbidden_commands, ["CONNECT", "GET", "POST"]);
    }

    #[test]
    fn defaults_are_postfix_defaults() {
        let s = settings(&config(""), client()).unwrap();
        assert_eq!(s.banner, "mx.example.com ESMTP Postfix");
        assert_eq!(s.message_size_limit, 10_240_000);
        assert_eq!(s.recipient_limit, 1000);
        assert_eq!(s.forbid_bare_newline, BareNewline::Normalize);
        assert!(s.delay_reject);
    }

    #[test]
    fn bad_bare_newline_value_is_an_error() {
        let c = config("smtpd_forbid_bare_newline = sometimes\n");
        assert!(settings(&c, client()).is_err());
    }

    #[test]
    fn exclusions_soften_reject_to_normalize() {
        let c = config("smtpd_forbid_bare_newline = reject\nmynetworks = 127.0.0.0/8\n");
        let mut s = settings(&c, client()).unwrap();
        exclude_bare_newline(&c, &mut s);
        assert_eq!(s.forbid_bare_newline, BareNewline::Normalize);
        let mut outside = client();
        outside.addr = "192.0.2.1".into();
        let mut s = settings(&c, outside).unwrap();
        exclude_bare_newline(&c, &mut s);
        assert_eq!(s.forbid_bare_newline, BareNewline::Reject);
    }
}
