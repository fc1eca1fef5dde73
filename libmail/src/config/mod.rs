//! The Postfix configuration: main.cf parameters with their defaults and
//! lazy `$name` expansion, master.cf services, and the parameter registry.
//!
//! Lookup order for a parameter's raw (unexpanded) value: command-line
//! overrides (`-o`, `-c DIR`), main.cf, the registry default (fixed or
//! computed), then defaults that master.cf services define (such as
//! `relay_destination_concurrency_limit`).

pub mod compat;
pub mod computed;
pub mod edit;
pub mod error;
pub mod expand;
pub mod main_cf;
pub mod manpage;
pub mod master_cf;
pub mod param;
pub mod registry;
pub mod value;

use std::borrow::Cow;
use std::cell::OnceCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

pub use error::{ConfigError, ExpandError, Location};
pub use expand::{expand, Expansion, Lookup};
pub use main_cf::Definition;
pub use param::{DefaultValue, Param, ParamType};

/// Where main.cf and master.cf live unless `-c` or MAIL_CONFIG say otherwise.
pub const DEFAULT_CONFIG_DIRECTORY: &str = "/etc/postfix";

/// Parameters that the program using them expands itself, with values
/// known only per message or per recipient (`$home`, `$recipient`,
/// `$rbl_code`...): they are never expanded from main.cf, and `postconf -x`
/// shows them as written.
pub const RAW_PARAMETERS: [&str; 9] = [
    "command_execution_directory",
    "default_rbl_reply",
    "forward_path",
    "luser_relay",
    "mailbox_command",
    "postscreen_expansion_filter",
    "postscreen_reject_footer",
    "smtpd_expansion_filter",
    "smtpd_reject_footer",
];

/// The version this implementation is compatible with, and its own.
pub fn mail_version() -> String {
    format!("3.7.0-rs{}", env!("CARGO_PKG_VERSION"))
}

/// The configuration directory: `-c DIR` first, then the MAIL_CONFIG
/// environment variable, then /etc/postfix. The flag says whether it was
/// chosen explicitly (it then shows as `config_directory` in main.cf's
/// values, as in Postfix).
pub fn config_directory(explicit: Option<&Path>) -> (PathBuf, bool) {
    if let Some(dir) = explicit {
        return (dir.to_path_buf(), true);
    }
    match std::env::var_os("MAIL_CONFIG") {
        Some(dir) if !dir.is_empty() => (PathBuf::from(dir), true),
        _ => (PathBuf::from(DEFAULT_CONFIG_DIRECTORY), false),
    }
}

/// The registry entry for a built-in parameter.
pub fn builtin(name: &str) -> Option<&'static Param> {
    registry::PARAMETERS
        .binary_search_by(|p| p.name.cmp(name))
        .ok()
        .map(|i| &registry::PARAMETERS[i])
}

/// Where a parameter's current value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Override,
    MainCf(usize),
    Default,
}

/// A loaded configuration.
#[derive(Debug)]
pub struct Config {
    dir: PathBuf,
    main_cf: PathBuf,
    definitions: Vec<Definition>,
    index: HashMap<String, usize>,
    overrides: BTreeMap<String, String>,
    service_defaults: BTreeMap<String, String>,
    /// The machine's interface addresses, read once: `$mynetworks` may be
    /// expanded many times.
    interfaces: OnceCell<Vec<computed::InterfaceAddress>>,
    /// Warnings noticed while reading (overridden entries and the like).
    pub warnings: Vec<String>,
}

impl Config {
    /// Reads `DIR/main.cf`; a missing file is an error.
    pub fn load(explicit_dir: Option<&Path>) -> Result<Config, ConfigError> {
        let (dir, explicit) = config_directory(explicit_dir);
        let path = dir.join("main.cf");
        let bytes = std::fs::read(&path).map_err(|source| ConfigError::Io {
            op: "open",
            path: path.clone(),
            source,
        })?;
        let mut config = Config::from_text(&dir, &main_cf::decode(&bytes))?;
        if explicit {
            config.set_override("config_directory", &dir.to_string_lossy());
        }
        Ok(config)
    }

