//! smtpd's access restrictions (smtpd_client/helo/sender/relay/recipient
//! restrictions and restriction classes) evaluated as a function without
//! I/O of its own: lookups go through libmail::tables, match_list and
//! resolve. The result is the decision, the side actions (HOLD, DISCARD,
//! PREPEND, REDIRECT, FILTER) and the trail of restrictions that led to
//! it, for the log, for tests, and for an explain command.
//!
//! DNS-based restrictions (reject_unknown_*, reject_rbl_client and the
//! other DNS lists) ask the `dns::Lookup` given at construction; their
//! code lives in `restrict/dns_checks.rs`.

mod dns_checks;

use std::collections::HashMap;
use std::net::IpAddr;

use crate::config::{value::split_list, Config, ConfigError};
use crate::dns::Lookup as DnsLookup;
use crate::match_list::NetworkList;
use crate::resolve::{AddressClass, Resolver};
use crate::tables::search::{self, mail_access_keys, SearchKey};
use crate::tables::{self, Dict, LookupError, Maps, OpenOptions, TableError};

/// How a client host name lookup ended (Postfix's SMTPD_PEER_CODE_*).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NameStatus {
    Ok,
    /// The lookup failed temporarily: a 4xx, whatever the reject code.
    TempFail,
    /// No name, or name lookups are off.
    #[default]
    NotFound,
    /// The name does not lead back to the address (client name only).
    Forged,
}

/// What the restrictions are asked about.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// The verified (forward-confirmed) client name, or `unknown`.
    pub client_name: String,
    pub client_name_status: NameStatus,
    /// The client name from the PTR lookup alone, or `unknown`.
    pub reverse_client_name: String,
    pub reverse_client_name_status: NameStatus,
    pub client_addr: Option<IpAddr>,
    pub helo: Option<String>,
    pub sender: Option<String>,
    pub recipient: Option<String>,
    /// The client sent commands before it was allowed to (pipelining
    /// without the extension).
    pub improper_pipelining: bool,
    /// Evaluating smtpd_data_restrictions: refusals that name what they
    /// refuse name `<DATA>: Data command`.
    pub data_stage: bool,
    /// Evaluating smtpd_etrn_restrictions: the domain ETRN named, which
    /// check_etrn_access looks up and refusals name (`<DOMAIN>: Etrn
    /// command rejected`).
    pub etrn_domain: Option<String>,
}

/// A rejection or deferral reply, e.g. `554 5.7.1 <a@b>: Relay access denied`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub dsn: String,
    pub text: String,
}

impl std::fmt::Display for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} {}", self.code, self.dsn, self.text)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Permit,
    /// No restriction decided: the caller's default (accept).
    Dunno,
    Reject(Reply),
}

/// What an access table asked for besides permit or reject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionKind {
    Discard,
    Hold,
    /// `value` is a header field to add.
    Prepend,
    /// `value` is the address to deliver to instead.
    Redirect,
    /// `value` is `transport:nexthop`.
    Filter,
}

/// An action that does not end the evaluation but applies to the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    pub kind: ActionKind,
    pub value: String,
    /// Why, for the log: `<u@x>: Recipient address triggers HOLD action`.
    pub reason: String,
}

/// Temporary failures held back to see how the evaluation ends, as
/// Postfix's defer_if_permit and defer_if_reject: the first reason of each
/// kind is kept.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Deferrals {
    /// Given instead of a permit (explicit or by default) at the end of
    /// the recipient or ETRN stage.
    pub if_permit: Option<Reply>,
    /// Given instead of the next 5xx reject of the same stage.
    pub if_reject: Option<Reply>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub decision: Decision,
    pub actions: Vec<Action>,
    /// `restriction=result` for each step taken.
    pub trail: Vec<String>,
    /// The deferrals after this list: what the caller passed in and what
    /// the list added.
    pub deferrals: Deferrals,
    /// Warnings for the log (a DNS list that could not be asked).
    pub warnings: Vec<String>,
}

/// What is being checked, for the reply text and the access lookups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Subject {
    Client,
    /// The unverified (PTR only) client name.
    ReverseClient,
    Helo,
    Sender,
    Recipient,
    Etrn,
}

impl Subject {
    fn label(self) -> &'static str {
        match self {
            Subject::Client => "Client host",
            Subject::ReverseClient => "Unverified Client host",
            Subject::Helo => "Helo command",
            Subject::Sender => "Sender address",
            Subject::Recipient => "Recipient address",
            Subject::Etrn => "Etrn command",
        }
    }

    fn rejected(self) -> &'static str {
        match self {
            Subject::Client => "Client host rejected",
            Subject::ReverseClient => "Unverified Client host rejected",
            Subject::Helo => "Helo command rejected",
            Subject::Sender => "Sender address rejected",
            Subject::Recipient => "Recipient address rejected",
            Subject::Etrn => "Etrn command rejected",
        }
    }
}

enum Step {
    Permit,
    Reject,
    Defer,
    PermitMynetworks,
    RejectUnauthDestination,
    DeferUnauthDestination,
    PermitAuthDestination,
    RejectUnlistedRecipient,
    RejectNonFqdn(Subject),
    RejectInvalidHelo,
    RejectUnauthPipelining,
    CheckAccess(Subject, Box<Dict>),
    Class(String),
    RejectUnknownClient,
    RejectUnknownReverseClient,
    RejectUnknownHelo,
    /// reject_unknown_sender_domain, reject_unknown_recipient_domain.
    RejectUnknownDomain(Subject),
    /// A DNS allow or block list and its `domain[=d.d.d.d]` argument.
    Dnsxl(Dnsxl, String),
    DeferIfPermit,
    DeferIfReject,
}

/// Which DNS list restriction, and so what it looks up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dnsxl {
    RblClient,
    DnswlClient,
    RhsblClient,
    RhsblReverseClient,
    RhsblSender,
    RhsblHelo,
    RhsblRecipient,
}

