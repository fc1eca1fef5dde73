//! master.cf: one service per logical line in eight columns (service, type,
//! private, unpriv, chroot, wakeup, maxproc, command + arguments), `-` for a
//! default, `{ text with spaces }` grouping, and `-o name=value` overrides.

use std::path::{Path, PathBuf};

use super::edit::{edit_entries, LineEdit};
use super::error::ConfigError;
use super::main_cf::logical_lines;

/// The five kinds of master.cf listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceType {
    Inet,
    Unix,
    UnixDgram,
    Fifo,
    Pass,
}

impl ServiceType {
    pub fn parse(text: &str) -> Option<ServiceType> {
        Some(match text {
            "inet" => ServiceType::Inet,
            "unix" => ServiceType::Unix,
            "unix-dgram" => ServiceType::UnixDgram,
            "fifo" => ServiceType::Fifo,
            "pass" => ServiceType::Pass,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ServiceType::Inet => "inet",
            ServiceType::Unix => "unix",
            ServiceType::UnixDgram => "unix-dgram",
            ServiceType::Fifo => "fifo",
            ServiceType::Pass => "pass",
        }
    }
}

/// The `wakeup` column: every N seconds, and with `?` only while the
/// service is in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wakeup {
    pub seconds: u32,
    pub when_used: bool,
}

/// Where an inet service listens: `port`, `host:port` or `[ipv6]:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InetAddress {
    pub host: Option<String>,
    pub port: String,
}

/// Names of the columns, as `postconf -F` prints them.
pub const FIELD_NAMES: [&str; 8] = [
    "service",
    "type",
    "private",
    "unprivileged",
    "chroot",
    "wakeup",
    "process_limit",
    "command",
];

/// One master.cf service entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasterEntry {
    pub service: String,
    pub kind: ServiceType,
    /// private, unpriv, chroot, wakeup, maxproc as written (`-` included).
    pub flags: [String; 5],
    pub command: String,
    pub args: Vec<String>,
    pub line: usize,
}

impl MasterEntry {
    /// `service/type`, the name `postconf -M` uses.
    pub fn key(&self) -> String {
        format!("{}/{}", self.service, self.kind.as_str())
    }

    fn yes_no(&self, index: usize, default: bool) -> bool {
        match self.flags[index].as_str() {
            "y" => true,
            "n" => false,
            _ => default,
        }
    }

    /// Private: reachable only through the queue directory.
    pub fn private(&self) -> bool {
        self.yes_no(0, true)
    }

    pub fn unprivileged(&self) -> bool {
        self.yes_no(1, true)
    }

    /// Chroot; `-` means no since compatibility level 1.
    pub fn chroot(&self) -> bool {
        self.yes_no(2, false)
    }

    pub fn wakeup(&self) -> Option<Wakeup> {
        let text = &self.flags[3];
        let (digits, when_used) = match text.strip_suffix('?') {
            Some(d) => (d, true),
            None => (text.as_str(), false),
        };
        let seconds = digits.parse().ok().filter(|&s| s > 0)?;
        Some(Wakeup { seconds, when_used })
    }

    /// Process limit; `None` means default_process_limit.
    pub fn max_process(&self) -> Option<u32> {
        self.flags[4].parse().ok()
    }

    /// The address of an inet service.
    pub fn inet_address(&self) -> Option<InetAddress> {
        if self.kind != ServiceType::Inet {
            return None;
        }
        parse_inet_address(&self.service)
    }

    /// The `-o name=value` overrides, in order.
    pub fn overrides(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut args = self.args.iter();
        while let Some(arg) = args.next() {
            let pair = match arg.strip_prefix("-o") {
                Some("") => args.next().map(String::as_str),
                Some(joined) => Some(joined),
                None => None,
            };
            if let Some((name, value)) = pair.and_then(|p| p.split_once('=')) {
                out.push((name.trim().to_string(), value.trim().to_string()));
            }
        }
        out
    }

    /// The arguments as words for printing: `-o` pairs joined, text with
    /// spaces shown in `{ }`.
    fn printable_args(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut args = self.args.iter();
        while let Some(arg) = args.next() {
            if arg == "-o" {
                if let Some(pair) = args.next() {
                    let pair = match pair.split_once('=') {
                        Some((name, value)) => format!("{}={}", name.trim(), value.trim()),
                        None => pair.clone(),
                    };
                    out.push(format!("-o {}", group(&pair)));
                    continue;
                }
            }
            out.push(group(arg));
        }
        out
    }

