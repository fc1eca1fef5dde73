//! Who may do what: the configuration directory a set-gid program may
//! be pointed at, the authorized_mailq_users / authorized_flush_users
//! lists, and whether the caller may read the queue directly.

use std::path::Path;

use libmail::config::{Config, DEFAULT_CONFIG_DIRECTORY};
use nix::unistd::{getegid, geteuid, getgid, getuid, User};

/// The two access lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acl {
    Mailq,
    Flush,
}

impl Acl {
    fn parameter(self) -> &'static str {
        match self {
            Acl::Mailq => "authorized_mailq_users",
            Acl::Flush => "authorized_flush_users",
        }
    }

    fn action(self) -> &'static str {
        match self {
            Acl::Mailq => "view",
            Acl::Flush => "flush",
        }
    }
}

/// Whether we run with privileges the caller does not have (set-gid):
/// then the caller may not choose just any main.cf.
fn is_set_id() -> bool {
    geteuid() != getuid() || getegid() != getgid()
}

/// Loads main.cf from `-c DIR`, else MAIL_CONFIG, else the default. A
/// set-gid run by anyone but root may use another directory only if the
/// default main.cf lists it in alternate_config_directories or
/// multi_instance_directories (Postfix's rule, so that a user cannot feed
/// the program a main.cf of their own).
pub fn load_config(option: Option<&str>) -> Result<Config, String> {
    let dir = option
        .map(str::to_string)
        .or_else(|| std::env::var("MAIL_CONFIG").ok().filter(|d| !d.is_empty()));
    if let Some(dir) = &dir {
        if is_set_id() && !getuid().is_root() {
            check_config_dir(dir)?;
        }
    }
    Config::load(dir.as_deref().map(Path::new)).map_err(|e| e.to_string())
}

fn check_config_dir(dir: &str) -> Result<(), String> {
    if dir == DEFAULT_CONFIG_DIRECTORY {
        return Ok(());
    }
    let default =
        Config::load(Some(Path::new(DEFAULT_CONFIG_DIRECTORY))).map_err(|e| e.to_string())?;
    let listed = |param: &str| {
        default
            .list(param)
            .is_ok_and(|dirs| dirs.iter().any(|d| d == dir))
    };
    if listed("alternate_config_directories") || listed("multi_instance_directories") {
        return Ok(());
    }
    libmail::log::error(format_args!(
        "unauthorized configuration directory name: {dir}"
    ));
    Err(format!(
        "specify \"alternate_config_directories = {dir}\" or \
\"multi_instance_directories = {dir}\" in {DEFAULT_CONFIG_DIRECTORY}/main.cf"
    ))
}

/// The uid of mail_owner, if that account exists.
fn mail_owner_uid(config: &Config) -> Option<u32> {
    let name = config.string("mail_owner").ok()?;
    User::from_name(&name)
        .ok()
        .flatten()
        .map(|user| user.uid.as_raw())
}

/// Root and mail_owner are never stopped by the access lists.
fn is_exempt(config: &Config, uid: u32) -> bool {
    uid == 0 || Some(uid) == mail_owner_uid(config)
}

/// Whether the caller may read the queue itself when showq is down: the
/// superuser, or mail_owner, who owns the queue (an unprivileged
/// instance runs entirely as that user).
pub fn may_read_queue(config: &Config) -> bool {
    geteuid().is_root() || Some(getuid().as_raw()) == mail_owner_uid(config)
}

/// Checks the caller against an access list; the error is Postfix's
/// `User NAME(UID) is not allowed to view the mail queue`.
pub fn check_acl(config: &Config, acl: Acl) -> Result<(), String> {
    let uid = getuid().as_raw();
    if is_exempt(config, uid) {
        return Ok(());
    }
    let name = User::from_uid(getuid())
        .ok()
        .flatten()
        .map_or_else(|| format!("uid:{uid}"), |user| user.name);
    let param = acl.parameter();
    let value = config.string(param).map_err(|e| e.to_string())?;
    let mut list =
        libmail::match_list::DomainList::new(&value, false).map_err(|e| format!("{param}: {e}"))?;
    match list.matches(&name) {
        Ok(true) => Ok(()),
        Ok(false) => Err(format!(
            "User {name}({uid}) is not allowed to {} the mail queue",
            acl.action()
        )),
        Err(err) => Err(format!("{param} lookup error for {name}: {err}")),
    }
}

/// A destination for `-s`: a host name, or an address literal in
/// brackets (`[192.0.2.1]`, `[IPv6:2001:db8::1]`).
pub fn valid_site(site: &str) -> bool {
    if let Some(inner) = site.strip_prefix('[') {
        let Some(literal) = inner.strip_suffix(']') else {
            return false;
        };
        return match literal.strip_prefix("IPv6:") {
            Some(v6) => v6.parse::<std::net::Ipv6Addr>().is_ok(),
            None => literal.parse::<std::net::Ipv4Addr>().is_ok(),
        };
    }
    valid_hostname(site)
}

/// Letters, digits, `-` and `_` in dot-separated labels of 1 to 63
/// characters, at most 255 in all, no label starting or ending with `-`,
/// and not all digits and dots (that is an address, not a name).
fn valid_hostname(name: &str) -> bool {
    let label_ok = |label: &str| {
        (1..=63).contains(&label.len())
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    (1..=255).contains(&name.len())
        && name.split('.').all(label_ok)
        && !name.bytes().all(|b| b.is_ascii_digit() || b == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sites() {
        for good in [
            "example.com",
            "mail-1.example.com",
            "localhost",
            "[192.0.2.1]",
            "[IPv6:2001:db8::1]",
        ] {
            assert!(valid_site(good), "{good}");
        }
        for bad in [
            "",
            "bad site",
            "a..b",
            "-a.com",
            "1.2.3.4",
            "[1.2.3]",
            "[192.0.2.1",
            "x!y",
            &"a".repeat(64),
        ] {
            assert!(!valid_site(bad), "{bad}");
        }
    }

    #[test]
    fn root_passes_every_list() {
        let dir = std::env::temp_dir();
        let config = Config::from_text(&dir, "authorized_mailq_users = nosuchuser\n").unwrap();
        if getuid().is_root() {
            assert!(check_acl(&config, Acl::Mailq).is_ok());
        } else {
            let err = check_acl(&config, Acl::Mailq).unwrap_err();
            assert!(
                err.ends_with("is not allowed to view the mail queue"),
                "{err}"
            );
        }
    }
}
