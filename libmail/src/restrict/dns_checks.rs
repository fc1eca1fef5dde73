//! The restrictions that ask the DNS: reject_unknown_client_hostname and
//! its reverse variant (from the names smtpd looked up at connect),
//! reject_unknown_helo_hostname, reject_unknown_{sender,recipient}_domain,
//! and the DNS allow and block lists (reject_rbl_client, permit_dnswl_client,
//! reject_rhsbl_*), with Postfix's reply texts. A temporary DNS failure is
//! a 450 now or a defer_if_permit, per the *_tempfail_action parameters;
//! a DNS list that cannot be asked counts as "not listed".

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr};

use super::{
    current_subject, defer_if, reply, split_dsn, subject_name, valid_hostname_or_literal, Context,
    Decision, Dnsxl, NameStatus, Reply, Restrictions, Subject, TempfailAction, Verdict,
};
use crate::config;
use crate::dns::{self, DnsError, Lookup as DnsLookup};
use crate::resolve::AddressClass;
use crate::tables::search;
use crate::tables::LookupError;

/// Postfix keeps at most this much of a DNS list's TXT records.
const TXT_LIMIT: usize = 500;

/// What the DNS says about a host or mail domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Host {
    Found,
    /// The only MX is `0 .` (RFC 7505).
    NullMx,
    NotFound,
    TempFail,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RecordType {
    Mx,
    A,
    Aaaa,
}

/// What a DNS list says about a name.
enum Listing {
    /// Listed, with the TXT text (empty when there is none).
    Listed(String),
    NotListed,
    TempFail,
}

impl Restrictions {
    /// The reply of the defer_if_permit and defer_if_reject restrictions.
    pub(super) fn requested(&self, context: &Context, text: &str) -> Reply {
        let subject = current_subject(context);
        reply(
            450,
            "4.7.0",
            &subject_name(subject, context),
            subject.rejected(),
            text,
        )
    }

    /// reject_unknown_client_hostname: no verified name. A temporary
    /// failure is 450 whatever unknown_client_reject_code says.
    pub(super) fn unknown_client(&self, context: &Context) -> Decision {
        let Some(addr) = context.client_addr else {
            return Decision::Dunno;
        };
        let code = match context.client_name_status {
            NameStatus::Ok => return Decision::Dunno,
            NameStatus::TempFail => 450,
            NameStatus::NotFound | NameStatus::Forged => self.codes.unknown_client,
        };
        Decision::Reject(Reply {
            code,
            dsn: with_class("4.7.25", code),
            text: format!("Client host rejected: cannot find your hostname, [{addr}]"),
        })
    }

    /// reject_unknown_reverse_client_hostname: no PTR name at all.
    pub(super) fn unknown_reverse_client(&self, context: &Context) -> Decision {
        let Some(addr) = context.client_addr else {
            return Decision::Dunno;
        };
        let code = match context.reverse_client_name_status {
            NameStatus::Ok => return Decision::Dunno,
            NameStatus::NotFound => self.codes.unknown_client,
            NameStatus::TempFail | NameStatus::Forged => 450,
        };
        Decision::Reject(Reply {
            code,
            dsn: with_class("4.7.1", code),
            text: format!("Client host rejected: cannot find your reverse hostname, [{addr}]"),
        })
    }

    /// reject_unknown_helo_hostname: the HELO name needs an A, AAAA or MX
    /// record (a null MX will do: it names a host that sends only).
    pub(super) fn unknown_helo(&self, context: &Context, verdict: &mut Verdict) -> Decision {
        let Some(helo) = context.helo.as_deref() else {
            return Decision::Dunno;
        };
        if helo.starts_with('[') {
            return self.invalid_helo_literal(helo);
        }
        let types = [RecordType::A, RecordType::Aaaa, RecordType::Mx];
        let text = "Host not found";
        let rejected = Subject::Helo.rejected();
        match host(self.dns.as_ref(), helo, &types) {
            Host::Found | Host::NullMx => Decision::Dunno,
            Host::NotFound => {
                let code = self.codes.unknown_hostname;
                let dsn = with_class("4.7.1", code);
                Decision::Reject(reply(code, &dsn, helo, rejected, text))
            }
            Host::TempFail => {
                let deferral = reply(450, "4.7.1", helo, rejected, text);
                tempfail(self.dns_settings.helo_tempfail, deferral, verdict)
            }
        }
    }

    fn invalid_helo_literal(&self, helo: &str) -> Decision {
        if valid_hostname_or_literal(helo) {
            return Decision::Dunno;
        }
        let code = self.codes.invalid_hostname;
        Decision::Reject(reply(
            code,
            "5.5.2",
            helo,
            Subject::Helo.rejected(),
            "invalid ip address",
        ))
    }