    /// The same entry with `$name` references in its `-o` values replaced
    /// (`postconf -Mx`); other arguments belong to the program (pipe's
    /// `${recipient}`) and stay as written. `expand` gets the service name
    /// (for `$service_name`) and a value.
    pub fn expanded(&self, expand: impl Fn(&str, &str) -> String) -> MasterEntry {
        let mut entry = self.clone();
        let mut after_o = false;
        for arg in entry.args.iter_mut() {
            if after_o {
                if let Some((name, value)) = arg.split_once('=') {
                    *arg = format!("{name}={}", expand(&self.service, value.trim()));
                }
            }
            after_o = arg == "-o";
        }
        entry
    }

    /// The command column: command and arguments.
    pub fn command_line(&self) -> String {
        let mut words = vec![self.command.clone()];
        words.extend(self.printable_args());
        words.join(" ")
    }

    /// The eight fields as `postconf -F` names them.
    pub fn fields(&self) -> [String; 8] {
        [
            self.service.clone(),
            self.kind.as_str().to_string(),
            self.flags[0].clone(),
            self.flags[1].clone(),
            self.flags[2].clone(),
            self.flags[3].clone(),
            self.flags[4].clone(),
            self.command_line(),
        ]
    }

    /// The entry in `postconf -M` layout; folded at 80 columns with each
    /// `-o` on a line of its own when `fold` is set.
    pub fn format(&self, fold: bool) -> String {
        const COLUMNS: [usize; 8] = [0, 11, 17, 25, 33, 41, 49, 57];
        let fields = self.fields();
        let mut line = String::new();
        for (i, field) in fields[..7].iter().chain([&self.command]).enumerate() {
            if line.len() < COLUMNS[i] {
                line.push_str(&" ".repeat(COLUMNS[i] - line.len()));
            } else if i > 0 {
                line.push(' ');
            }
            line.push_str(field);
        }
        self.append_args(line, fold)
    }

    /// `prefix` followed by the command and its arguments, folded like
    /// `postconf -Mf` when asked (`postconf -Ff` shows the command so).
    pub fn command_with_prefix(&self, prefix: &str, fold: bool) -> String {
        self.append_args(format!("{prefix}{}", self.command), fold)
    }

    fn append_args(&self, first: String, fold: bool) -> String {
        let args = self.printable_args();
        let mut lines = vec![first];
        for arg in args {
            let last = lines.last_mut().expect("at least one line");
            // master.cf lines stay under 80 columns (parameters may reach 80).
            if fold && (arg.starts_with("-o ") || last.len() + 1 + arg.len() >= 80) {
                lines.push(format!("    {arg}"));
            } else {
                last.push(' ');
                last.push_str(&arg);
            }
        }
        lines.join("\n")
    }

    /// Rebuilds the entry from new field values (`postconf -Fe`).
    pub fn with_field(&self, field: &str, value: &str) -> Result<MasterEntry, String> {
        let mut fields = self.fields();
        let index = FIELD_NAMES
            .iter()
            .position(|f| *f == field)
            .ok_or_else(|| format!("invalid service attribute name: \"{field}\""))?;
        fields[index] = value.to_string();
        parse_entry(&fields.join(" "), self.line)
    }

    /// Sets or removes (`value` None) one `-o` override (`postconf -Pe/-PX`).
    pub fn with_override(&self, name: &str, value: Option<&str>) -> MasterEntry {
        let mut entry = self.clone();
        let mut args = Vec::new();
        let mut replaced = false;
        let mut old = self.args.iter();
        while let Some(arg) = old.next() {
            let pair = match arg.strip_prefix("-o") {
                Some("") => old.next().cloned(),
                Some(joined) => Some(joined.to_string()),
                None => {
                    args.push(arg.clone());
                    continue;
                }
            };
            let Some(pair) = pair else { continue };
            let same = pair.split_once('=').is_some_and(|(n, _)| n.trim() == name);
            match (same, value) {
                (true, Some(v)) if !replaced => {
                    replaced = true;
                    args.extend(["-o".to_string(), format!("{name}={v}")]);
                }
                (true, _) => {}
                (false, _) => args.extend(["-o".to_string(), pair]),
            }
        }
        if let (false, Some(v)) = (replaced, value) {
            args.extend(["-o".to_string(), format!("{name}={v}")]);
        }
        entry.args = args;
        entry
    }
}