    /// A configuration from main.cf text, for `dir`.
    pub fn from_text(dir: &Path, text: &str) -> Result<Config, ConfigError> {
        let main_cf = dir.join("main.cf");
        let (definitions, warnings) = main_cf::parse(&main_cf, text)?;
        let index = definitions
            .iter()
            .enumerate()
            .map(|(i, d)| (d.name.clone(), i))
            .collect();
        Ok(Config {
            dir: dir.to_path_buf(),
            main_cf,
            definitions,
            index,
            overrides: BTreeMap::new(),
            service_defaults: BTreeMap::new(),
            interfaces: OnceCell::new(),
            warnings,
        })
    }

    pub fn config_dir(&self) -> &Path {
        &self.dir
    }

    pub fn main_cf_path(&self) -> &Path {
        &self.main_cf
    }

    /// Sets a value that takes precedence over main.cf (`-o name=value`).
    pub fn set_override(&mut self, name: &str, value: &str) {
        self.overrides.insert(name.to_string(), value.to_string());
    }

    /// Adds the per-transport parameters that master.cf services define.
    pub fn add_service_defaults(&mut self, master: &master_cf::MasterCf) {
        for (name, value) in master.service_parameters() {
            if builtin(&name).is_none() {
                self.service_defaults.insert(name, value);
            }
        }
    }

    /// The main.cf definitions, in file order.
    pub fn definitions(&self) -> &[Definition] {
        &self.definitions
    }

    fn definition(&self, name: &str) -> Option<&Definition> {
        self.index.get(name).map(|&i| &self.definitions[i])
    }

    /// Is this a parameter Postfix knows: built in, or defined by a service?
    pub fn is_known(&self, name: &str) -> bool {
        builtin(name).is_some() || self.service_defaults.contains_key(name)
    }

    /// Where the current value of `name` comes from, if it has one.
    pub fn source(&self, name: &str) -> Option<Source> {
        if self.overrides.contains_key(name) {
            Some(Source::Override)
        } else if let Some(def) = self.definition(name) {
            Some(Source::MainCf(def.line))
        } else if self.is_known(name) {
            Some(Source::Default)
        } else {
            None
        }
    }

    /// `FILE, line N` of the value in use, for messages.
    pub fn location(&self, name: &str) -> Location {
        match self.source(name) {
            Some(Source::MainCf(line)) => Location {
                path: Some(self.main_cf.clone()),
                line,
            },
            _ => Location::default(),
        }
    }

    /// Whether `name` is set explicitly (main.cf or override).
    pub fn is_explicit(&self, name: &str) -> bool {
        matches!(
            self.source(name),
            Some(Source::Override | Source::MainCf(_))
        )
    }

    /// The explicit value, without defaults.
    fn explicit_raw(&self, name: &str) -> Option<&str> {
        self.overrides
            .get(name)
            .map(String::as_str)
            .or_else(|| self.definition(name).map(|d| d.value.as_str()))
    }