    /// reject_unknown_sender_domain and reject_unknown_recipient_domain:
    /// a remote domain needs an MX, A or AAAA record; our own domains and
    /// address literals are not looked up.
    pub(super) fn unknown_domain(
        &mut self,
        subject: Subject,
        context: &Context,
        verdict: &mut Verdict,
    ) -> Result<Decision, LookupError> {
        let address = match subject {
            Subject::Sender => context.sender.as_deref().filter(|s| !s.is_empty()),
            _ => context.recipient.as_deref(),
        };
        let Some(address) = address else {
            return Ok(Decision::Dunno);
        };
        let Some(domain) = search::split_address(address).1 else {
            // Unqualified: it gets $myorigin, which is ours.
            return Ok(Decision::Dunno);
        };
        let domain = domain.strip_suffix('.').unwrap_or(domain);
        if domain.is_empty() || domain.starts_with('[') || self.is_final(domain)? {
            return Ok(Decision::Dunno);
        }
        let types = [RecordType::Mx, RecordType::A, RecordType::Aaaa];
        let answer = host(self.dns.as_ref(), domain, &types);
        Ok(self.domain_decision(answer, subject, address, domain, verdict))
    }

    /// Whether mail for `domain` is delivered here (RESOLVE_CLASS_FINAL).
    fn is_final(&mut self, domain: &str) -> Result<bool, LookupError> {
        Ok(matches!(
            self.resolver.classify(domain)?,
            AddressClass::Local | AddressClass::VirtualAlias | AddressClass::VirtualMailbox
        ))
    }

    fn domain_decision(
        &self,
        answer: Host,
        subject: Subject,
        address: &str,
        domain: &str,
        verdict: &mut Verdict,
    ) -> Decision {
        let sender = subject == Subject::Sender;
        let rejected = subject.rejected();
        let dsn = if sender { "4.1.8" } else { "4.1.2" };
        match answer {
            Host::Found => Decision::Dunno,
            Host::NullMx => {
                let (code, dsn) = if sender {
                    (550, "5.7.27")
                } else {
                    (556, "5.1.10")
                };
                let text = format!("Domain {domain} does not accept mail (nullMX)");
                Decision::Reject(reply(code, dsn, address, rejected, &text))
            }
            Host::NotFound => {
                let code = self.codes.unknown_address;
                let dsn = with_class(dsn, code);
                Decision::Reject(reply(code, &dsn, address, rejected, "Domain not found"))
            }
            Host::TempFail => {
                let deferral = reply(450, dsn, address, rejected, "Domain not found");
                tempfail(self.dns_settings.address_tempfail, deferral, verdict)
            }
        }
    }

    /// One DNS list restriction; `argument` is `domain` or
    /// `domain=d.d.d.d` (only those reply addresses count as listed).
    pub(super) fn dnsxl(
        &mut self,
        kind: Dnsxl,
        argument: &str,
        context: &Context,
        verdict: &mut Verdict,
    ) -> Result<Decision, LookupError> {
        let Some((what, subject, name)) = dnsxl_query_name(kind, context) else {
            return Ok(Decision::Dunno);
        };
        if kind == Dnsxl::DnswlClient && !self.may_allowlist(context)? {
            return Ok(Decision::Dunno);
        }
        let (list_domain, pattern) = match argument.split_once('=') {
            Some((domain, pattern)) => (domain, Some(pattern)),
            None => (argument, None),
        };
        let query = format!("{name}.{list_domain}");
        let listing = dnsxl_lookup(self.dns.as_ref(), &query, pattern, verdict);
        Ok(match (kind, listing) {
            (_, Listing::NotListed) => Decision::Dunno,
            (Dnsxl::DnswlClient, Listing::Listed(_)) => Decision::Permit,
            (Dnsxl::DnswlClient, Listing::TempFail) => {
                let rejected = subject.rejected();
                let deferral = reply(450, "4.7.1", &what, rejected, "Service unavailable");
                defer_if(&mut verdict.deferrals.if_reject, deferral)
            }
            (_, Listing::TempFail) => Decision::Dunno,
            (_, Listing::Listed(txt)) => {
                let blocked = Blocked {
                    argument,
                    domain: list_domain,
                    what: &what,
                    class: subject.label(),
                    reason: &txt,
                };
                Decision::Reject(self.rbl_reply(&blocked, context, verdict)?)
            }
        })
    }

    /// permit_dnswl_client never lets a recipient through that we would
    /// not relay for (Postfix's safety check at RCPT).
    fn may_allowlist(&mut self, context: &Context) -> Result<bool, LookupError> {
        match (&context.recipient, context.data_stage) {
            (Some(rcpt), false) => self.is_authorized_destination(rcpt),
            _ => Ok(true),
        }
    }

