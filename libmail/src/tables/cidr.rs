//! cidr: tables (cidr_table(5)): `network/prefix result` and `address
//! result` rules for IPv4 and IPv6, `!` negation and nestable
//! `if`/`endif`, first match in file order.
//!
//! Networks are parsed once when the table is opened; a lookup parses the
//! key once and compares it with each rule's network. As in Postfix, a
//! rule that cannot be used is skipped with a warning, and a key that is
//! not an IP address (including `[1.2.3.4]`) is simply not found.

use std::net::IpAddr;

use ipnet::IpNet;

use super::pattern_file::{is_space, keyword, negations, table_lines, Log};
use super::{Lookup, Table, TableError};

/// A cidr: table, parsed when opened.
pub struct CidrTable {
    rules: Vec<Rule>,
}

/// A network and whether a key inside or outside it counts.
struct Test {
    net: IpNet,
    negate: bool,
}

impl Test {
    /// A rule for the other address family never applies, negated or not.
    fn holds(&self, addr: &IpAddr) -> bool {
        let same_family = self.net.addr().is_ipv4() == addr.is_ipv4();
        same_family && self.net.contains(addr) != self.negate
    }
}

enum Rule {
    Match {
        test: Test,
        result: String,
    },
    /// When the test fails, lookup continues at rule `end`.
    If {
        test: Test,
        end: usize,
    },
}

impl CidrTable {
    /// Reads the file `name`; unusable rules are skipped with Postfix's
    /// warnings.
    pub fn open(name: &str) -> Result<CidrTable, TableError> {
        let text = super::pattern_file::table_text("cidr", name)?;
        let mut log = Log::new("cidr", name);
        let table = Self::parse(&text, &mut log);
        log.emit();
        Ok(table)
    }

    /// Parses table text; warnings go to `log`.
    pub(crate) fn parse(text: &str, log: &mut Log) -> CidrTable {
        let mut parser = Parser {
            rules: Vec::new(),
            open_ifs: Vec::new(),
        };
        for (line, text) in table_lines(log, text) {
            log.line = line;
            parser.line(&text, log);
        }
        while let Some((_, line)) = parser.open_ifs.pop() {
            log.warn_at(line, "IF has no matching ENDIF");
        }
        CidrTable {
            rules: parser.rules,
        }
    }

    fn find(&self, addr: &IpAddr) -> Option<String> {
        let mut at = 0;
        while let Some(rule) = self.rules.get(at) {
            at = match rule {
                Rule::If { test, end } if !test.holds(addr) => *end,
                Rule::If { .. } => at + 1,
                Rule::Match { test, result } if test.holds(addr) => return Some(result.clone()),
                Rule::Match { .. } => at + 1,
            };
        }
        None
    }
}

impl Table for CidrTable {
    fn lookup(&mut self, key: &str) -> Lookup {
        Ok(key.parse::<IpAddr>().ok().and_then(|addr| self.find(&addr)))
    }

    fn is_pattern(&self) -> bool {
        true
    }
}

/// The state of reading one file.
struct Parser {
    rules: Vec<Rule>,
    /// (index in `rules`, line) of each IF without ENDIF yet.
    open_ifs: Vec<(usize, usize)>,
}

impl Parser {
    fn line(&mut self, text: &str, log: &mut Log) {
        if let Some(rest) = keyword(text, "if") {
            self.if_rule(rest, log);
        } else if let Some(rest) = keyword(text, "endif") {
            self.endif(rest, log);
        } else {
            self.match_rule(text, log);
        }
    }

    /// `[!]pattern result`.
    fn match_rule(&mut self, text: &str, log: &mut Log) {
        let (negate, text) = negations(text);
        let end = text.find(is_space).unwrap_or(text.len());
        let Some(net) = network(&text[..end], log) else {
            return;
        };
        let result = text[end..].trim_start_matches(is_space);
        if result.is_empty() {
            log.warn("no lookup result: skipping this rule");
            return;
        }
        let test = Test { net, negate };
        let result = result.to_string();
        self.rules.push(Rule::Match { test, result });
    }