/// Shows an argument with white space as `{text}`, as master.cf groups it.
fn group(arg: &str) -> String {
    if arg.contains(char::is_whitespace) {
        format!("{{{arg}}}")
    } else {
        arg.to_string()
    }
}

/// Parses `port`, `host:port` or `[ipv6]:port`.
pub fn parse_inet_address(service: &str) -> Option<InetAddress> {
    if let Some(rest) = service.strip_prefix('[') {
        let (host, port) = rest.split_once("]:")?;
        return (!host.is_empty() && !port.is_empty()).then(|| InetAddress {
            host: Some(host.to_string()),
            port: port.to_string(),
        });
    }
    match service.rsplit_once(':') {
        Some((host, port)) if !port.is_empty() && !host.contains(':') => Some(InetAddress {
            host: (!host.is_empty()).then(|| host.to_string()),
            port: port.to_string(),
        }),
        Some(_) => None,
        None => (!service.is_empty()).then(|| InetAddress {
            host: None,
            port: service.to_string(),
        }),
    }
}

/// Splits a logical line into words; `{ ... }` is one word (its inside,
/// trimmed), braces nesting.
pub fn tokenize(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut rest = line.trim_start();
    while !rest.is_empty() {
        if let Some(body) = rest.strip_prefix('{') {
            let mut depth = 0usize;
            let end = body
                .char_indices()
                .find(|&(_, c)| {
                    match c {
                        '{' => depth += 1,
                        '}' if depth == 0 => return true,
                        '}' => depth -= 1,
                        _ => {}
                    }
                    false
                })
                .map(|(i, _)| i)
                .ok_or_else(|| "missing '}'".to_string())?;
            words.push(body[..end].trim().to_string());
            rest = body[end + 1..].trim_start();
        } else {
            let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            words.push(rest[..end].to_string());
            rest = rest[end..].trim_start();
        }
    }
    Ok(words)
}

/// Parses one logical master.cf line; errors are the reason text only.
pub fn parse_entry(line: &str, number: usize) -> Result<MasterEntry, String> {
    let words = tokenize(line)?;
    if words.len() < 8 {
        return Err("bad field count".to_string());
    }
    let kind =
        ServiceType::parse(&words[1]).ok_or_else(|| format!("bad transport type: {}", words[1]))?;
    for (i, name) in ["private", "unpriv", "chroot"].iter().enumerate() {
        let value = &words[2 + i];
        if !matches!(value.as_str(), "y" | "n" | "-") {
            return Err(format!("bad {name} field: \"{value}\" (specify y, n or -)"));
        }
    }
    let wakeup = &words[5];
    let digits = wakeup.strip_suffix('?').unwrap_or(wakeup);
    if wakeup != "-" && digits.parse::<u32>().is_err() {
        return Err(format!(
            "bad wakeup field: \"{wakeup}\" (specify N, N? or -)"
        ));
    }
    let maxproc = &words[6];
    if maxproc != "-" && maxproc.parse::<u32>().is_err() {
        return Err(format!("bad maxproc field: \"{maxproc}\" (specify N or -)"));
    }
    if kind == ServiceType::Inet && parse_inet_address(&words[0]).is_none() {
        return Err(format!("bad inet service address: \"{}\"", words[0]));
    }
    let mut args = words[8..].to_vec();
    split_joined_overrides(&mut args);
    Ok(MasterEntry {
        service: words[0].clone(),
        kind,
        flags: [
            words[2].clone(),
            words[3].clone(),
            words[4].clone(),
            words[5].clone(),
            words[6].clone(),
        ],
        command: words[7].clone(),
        args,
        line: number,
    })
}

/// `-oname=value` becomes `-o`, `name=value`, so later code sees one form.
fn split_joined_overrides(args: &mut Vec<String>) {
    let mut out = Vec::with_capacity(args.len());
    for arg in args.drain(..) {
        match arg.strip_prefix("-o") {
            Some(pair) if !pair.is_empty() && out.last().map(String::as_str) != Some("-o") => {
                out.push("-o".to_string());
                out.push(pair.to_string());
            }
            _ => out.push(arg),
        }
    }
    *args = out;
}