    /// The reply for a listed name: the template from rbl_reply_maps (by
    /// the argument, then by the bare domain) or default_rbl_reply.
    fn rbl_reply(
        &mut self,
        blocked: &Blocked,
        context: &Context,
        verdict: &mut Verdict,
    ) -> Result<Reply, LookupError> {
        let template = self.reply_template(blocked)?;
        let vars = ReplyVars {
            blocked,
            context,
            code: self.codes.maps_rbl,
        };
        let text = match config::expand(&template, &vars) {
            Ok(expansion) => expansion.value,
            Err(err) => {
                verdict.warnings.push(format!(
                    "bad rbl reply template for domain {}: {template}: {err}",
                    blocked.argument
                ));
                expand_default(&self.dns_settings.default_reply, &vars)
            }
        };
        Ok(parse_rbl_reply(&text, verdict))
    }

    fn reply_template(&mut self, blocked: &Blocked) -> Result<String, LookupError> {
        let default = self.dns_settings.default_reply.clone();
        let Some(maps) = self.dns_settings.reply_maps.as_mut() else {
            return Ok(default);
        };
        let mut found = maps.find(blocked.argument, false)?;
        if found.is_none() && blocked.argument != blocked.domain {
            found = maps.find(blocked.domain, false)?;
        }
        Ok(found.unwrap_or(default))
    }
}

/// A listed name, for the reply template.
struct Blocked<'a> {
    /// `domain` or `domain=d.d.d.d` as configured.
    argument: &'a str,
    domain: &'a str,
    /// The address or name that is listed.
    what: &'a str,
    /// `Client host`, `Sender address`...
    class: &'a str,
    /// The TXT record(s).
    reason: &'a str,
}

/// `$rbl_code`, `$rbl_domain`, `$rbl_reason`, `$rbl_txt`, `$rbl_what`,
/// `$rbl_class`, and the client and envelope names smtpd expands too.
struct ReplyVars<'a> {
    blocked: &'a Blocked<'a>,
    context: &'a Context,
    code: u16,
}

impl config::Lookup for ReplyVars<'_> {
    fn raw(&self, name: &str) -> Option<Cow<'_, str>> {
        let b = self.blocked;
        let c = self.context;
        let value = match name {
            "rbl_code" => self.code.to_string(),
            "rbl_domain" => b.domain.to_string(),
            "rbl_reason" | "rbl_txt" => b.reason.to_string(),
            "rbl_what" => b.what.to_string(),
            "rbl_class" => b.class.to_string(),
            "client_address" => c.client_addr.map(|a| a.to_string())?,
            "client_name" => c.client_name.clone(),
            "reverse_client_name" => c.reverse_client_name.clone(),
            "helo_name" => c.helo.clone()?,
            "sender" => c.sender.clone()?,
            "recipient" => c.recipient.clone()?,
            _ => return None,
        };
        // Values are data, not more templates.
        Some(Cow::Owned(value.replace('$', "$$")))
    }
}

/// default_rbl_reply expanded; Postfix's built-in text if even that fails.
fn expand_default(template: &str, vars: &ReplyVars) -> String {
    config::expand(template, vars)
        .map(|e| e.value)
        .unwrap_or_else(|_| format!("{} Service unavailable", vars.code))
}

/// `554 5.7.1 text` (the enhanced code is optional and follows the reply
/// code's class); anything else is a configuration error answered 450.
fn parse_rbl_reply(text: &str, verdict: &mut Verdict) -> Reply {
    let code = text
        .get(..3)
        .filter(|c| c.bytes().all(|b| b.is_ascii_digit()) && matches!(&c[..1], "4" | "5"))
        .and_then(|c| c.parse::<u16>().ok())
        .filter(|_| text.as_bytes().get(3) == Some(&b' '));
    let Some(code) = code else {
        verdict
            .warnings
            .push(format!("rbl response code configuration error: {text}"));
        return Reply {
            code: 450,
            dsn: "4.7.1".into(),
            text: "Service unavailable".into(),
        };
    };
    let (dsn, rest) = split_dsn(&text[4..], code);
    let rest = match rest.is_empty() {
        true => "Service unavailable".to_string(),
        false => rest,
    };
    Reply {
        code,
        dsn,
        text: rest,
    }
}

