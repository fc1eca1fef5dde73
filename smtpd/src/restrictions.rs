//! The `Policy` that main.cf's restriction lists give a session: each
//! stage evaluated by libmail::restrict (relay restrictions before
//! recipient restrictions, as Postfix 2.10 and later), its verdict turned
//! into the session's decision. A table that cannot answer is a temporary
//! failure (`451 4.3.5 ...: Server configuration error`), never a permit.
//!
//! A temporary DNS failure under defer_if_permit is carried from stage to
//! stage as in Postfix: the client stage's to the helo stage, both to the
//! sender stage, and all to the recipient (and ETRN) stage, where it
//! turns what would have been accepted into a 4xx.

use std::path::PathBuf;

use libmail::dns::Lookup as DnsLookup;
use libmail::flush::{FlushRequest, FlushStatus};
use libmail::restrict::{ActionKind, Context, Decision as Verdict, Deferrals, Reply, Restrictions};
use libmail::tables::LookupError;

use crate::address::{Address, Path};
use crate::policy::{Decision, Disposition, Etrn, Policy, Refusal, View};

pub struct RestrictionPolicy {
    restrictions: Restrictions,
    /// PREPEND, REDIRECT and FILTER found since `side_actions` was called.
    side: Vec<(Disposition, String)>,
    /// Where ETRN asks the flush service (public/flush); none: ETRN is
    /// always refused as unavailable.
    flush_service: Option<PathBuf>,
    /// The defer_if_permit deferral pending after each early stage.
    pending: Pending,
}

/// Postfix's defer_if_permit_client, _helo and _sender, with the reason.
#[derive(Debug, Default)]
struct Pending {
    client: Option<Reply>,
    helo: Option<Reply>,
    sender: Option<Reply>,
}

/// What one stage decided, and the defer_if_permit it leaves pending.
struct Outcome {
    decision: Decision,
    pending: Option<Reply>,
}

impl RestrictionPolicy {
    pub fn new(restrictions: Restrictions) -> RestrictionPolicy {
        RestrictionPolicy {
            restrictions,
            side: Vec::new(),
            flush_service: None,
            pending: Pending::default(),
        }
    }

    /// The DNS handle the restrictions use, for the client name lookups.
    pub fn dns(&self) -> &dyn DnsLookup {
        self.restrictions.dns()
    }

    /// ETRN goes to the flush service at `path`.
    pub fn with_flush_service(mut self, path: PathBuf) -> RestrictionPolicy {
        self.flush_service = Some(path);
        self
    }

    /// Evaluates lists in order; the first that decides wins, a permit
    /// moves on to the next list. `carried` is the defer_if_permit
    /// deferral earlier stages left.
    fn run(&mut self, lists: &[&str], view: &View, carried: Option<Reply>) -> Outcome {
        let mut context = context(view);
        context.data_stage = lists.contains(&"smtpd_data_restrictions");
        let mut deferrals = Deferrals {
            if_permit: carried,
            if_reject: None,
        };
        let decision = self.run_lists(lists, view, &context, &mut deferrals);
        Outcome {
            decision,
            pending: deferrals.if_permit,
        }
    }

    fn run_lists(
        &mut self,
        lists: &[&str],
        view: &View,
        context: &Context,
        deferrals: &mut Deferrals,
    ) -> Decision {
        let mut held = None;
        for list in lists {
            let evaluated = self
                .restrictions
                .evaluate_with(list, context, deferrals.clone());
            let verdict = match evaluated {
                Ok(verdict) => verdict,
                Err(err) => return lookup_failed(&err, context, view),
            };
            for warning in &verdict.warnings {
                libmail::msg::warning(warning);
            }
            *deferrals = verdict.deferrals;
            for action in verdict.actions {
                let (value, reason) = (action.value, action.reason);
                match action.kind {
                    ActionKind::Discard => return Decision::Discard(reason),
                    ActionKind::Hold => held = Some(reason),
                    ActionKind::Prepend => self.side.push((Disposition::Prepend(value), reason)),
                    ActionKind::Redirect => self.side.push((Disposition::Redirect(value), reason)),
                    ActionKind::Filter => self.side.push((Disposition::Filter(value), reason)),
                }
            }
            if let Verdict::Reject(reply) = verdict.decision {
                return Decision::Reject(refusal(reply, view));
            }
        }
        match held {
            Some(text) => Decision::Hold(text),
            None => Decision::Accept,
        }
    }
}

/// The end of a stage that can accept mail (or an ETRN): a pending
/// defer_if_permit turns anything but a refusal into that deferral.
fn settle(outcome: Outcome, view: &View) -> Decision {
    match (outcome.decision, outcome.pending) {
        (refused @ Decision::Reject(_), _) => refused,
        (_, Some(deferral)) => Decision::Reject(refusal(deferral, view)),
        (decision, None) => decision,
    }
}