    /// The default value (`postconf -d`), unexpanded.
    pub fn default_raw(&self, name: &str) -> Option<Cow<'_, str>> {
        match builtin(name).map(|p| p.default) {
            Some(DefaultValue::Fixed(text)) => Some(Cow::Borrowed(text)),
            Some(DefaultValue::Computed) => Some(Cow::Owned(self.computed_default(name))),
            None => self
                .service_defaults
                .get(name)
                .map(|v| Cow::Borrowed(v.as_str())),
        }
    }

    fn computed_default(&self, name: &str) -> String {
        match name {
            "myhostname" => {
                let explicit = self
                    .explicit_raw("mydomain")
                    .map(|_| self.get_lossy("mydomain"));
                computed::myhostname(&computed::system_host_name(), explicit.as_deref())
            }
            "mydomain" => computed::mydomain(&self.get_lossy("myhostname")),
            "mynetworks" => {
                let style = self.get_lossy("mynetworks_style");
                let protocols = self.get_lossy("inet_protocols");
                let words = value::split_list(&protocols);
                let all = words.contains(&"all");
                computed::mynetworks(
                    self.interfaces.get_or_init(computed::interface_addresses),
                    &style,
                    all || words.contains(&"ipv4"),
                    all || words.contains(&"ipv6"),
                )
            }
            "process_id" => std::process::id().to_string(),
            "process_name" => process_name(),
            "mail_version" => mail_version(),
            _ => String::new(),
        }
    }

    /// The expanded value, or the raw one when expansion fails; for
    /// computing other defaults, where an error is reported elsewhere.
    fn get_lossy(&self, name: &str) -> String {
        match self.get(name) {
            Ok(Some(v)) => v,
            _ => String::new(),
        }
    }

    /// The fully expanded value of a parameter (as written for the
    /// `RAW_PARAMETERS`); `None` if it is undefined.
    pub fn get(&self, name: &str) -> Result<Option<String>, ConfigError> {
        let Some(raw) = self.raw(name) else {
            return Ok(None);
        };
        if RAW_PARAMETERS.contains(&name) {
            return Ok(Some(raw.into_owned()));
        }
        Ok(Some(self.expand(&raw)?.value))
    }

    /// Expands arbitrary text against this configuration.
    pub fn expand(&self, text: &str) -> Result<Expansion, ExpandError> {
        expand::expand(text, self)
    }

    /// A typed value, with `FILE, line N:` in the error.
    fn typed<T>(
        &self,
        name: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<T, ConfigError> {
        let value = self.get(name)?.unwrap_or_default();
        let checked = match builtin(name) {
            Some(param) => value::check(name, param.kind, &value),
            None => Ok(()),
        };
        checked
            .and_then(|()| parse(&value))
            .map_err(|reason| ConfigError::BadValue {
                location: self.location(name),
                reason,
            })
    }

    pub fn string(&self, name: &str) -> Result<String, ConfigError> {
        self.typed(name, |v| Ok(v.to_string()))
    }

    pub fn bool(&self, name: &str) -> Result<bool, ConfigError> {
        self.typed(name, |v| value::parse_bool(name, v))
    }

    pub fn int(&self, name: &str) -> Result<i64, ConfigError> {
        self.typed(name, |v| value::parse_int(name, v))
    }

    pub fn size(&self, name: &str) -> Result<u64, ConfigError> {
        self.typed(name, |v| value::parse_size(name, v))
    }

    /// A time in seconds.
    pub fn time(&self, name: &str) -> Result<u64, ConfigError> {
        let unit = match builtin(name).map(|p| p.kind) {
            Some(ParamType::Time(unit)) => unit,
            _ => 's',
        };
        self.typed(name, |v| value::parse_time(name, v, unit))
    }

    pub fn list(&self, name: &str) -> Result<Vec<String>, ConfigError> {
        self.typed(name, |v| {
            Ok(value::split_list(v).into_iter().map(String::from).collect())
        })
    }

    /// Checks every explicitly set built-in parameter against its type and
    /// legal words; one error per bad value.
    pub fn validate(&self) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        for name in self.explicit_names() {
            let Some(param) = builtin(&name) else {
                continue;
            };
            let result = self.get(&name).map(|v| v.unwrap_or_default());
            match result {
                Err(err) => errors.push(err),
                Ok(value) => {
                    if let Err(reason) = value::check(&name, param.kind, &value) {
                        errors.push(ConfigError::BadValue {
                            location: self.location(&name),
                            reason,
                        });
                    }
                }
            }
        }
        errors
    }

    /// Names set in main.cf or by override, sorted.
    pub fn explicit_names(&self) -> BTreeSet<String> {
        self.definitions
            .iter()
            .map(|d| d.name.clone())
            .chain(self.overrides.keys().cloned())
            .collect()
    }

    /// Every name referred to as `$name` by an explicit value, or used as a
    /// restriction class.
    pub fn referenced_names(&self, extra_values: &[String]) -> BTreeSet<String> {
        let mut names = BTreeSet::new();
        // A raw parameter's `$names` belong to its program, not main.cf.
        let values = self
            .definitions
            .iter()
            .filter(|d| !RAW_PARAMETERS.contains(&d.name.as_str()))
            .map(|d| d.value.as_str())
            .chain(self.overrides.values().map(String::as_str))
            .chain(extra_values.iter().map(String::as_str));
        for value in values {
            names.extend(expand::references(value));
        }
        if let Some(classes) = self.explicit_raw("smtpd_restriction_classes") {
            names.extend(value::split_list(classes).into_iter().map(String::from));
        }
        names
    }

    /// Every parameter `postconf` shows: built-in, service-defined, and
    /// user-defined ones that are in use.
    pub fn all_names(&self, used: &BTreeSet<String>) -> BTreeSet<String> {
        let mut names: BTreeSet<String> = registry::PARAMETERS
            .iter()
            .map(|p| p.name.to_string())
            .collect();
        names.extend(self.service_defaults.keys().cloned());
        for name in self.explicit_names() {
            if used.contains(&name) {
                names.insert(name);
            }
        }
        names
    }
}