/// What a DNS list restriction looks up under the list's domain: the
/// reversed client address, or a domain name. `None` when there is
/// nothing to look up (no such name, `unknown`, an address literal).
fn dnsxl_query_name(kind: Dnsxl, context: &Context) -> Option<(String, Subject, String)> {
    let by_name = |what: Option<&str>, subject: Subject| {
        let what = what?;
        let name = rhs_domain(what)?;
        Some((what.to_string(), subject, name.to_string()))
    };
    let known = |name: &str| (!name.eq_ignore_ascii_case("unknown")).then(|| name.to_string());
    match kind {
        Dnsxl::RblClient | Dnsxl::DnswlClient => {
            let addr = context.client_addr?;
            Some((addr.to_string(), Subject::Client, reversed_address(addr)))
        }
        Dnsxl::RhsblClient => {
            let name = known(&context.client_name)?;
            by_name(Some(&name), Subject::Client)
        }
        Dnsxl::RhsblReverseClient => {
            let name = known(&context.reverse_client_name)?;
            by_name(Some(&name), Subject::ReverseClient)
        }
        Dnsxl::RhsblSender => by_name(
            context.sender.as_deref().filter(|s| !s.is_empty()),
            Subject::Sender,
        ),
        Dnsxl::RhsblHelo => by_name(context.helo.as_deref(), Subject::Helo),
        Dnsxl::RhsblRecipient => by_name(context.recipient.as_deref(), Subject::Recipient),
    }
}

/// `2.0.0.127` for 127.0.0.2, nibbles for IPv6: the reverse name without
/// its in-addr.arpa or ip6.arpa suffix.
fn reversed_address(addr: IpAddr) -> String {
    let name = dns::reverse_name(addr);
    let trimmed = name
        .strip_suffix(".in-addr.arpa")
        .or_else(|| name.strip_suffix(".ip6.arpa"))
        .unwrap_or(&name);
    trimmed.to_string()
}

/// The domain of an address (or a host name as is), if a DNS list can
/// be asked about it. Names ending in a numeric label are skipped, as
/// Postfix does: some lists answer "no IP queries" for them.
fn rhs_domain(what: &str) -> Option<&str> {
    let domain = match what.rsplit_once('@') {
        Some((_, domain)) => domain,
        None => what,
    };
    if domain.is_empty() || domain.starts_with('[') {
        return None;
    }
    let last = domain.rsplit('.').next().unwrap_or(domain);
    if last.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    valid_hostname_or_literal(domain).then_some(domain)
}

/// Asks the list. A failed lookup is logged and counts as not listed
/// ("we can't block all email simply because an RBL server is
/// unavailable"), but the caller may still defer on it.
fn dnsxl_lookup(
    dns: &dyn DnsLookup,
    query: &str,
    pattern: Option<&str>,
    verdict: &mut Verdict,
) -> Listing {
    let addresses = match dns.a(query) {
        Ok(addresses) => addresses,
        Err(err) if err.is_temporary() => {
            verdict.warnings.push(format!(
                "{query}: RBL lookup error: Host or domain name not found. {err}"
            ));
            return Listing::TempFail;
        }
        Err(_) => return Listing::NotListed,
    };
    if let Some(pattern) = pattern {
        if !addresses.iter().any(|a| reply_matches(pattern, *a)) {
            return Listing::NotListed;
        }
    }
    Listing::Listed(txt_reason(dns, query))
}

/// The TXT records, joined with ` / ` and cut at 500 bytes.
fn txt_reason(dns: &dyn DnsLookup, query: &str) -> String {
    let records = dns.txt(query).unwrap_or_default();
    let mut text = records.join(" / ");
    if text.len() > TXT_LIMIT {
        let mut end = TXT_LIMIT;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// Whether a list's answer matches `d.d.d.d`, where each octet may also
/// be a set such as `[2;4..7]`.
fn reply_matches(pattern: &str, addr: Ipv4Addr) -> bool {
    let octets = split_octets(pattern);
    octets.len() == 4
        && octets
            .iter()
            .zip(addr.octets())
            .all(|(p, o)| octet_matches(p, o) == Some(true))
}

/// The four parts of `d.d.[a..b;c].d`: dots inside brackets are ranges.
fn split_octets(pattern: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut depth) = (0, 0usize);
    for (at, c) in pattern.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            '.' if depth == 0 => {
                parts.push(&pattern[start..at]);
                start = at + 1;
            }
            _ => {}
        }
    }
    parts.push(&pattern[start..]);
    parts
}

fn octet_matches(pattern: &str, octet: u8) -> Option<bool> {
    let Some(set) = pattern.strip_prefix('[').and_then(|p| p.strip_suffix(']')) else {
        return Some(pattern.parse::<u8>().ok()? == octet);
    };
    let mut any = false;
    for item in set.split(';') {
        let (low, high) = match item.split_once("..") {
            Some((low, high)) => (low.parse::<u8>().ok()?, high.parse::<u8>().ok()?),
            None => (item.parse::<u8>().ok()?, item.parse::<u8>().ok()?),
        };
        any |= (low..=high).contains(&octet);
    }
    Some(any)
}