impl Policy for RestrictionPolicy {
    /// The first stage of a session (at connect, or first again at each
    /// recipient with smtpd_delay_reject): nothing is pending before it.
    fn check_client(&mut self, view: &View) -> Decision {
        self.pending = Pending::default();
        let outcome = self.run(&["smtpd_client_restrictions"], view, None);
        self.pending.client = outcome.pending;
        outcome.decision
    }
    fn check_helo(&mut self, view: &View) -> Decision {
        let carried = self.pending.client.clone();
        let outcome = self.run(&["smtpd_helo_restrictions"], view, carried);
        self.pending.helo = outcome.pending;
        outcome.decision
    }
    fn check_sender(&mut self, view: &View) -> Decision {
        let carried = self.pending.helo.clone().or(self.pending.client.clone());
        let outcome = self.run(&["smtpd_sender_restrictions"], view, carried);
        self.pending.sender = outcome.pending;
        outcome.decision
    }
    fn check_recipient(&mut self, view: &View) -> Decision {
        let carried = self.pending.sender.clone();
        let lists = ["smtpd_relay_restrictions", "smtpd_recipient_restrictions"];
        let decision = settle(self.run(&lists, view, carried), view);
        if matches!(decision, Decision::Reject(_)) {
            return decision;
        }
        let context = context(view);
        match self.restrictions.unlisted_recipient_check(&context) {
            Ok(Verdict::Reject(reply)) => Decision::Reject(refusal(reply, view)),
            Ok(_) => decision,
            Err(err) => lookup_failed(&err, &context, view),
        }
    }
    fn check_vrfy(&mut self, view: &View) -> Decision {
        settle(
            self.run(&["smtpd_recipient_restrictions"], view, None),
            view,
        )
    }
    fn check_data(&mut self, view: &View) -> Decision {
        settle(self.run(&["smtpd_data_restrictions"], view, None), view)
    }
    fn check_end_of_data(&mut self, view: &View) -> Decision {
        let lists = ["smtpd_end_of_data_restrictions"];
        settle(self.run(&lists, view, None), view)
    }
    fn side_actions(&mut self) -> Vec<(Disposition, String)> {
        std::mem::take(&mut self.side)
    }
    fn check_etrn(&mut self, view: &View, domain: &str) -> Decision {
        let mut context = context(view);
        context.etrn_domain = Some(domain.to_string());
        let carried = Deferrals {
            if_permit: self.pending.helo.clone().or(self.pending.client.clone()),
            if_reject: None,
        };
        let evaluated =
            self.restrictions
                .evaluate_with("smtpd_etrn_restrictions", &context, carried);
        match evaluated {
            Ok(verdict) => {
                for warning in &verdict.warnings {
                    libmail::msg::warning(warning);
                }
                match (verdict.decision, verdict.deferrals.if_permit) {
                    (Verdict::Reject(reply), _) | (_, Some(reply)) => {
                        Decision::Reject(Refusal::new(reply.code, &reply.dsn, reply.text))
                    }
                    _ => Decision::Accept,
                }
            }
            Err(err) => {
                libmail::msg::warning(format!("{} lookup error for \"{domain}\"", err.table));
                Decision::Reject(Refusal::new(
                    451,
                    "4.3.5",
                    format!("<{domain}>: Etrn command rejected: Server configuration error"),
                ))
            }
        }
    }
    fn etrn(&mut self, _view: &View, domain: &str) -> Etrn {
        let Some(path) = &self.flush_service else {
            return Etrn::Failed;
        };
        let request = FlushRequest::SendSite {
            site: domain.to_string(),
        };
        match libmail::flush::request_at(path, &request) {
            FlushStatus::Ok => Etrn::Started,
            FlushStatus::Deny => Etrn::Denied,
            FlushStatus::Bad => Etrn::Bad,
            FlushStatus::Fail => Etrn::Failed,
        }
    }
}

fn context(view: &View) -> Context {
    Context {
        client_name: view.client.name.clone(),
        client_name_status: view.client.name_status,
        reverse_client_name: view.client.reverse_name.clone(),
        reverse_client_name_status: view.client.reverse_name_status,
        client_addr: view.client.addr.parse().ok(),
        helo: view.helo.map(str::to_string),
        sender: view.sender.map(|path| match path {
            Path::Null => String::new(),
            Path::Mailbox(address) => address.internal(),
        }),
        recipient: view.recipient.map(Address::internal),
        improper_pipelining: view.improper_pipelining,
        data_stage: false,
        etrn_domain: None,
    }
}

/// A refusal naming the address as the client wrote it (`<u@x.>`, trailing
/// dot kept), where the restriction saw the form lookups use.
fn refusal(reply: libmail::restrict::Reply, view: &View) -> Refusal {
    let named = |address: &Address| (address.internal(), address.reply_name());
    let names = match (view.recipient, view.sender) {
        (Some(rcpt), _) => Some(named(rcpt)),
        (None, Some(Path::Mailbox(sender))) => Some(named(sender)),
        _ => None,
    };
    let text = match names {
        Some((seen, given)) if seen != given => {
            match reply.text.strip_prefix(&format!("<{seen}>")) {
                Some(rest) => format!("<{given}>{rest}"),
                None => reply.text,
            }
        }
        _ => reply.text,
    };
    Refusal::new(reply.code, &reply.dsn, text)
}