impl Dnsxl {
    fn name(self) -> &'static str {
        match self {
            Dnsxl::RblClient => "reject_rbl_client",
            Dnsxl::DnswlClient => "permit_dnswl_client",
            Dnsxl::RhsblClient => "reject_rhsbl_client",
            Dnsxl::RhsblReverseClient => "reject_rhsbl_reverse_client",
            Dnsxl::RhsblSender => "reject_rhsbl_sender",
            Dnsxl::RhsblHelo => "reject_rhsbl_helo",
            Dnsxl::RhsblRecipient => "reject_rhsbl_recipient",
        }
    }

    fn parse(word: &str) -> Option<Dnsxl> {
        let all = [
            Dnsxl::RblClient,
            Dnsxl::DnswlClient,
            Dnsxl::RhsblClient,
            Dnsxl::RhsblReverseClient,
            Dnsxl::RhsblSender,
            Dnsxl::RhsblHelo,
            Dnsxl::RhsblRecipient,
        ];
        match word {
            "reject_rbl" => Some(Dnsxl::RblClient),
            _ => all.into_iter().find(|d| d.name() == word),
        }
    }
}

/// What a temporary DNS failure does (unknown_*_tempfail_action).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TempfailAction {
    /// Reject with 450 now.
    Defer,
    /// Reject with 450 only if the request would otherwise be permitted.
    DeferIfPermit,
}