/// Whether `domain=pattern` has a usable pattern (checked when main.cf
/// is read, as a bad one would never match).
pub(super) fn check_reply_pattern(argument: &str) -> Result<(), String> {
    let Some((_, pattern)) = argument.split_once('=') else {
        return Ok(());
    };
    let octets = split_octets(pattern);
    let valid = octets.len() == 4 && octets.iter().all(|p| octet_matches(p, 0).is_some());
    match valid {
        true => Ok(()),
        false => Err(format!("bad address pattern in \"{argument}\"")),
    }
}

/// Looks up `name` for the record types in order: any record will do;
/// NXDOMAIN ends the search; a failure is temporary only when nothing
/// else answered.
fn host(dns: &dyn DnsLookup, name: &str, types: &[RecordType]) -> Host {
    let mut temporary = false;
    for rtype in types {
        let result = match rtype {
            RecordType::Mx => dns.mx(name).map(|list| match list.as_slice() {
                [only] if only.is_null() => Host::NullMx,
                _ => Host::Found,
            }),
            RecordType::A => dns.a(name).map(|_| Host::Found),
            RecordType::Aaaa => dns.aaaa(name).map(|_| Host::Found),
        };
        match result {
            Ok(found) => return found,
            Err(DnsError::NotFound { no_data: false, .. }) => return Host::NotFound,
            Err(DnsError::NotFound { .. }) => {}
            Err(DnsError::TempFail { .. }) => temporary = true,
        }
    }
    match temporary {
        true => Host::TempFail,
        false => Host::NotFound,
    }
}

/// A temporary failure: a 450 now, or held as defer_if_permit.
fn tempfail(action: TempfailAction, deferral: Reply, verdict: &mut Verdict) -> Decision {
    match action {
        TempfailAction::Defer => Decision::Reject(deferral),
        TempfailAction::DeferIfPermit => defer_if(&mut verdict.deferrals.if_permit, deferral),
    }
}

/// An enhanced status code in the class of the reply code (Postfix makes
/// them agree: 550 with 4.1.8 is sent as 5.1.8).
fn with_class(dsn: &str, code: u16) -> String {
    let class = if code < 500 { '4' } else { '5' };
    let rest = dsn.get(1..).unwrap_or("");
    format!("{class}{rest}")
}

#[cfg(test)]
mod tests {
    use super::super::{Deferrals, RestrictError};
    use super::*;
    use crate::config::Config;
    use crate::dns::StaticDns;

    fn restrictions(extra: &str, dns: StaticDns) -> Restrictions {
        let text = format!(
            "myhostname = mail.example.com\nmydomain = example.com\ninet_interfaces = 127.0.0.1\n\
             compatibility_level = 3.7\nmynetworks = 127.0.0.0/8\nlocal_recipient_maps =\n{extra}"
        );
        let config = Config::from_text(std::path::Path::new("/nonexistent"), &text).unwrap();
        Restrictions::new(&config, Box::new(dns)).unwrap()
    }

    fn client(addr: &str, name: &str, status: NameStatus) -> Context {
        Context {
            client_name: name.into(),
            client_name_status: status,
            reverse_client_name: name.into(),
            reverse_client_name_status: status,
            client_addr: Some(addr.parse().unwrap()),
            ..Context::default()
        }
    }

    fn mail(sender: &str, recipient: Option<&str>) -> Context {
        Context {
            helo: Some("client.example".into()),
            sender: Some(sender.into()),
            recipient: recipient.map(str::to_string),
            ..client("10.0.0.1", "unknown", NameStatus::NotFound)
        }
    }

    fn outcome(r: &mut Restrictions, list: &str, context: &Context) -> String {
        let verdict = r.evaluate(list, context).unwrap();
        super::super::decision_name(&verdict.decision)
    }

    fn dns() -> StaticDns {
        StaticDns::new()
            .with_a("good.example", "192.0.2.1")
            .with_mx("mxonly.example", 10, "mx.good.example")
            .with_mx("null.example", 0, "")
            .with_a("v6.example", "2001:db8::1")
            .with_servfail("broken.example")
            .with_a("2.0.0.10.rbl.example", "127.0.0.2")
            .with_txt("2.0.0.10.rbl.example", "Listed for testing")
            .with_a("3.0.0.10.rbl.example", "127.0.0.3")
            .with_servfail("4.0.0.10.rbl.example")
            .with_a("bad.example.rhsbl.example", "127.0.0.2")
            .with_txt("bad.example.rhsbl.example", "Bad domain")
            .with_a("2.0.0.10.dnswl.example", "127.0.10.1")
            .with_servfail("3.0.0.10.dnswl.example")
    }