/// Delivery agents for which Postfix defines per-transport parameters.
const DELIVERY_AGENTS: [&str; 6] = ["smtp", "lmtp", "local", "virtual", "error", "pipe"];

/// Per-transport scheduler parameters: suffix and default.
const TRANSPORT_PARAMETERS: [(&str, &str); 16] = [
    ("delivery_slot_cost", "$default_delivery_slot_cost"),
    ("delivery_slot_discount", "$default_delivery_slot_discount"),
    ("delivery_slot_loan", "$default_delivery_slot_loan"),
    (
        "destination_concurrency_failed_cohort_limit",
        "$default_destination_concurrency_failed_cohort_limit",
    ),
    (
        "destination_concurrency_limit",
        "$default_destination_concurrency_limit",
    ),
    (
        "destination_concurrency_negative_feedback",
        "$default_destination_concurrency_negative_feedback",
    ),
    (
        "destination_concurrency_positive_feedback",
        "$default_destination_concurrency_positive_feedback",
    ),
    ("destination_rate_delay", "$default_destination_rate_delay"),
    (
        "destination_recipient_limit",
        "$default_destination_recipient_limit",
    ),
    ("extra_recipient_limit", "$default_extra_recipient_limit"),
    (
        "initial_destination_concurrency",
        "$initial_destination_concurrency",
    ),
    ("minimum_delivery_slots", "$default_minimum_delivery_slots"),
    ("recipient_limit", "$default_recipient_limit"),
    ("recipient_refill_delay", "$default_recipient_refill_delay"),
    ("recipient_refill_limit", "$default_recipient_refill_limit"),
    ("transport_rate_delay", "$default_transport_rate_delay"),
];

/// A parsed master.cf.
#[derive(Debug, Clone, Default)]
pub struct MasterCf {
    pub path: PathBuf,
    pub entries: Vec<MasterEntry>,
}

impl MasterCf {
    /// Reads `DIR/master.cf`.
    pub fn load(dir: &Path) -> Result<MasterCf, ConfigError> {
        let path = dir.join("master.cf");
        let bytes = std::fs::read(&path).map_err(|source| ConfigError::Io {
            op: "open",
            path: path.clone(),
            source,
        })?;
        MasterCf::parse(&path, &super::main_cf::decode(&bytes))
    }

    pub fn parse(path: &Path, text: &str) -> Result<MasterCf, ConfigError> {
        let mut entries = Vec::new();
        for (number, line) in logical_lines(text) {
            let entry = parse_entry(&line, number).map_err(|reason| ConfigError::MasterCf {
                path: path.to_path_buf(),
                line: number,
                reason,
            })?;
            entries.push(entry);
        }
        Ok(MasterCf {
            path: path.to_path_buf(),
            entries,
        })
    }

    /// Entries matching `service` or `service/type`.
    pub fn select(&self, pattern: &str) -> Vec<&MasterEntry> {
        let (service, kind) = match pattern.split_once('/') {
            Some((s, k)) => (s, Some(k)),
            None => (pattern, None),
        };
        self.entries
            .iter()
            .filter(|e| e.service == service && kind.is_none_or(|k| e.kind.as_str() == k))
            .collect()
    }

    /// Parameters that delivery-agent services define, with defaults
    /// (`relay_destination_concurrency_limit = $default_...`).
    pub fn service_parameters(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for entry in &self.entries {
            let agent = entry.command.rsplit('/').next().unwrap_or(&entry.command);
            if entry.kind != ServiceType::Unix || !DELIVERY_AGENTS.contains(&agent) {
                continue;
            }
            for (suffix, default) in TRANSPORT_PARAMETERS {
                out.push((format!("{}_{suffix}", entry.service), default.to_string()));
            }
            if agent == "pipe" {
                out.push((
                    format!("{}_time_limit", entry.service),
                    "$command_time_limit".to_string(),
                ));
            }
        }
        out
    }