/// A table that cannot answer: logged as Postfix's dictionaries log it,
/// then refused with a temporary error.
fn lookup_failed(err: &LookupError, context: &Context, view: &View) -> Decision {
    let key = context
        .recipient
        .as_deref()
        .or(context.sender.as_deref())
        .unwrap_or(&context.client_name);
    libmail::msg::warning(format!("{} lookup error for \"{key}\"", err.table));
    Decision::Reject(temporary_failure(view))
}

/// Postfix's reply for a lookup error.
fn temporary_failure(view: &View) -> Refusal {
    let (name, rejected) = match (view.recipient, view.sender) {
        (Some(rcpt), _) => (rcpt.reply_name(), "Recipient address rejected"),
        (None, Some(sender)) => (sender.to_string(), "Sender address rejected"),
        (None, None) => (view.client.log_name(), "Client host rejected"),
    };
    Refusal::new(
        451,
        "4.3.5",
        format!("<{name}>: {rejected}: Server configuration error"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::address::parse_path;
    use crate::settings::Client;
    use libmail::config::Config;

    fn policy(extra: &str) -> RestrictionPolicy {
        let text = format!(
            "myhostname = mail.example.com\nmydomain = example.com\ninet_interfaces = 127.0.0.1\n\
             compatibility_level = 3.7\nmynetworks = 127.0.0.0/8\nlocal_recipient_maps =\n{extra}"
        );
        let config = Config::from_text(std::path::Path::new("/nonexistent"), &text).unwrap();
        let dns = libmail::dns::StaticDns::new();
        RestrictionPolicy::new(Restrictions::new(&config, Box::new(dns)).unwrap())
    }

    fn decide(policy: &mut RestrictionPolicy, addr: &str, rcpt: &str) -> Decision {
        let client = Client::new("unknown", addr, 25);
        let sender = parse_path("<s@sender.example>", false).unwrap();
        let Path::Mailbox(recipient) = parse_path(&format!("<{rcpt}>"), false).unwrap() else {
            panic!("null recipient");
        };
        let view = View {
            client: &client,
            helo: Some("client.example"),
            sender: Some(&sender),
            recipient: Some(&recipient),
            protocol: "ESMTP",
            improper_pipelining: false,
            recipient_count: 0,
        };
        policy.check_recipient(&view)
    }

    #[test]
    fn relay_restrictions_come_first() {
        let mut p = policy("smtpd_recipient_restrictions = check_recipient_access inline:{bad@mail.example.com=REJECT}\n");
        assert_eq!(
            decide(&mut p, "127.0.0.1", "u@other.example"),
            Decision::Accept
        );
        assert_eq!(
            decide(&mut p, "10.0.0.1", "u@other.example"),
            Decision::Reject(Refusal::new(
                454,
                "4.7.1",
                "<u@other.example>: Relay access denied"
            ))
        );
        assert_eq!(
            decide(&mut p, "10.0.0.1", "u@mail.example.com"),
            Decision::Accept
        );
        assert_eq!(
            decide(&mut p, "10.0.0.1", "bad@mail.example.com"),
            Decision::Reject(Refusal::new(
                554,
                "5.7.1",
                "<bad@mail.example.com>: Recipient address rejected: Access denied"
            ))
        );
    }

    #[test]
    fn quoted_relay_trick_is_refused() {
        let mut p =
            policy("smtpd_relay_restrictions = permit_mynetworks reject_unauth_destination\n");
        let decision = decide(&mut p, "10.0.0.1", "\"u@other.example\"@mail.example.com");
        assert!(
            matches!(decision, Decision::Reject(Refusal { code: 554, .. })),
            "{decision:?}"
        );
    }

    #[test]
    fn hold_and_discard_actions() {
        let mut p = policy(
            "smtpd_recipient_restrictions = check_recipient_access inline:{ {h@mail.example.com=HOLD look}, {d@mail.example.com=DISCARD} }\n",
        );
        assert_eq!(
            decide(&mut p, "10.0.0.1", "h@mail.example.com"),
            Decision::Hold("<h@mail.example.com>: Recipient address look".into())
        );
        assert_eq!(
            decide(&mut p, "10.0.0.1", "d@mail.example.com"),
            Decision::Discard(
                "<d@mail.example.com>: Recipient address triggers DISCARD action".into()
            )
        );
    }

    #[test]
    fn table_down_is_a_temporary_failure() {
        let dir = std::env::temp_dir().join(format!("smtpd-policy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cf = dir.join("down.cf");
        std::fs::write(&cf, "hosts = 127.0.0.1:9\nuser = u\npassword = p\ndbname = d\nquery = SELECT 1 WHERE '%s'\n").unwrap();
        let mut p = policy(&format!(
            "smtpd_recipient_restrictions = check_recipient_access mysql:{}\n",
            cf.display()
        ));
        assert_eq!(
            decide(&mut p, "127.0.0.1", "u@mail.example.com"),
            Decision::Reject(Refusal::new(
                451,
                "4.3.5",
                "<u@mail.example.com>: Recipient address rejected: Server configuration error"
            ))
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