impl Lookup for Config {
    fn raw(&self, name: &str) -> Option<Cow<'_, str>> {
        match self.explicit_raw(name) {
            Some(value) => Some(Cow::Borrowed(value)),
            None => self.default_raw(name),
        }
    }
}

/// The name this process runs as, for `process_name`.
fn process_name() -> String {
    std::env::args_os()
        .next()
        .map(PathBuf::from)
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(text: &str) -> Config {
        Config::from_text(Path::new("/etc/postfix"), text).unwrap()
    }

    #[test]
    fn registry_is_sorted_unique_and_large() {
        let names: Vec<&str> = registry::PARAMETERS.iter().map(|p| p.name).collect();
        assert!(names.windows(2).all(|w| w[0] < w[1]), "registry not sorted");
        assert!(names.len() >= 800, "only {} parameters", names.len());
        for p in registry::PARAMETERS {
            assert!(!p.description.is_empty(), "{} has no description", p.name);
        }
    }

    #[test]
    fn seed_parameters_are_known() {
        for name in [
            "inet_protocols",
            "inet_interfaces",
            "myhostname",
            "mydomain",
            "myorigin",
            "mydestination",
            "mynetworks",
            "relay_domains",
            "message_size_limit",
            "mailbox_size_limit",
            "show_user_unknown_table_name",
            "bounce_queue_lifetime",
            "maximal_queue_lifetime",
            "home_mailbox",
            "mailbox_command",
            "alias_maps",
            "alias_database",
            "config_directory",
            "command_directory",
            "daemon_directory",
            "data_directory",
            "html_directory",
            "mail_owner",
            "mailq_path",
            "manpage_directory",
            "newaliases_path",
            "queue_directory",
            "readme_directory",
            "sendmail_path",
            "setgid_group",
            "maillog_file",
            "relayhost",
            "transport_maps",
        ] {
            assert!(builtin(name).is_some(), "{name}");
        }
    }

    #[test]
    fn defaults_and_overrides() {
        let mut c = cfg("myorigin = example.com\n");
        assert_eq!(c.get("myorigin").unwrap().as_deref(), Some("example.com"));
        assert_eq!(c.get("mail_owner").unwrap().as_deref(), Some("postfix"));
        assert_eq!(c.source("myorigin"), Some(Source::MainCf(1)));
        c.set_override("myorigin", "other.example");
        assert_eq!(c.get("myorigin").unwrap().as_deref(), Some("other.example"));
        assert_eq!(c.get("no_such_parameter").unwrap(), None);
    }

    #[test]
    fn computed_host_and_domain() {
        let c = cfg("myhostname = mail.example.com\n");
        assert_eq!(c.get("mydomain").unwrap().unwrap(), "example.com");
        assert_eq!(
            c.get("mydestination").unwrap().unwrap(),
            "mail.example.com, localhost.example.com, localhost"
        );
        let c = cfg("mydomain = example.org\n");
        let host = c.get("myhostname").unwrap().unwrap();
        let system = computed::system_host_name();
        if !system.contains('.') {
            assert_eq!(host, format!("{system}.example.org"));
        }
    }

    #[test]
    fn compatibility_level_drives_defaults() {
        let old = cfg("");
        assert_eq!(old.get("mynetworks_style").unwrap().unwrap(), "subnet");
        assert_eq!(old.get("append_dot_mydomain").unwrap().unwrap(), "yes");
        assert_eq!(
            old.get("relay_domains").unwrap(),
            old.get("mydestination").unwrap()
        );
        let new = cfg("compatibility_level = 3.7\n");
        assert_eq!(new.get("mynetworks_style").unwrap().unwrap(), "host");
        assert_eq!(new.get("relay_domains").unwrap().unwrap(), "");
        assert!(new.bool("smtputf8_enable").unwrap());
        assert!(new
            .get("mynetworks")
            .unwrap()
            .unwrap()
            .contains("127.0.0.1/32"));
        assert!(old
            .get("mynetworks")
            .unwrap()
            .unwrap()
            .contains("127.0.0.0/8"));
    }

    #[test]
    fn typed_accessors_name_file_and_line() {
        let c = cfg("a = 1\ndisable_vrfy_command = maybe\nsmtpd_timeout = 2m\n");
        assert_eq!(
            c.bool("disable_vrfy_command").unwrap_err().to_string(),
            "/etc/postfix/main.cf, line 2: bad boolean configuration: disable_vrfy_command = maybe"
        );
        assert_eq!(c.time("smtpd_timeout").unwrap(), 120);
        assert_eq!(c.time("maximal_queue_lifetime").unwrap(), 5 * 86400);
        assert_eq!(c.size("message_size_limit").unwrap(), 10240000);
        assert_eq!(c.int("smtpd_recipient_limit").unwrap(), 1000);
        assert_eq!(
            c.list("mydestination").unwrap().last().map(String::as_str),
            Some("localhost")
        );
        let seed = cfg("\ninet_protocols = IPv4\n");
        assert_eq!(
            seed.list("inet_protocols").unwrap_err().to_string(),
            "/etc/postfix/main.cf, line 2: unknown inet_protocols value \"IPv4\" in \"IPv4\" (specify one of: all, ipv4, ipv6)"
        );
    }

    #[test]
    fn validate_reports_each_bad_value() {
        let c = cfg("inet_protocols = IPv4\nmessage_size_limit = big\nmyhostname = ok\n");
        let errors: Vec<String> = c.validate().iter().map(|e| e.to_string()).collect();
        assert_eq!(
            errors,
            vec![
                "/etc/postfix/main.cf, line 1: unknown inet_protocols value \"IPv4\" in \"IPv4\" (specify one of: all, ipv4, ipv6)",
                "/etc/postfix/main.cf, line 2: bad numerical configuration: message_size_limit = big",
            ]
        );
    }

    #[test]
    fn raw_parameters_stay_unexpanded() {
        let c = cfg("mailbox_command = /usr/bin/procmail -a \"$EXTENSION\"\n");
        assert_eq!(
            c.get("mailbox_command").unwrap().unwrap(),
            "/usr/bin/procmail -a \"$EXTENSION\""
        );
        assert!(c
            .get("forward_path")
            .unwrap()
            .unwrap()
            .starts_with("$home/"));
    }

    #[test]
    fn loops_surface_as_errors() {
        let c = cfg("myhostname = $mydomain\nmydomain = $myhostname\n");
        assert!(matches!(
            c.get("myorigin"),
            Err(ConfigError::Expand(ExpandError::Loop(_)))
        ));
    }

    #[test]
    fn references_make_user_parameters_used() {
        let c = cfg("mine = x\nunused = y\nmyorigin = $mine\nsmtpd_restriction_classes = cls\ncls = reject\nmailbox_command = x $EXTENSION\n");
        let used = c.referenced_names(&[]);
        assert!(used.contains("mine") && used.contains("cls"));
        assert!(!used.contains("EXTENSION"));
        assert!(!used.contains("unused"));
        let all = c.all_names(&used);
        assert!(all.contains("mine") && !all.contains("unused"));
    }
}