    /// Every `-o` value, for finding which parameters are in use.
    pub fn override_values(&self) -> Vec<String> {
        self.entries
            .iter()
            .flat_map(|e| e.overrides().into_iter().map(|(_, v)| v))
            .collect()
    }
}

/// Applies entry edits keyed by `service/type` to master.cf, keeping every
/// other line byte for byte. Returns the new bytes and the unmatched keys.
pub fn edit(text: &[u8], edits: &[(String, LineEdit)]) -> (Vec<u8>, Vec<String>) {
    let key_of = |line: &str| {
        let words = tokenize(line).ok()?;
        (words.len() >= 2).then(|| format!("{}/{}", words[0], words[1]))
    };
    let (out, seen) = edit_entries(text, key_of, edits);
    let unmatched = edits
        .iter()
        .filter(|(k, _)| !seen.contains_key(k))
        .map(|(k, _)| k.clone())
        .collect();
    (out, unmatched)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
# comment
smtp      inet  n       -       y       -       -       smtpd
pickup    unix  n       -       y       60      1       pickup
qmgr      unix  n       -       n       300?    1       qmgr
relay     unix  -       -       y       -       -       smtp
        -o syslog_name=postfix/$service_name
#       -o smtp_helo_timeout=5
submission inet n       -       y       -       -       smtpd
  -o { smtpd_client_restrictions = permit_sasl_authenticated, reject }
  -osmtpd_tls_security_level=encrypt
127.0.0.1:10025 inet n - n - - smtpd
[::1]:2525 inet n - n - - smtpd
maildrop  unix  -       n       n       -       -       pipe
  flags=DRXhu user=vmail argv=/usr/bin/maildrop -d ${recipient}
";

    fn sample() -> MasterCf {
        MasterCf::parse(Path::new("/etc/postfix/master.cf"), SAMPLE).unwrap()
    }

    #[test]
    fn parses_columns_and_defaults() {
        let m = sample();
        assert_eq!(m.entries.len(), 8);
        let qmgr = &m.entries[2];
        assert_eq!(qmgr.key(), "qmgr/unix");
        assert!(!qmgr.chroot());
        assert_eq!(
            qmgr.wakeup(),
            Some(Wakeup {
                seconds: 300,
                when_used: true
            })
        );
        assert_eq!(qmgr.max_process(), Some(1));
        assert_eq!(m.entries[0].max_process(), None);
        assert!(m.entries[0].chroot());
        assert_eq!(m.entries[1].line, 3);
    }

    #[test]
    fn overrides_and_grouping() {
        let m = sample();
        let sub = &m.select("submission")[0];
        assert_eq!(
            sub.overrides(),
            vec![
                (
                    "smtpd_client_restrictions".into(),
                    "permit_sasl_authenticated, reject".into()
                ),
                ("smtpd_tls_security_level".into(), "encrypt".into()),
            ]
        );
        assert_eq!(
            m.select("relay/unix")[0].overrides(),
            vec![("syslog_name".into(), "postfix/$service_name".into())]
        );
    }

    #[test]
    fn inet_addresses() {
        let m = sample();
        assert_eq!(
            m.entries[5].inet_address(),
            Some(InetAddress {
                host: Some("127.0.0.1".into()),
                port: "10025".into()
            })
        );
        assert_eq!(
            m.entries[6].inet_address(),
            Some(InetAddress {
                host: Some("::1".into()),
                port: "2525".into()
            })
        );
        assert_eq!(m.entries[0].inet_address().unwrap().host, None);
        assert_eq!(parse_inet_address("::1:25"), None);
        assert_eq!(parse_inet_address("[::1]"), None);
    }

    #[test]
    fn format_like_postconf_m() {
        let m = sample();
        assert_eq!(
            m.entries[0].format(false),
            "smtp       inet  n       -       y       -       -       smtpd"
        );
        assert_eq!(
            m.entries[3].format(false),
            "relay      unix  -       -       y       -       -       smtp -o syslog_name=postfix/$service_name"
        );
        assert_eq!(
            m.entries[3].format(true),
            "relay      unix  -       -       y       -       -       smtp\n    -o syslog_name=postfix/$service_name"
        );
        assert_eq!(
            m.entries[7].format(true),
            "maildrop   unix  -       n       n       -       -       pipe flags=DRXhu\n    user=vmail argv=/usr/bin/maildrop -d ${recipient}"
        );
        assert_eq!(
            m.select("submission")[0].format(true),
            "submission inet  n       -       y       -       -       smtpd\n    -o {smtpd_client_restrictions=permit_sasl_authenticated, reject}\n    -o smtpd_tls_security_level=encrypt"
        );
        let long = parse_entry("scalemail-backend unix - n n - 2 pipe flags=R", 1).unwrap();
        assert_eq!(
            long.format(false),
            "scalemail-backend unix - n       n       -       2       pipe flags=R"
        );
    }

    #[test]
    fn bad_lines() {
        let cases = [
            ("smtp inet n - y - -", "bad field count"),
            ("smtp tcp n - y - - smtpd", "bad transport type: tcp"),
            (
                "smtp inet x - y - - smtpd",
                "bad private field: \"x\" (specify y, n or -)",
            ),
            (
                "smtp inet n - y 5s - smtpd",
                "bad wakeup field: \"5s\" (specify N, N? or -)",
            ),
            (
                "smtp inet n - y - many smtpd",
                "bad maxproc field: \"many\" (specify N or -)",
            ),
            (
                "a:b:c inet n - y - - smtpd",
                "bad inet service address: \"a:b:c\"",
            ),
            ("x unix n - y - - cmd { unclosed", "missing '}'"),
        ];
        for (line, want) in cases {
            assert_eq!(parse_entry(line, 1).unwrap_err(), want, "{line}");
        }
        let err = MasterCf::parse(Path::new("/e/master.cf"), "# c\nsmtp inet n\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "file /e/master.cf: line 2: bad field count"
        );
    }

    #[test]
    fn service_parameters_for_delivery_agents() {
        let m = sample();
        let params = m.service_parameters();
        assert!(params.contains(&(
            "relay_destination_concurrency_limit".into(),
            "$default_destination_concurrency_limit".into()
        )));
        assert!(params.contains(&("maildrop_time_limit".into(), "$command_time_limit".into())));
        assert!(!params.iter().any(|(n, _)| n.starts_with("pickup_")));
        assert!(!params.iter().any(|(n, _)| n.starts_with("smtp_")));
        assert_eq!(params.len(), 16 + 17);
    }

    #[test]
    fn expansion_touches_only_override_values() {
        let m = sample();
        let upper = |service: &str, value: &str| value.replace("$service_name", service);
        let relay = m.select("relay/unix")[0].expanded(upper);
        assert_eq!(relay.overrides()[0].1, "postfix/relay");
        let maildrop = m.select("maildrop")[0].expanded(|_, _| "X".into());
        assert!(maildrop.command_line().contains("-d ${recipient}"));
    }

    #[test]
    fn field_and_override_edits() {
        let m = sample();
        let smtp = &m.entries[0];
        assert_eq!(smtp.with_field("chroot", "n").unwrap().flags[2], "n");
        assert!(smtp.with_field("bogus", "n").is_err());
        assert!(smtp.with_field("chroot", "maybe").is_err());
        let relay = m.select("relay/unix")[0];
        let set = relay.with_override("syslog_name", Some("x"));
        assert_eq!(set.overrides(), vec![("syslog_name".into(), "x".into())]);
        let added = relay.with_override("smtp_helo_timeout", Some("5"));
        assert_eq!(added.overrides().len(), 2);
        assert!(relay
            .with_override("syslog_name", None)
            .overrides()
            .is_empty());
    }

    #[test]
    fn entry_edits_keep_other_lines() {
        let edits = vec![
            ("relay/unix".to_string(), LineEdit::Remove),
            ("pickup/unix".to_string(), LineEdit::CommentOut),
            (
                "new/unix".to_string(),
                LineEdit::Replace("new unix - - n - - x".into()),
            ),
            ("gone/inet".to_string(), LineEdit::Remove),
        ];
        let (out, unmatched) = edit(SAMPLE.as_bytes(), &edits);
        let out = String::from_utf8(out).unwrap();
        assert!(!out.contains("relay"));
        assert!(out.contains("#       -o smtp_helo_timeout=5\n"));
        assert!(out.contains("#pickup    unix"));
        assert!(out.ends_with("new unix - - n - - x\n"));
        assert_eq!(unmatched, vec!["new/unix", "gone/inet"]);
    }
}