    /// `if [!]pattern`: the whole rest of the line is the pattern.
    fn if_rule(&mut self, rest: &str, log: &mut Log) {
        let (negate, pattern) = negations(rest);
        let Some(net) = network(pattern, log) else {
            return;
        };
        self.open_ifs.push((self.rules.len(), log.line));
        let test = Test { net, negate };
        self.rules.push(Rule::If {
            test,
            end: usize::MAX,
        });
    }

    fn endif(&mut self, rest: &str, log: &mut Log) {
        if !rest.trim_start_matches(is_space).is_empty() {
            log.warn("garbage after ENDIF: skipping this rule");
            return;
        }
        let Some((index, _)) = self.open_ifs.pop() else {
            log.warn("ENDIF without IF: skipping this rule");
            return;
        };
        let next = self.rules.len();
        if let Some(Rule::If { end, .. }) = self.rules.get_mut(index) {
            *end = next;
        }
    }
}

/// Parses an address pattern; `None` after a warning.
fn network(pattern: &str, log: &mut Log) -> Option<IpNet> {
    if pattern.is_empty() {
        log.warn("no address pattern: skipping this rule");
        return None;
    }
    match parse_network(pattern) {
        Ok(net) => Some(net),
        Err(why) => {
            log.warn(format_args!("{why}: skipping this rule"));
            None
        }
    }
}

/// `address`, `network/prefix`, either optionally in `[]` (`[net]/len`
/// and `[net/len]` both work), in Postfix's words when it is wrong.
pub(crate) fn parse_network(pattern: &str) -> Result<IpNet, String> {
    let unbracketed;
    let text = match pattern.strip_prefix('[') {
        Some(inner) => {
            let Some(close) = inner.find(']') else {
                return Err(format!("missing ']' character after \"{pattern}\""));
            };
            let (address, after) = (&inner[..close], &inner[close + 1..]);
            if !after.is_empty() && !after.starts_with('/') {
                return Err(format!("garbage after \"[{address}]\""));
            }
            unbracketed = format!("{address}{after}");
            unbracketed.as_str()
        }
        None => pattern,
    };
    match text.split_once('/') {
        None => match text.parse::<IpAddr>() {
            Ok(addr) => Ok(IpNet::from(addr)),
            Err(_) => Err(format!("bad address pattern: \"{text}\"")),
        },
        Some((address, len)) => prefix_network(text, address, len),
    }
}