    #[test]
    fn unknown_client_hostname_codes() {
        let list = "smtpd_client_restrictions";
        let text = "Client host rejected: cannot find your hostname, [10.0.0.1]";
        let mut r = restrictions(
            "smtpd_client_restrictions = reject_unknown_client_hostname\n",
            dns(),
        );
        let ok = client("10.0.0.1", "host.example", NameStatus::Ok);
        assert_eq!(outcome(&mut r, list, &ok), "dunno");
        for status in [NameStatus::NotFound, NameStatus::Forged] {
            let c = client("10.0.0.1", "unknown", status);
            assert_eq!(outcome(&mut r, list, &c), format!("450 4.7.25 {text}"));
        }
        let mut r = restrictions(
            "smtpd_client_restrictions = reject_unknown_client_hostname\n\
             unknown_client_reject_code = 550\n",
            dns(),
        );
        let forged = client("10.0.0.1", "unknown", NameStatus::Forged);
        assert_eq!(outcome(&mut r, list, &forged), format!("550 5.7.25 {text}"));
        // A temporary failure is never a 5xx.
        let temp = client("10.0.0.1", "unknown", NameStatus::TempFail);
        assert_eq!(outcome(&mut r, list, &temp), format!("450 4.7.25 {text}"));
    }

    #[test]
    fn unknown_reverse_client_hostname_codes() {
        let list = "smtpd_client_restrictions";
        let mut r = restrictions(
            "smtpd_client_restrictions = reject_unknown_reverse_client_hostname\n\
             unknown_client_reject_code = 550\n",
            dns(),
        );
        // A forged name still has a reverse name.
        let mut forged = client("10.0.0.1", "unknown", NameStatus::Forged);
        forged.reverse_client_name = "ptr.example".into();
        forged.reverse_client_name_status = NameStatus::Ok;
        assert_eq!(outcome(&mut r, list, &forged), "dunno");
        let text = "Client host rejected: cannot find your reverse hostname, [10.0.0.1]";
        let none = client("10.0.0.1", "unknown", NameStatus::NotFound);
        assert_eq!(outcome(&mut r, list, &none), format!("550 5.7.1 {text}"));
        let temp = client("10.0.0.1", "unknown", NameStatus::TempFail);
        assert_eq!(outcome(&mut r, list, &temp), format!("450 4.7.1 {text}"));
    }

    #[test]
    fn unknown_helo_hostname() {
        let list = "smtpd_helo_restrictions";
        let mut r = restrictions(
            "smtpd_helo_restrictions = reject_unknown_helo_hostname\n",
            dns(),
        );
        let helo = |name: &str| Context {
            helo: Some(name.into()),
            ..client("10.0.0.1", "unknown", NameStatus::NotFound)
        };
        for found in [
            "good.example",
            "mxonly.example",
            "null.example",
            "v6.example",
        ] {
            assert_eq!(outcome(&mut r, list, &helo(found)), "dunno", "{found}");
        }
        assert_eq!(
            outcome(&mut r, list, &helo("nosuch.example")),
            "450 4.7.1 <nosuch.example>: Helo command rejected: Host not found"
        );
        assert_eq!(
            outcome(&mut r, list, &helo("[300.1.1.1]")),
            "501 5.5.2 <[300.1.1.1]>: Helo command rejected: invalid ip address"
        );
        assert_eq!(outcome(&mut r, list, &helo("[192.0.2.9]")), "dunno");
        // defer_if_permit: no decision now, a deferral for later.
        let verdict = r.evaluate(list, &helo("broken.example")).unwrap();
        assert_eq!(verdict.decision, Decision::Dunno);
        assert_eq!(
            verdict.deferrals.if_permit.unwrap().to_string(),
            "450 4.7.1 <broken.example>: Helo command rejected: Host not found"
        );
        let mut r = restrictions(
            "smtpd_helo_restrictions = reject_unknown_helo_hostname\n\
             unknown_hostname_reject_code = 550\nunknown_helo_hostname_tempfail_action = defer\n",
            dns(),
        );
        assert_eq!(
            outcome(&mut r, list, &helo("nosuch.example")),
            "550 5.7.1 <nosuch.example>: Helo command rejected: Host not found"
        );
        assert_eq!(
            outcome(&mut r, list, &helo("broken.example")),
            "450 4.7.1 <broken.example>: Helo command rejected: Host not found"
        );
    }