#[derive(Debug, thiserror::Error)]
pub enum RestrictError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Table(#[from] TableError),
    #[error("{0}")]
    Resolve(#[from] crate::resolve::ResolveError),
    #[error("unknown smtpd restriction: \"{0}\"")]
    Unknown(String),
    #[error("restriction {0} needs a table argument")]
    MissingTable(String),
    #[error("restriction {0} requires domain name argument")]
    MissingDomain(String),
    #[error("RBL reply error: {0}")]
    RblReply(String),
    #[error("bad {0} value: \"{1}\" (specify defer or defer_if_permit)")]
    TempfailAction(String, String),
}

/// Reply codes from main.cf.
struct Codes {
    reject: u16,
    defer: u16,
    access_reject: u16,
    access_defer: u16,
    relay_reject: u16,
    non_fqdn: u16,
    invalid_hostname: u16,
    unknown_local: u16,
    unknown_client: u16,
    unknown_hostname: u16,
    unknown_address: u16,
    /// maps_rbl_reject_code, as `$rbl_code` in reply templates.
    maps_rbl: u16,
}

/// What the DNS-based restrictions need besides the lookups.
struct DnsSettings {
    helo_tempfail: TempfailAction,
    address_tempfail: TempfailAction,
    /// rbl_reply_maps: reply templates by DNS list domain.
    reply_maps: Option<Maps>,
    /// default_rbl_reply, unexpanded.
    default_reply: String,
}

/// The restriction lists of main.cf, parsed and with their tables open.
pub struct Restrictions {
    lists: HashMap<String, Vec<Step>>,
    codes: Codes,
    mynetworks: NetworkList,
    resolver: Resolver,
    local_recipient_maps: Option<Maps>,
    delimiters: String,
    parent_access: bool,
    /// smtpd_reject_unlisted_recipient: the unknown-user check runs after
    /// the lists even when none names it.
    reject_unlisted_recipient: bool,
    /// show_user_unknown_table_name.
    show_table_name: bool,
    dns: Box<dyn DnsLookup>,
    dns_settings: DnsSettings,
}

/// How many `%`/`!` routing steps are followed before giving up.
const MAX_ROUTING: usize = 10;

const LISTS: [&str; 8] = [
    "smtpd_client_restrictions",
    "smtpd_helo_restrictions",
    "smtpd_sender_restrictions",
    "smtpd_relay_restrictions",
    "smtpd_recipient_restrictions",
    "smtpd_data_restrictions",
    "smtpd_end_of_data_restrictions",
    "smtpd_etrn_restrictions",
];

impl Restrictions {
    /// The restrictions of main.cf; DNS-based ones ask `dns` (one
    /// resolver for the process, or a fixed table in tests).
    pub fn new(config: &Config, dns: Box<dyn DnsLookup>) -> Result<Restrictions, RestrictError> {
        let mut lists = HashMap::new();
        let classes = config.list("smtpd_restriction_classes")?;
        for name in LISTS.iter().map(|s| s.to_string()).chain(classes) {
            let steps = parse_steps(&config.string(&name)?)?;
            lists.insert(name, steps);
        }
        check_classes(&lists)?;
        let code = |name: &str| -> Result<u16, RestrictError> {
            Ok(config.int(name)?.clamp(400, 599) as u16)
        };
        let local_maps = config.string("local_recipient_maps")?;
        let parents = config.list("parent_domain_matches_subdomains")?;
        Ok(Restrictions {
            lists,
            codes: Codes {
                reject: code("reject_code")?,
                defer: code("defer_code")?,
                access_reject: code("access_map_reject_code")?,
                access_defer: code("access_map_defer_code")?,
                relay_reject: code("relay_domains_reject_code")?,
                non_fqdn: code("non_fqdn_reject_code")?,
                invalid_hostname: code("invalid_hostname_reject_code")?,
                unknown_local: code("unknown_local_recipient_reject_code")?,
                unknown_client: code("unknown_client_reject_code")?,
                unknown_hostname: code("unknown_hostname_reject_code")?,
                unknown_address: code("unknown_address_reject_code")?,
                maps_rbl: code("maps_rbl_reject_code")?,
            },
            mynetworks: NetworkList::new(&config.string("mynetworks")?)?,
            resolver: Resolver::new(config)?,
            local_recipient_maps: if local_maps.trim().is_empty() {
                None
            } else {
                Some(Maps::open(
                    "local_recipient_maps",
                    &local_maps,
                    OpenOptions::default(),
                )?)
            },
            delimiters: config.string("recipient_delimiter")?,
            parent_access: parents.iter().any(|p| p == "smtpd_access_maps"),
            reject_unlisted_recipient: config.bool("smtpd_reject_unlisted_recipient")?,
            show_table_name: config.bool("show_user_unknown_table_name")?,
            dns,
            dns_settings: dns_settings(config)?,
        })
    }

    /// The DNS handle, for the program's other lookups (smtpd's client
    /// name) so that one resolver serves the process.
    pub fn dns(&self) -> &dyn DnsLookup {
        self.dns.as_ref()
    }

    /// smtpd_reject_unlisted_recipient: after the recipient lists let a
    /// recipient through (even with OK), an unknown local user is still
    /// refused, as Postfix does.
    pub fn unlisted_recipient_check(&mut self, context: &Context) -> Result<Decision, LookupError> {
        match self.reject_unlisted_recipient {
            true => self.unlisted_recipient(context),
            false => Ok(Decision::Dunno),
        }
    }

    /// Evaluates one list (`smtpd_recipient_restrictions`, say). A table
    /// that cannot answer is a temporary failure for the caller (4xx).
    pub fn evaluate(&mut self, list: &str, context: &Context) -> Result<Verdict, LookupError> {
        self.evaluate_with(list, context, Deferrals::default())
    }

    /// Evaluates one list with the deferrals earlier stages left (Postfix
    /// carries defer_if_permit from the client, helo and sender stages to
    /// the recipient stage). Whether a pending defer_if_permit turns the
    /// outcome into a deferral is the caller's to decide at the end of
    /// the stage.
    pub fn evaluate_with(
        &mut self,
        list: &str,
        context: &Context,
        deferrals: Deferrals,
    ) -> Result<Verdict, LookupError> {
        let mut verdict = Verdict {
            decision: Decision::Dunno,
            actions: Vec::new(),
            trail: Vec::new(),
            deferrals,
            warnings: Vec::new(),
        };
        verdict.decision = self.run(list, context, &mut verdict, 0)?;
        Ok(verdict)
    }

    fn run(
        &mut self,
        list: &str,
        context: &Context,
        verdict: &mut Verdict,
        depth: usize,
    ) -> Result<Decision, LookupError> {
        // Taken out while it runs, so that its tables can be used mutably
        // alongside the rest of `self`.
        let Some(mut steps) = self.lists.remove(list) else {
            return Ok(Decision::Dunno);
        };
        let mut outcome = Ok(Decision::Dunno);
        for step in &mut steps {
            match self.step(step, context, verdict, depth) {
                // With both deferrals pending the outcome is a deferral
                // whatever comes next, as Postfix stops there too.
                Ok(Decision::Dunno)
                    if verdict.deferrals.if_permit.is_some()
                        && verdict.deferrals.if_reject.is_some() =>
                {
                    break
                }
                Ok(Decision::Dunno) => continue,
                other => {
                    outcome = other;
                    break;
                }
            }
        }
        self.lists.insert(list.to_string(), steps);
        outcome
    }

    fn step(
        &mut self,
        step: &mut Step,
        context: &Context,
        verdict: &mut Verdict,
        depth: usize,
    ) -> Result<Decision, LookupError> {
        let decision = match step {
            Step::Permit => Decision::Permit,
            Step::Reject => self.generic(context, self.codes.reject, "5.7.1", "Access denied"),
            Step::Defer => self.generic(context, self.codes.defer, "4.7.1", "Access denied"),
            Step::PermitMynetworks => match context.client_addr {
                Some(addr) if self.mynetworks.matches(addr, Some(&context.client_name))? => {
                    Decision::Permit
                }
                _ => Decision::Dunno,
            },
            Step::RejectUnauthDestination => {
                self.unauth_destination(context, self.codes.relay_reject)?
            }
            // relay_domains_reject_code made temporary: 554 becomes 454.
            Step::DeferUnauthDestination => {
                self.unauth_destination(context, 400 + self.codes.relay_reject % 100)?
            }
            Step::PermitAuthDestination => match &context.recipient {
                Some(rcpt) if self.is_authorized_destination(rcpt)? => Decision::Permit,
                _ => Decision::Dunno,
            },
            Step::RejectUnlistedRecipient => self.unlisted_recipient(context)?,
            Step::RejectNonFqdn(subject) => self.non_fqdn(*subject, context),
            Step::RejectInvalidHelo => self.invalid_helo(context),
            Step::RejectUnauthPipelining if context.improper_pipelining => {
                let (name, rejected) = match context.data_stage {
                    true => ("DATA".to_string(), "Data command rejected"),
                    false => {
                        let subject = current_subject(context);
                        (subject_name(subject, context), subject.rejected())
                    }
                };
                Decision::Reject(reply(
                    503,
                    "5.5.0",
                    &name,
                    rejected,
                    "Improper use of SMTP command pipelining",
                ))
            }
            Step::RejectUnauthPipelining => Decision::Dunno,
            Step::CheckAccess(subject, dict) => {
                let subject = *subject;
                let found = self.access_lookup(subject, dict, context)?;
                match found {
                    Some((key, value)) => {
                        self.access_action(subject, &key, &value, context, verdict, depth)?
                    }
                    None => Decision::Dunno,
                }
            }
            Step::Class(name) if depth < 10 => {
                let name = name.clone();
                self.run(&name, context, verdict, depth + 1)?
            }
            Step::Class(_) => Decision::Dunno,
            Step::RejectUnknownClient => self.unknown_client(context),
            Step::RejectUnknownReverseClient => self.unknown_reverse_client(context),
            Step::RejectUnknownHelo => self.unknown_helo(context, verdict),
            Step::RejectUnknownDomain(subject) => {
                self.unknown_domain(*subject, context, verdict)?
            }
            Step::Dnsxl(kind, domain) => {
                let (kind, domain) = (*kind, domain.clone());
                self.dnsxl(kind, &domain, context, verdict)?
            }
            Step::DeferIfPermit => {
                let reply = self.requested(context, "defer_if_permit requested");
                defer_if(&mut verdict.deferrals.if_permit, reply)
            }
            Step::DeferIfReject => {
                let reply = self.requested(context, "defer_if_reject requested");
                defer_if(&mut verdict.deferrals.if_reject, reply)
            }
        };
        let decision = deferred_reject(decision, &mut verdict.deferrals);
        verdict
            .trail
            .push(format!("{}={}", step_name(step), decision_name(&decision)));
        Ok(decision)
    }

    fn generic(&self, context: &Context, code: u16, dsn: &str, text: &str) -> Decision {
        let subject = current_subject(context);
        Decision::Reject(reply(
            code,
            dsn,
            &subject_name(subject, context),
            subject.rejected(),
            text,
        ))
    }

    /// Whether the recipient's real destination is ours to accept. Relay
    /// tricks in a local address (`user%host@local`, `host!user@local`,
    /// `"user@host"@local`) are followed to where they point, so they
    /// never make a remote destination look local.
    fn is_authorized_destination(&mut self, recipient: &str) -> Result<bool, LookupError> {
        let mut address = recipient.to_string();
        for _ in 0..MAX_ROUTING {
            let (localpart, domain) = search::split_address(&address);
            let class = self.resolver.classify(domain.unwrap_or(""))?;
            if class != AddressClass::Local {
                return Ok(class != AddressClass::Default);
            }
            match routed_elsewhere(localpart) {
                Some(next) => address = next,
                None => return Ok(true),
            }
        }
        Ok(false)
    }

    fn unauth_destination(
        &mut self,
        context: &Context,
        code: u16,
    ) -> Result<Decision, LookupError> {
        let Some(rcpt) = &context.recipient else {
            return Ok(Decision::Dunno);
        };
        if self.is_authorized_destination(rcpt)? {
            return Ok(Decision::Dunno);
        }
        let dsn = if code < 500 { "4.7.1" } else { "5.7.1" };
        Ok(Decision::Reject(Reply {
            code,
            dsn: dsn.into(),
            text: format!("<{rcpt}>: Relay access denied"),
        }))
    }

    fn unlisted_recipient(&mut self, context: &Context) -> Result<Decision, LookupError> {
        let (Some(rcpt), Some(maps)) = (&context.recipient, self.local_recipient_maps.as_mut())
        else {
            return Ok(Decision::Dunno);
        };
        // The mailbox it finally names: `u%x@local` and `x!u@local` are
        // looked up as `u@x` (which is only local when x is).
        let mut address = rcpt.clone();
        for _ in 0..MAX_ROUTING {
            let (localpart, domain) = search::split_address(&address);
            if self.resolver.classify(domain.unwrap_or(""))? != AddressClass::Local {
                return Ok(Decision::Dunno);
            }
            match routed_elsewhere(localpart) {
                Some(next) => address = next,
                None => break,
            }
        }
        let keys = search::mail_addr_keys(&address, &self.delimiters, true);
        if maps.search(&keys)?.is_some() {
            return Ok(Decision::Dunno);
        }
        let text = match self.show_table_name {
            true => "User unknown in local recipient table",
            false => "User unknown",
        };
        Ok(Decision::Reject(reply(
            self.codes.unknown_local,
            "5.1.1",
            rcpt,
            Subject::Recipient.rejected(),
            text,
        )))
    }

    fn non_fqdn(&self, subject: Subject, context: &Context) -> Decision {
        let (name, what) = match subject {
            Subject::Helo => (context.helo.as_deref(), "hostname"),
            Subject::Sender => (
                context.sender.as_deref().filter(|s| !s.is_empty()),
                "address",
            ),
            _ => (context.recipient.as_deref(), "address"),
        };
        let Some(name) = name else {
            return Decision::Dunno;
        };
        let domain = if subject == Subject::Helo {
            Some(name)
        } else {
            search::split_address(name).1
        };
        let fqdn =
            domain.is_some_and(|d| d.trim_matches(['[', ']']).contains('.') || d.starts_with('['));
        if fqdn {
            return Decision::Dunno;
        }
        Decision::Reject(reply(
            self.codes.non_fqdn,
            "5.5.2",
            name,
            subject.rejected(),
            &format!("need fully-qualified {what}"),
        ))
    }

    fn invalid_helo(&self, context: &Context) -> Decision {
        let Some(helo) = context.helo.as_deref() else {
            return Decision::Dunno;
        };
        if valid_hostname_or_literal(helo) {
            return Decision::Dunno;
        }
        Decision::Reject(reply(
            self.codes.invalid_hostname,
            "5.5.2",
            helo,
            Subject::Helo.rejected(),
            "Invalid name",
        ))
    }

    fn access_lookup(
        &self,
        subject: Subject,
        dict: &mut Dict,
        context: &Context,
    ) -> Result<Option<(String, String)>, LookupError> {
        let keys = match subject {
            Subject::Client => client_keys(&context.client_name, context, self.parent_access),
            Subject::ReverseClient => {
                client_keys(&context.reverse_client_name, context, self.parent_access)
            }
            Subject::Helo => context
                .helo
                .as_deref()
                .map(|h| search::host_keys(h, self.parent_access))
                .unwrap_or_default(),
            Subject::Sender => match context.sender.as_deref() {
                Some("") => vec![SearchKey {
                    key: "<>".into(),
                    partial: false,
                }],
                Some(s) => mail_access_keys(s, &self.delimiters, self.parent_access),
                None => Vec::new(),
            },
            Subject::Recipient => context
                .recipient
                .as_deref()
                .map(|r| mail_access_keys(r, &self.delimiters, self.parent_access))
                .unwrap_or_default(),
            Subject::Etrn => context
                .etrn_domain
                .as_deref()
                .map(|d| search::host_keys(d, self.parent_access))
                .unwrap_or_default(),
        };
        Ok(search::search(dict, &keys)?.map(|found| (found.key, found.value)))
    }

    fn access_action(
        &mut self,
        subject: Subject,
        _key: &str,
        value: &str,
        context: &Context,
        verdict: &mut Verdict,
        depth: usize,
    ) -> Result<Decision, LookupError> {
        let name = subject_name(subject, context);
        let (word, rest) = match value.split_once(char::is_whitespace) {
            Some((w, r)) => (w, r.trim()),
            None => (value, ""),
        };
        let text_or = |default: &str| {
            if rest.is_empty() {
                default.to_string()
            } else {
                rest.to_string()
            }
        };
        let upper = word.to_ascii_uppercase();
        Ok(match upper.as_str() {
            "OK" | "RELAY" => Decision::Permit,
            "DUNNO" => Decision::Dunno,
            "REJECT" => Decision::Reject(access_reply(
                self.codes.access_reject,
                &name,
                subject,
                &text_or("Access denied"),
            )),
            "DEFER" => Decision::Reject(access_reply(
                self.codes.access_defer,
                &name,
                subject,
                &text_or("Access denied"),
            )),
            "DISCARD" => {
                let reason = text_or("triggers DISCARD action");
                verdict
                    .actions
                    .push(action(ActionKind::Discard, rest, &name, subject, &reason));
                Decision::Permit
            }
            "HOLD" => {
                let reason = text_or("triggers HOLD action");
                side(
                    verdict,
                    action(ActionKind::Hold, rest, &name, subject, &reason),
                )
            }
            "PREPEND" => side(
                verdict,
                action(ActionKind::Prepend, rest, &name, subject, ""),
            ),
            "REDIRECT" => {
                let reason = format!("triggers REDIRECT {rest}");
                side(
                    verdict,
                    action(ActionKind::Redirect, rest, &name, subject, &reason),
                )
            }
            "FILTER" => {
                let reason = format!("triggers FILTER {rest}");
                side(
                    verdict,
                    action(ActionKind::Filter, rest, &name, subject, &reason),
                )
            }
            _ if is_reply_code(word) => {
                let code: u16 = word.parse().unwrap_or(554);
                Decision::Reject(access_reply(
                    code,
                    &name,
                    subject,
                    &text_or("Access denied"),
                ))
            }
            _ if word.bytes().all(|b| b.is_ascii_digit()) => Decision::Permit,
            _ => {
                // A restriction or class name as the action.
                let mut steps = parse_steps(value).unwrap_or_default();
                let mut decision = Decision::Dunno;
                for step in &mut steps {
                    decision = self.step(step, context, verdict, depth + 1)?;
                    if decision != Decision::Dunno {
                        break;
                    }
                }
                decision
            }
        })
    }
}

fn action(kind: ActionKind, value: &str, name: &str, subject: Subject, reason: &str) -> Action {
    Action {
        kind,
        value: value.to_string(),
        reason: format!("<{name}>: {} {reason}", subject.label()),
    }
}

fn side(verdict: &mut Verdict, action: Action) -> Decision {
    verdict.actions.push(action);
    Decision::Dunno
}

fn is_reply_code(word: &str) -> bool {
    word.len() == 3
        && matches!(word.as_bytes()[0], b'4' | b'5')
        && word.bytes().all(|b| b.is_ascii_digit())
}

fn access_reply(code: u16, name: &str, subject: Subject, text: &str) -> Reply {
    let (dsn, text) = split_dsn(text, code);
    reply(code, &dsn, name, subject.rejected(), &text)
}

/// `5.1.1 text` at the start of an access text is the enhanced status
/// code; its class follows the reply code.
fn split_dsn(text: &str, code: u16) -> (String, String) {
    let class = if code < 500 { '4' } else { '5' };
    if let Some((first, rest)) = text.split_once(' ') {
        let parts: Vec<&str> = first.split('.').collect();
        if parts.len() == 3
            && parts
                .iter()
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        {
            return (
                format!("{class}.{}.{}", parts[1], parts[2]),
                rest.to_string(),
            );
        }
    }
    (format!("{class}.7.1"), text.to_string())
}

fn reply(code: u16, dsn: &str, name: &str, rejected: &str, text: &str) -> Reply {
    Reply {
        code,
        dsn: dsn.to_string(),
        text: format!("<{name}>: {rejected}: {text}"),
    }
}

fn current_subject(context: &Context) -> Subject {
    if context.etrn_domain.is_some() {
        Subject::Etrn
    } else if context.recipient.is_some() {
        Subject::Recipient
    } else if context.sender.is_some() {
        Subject::Sender
    } else if context.helo.is_some() {
        Subject::Helo
    } else {
        Subject::Client
    }
}

fn subject_name(subject: Subject, context: &Context) -> String {
    match subject {
        Subject::Client => {
            let addr = context
                .client_addr
                .map(|a| a.to_string())
                .unwrap_or_default();
            format!("{}[{addr}]", context.client_name)
        }
        Subject::ReverseClient => context.reverse_client_name.clone(),
        Subject::Helo => context.helo.clone().unwrap_or_default(),
        Subject::Sender => context.sender.clone().unwrap_or_default(),
        Subject::Recipient => context.recipient.clone().unwrap_or_default(),
        Subject::Etrn => context.etrn_domain.clone().unwrap_or_default(),
    }
}

fn client_keys(name: &str, context: &Context, parent: bool) -> Vec<SearchKey> {
    let mut keys = Vec::new();
    if !name.is_empty() && name != "unknown" {
        keys.extend(search::host_keys(name, parent));
    }
    if let Some(addr) = context.client_addr {
        keys.extend(search::address_keys(&addr.to_string()));
    }
    keys
}

/// The address a local part routes to, if it hides one: `user@host`
/// (quoted), `user%host`, or `host!user`.
fn routed_elsewhere(localpart: &str) -> Option<String> {
    let localpart = localpart.trim_matches('"');
    if let Some((user, host)) = localpart.rsplit_once('@') {
        return Some(format!("{user}@{host}"));
    }
    if let Some((user, host)) = localpart.rsplit_once('%') {
        return Some(format!("{user}@{host}"));
    }
    let (host, user) = localpart.split_once('!')?;
    Some(format!("{user}@{host}"))
}

fn valid_hostname_or_literal(name: &str) -> bool {
    if let Some(literal) = name.strip_prefix('[').and_then(|n| n.strip_suffix(']')) {
        let literal = literal.strip_prefix("IPv6:").unwrap_or(literal);
        return literal.parse::<IpAddr>().is_ok();
    }
    !name.is_empty()
        && name.len() <= 255
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

fn parse_steps(value: &str) -> Result<Vec<Step>, RestrictError> {
    let mut words = split_list(value).into_iter();
    let mut steps = Vec::new();
    while let Some(word) = words.next() {
        let step = match word {
            "permit" => Step::Permit,
            "reject" => Step::Reject,
            "defer" => Step::Defer,
            "permit_mynetworks" => Step::PermitMynetworks,
            "reject_unauth_destination" => Step::RejectUnauthDestination,
            "defer_unauth_destination" => Step::DeferUnauthDestination,
            "permit_auth_destination" => Step::PermitAuthDestination,
            "reject_unlisted_recipient" | "check_recipient_maps" => Step::RejectUnlistedRecipient,
            "reject_non_fqdn_helo_hostname" | "reject_non_fqdn_hostname" => {
                Step::RejectNonFqdn(Subject::Helo)
            }
            "reject_non_fqdn_sender" => Step::RejectNonFqdn(Subject::Sender),
            "reject_non_fqdn_recipient" => Step::RejectNonFqdn(Subject::Recipient),
            "reject_invalid_helo_hostname" | "reject_invalid_hostname" => Step::RejectInvalidHelo,
            "reject_unauth_pipelining" => Step::RejectUnauthPipelining,
            "reject_unknown_client_hostname" | "reject_unknown_client" => Step::RejectUnknownClient,
            "reject_unknown_reverse_client_hostname" => Step::RejectUnknownReverseClient,
            "reject_unknown_helo_hostname" | "reject_unknown_hostname" => Step::RejectUnknownHelo,
            "reject_unknown_sender_domain" => Step::RejectUnknownDomain(Subject::Sender),
            "reject_unknown_recipient_domain" => Step::RejectUnknownDomain(Subject::Recipient),
            "defer_if_permit" => Step::DeferIfPermit,
            "defer_if_reject" => Step::DeferIfReject,
            _ if Dnsxl::parse(word).is_some() => {
                let domain = words
                    .next()
                    .ok_or_else(|| RestrictError::MissingDomain(word.to_string()))?;
                let kind = Dnsxl::parse(word).ok_or_else(|| RestrictError::Unknown(word.into()))?;
                dns_checks::check_reply_pattern(domain).map_err(RestrictError::RblReply)?;
                Step::Dnsxl(kind, domain.to_string())
            }
            "permit_sasl_authenticated" | "reject_unlisted_sender" => continue,
            "check_client_access"
            | "check_helo_access"
            | "check_sender_access"
            | "check_recipient_access"
            | "check_etrn_access" => {
                let subject = match word {
                    "check_client_access" => Subject::Client,
                    "check_helo_access" => Subject::Helo,
                    "check_sender_access" => Subject::Sender,
                    "check_etrn_access" => Subject::Etrn,
                    _ => Subject::Recipient,
                };
                let table = words
                    .next()
                    .ok_or_else(|| RestrictError::MissingTable(word.to_string()))?;
                Step::CheckAccess(subject, Box::new(tables::open(table)?))
            }
            name if name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') => {
                Step::Class(name.to_string())
            }
            other => return Err(RestrictError::Unknown(other.to_string())),
        };
        steps.push(step);
    }
    Ok(steps)
}

/// A name that is not a restriction must be a class of
/// smtpd_restriction_classes; otherwise it is a typo that would
/// silently do nothing.
fn check_classes(lists: &HashMap<String, Vec<Step>>) -> Result<(), RestrictError> {
    for steps in lists.values() {
        for step in steps {
            if let Step::Class(name) = step {
                if !lists.contains_key(name) {
                    return Err(RestrictError::Unknown(name.clone()));
                }
            }
        }
    }
    Ok(())
}

fn step_name(step: &Step) -> String {
    match step {
        Step::Permit => "permit".into(),
        Step::Reject => "reject".into(),
        Step::Defer => "defer".into(),
        Step::PermitMynetworks => "permit_mynetworks".into(),
        Step::RejectUnauthDestination => "reject_unauth_destination".into(),
        Step::DeferUnauthDestination => "defer_unauth_destination".into(),
        Step::PermitAuthDestination => "permit_auth_destination".into(),
        Step::RejectUnlistedRecipient => "reject_unlisted_recipient".into(),
        Step::RejectNonFqdn(s) => format!("reject_non_fqdn_{s:?}").to_ascii_lowercase(),
        Step::RejectInvalidHelo => "reject_invalid_helo_hostname".into(),
        Step::RejectUnauthPipelining => "reject_unauth_pipelining".into(),
        Step::CheckAccess(s, dict) => {
            format!("check_{s:?}_access {}", dict.spec()).to_ascii_lowercase()
        }
        Step::Class(name) => name.clone(),
        Step::RejectUnknownClient => "reject_unknown_client_hostname".into(),
        Step::RejectUnknownReverseClient => "reject_unknown_reverse_client_hostname".into(),
        Step::RejectUnknownHelo => "reject_unknown_helo_hostname".into(),
        Step::RejectUnknownDomain(s) => format!("reject_unknown_{s:?}_domain").to_ascii_lowercase(),
        Step::Dnsxl(kind, domain) => format!("{} {domain}", kind.name()),
        Step::DeferIfPermit => "defer_if_permit".into(),
        Step::DeferIfReject => "defer_if_reject".into(),
    }
}

/// Keeps the first deferral of its kind; the evaluation goes on.
fn defer_if(slot: &mut Option<Reply>, reply: Reply) -> Decision {
    if slot.is_none() {
        *slot = Some(reply);
    }
    Decision::Dunno
}

/// A 5xx reject becomes the pending defer_if_reject deferral: an earlier
/// temporary failure may have been what would have let the mail in.
fn deferred_reject(decision: Decision, deferrals: &mut Deferrals) -> Decision {
    match decision {
        Decision::Reject(reply) if reply.code >= 500 => match deferrals.if_reject.take() {
            Some(deferral) => Decision::Reject(deferral),
            None => Decision::Reject(reply),
        },
        other => other,
    }
}

fn dns_settings(config: &Config) -> Result<DnsSettings, RestrictError> {
    let maps = config.string("rbl_reply_maps")?;
    Ok(DnsSettings {
        helo_tempfail: tempfail_action(config, "unknown_helo_hostname_tempfail_action")?,
        address_tempfail: tempfail_action(config, "unknown_address_tempfail_action")?,
        reply_maps: match maps.trim().is_empty() {
            true => None,
            false => Some(Maps::open("rbl_reply_maps", &maps, OpenOptions::default())?),
        },
        default_reply: config.string("default_rbl_reply")?,
    })
}

fn tempfail_action(config: &Config, name: &str) -> Result<TempfailAction, RestrictError> {
    let value = config.string(name)?;
    match value.trim() {
        "defer" => Ok(TempfailAction::Defer),
        "defer_if_permit" => Ok(TempfailAction::DeferIfPermit),
        other => Err(RestrictError::TempfailAction(
            name.to_string(),
            other.to_string(),
        )),
    }
}

fn decision_name(decision: &Decision) -> String {
    match decision {
        Decision::Permit => "permit".into(),
        Decision::Dunno => "dunno".into(),
        Decision::Reject(reply) => reply.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::StaticDns;

    fn restrictions(extra: &str) -> Restrictions {
        restrictions_with(extra, StaticDns::new())
    }

    fn restrictions_with(extra: &str, dns: StaticDns) -> Restrictions {
        let text = format!(
            "myhostname = mail.example.com\nmydomain = example.com\ninet_interfaces = 127.0.0.1\n\
             compatibility_level = 3.7\nmynetworks = 127.0.0.0/8 192.168.1.0/24\n\
             relay_domains = relay.example\nlocal_recipient_maps =\n{extra}"
        );
        let config = Config::from_text(std::path::Path::new("/nonexistent"), &text).unwrap();
        Restrictions::new(&config, Box::new(dns)).unwrap()
    }

    fn rcpt(client: &str, recipient: &str) -> Context {
        Context {
            client_name: "unknown".into(),
            reverse_client_name: "unknown".into(),
            client_addr: Some(client.parse().unwrap()),
            helo: Some("client.example".into()),
            sender: Some("s@sender.example".into()),
            recipient: Some(recipient.into()),
            ..Context::default()
        }
    }

    fn outcome(r: &mut Restrictions, list: &str, context: &Context) -> String {
        decision_name(&r.evaluate(list, context).unwrap().decision)
    }

    #[test]
    fn relay_matrix() {
        // Postfix 3.7's default relay restrictions.
        let mut r = restrictions("");
        let list = "smtpd_relay_restrictions";
        for (client, recipient, expected) in [
            ("127.0.0.1", "u@other.example", "permit"),
            ("192.168.1.9", "u@other.example", "permit"),
            ("10.0.0.1", "u@mail.example.com", "dunno"),
            ("10.0.0.1", "u@relay.example", "dunno"),
            ("10.0.0.1", "u@sub.relay.example", "dunno"),
            (
                "10.0.0.1",
                "u@other.example",
                "454 4.7.1 <u@other.example>: Relay access denied",
            ),
        ] {
            assert_eq!(
                outcome(&mut r, list, &rcpt(client, recipient)),
                expected,
                "{client} {recipient}"
            );
        }
    }

    #[test]
    fn relay_tricks_never_relay() {
        let mut r = restrictions("smtpd_relay_restrictions = reject_unauth_destination\n");
        for trick in [
            "u%other.example@mail.example.com",
            "other.example!u@mail.example.com",
            "\"u@other.example\"@mail.example.com",
            "u@other.example@mail.example.com",
            "u%other.example%mail.example.com@mail.example.com",
            "\"u%other.example\"@localhost",
            "other.example!u%x@localhost",
            "u@other.example.",
            "u@[10.9.9.9]",
            "u@[IPv6:2001:db8::1]",
            "u@relay.example.evil.example",
            "u@evilrelay.example",
            "\"other.example!u\"@localhost",
            "u@other.example@relay.example.invalid",
            "u%relay.example@other.example",
        ] {
            let result = outcome(&mut r, "smtpd_relay_restrictions", &rcpt("10.0.0.1", trick));
            assert!(result.starts_with("554 5.7.1 "), "{trick}: {result}");
        }
        assert_eq!(
            outcome(
                &mut r,
                "smtpd_relay_restrictions",
                &rcpt("10.0.0.1", "u@[127.0.0.1]")
            ),
            "dunno"
        );
    }

    #[test]
    fn access_actions() {
        let mut r = restrictions(
            "smtpd_recipient_restrictions = check_recipient_access inline:{ \
             {ok@x.example=OK}, {rej@x.example=REJECT}, {txt@x.example=REJECT go away}, \
             {code@x.example=450 4.2.0 try later}, {dunno@x.example=DUNNO}, {hold@x.example=HOLD quarantine}, \
             {disc@x.example=DISCARD}, {pre@x.example=PREPEND X-Tag: 1}, {red@x.example=REDIRECT a@b.example}, \
             {fil@x.example=FILTER smtp:[10.0.0.1]}, {cls@x.example=strict}, {y.example=REJECT domain} }, permit\n\
             smtpd_restriction_classes = strict\nstrict = reject\n",
        );
        let list = "smtpd_recipient_restrictions";
        let check = |r: &mut Restrictions, who: &str| outcome(r, list, &rcpt("10.0.0.1", who));
        assert_eq!(check(&mut r, "ok@x.example"), "permit");
        assert_eq!(
            check(&mut r, "rej@x.example"),
            "554 5.7.1 <rej@x.example>: Recipient address rejected: Access denied"
        );
        assert_eq!(
            check(&mut r, "txt@x.example"),
            "554 5.7.1 <txt@x.example>: Recipient address rejected: go away"
        );
        assert_eq!(
            check(&mut r, "code@x.example"),
            "450 4.2.0 <code@x.example>: Recipient address rejected: try later"
        );
        assert_eq!(check(&mut r, "dunno@x.example"), "permit");
        assert_eq!(
            check(&mut r, "cls@x.example"),
            "554 5.7.1 <cls@x.example>: Recipient address rejected: Access denied"
        );
        assert_eq!(
            check(&mut r, "anyone@sub.y.example"),
            "554 5.7.1 <anyone@sub.y.example>: Recipient address rejected: domain"
        );
        let verdict = r
            .evaluate(list, &rcpt("10.0.0.1", "hold@x.example"))
            .unwrap();
        let hold = Action {
            kind: ActionKind::Hold,
            value: "quarantine".into(),
            reason: "<hold@x.example>: Recipient address quarantine".into(),
        };
        assert_eq!(verdict.actions, vec![hold]);
        assert_eq!(verdict.decision, Decision::Permit);
        let verdict = r
            .evaluate(list, &rcpt("10.0.0.1", "disc@x.example"))
            .unwrap();
        let discard = Action {
            kind: ActionKind::Discard,
            value: String::new(),
            reason: "<disc@x.example>: Recipient address triggers DISCARD action".into(),
        };
        assert_eq!(verdict.actions, vec![discard]);
        for (who, kind, value, reason) in [
            ("pre@x.example", ActionKind::Prepend, "X-Tag: 1", " "),
            (
                "red@x.example",
                ActionKind::Redirect,
                "a@b.example",
                " triggers REDIRECT a@b.example",
            ),
            (
                "fil@x.example",
                ActionKind::Filter,
                "smtp:[10.0.0.1]",
                " triggers FILTER smtp:[10.0.0.1]",
            ),
        ] {
            let expected = Action {
                kind,
                value: value.into(),
                reason: format!("<{who}>: Recipient address{reason}"),
            };
            assert_eq!(
                r.evaluate(list, &rcpt("10.0.0.1", who)).unwrap().actions,
                vec![expected]
            );
        }
    }

    #[test]
    fn client_and_helo_checks() {
        let mut r = restrictions(
            "smtpd_client_restrictions = check_client_access inline:{10.1.2=REJECT}\n\
             smtpd_helo_restrictions = reject_invalid_helo_hostname, reject_non_fqdn_helo_hostname\n\
             smtpd_sender_restrictions = reject_non_fqdn_sender\n",
        );
        assert_eq!(
            outcome(
                &mut r,
                "smtpd_client_restrictions",
                &rcpt("10.1.2.3", "u@x.example")
            ),
            "554 5.7.1 <unknown[10.1.2.3]>: Client host rejected: Access denied"
        );
        let mut context = rcpt("10.0.0.1", "u@x.example");
        context.helo = Some("bad..name".into());
        assert_eq!(
            outcome(&mut r, "smtpd_helo_restrictions", &context),
            "501 5.5.2 <bad..name>: Helo command rejected: Invalid name"
        );
        context.helo = Some("localhost".into());
        assert_eq!(
            outcome(&mut r, "smtpd_helo_restrictions", &context),
            "504 5.5.2 <localhost>: Helo command rejected: need fully-qualified hostname"
        );
        context.sender = Some("root".into());
        assert_eq!(
            outcome(&mut r, "smtpd_sender_restrictions", &context),
            "504 5.5.2 <root>: Sender address rejected: need fully-qualified address"
        );
    }

    #[test]
    fn unlisted_local_recipients() {
        let mut r = restrictions(
            "local_recipient_maps = inline:{root=x, alice=x}\nrecipient_delimiter = +\n\
             smtpd_recipient_restrictions = reject_unlisted_recipient\n",
        );
        let list = "smtpd_recipient_restrictions";
        assert_eq!(
            outcome(
                &mut r,
                list,
                &rcpt("10.0.0.1", "alice+tag@mail.example.com")
            ),
            "dunno"
        );
        assert_eq!(
            outcome(&mut r, list, &rcpt("10.0.0.1", "bob@localhost")),
            "550 5.1.1 <bob@localhost>: Recipient address rejected: User unknown in local recipient table"
        );
        assert_eq!(
            outcome(&mut r, list, &rcpt("10.0.0.1", "bob@other.example")),
            "dunno"
        );
    }

    #[test]
    fn unknown_restriction_is_a_config_error() {
        let text = "local_recipient_maps =\nsmtpd_recipient_restrictions = permit_everything\n";
        let config = Config::from_text(std::path::Path::new("/nonexistent"), text).unwrap();
        let err = Restrictions::new(&config, Box::new(StaticDns::new()))
            .err()
            .unwrap();
        assert_eq!(
            err.to_string(),
            "unknown smtpd restriction: \"permit_everything\""
        );
        let config = Config::from_text(
            std::path::Path::new("/nonexistent"),
            "local_recipient_maps =\nsmtpd_recipient_restrictions = check_recipient_access\n",
        )
        .unwrap();
        assert!(matches!(
            Restrictions::new(&config, Box::new(StaticDns::new())),
            Err(RestrictError::MissingTable(_))
        ));
    }

    #[test]
    fn etrn_restrictions_name_the_domain() {
        let mut r = restrictions(
            "smtpd_etrn_restrictions = permit_mynetworks, \
             check_etrn_access inline:{ {bad.example=REJECT no flush}, {ok.example=OK} }, reject\n",
        );
        let etrn = |client: &str, domain: &str| Context {
            client_name: "unknown".into(),
            client_addr: Some(client.parse().unwrap()),
            helo: Some("client.example".into()),
            etrn_domain: Some(domain.into()),
            ..Context::default()
        };
        let list = "smtpd_etrn_restrictions";
        assert_eq!(
            outcome(&mut r, list, &etrn("127.0.0.1", "bad.example")),
            "permit"
        );
        assert_eq!(
            outcome(&mut r, list, &etrn("10.0.0.1", "sub.bad.example")),
            "554 5.7.1 <sub.bad.example>: Etrn command rejected: no flush"
        );
        assert_eq!(
            outcome(&mut r, list, &etrn("10.0.0.1", "ok.example")),
            "permit"
        );
        assert_eq!(
            outcome(&mut r, list, &etrn("10.0.0.1", "other.example")),
            "554 5.7.1 <other.example>: Etrn command rejected: Access denied"
        );
    }
}
