//! Typed parameter values: booleans, numbers, times, sizes, and the
//! parameters whose values come from a fixed set of words. Each check
//! returns the reason text for a `fatal:`/`warning:` line.

use super::expand::parse_level;
use super::param::ParamType;

/// `yes` or `no`, in any case.
pub fn parse_bool(name: &str, value: &str) -> Result<bool, String> {
    if value.eq_ignore_ascii_case("yes") {
        Ok(true)
    } else if value.eq_ignore_ascii_case("no") {
        Ok(false)
    } else {
        Err(format!("bad boolean configuration: {name} = {value}"))
    }
}

/// A whole number.
pub fn parse_int(name: &str, value: &str) -> Result<i64, String> {
    value
        .parse()
        .map_err(|_| format!("bad numerical configuration: {name} = {value}"))
}

/// A byte count: a whole number that is not negative.
pub fn parse_size(name: &str, value: &str) -> Result<u64, String> {
    value
        .parse()
        .map_err(|_| format!("bad numerical configuration: {name} = {value}"))
}

/// A time in seconds: a number with an optional unit (s, m, h, d, w);
/// a bare number is in `unit`.
pub fn parse_time(name: &str, value: &str, unit: char) -> Result<u64, String> {
    let bad = || format!("bad time value or unit: {name} = {value}");
    let digits = value
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(value.len());
    if digits == 0 {
        return Err(bad());
    }
    let number: u64 = value[..digits].parse().map_err(|_| bad())?;
    let unit = match &value[digits..] {
        "" => unit,
        u if u.len() == 1 => u.chars().next().unwrap_or(unit),
        _ => return Err(bad()),
    };
    let scale = match unit.to_ascii_lowercase() {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86400,
        'w' => 604800,
        _ => return Err(bad()),
    };
    number.checked_mul(scale).ok_or_else(bad)
}

/// Splits a list value on commas and white space; text in `{ }` stays in
/// one piece with its braces (`regexp:{{/^[^A-Z]/ Bogus}}`).
pub fn split_list(value: &str) -> Vec<&str> {
    let mut items = Vec::new();
    let mut depth = 0usize;
    let mut start = None;
    for (i, c) in value.char_indices() {
        let separator = depth == 0 && (c == ',' || c.is_whitespace());
        match c {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        match (separator, start) {
            (true, Some(s)) => {
                items.push(&value[s..i]);
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    if let Some(s) = start {
        items.push(&value[s..]);
    }
    items
}

/// Parameters that take words from a fixed set: (name, legal words, list).
const CHOICES: &[(&str, &[&str], bool)] = &[
    ("inet_protocols", &["all", "ipv4", "ipv6"], true),
    ("mynetworks_style", &["host", "subnet", "class"], false),
    (
        "mailbox_delivery_lock",
        &["flock", "fcntl", "dotlock"],
        true,
    ),
    (
        "notify_classes",
        &[
            "2bounce", "bounce", "data", "delay", "policy", "protocol", "resource", "software",
        ],
        true,
    ),
    (
        "smtpd_tls_security_level",
        &["", "none", "may", "encrypt"],
        false,
    ),
    (
        "smtp_tls_security_level",
        &[
            "",
            "none",
            "may",
            "encrypt",
            "dane",
            "dane-only",
            "fingerprint",
            "verify",
            "secure",
        ],
        false,
    ),
    (
        "smtpd_forbid_bare_newline",
        &["yes", "no", "normalize", "reject"],
        false,
    ),
];

/// Checks a value against its parameter's type and word set. Words are
/// case-sensitive, as in Postfix (`IPv4` is not an inet_protocols value).
pub fn check(name: &str, kind: ParamType, value: &str) -> Result<(), String> {
    if let Some((_, words, is_list)) = CHOICES.iter().find(|(n, w, _)| *n == name && !w.is_empty())
    {
        return check_words(name, value, words, *is_list);
    }
    if name == "compatibility_level" {
        return parse_level(value).map(|_| ());
    }
    match kind {
        ParamType::Bool => parse_bool(name, value).map(|_| ()),
        ParamType::Int => parse_int(name, value).map(|_| ()),
        ParamType::Size => parse_size(name, value).map(|_| ()),
        ParamType::Time(unit) => parse_time(name, value, unit).map(|_| ()),
        ParamType::Str | ParamType::List => Ok(()),
    }
}

fn check_words(name: &str, value: &str, words: &[&str], is_list: bool) -> Result<(), String> {
    let items = if is_list {
        split_list(value)
    } else {
        vec![value]
    };
    for item in items {
        if !words.contains(&item) {
            let legal: Vec<&str> = words.iter().copied().filter(|w| !w.is_empty()).collect();
            return Err(format!(
                "unknown {name} value \"{item}\" in \"{value}\" (specify one of: {})",
                legal.join(", ")
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booleans() {
        assert_eq!(parse_bool("x", "YES"), Ok(true));
        assert_eq!(parse_bool("x", "no"), Ok(false));
        assert_eq!(
            parse_bool("disable_vrfy_command", "maybe"),
            Err("bad boolean configuration: disable_vrfy_command = maybe".into())
        );
    }

    #[test]
    fn times_with_units() {
        assert_eq!(parse_time("t", "300s", 's'), Ok(300));
        assert_eq!(parse_time("t", "5", 'd'), Ok(432000));
        assert_eq!(parse_time("t", "2h", 's'), Ok(7200));
        assert_eq!(parse_time("t", "1w", 's'), Ok(604800));
        assert_eq!(parse_time("t", "10M", 's'), Ok(600));
        for bad in ["", "s", "5x", "5ss", "-1", "1.5h"] {
            assert!(parse_time("t", bad, 's').is_err(), "{bad}");
        }
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_int("n", "-3"), Ok(-3));
        assert!(parse_int("n", "ten").is_err());
        assert_eq!(parse_size("s", "10240000"), Ok(10240000));
        assert!(parse_size("s", "-1").is_err());
    }

    #[test]
    fn lists() {
        assert_eq!(split_list(" a, b\tc,,d "), vec!["a", "b", "c", "d"]);
        assert_eq!(
            split_list("CONNECT GET regexp:{{/^[^A-Z]/ Bogus}}, x"),
            vec!["CONNECT", "GET", "regexp:{{/^[^A-Z]/ Bogus}}", "x"]
        );
    }

    #[test]
    fn word_sets() {
        assert!(check("inet_protocols", ParamType::List, "ipv4, ipv6").is_ok());
        // Seed 004: Postfix refuses "IPv4"; the words are case-sensitive.
        assert_eq!(
            check("inet_protocols", ParamType::List, "IPv4").unwrap_err(),
            "unknown inet_protocols value \"IPv4\" in \"IPv4\" (specify one of: all, ipv4, ipv6)"
        );
        assert!(check("mynetworks_style", ParamType::Str, "subnet").is_ok());
        assert!(check("mynetworks_style", ParamType::Str, "lan").is_err());
        assert!(check("smtpd_tls_security_level", ParamType::Str, "").is_ok());
        assert!(check("compatibility_level", ParamType::Str, "3.6").is_ok());
        assert!(check("compatibility_level", ParamType::Str, "three").is_err());
        assert!(check("x", ParamType::Bool, "maybe").is_err());
        assert!(check("x", ParamType::Time('s'), "5q").is_err());
    }
}