    #[test]
    fn unknown_sender_and_recipient_domains() {
        let mut r = restrictions(
            "smtpd_sender_restrictions = reject_unknown_sender_domain\n\
             smtpd_recipient_restrictions = reject_unknown_recipient_domain\n",
            dns(),
        );
        let snd = "smtpd_sender_restrictions";
        let rcpt = "smtpd_recipient_restrictions";
        for found in [
            "u@good.example",
            "u@mxonly.example",
            "u@good.example.",
            "<>",
        ] {
            let sender = found.trim_matches(['<', '>']);
            assert_eq!(outcome(&mut r, snd, &mail(sender, None)), "dunno");
        }
        // Our own domains and literals are not looked up.
        for ours in ["u@mail.example.com", "u@localhost", "u@[192.0.2.1]", "u"] {
            assert_eq!(outcome(&mut r, snd, &mail(ours, None)), "dunno", "{ours}");
        }
        assert_eq!(
            outcome(&mut r, snd, &mail("u@nosuch.example", None)),
            "450 4.1.8 <u@nosuch.example>: Sender address rejected: Domain not found"
        );
        assert_eq!(
            outcome(&mut r, snd, &mail("u@null.example", None)),
            "550 5.7.27 <u@null.example>: Sender address rejected: Domain null.example does not accept mail (nullMX)"
        );
        let to = |addr: &str| mail("s@good.example", Some(addr));
        assert_eq!(
            outcome(&mut r, rcpt, &to("u@nosuch.example")),
            "450 4.1.2 <u@nosuch.example>: Recipient address rejected: Domain not found"
        );
        assert_eq!(
            outcome(&mut r, rcpt, &to("u@null.example")),
            "556 5.1.10 <u@null.example>: Recipient address rejected: Domain null.example does not accept mail (nullMX)"
        );
        let verdict = r.evaluate(rcpt, &to("u@broken.example")).unwrap();
        assert_eq!(verdict.decision, Decision::Dunno);
        assert_eq!(
            verdict.deferrals.if_permit.unwrap().to_string(),
            "450 4.1.2 <u@broken.example>: Recipient address rejected: Domain not found"
        );
        let mut r = restrictions(
            "smtpd_sender_restrictions = reject_unknown_sender_domain\n\
             unknown_address_reject_code = 550\nunknown_address_tempfail_action = defer\n",
            dns(),
        );
        assert_eq!(
            outcome(&mut r, snd, &mail("u@nosuch.example", None)),
            "550 5.1.8 <u@nosuch.example>: Sender address rejected: Domain not found"
        );
        assert_eq!(
            outcome(&mut r, snd, &mail("u@broken.example", None)),
            "450 4.1.8 <u@broken.example>: Sender address rejected: Domain not found"
        );
    }

    #[test]
    fn rbl_client_replies() {
        let list = "smtpd_client_restrictions";
        let mut r = restrictions(
            "smtpd_client_restrictions = reject_rbl_client rbl.example\n",
            dns(),
        );
        let at = |addr: &str| client(addr, "unknown", NameStatus::NotFound);
        assert_eq!(
            outcome(&mut r, list, &at("10.0.0.2")),
            "554 5.7.1 Service unavailable; Client host [10.0.0.2] blocked using rbl.example; Listed for testing"
        );
        // Listed without a TXT record: no `; reason`.
        assert_eq!(
            outcome(&mut r, list, &at("10.0.0.3")),
            "554 5.7.1 Service unavailable; Client host [10.0.0.3] blocked using rbl.example"
        );
        assert_eq!(outcome(&mut r, list, &at("10.0.0.1")), "dunno");
        // A list that cannot be asked does not list anyone.
        let verdict = r.evaluate(list, &at("10.0.0.4")).unwrap();
        assert_eq!(verdict.decision, Decision::Dunno);
        assert_eq!(verdict.deferrals, Deferrals::default());
        assert_eq!(
            verdict.warnings,
            vec!["4.0.0.10.rbl.example: RBL lookup error: Host or domain name not found. \
                  Name service error for name=4.0.0.10.rbl.example type=A: Host not found, try again"
                .to_string()]
        );
    }

    #[test]
    fn rbl_reply_patterns_and_templates() {
        let list = "smtpd_client_restrictions";
        let mut r = restrictions(
            "smtpd_client_restrictions = reject_rbl_client rbl.example=127.0.0.[2..3;9]\n\
             maps_rbl_reject_code = 550\n\
             rbl_reply_maps = inline:{ {rbl.example=$$rbl_code 5.7.9 $$rbl_what is on $$rbl_domain: $$rbl_reason} }\n",
            dns(),
        );
        let at = |addr: &str| client(addr, "unknown", NameStatus::NotFound);
        assert_eq!(
            outcome(&mut r, list, &at("10.0.0.2")),
            "550 5.7.9 10.0.0.2 is on rbl.example: Listed for testing"
        );
        let mut r = restrictions(
            "smtpd_client_restrictions = reject_rbl_client rbl.example=127.0.0.3\n",
            dns(),
        );
        assert_eq!(outcome(&mut r, list, &at("10.0.0.2")), "dunno");
        assert!(outcome(&mut r, list, &at("10.0.0.3")).starts_with("554 5.7.1 "));
        let text = "local_recipient_maps =\n\
                    smtpd_client_restrictions = reject_rbl_client rbl.example=127.0.0.x\n";
        let config = Config::from_text(std::path::Path::new("/nonexistent"), text).unwrap();
        assert!(matches!(
            Restrictions::new(&config, Box::new(dns())),
            Err(RestrictError::RblReply(_))
        ));
    }