/// `address/len`; `text` is the whole pattern, for messages.
fn prefix_network(text: &str, address: &str, len: &str) -> Result<IpNet, String> {
    if len.is_empty() || !len.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("bad mask value in \"{text}\""));
    }
    // Digits only: a parse error is an overflow, far too long anyway.
    let len = len.parse::<u32>().unwrap_or(u32::MAX);
    let max = if address.contains(':') { 128 } else { 32 };
    if len > max {
        return Err(format!("bad mask length in \"{text}\""));
    }
    let Ok(addr) = address.parse::<IpAddr>() else {
        return Err(format!("bad network value in \"{text}\""));
    };
    // `len` is at most 128, and fits the address family checked above.
    let net = IpNet::new(addr, len as u8).map_err(|_| format!("bad mask length in \"{text}\""))?;
    if net.network() != addr {
        let suggestion = format!("{}/{len}", net.network());
        return Err(format!(
            "non-null host address bits in \"{text}\", perhaps you should use \
             \"{suggestion}\" instead"
        ));
    }
    Ok(net)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tables::pattern_file::tests::TempFile;

    fn table(text: &str) -> (CidrTable, Vec<String>) {
        let mut log = Log::new("cidr", "f");
        let table = CidrTable::parse(text, &mut log);
        (table, log.messages)
    }

    fn lookup(text: &str, key: &str) -> Option<String> {
        table(text).0.lookup(key).unwrap()
    }

    #[test]
    fn first_match_in_file_order() {
        let text =
            "192.168.1.1 OK\n192.168.0.0/16 REJECT\n2001:db8::1 OK6\n2001:db8::/32 REJECT6\n";
        assert_eq!(lookup(text, "192.168.1.1").as_deref(), Some("OK"));
        assert_eq!(lookup(text, "192.168.7.9").as_deref(), Some("REJECT"));
        assert_eq!(lookup(text, "192.169.0.1"), None);
        assert_eq!(lookup(text, "2001:db8::1").as_deref(), Some("OK6"));
        assert_eq!(lookup(text, "2001:DB8:0::0:2").as_deref(), Some("REJECT6"));
        assert_eq!(lookup(text, "2001:db9::1"), None);
    }

    #[test]
    fn families_do_not_mix() {
        let text = "0.0.0.0/0 v4\n::/0 v6\n";
        assert_eq!(lookup(text, "10.1.2.3").as_deref(), Some("v4"));
        assert_eq!(lookup(text, "::ffff:10.1.2.3").as_deref(), Some("v6"));
        assert_eq!(lookup("::/0 v6\n", "10.1.2.3"), None);
        // Negation does not reach across address families either.
        assert_eq!(lookup("!1.2.3.4 neg\n", "2001:db8::1"), None);
        let text = "if !1.2.3.0/24\n::/0 in\nendif\n::/0 after\n";
        assert_eq!(lookup(text, "::1").as_deref(), Some("after"));
    }

    #[test]
    fn brackets_in_patterns_not_keys() {
        for pattern in [
            "[1.2.3.4]",
            "[1.2.3.0]/24",
            "[1.2.3.0/24]",
            "[2001:db8::]/32",
        ] {
            let text = format!("{pattern} y\n");
            let key = if pattern.contains(':') {
                "2001:db8::5"
            } else {
                "1.2.3.4"
            };
            assert_eq!(lookup(&text, key).as_deref(), Some("y"), "{pattern}");
        }
        assert_eq!(lookup("1.2.3.4 y\n", "[1.2.3.4]"), None);
    }

    #[test]
    fn non_addresses_are_not_found() {
        let text = "0.0.0.0/0 all\n::/0 all6\n";
        for key in [
            "foo",
            "",
            " 1.2.3.4",
            "1.2.3",
            "01.2.3.4",
            "1.2.3.4/32",
            "fe80::1%eth0",
        ] {
            assert_eq!(lookup(text, key), None, "{key}");
        }
    }

    #[test]
    fn negation_and_results() {
        let text = "!1.2.3.4 not-it\n";
        assert_eq!(lookup(text, "1.2.3.5").as_deref(), Some("not-it"));
        assert_eq!(lookup(text, "1.2.3.4"), None);
        assert_eq!(lookup("! ! 1.2.3.4 y\n", "1.2.3.4").as_deref(), Some("y"));
        assert_eq!(
            lookup("1.2.3.4\ty  z\n", "1.2.3.4").as_deref(),
            Some("y  z")
        );
        assert_eq!(
            lookup("1.2.3.4 x\n  y\n", "1.2.3.4").as_deref(),
            Some("x  y")
        );
        assert_eq!(lookup("1.2.3.4 $1\n", "1.2.3.4").as_deref(), Some("$1"));
    }

    #[test]
    fn if_endif() {
        let text =
            "if 1.2.3.0/24\n1.2.3.4 a\n!1.2.3.5 b\nendif\nif !10.0.0.0/8\n0.0.0.0/0 out\nendif\n";
        assert_eq!(lookup(text, "1.2.3.4").as_deref(), Some("a"));
        assert_eq!(lookup(text, "1.2.3.6").as_deref(), Some("b"));
        assert_eq!(lookup(text, "1.2.3.5").as_deref(), Some("out"));
        assert_eq!(lookup(text, "10.1.1.1"), None);
        assert_eq!(
            lookup("IF 1.2.3.0/24\n0.0.0.0/0 in\nENDIF\n", "1.2.3.4").as_deref(),
            Some("in")
        );
        assert_eq!(
            lookup("if[1.2.3.4]\n0.0.0.0/0 in\nendif\n", "1.2.3.5"),
            None
        );
    }

    #[test]
    fn if_endif_mistakes() {
        let (mut t, warnings) = table("endif\nif 1.2.3.0/24\n0.0.0.0/0 in\nendif x\n");
        assert_eq!(t.lookup("1.2.3.4").unwrap().as_deref(), Some("in"));
        assert_eq!(t.lookup("1.2.4.4").unwrap(), None);
        assert_eq!(
            warnings,
            vec![
                "cidr map f, line 1: ENDIF without IF: skipping this rule",
                "cidr map f, line 4: garbage after ENDIF: skipping this rule",
                "cidr map f, line 2: IF has no matching ENDIF",
            ]
        );
    }

    #[test]
    fn bad_rules_are_skipped_with_postfix_warnings() {
        let text = "1.2.3.4/24 a\n1.2.3.4/33 b\n1.2.3 c\n1.2.3.4\nfoo/24 d\n1.2.3.4/x e\n\
                    [1.2.3.4 f\n[1.2.3.4]x g\n2001:db8::1/64 h\n!\nif1.2.3.0/24 i\n\
                    ::ffff:1.2.3.4/96 j\n0.0.0.0/0 ok\n";
        let (mut t, warnings) = table(text);
        assert_eq!(t.lookup("1.2.3.4").unwrap().as_deref(), Some("ok"));
        let expected = [
            "line 1: non-null host address bits in \"1.2.3.4/24\", perhaps you should use \
             \"1.2.3.0/24\" instead: skipping this rule",
            "line 2: bad mask length in \"1.2.3.4/33\": skipping this rule",
            "line 3: bad address pattern: \"1.2.3\": skipping this rule",
            "line 4: no lookup result: skipping this rule",
            "line 5: bad network value in \"foo/24\": skipping this rule",
            "line 6: bad mask value in \"1.2.3.4/x\": skipping this rule",
            "line 7: missing ']' character after \"[1.2.3.4\": skipping this rule",
            "line 8: garbage after \"[1.2.3.4]\": skipping this rule",
            "line 9: non-null host address bits in \"2001:db8::1/64\", perhaps you should \
             use \"2001:db8::/64\" instead: skipping this rule",
            "line 10: no address pattern: skipping this rule",
            "line 11: bad network value in \"if1.2.3.0/24\": skipping this rule",
            "line 12: non-null host address bits in \"::ffff:1.2.3.4/96\", perhaps you \
             should use \"::ffff:0.0.0.0/96\" instead: skipping this rule",
        ];
        let expected: Vec<String> = expected
            .iter()
            .map(|w| format!("cidr map f, {w}"))
            .collect();
        assert_eq!(warnings, expected);
    }

    #[test]
    fn mask_details() {
        assert!(parse_network("1.2.3.0/024").is_ok());
        assert!(parse_network("0.0.0.0/0").is_ok());
        assert!(parse_network("::/0").is_ok());
        assert!(parse_network("2001:0DB8::/32").is_ok());
        assert_eq!(
            parse_network("1.2.3.0/+24").unwrap_err(),
            "bad mask value in \"1.2.3.0/+24\""
        );
        assert_eq!(
            parse_network("foo/33").unwrap_err(),
            "bad mask length in \"foo/33\""
        );
        assert_eq!(
            parse_network("[]").unwrap_err(),
            "bad address pattern: \"\""
        );
        assert_eq!(
            parse_network("[]/24").unwrap_err(),
            "bad network value in \"/24\""
        );
    }

    #[test]
    fn opens_files() {
        let file = TempFile::new("cidr", "10.0.0.0/8 internal\n");
        let mut t = CidrTable::open(file.path()).unwrap();
        assert!(t.is_pattern());
        assert_eq!(t.lookup("10.9.8.7").unwrap().as_deref(), Some("internal"));
        assert!(matches!(
            CidrTable::open("/nonexistent/cidr"),
            Err(TableError::Open { .. })
        ));
    }
}