    #[test]
    fn rhsbl_restrictions() {
        let mut r = restrictions(
            "smtpd_sender_restrictions = reject_rhsbl_sender rhsbl.example\n\
             smtpd_helo_restrictions = reject_rhsbl_helo rhsbl.example\n\
             smtpd_client_restrictions = reject_rhsbl_client rhsbl.example, \
             reject_rhsbl_reverse_client rhsbl.example\n",
            dns(),
        );
        assert_eq!(
            outcome(&mut r, "smtpd_sender_restrictions", &mail("u@bad.example", None)),
            "554 5.7.1 Service unavailable; Sender address [u@bad.example] blocked using rhsbl.example; Bad domain"
        );
        assert_eq!(
            outcome(
                &mut r,
                "smtpd_sender_restrictions",
                &mail("u@good.example", None)
            ),
            "dunno"
        );
        let mut helo = mail("u@good.example", None);
        helo.helo = Some("bad.example".into());
        assert_eq!(
            outcome(&mut r, "smtpd_helo_restrictions", &helo),
            "554 5.7.1 Service unavailable; Helo command [bad.example] blocked using rhsbl.example; Bad domain"
        );
        let list = "smtpd_client_restrictions";
        let verified = client("10.0.0.1", "bad.example", NameStatus::Ok);
        assert_eq!(
            outcome(&mut r, list, &verified),
            "554 5.7.1 Service unavailable; Client host [bad.example] blocked using rhsbl.example; Bad domain"
        );
        let mut unverified = client("10.0.0.1", "unknown", NameStatus::Forged);
        unverified.reverse_client_name = "bad.example".into();
        unverified.reverse_client_name_status = NameStatus::Ok;
        assert_eq!(
            outcome(&mut r, list, &unverified),
            "554 5.7.1 Service unavailable; Unverified Client host [bad.example] blocked using rhsbl.example; Bad domain"
        );
    }

    #[test]
    fn dnswl_permits_and_defers_rejects() {
        let list = "smtpd_client_restrictions";
        let mut r = restrictions(
            "smtpd_client_restrictions = permit_dnswl_client dnswl.example, reject\n",
            dns(),
        );
        let at = |addr: &str| client(addr, "unknown", NameStatus::NotFound);
        assert_eq!(outcome(&mut r, list, &at("10.0.0.2")), "permit");
        assert_eq!(
            outcome(&mut r, list, &at("10.0.0.1")),
            "554 5.7.1 <unknown[10.0.0.1]>: Client host rejected: Access denied"
        );
        // The list could not say: the reject that follows becomes a 450.
        assert_eq!(
            outcome(&mut r, list, &at("10.0.0.3")),
            "450 4.7.1 <10.0.0.3>: Client host rejected: Service unavailable"
        );
        // Never a way around relay control.
        let mut relay = at("10.0.0.2");
        relay.recipient = Some("u@elsewhere.example".into());
        assert!(outcome(&mut r, list, &relay).starts_with("554 5.7.1 "));
    }

    #[test]
    fn defer_if_permit_is_carried() {
        let mut r = restrictions(
            "smtpd_client_restrictions = defer_if_permit, permit\n\
             smtpd_recipient_restrictions = reject_unknown_recipient_domain\n",
            dns(),
        );
        let c = client("10.0.0.1", "unknown", NameStatus::NotFound);
        let verdict = r.evaluate("smtpd_client_restrictions", &c).unwrap();
        assert_eq!(verdict.decision, Decision::Permit);
        let held = verdict.deferrals.clone();
        assert_eq!(
            held.if_permit.as_ref().unwrap().to_string(),
            "450 4.7.0 <unknown[10.0.0.1]>: Client host rejected: defer_if_permit requested"
        );
        // The first reason is kept through later stages.
        let to = mail("s@good.example", Some("u@broken.example"));
        let verdict = r
            .evaluate_with("smtpd_recipient_restrictions", &to, held.clone())
            .unwrap();
        assert_eq!(verdict.deferrals, held);
    }
}
