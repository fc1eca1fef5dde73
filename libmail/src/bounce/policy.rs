//! Who gets which notice (Postfix's bounce(8) policy), as a pure
//! function of the notice kind, the original envelope and main.cf, so
//! that the rules that prevent mail loops are tested without I/O.

use std::time::Duration;

use crate::config::{Config, ConfigError};
use crate::log::delivery::Notice;
use crate::queue::notify;

use super::{Action, NoticeKind, Outcome};

/// The main.cf parameters that shape notices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub myhostname: String,
    pub mail_name: String,
    /// notify_classes, lower case: `bounce`, `2bounce`, `delay`, ...
    pub notify_classes: Vec<String>,
    pub bounce_notice_recipient: String,
    pub two_bounce_notice_recipient: String,
    pub delay_notice_recipient: String,
    pub double_bounce_sender: String,
    /// Larger originals are returned as headers only.
    pub bounce_size_limit: u64,
    /// For Will-Retry-Until: arrival plus this.
    pub maximal_queue_lifetime: Duration,
}

impl Settings {
    pub fn from_config(config: &Config) -> Result<Settings, ConfigError> {
        Ok(Settings {
            myhostname: config.string("myhostname")?,
            mail_name: config.string("mail_name")?,
            notify_classes: config
                .list("notify_classes")?
                .into_iter()
                .map(|class| class.to_ascii_lowercase())
                .collect(),
            bounce_notice_recipient: config.string("bounce_notice_recipient")?,
            two_bounce_notice_recipient: config.string("2bounce_notice_recipient")?,
            delay_notice_recipient: config.string("delay_notice_recipient")?,
            double_bounce_sender: config.string("double_bounce_sender")?,
            bounce_size_limit: config.size("bounce_size_limit")?,
            maximal_queue_lifetime: Duration::from_secs(config.time("maximal_queue_lifetime")?),
        })
    }

    /// Whether notify_classes lists `class`.
    pub fn notifies(&self, class: &str) -> bool {
        self.notify_classes.iter().any(|c| c == class)
    }

    /// Whether `sender` is the double-bounce address, qualified or not:
    /// mail from it is a postmaster notice, which must never cause
    /// another notice.
    pub fn is_double_bounce(&self, sender: &str) -> bool {
        let local = sender.rsplit_once('@').map_or(sender, |(local, _)| local);
        !sender.is_empty()
            && (local.eq_ignore_ascii_case(&self.double_bounce_sender)
                || sender.eq_ignore_ascii_case(&self.double_bounce_sender))
    }
}

/// Why a notice is sent, which decides its sender, wording and whether
/// its failure matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// To the original sender, from `<>`.
    Sender,
    /// A failed bounce, to 2bounce_notice_recipient: the only notice
    /// about that message, so it must get through.
    DoubleBounce,
    /// A copy for the postmaster (notify_classes bounce or delay); if it
    /// cannot be sent, a warning is enough.
    PostmasterCopy,
}

/// How much of the original message a notice returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Return {
    Full,
    Headers,
}

/// One notice to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned<'a> {
    pub kind: NoticeKind,
    pub role: Role,
    /// The envelope sender of the notice (empty for `<>`).
    pub from: String,
    /// Its one recipient, also its To: header.
    pub to: String,
    /// The recipients it reports on.
    pub outcomes: Vec<&'a Outcome>,
    /// What it returns of the original, before bounce_size_limit.
    pub wants: Return,
}

impl Planned<'_> {
    /// How the log names it once queued.
    pub fn log_as(&self) -> Notice {
        match (self.role, self.kind) {
            (Role::Sender, NoticeKind::NonDelivery) => Notice::NonDelivery,
            (Role::Sender, NoticeKind::Delay) => Notice::DelayedMail,
            (Role::Sender, NoticeKind::Success) => Notice::Delivery,
            (_, NoticeKind::Delay) => Notice::PostmasterDelay,
            _ => Notice::Postmaster,
        }
    }

    /// Whether its failure means the caller must try again later.
    pub fn is_critical(&self) -> bool {
        self.role != Role::PostmasterCopy
    }
}

/// What the policy decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan<'a> {
    /// Send these, critical ones first; none at all is a valid plan.
    Notices(Vec<Planned<'a>>),
    /// The message was itself a postmaster notice that failed: drop it
    /// and say so in the log.
    Discard,
}

/// The notices due about a message from `sender` with DSN RET flags
/// `dsn_ret`, for `outcomes` (those that do not fit `kind` are ignored).
pub fn plan<'a>(
    kind: NoticeKind,
    sender: &str,
    dsn_ret: u8,
    outcomes: &'a [Outcome],
    settings: &Settings,
) -> Plan<'a> {
    let reported: Vec<&Outcome> = outcomes.iter().filter(|o| fits(kind, o.action)).collect();
    if reported.is_empty() {
        return Plan::Notices(Vec::new());
    }
    match kind {
        NoticeKind::NonDelivery => non_delivery(sender, dsn_ret, reported, settings),
        NoticeKind::Delay => Plan::Notices(delay(sender, reported, settings)),
        NoticeKind::Success => Plan::Notices(success(sender, reported)),
    }
}

/// Which actions each kind of notice reports.
fn fits(kind: NoticeKind, action: Action) -> bool {
    match kind {
        NoticeKind::NonDelivery => action == Action::Failed,
        NoticeKind::Delay => action == Action::Delayed,
        NoticeKind::Success => matches!(
            action,
            Action::Delivered | Action::Relayed | Action::Expanded
        ),
    }
}

/// Recipients whose NOTIFY asks for `flag`; no NOTIFY at all means
/// FAILURE and DELAY (RFC 3461 section 4.1), never SUCCESS.
fn wanting<'a>(reported: &[&'a Outcome], flag: u8) -> Vec<&'a Outcome> {
    let wants = |n: u8| match n {
        0 => flag != notify::SUCCESS,
        n => n & flag != 0,
    };
    reported
        .iter()
        .copied()
        .filter(|o| wants(o.recipient.dsn_notify))
        .collect()
}

fn non_delivery<'a>(
    sender: &str,
    dsn_ret: u8,
    reported: Vec<&'a Outcome>,
    settings: &Settings,
) -> Plan<'a> {
    if settings.is_double_bounce(sender) {
        return Plan::Discard;
    }
    let postmaster = |to: &str, role, wants, outcomes| Planned {
        kind: NoticeKind::NonDelivery,
        role,
        from: settings.double_bounce_sender.clone(),
        to: to.to_string(),
        outcomes,
        wants,
    };
    if sender.is_empty() {
        // A failed bounce goes to the postmaster when notify_classes
        // asks for 2bounce (or bounce, which implies it), else nowhere.
        let due = settings.notifies("2bounce") || settings.notifies("bounce");
        let notices = match due {
            true => vec![postmaster(
                &settings.two_bounce_notice_recipient,
                Role::DoubleBounce,
                Return::Full,
                reported,
            )],
            false => Vec::new(),
        };
        return Plan::Notices(notices);
    }
    let mut notices = Vec::new();
    let wanted = wanting(&reported, notify::FAILURE);
    if !wanted.is_empty() {
        notices.push(Planned {
            kind: NoticeKind::NonDelivery,
            role: Role::Sender,
            from: String::new(),
            to: sender.to_string(),
            outcomes: wanted,
            wants: match dsn_ret & crate::queue::ret::HDRS {
                0 => Return::Full,
                _ => Return::Headers,
            },
        });
    }
    if settings.notifies("bounce") {
        notices.push(postmaster(
            &settings.bounce_notice_recipient,
            Role::PostmasterCopy,
            Return::Headers,
            reported,
        ));
    }
    Plan::Notices(notices)
}

fn delay<'a>(sender: &str, reported: Vec<&'a Outcome>, settings: &Settings) -> Vec<Planned<'a>> {
    // A delayed postmaster notice causes no warning: a warning about it
    // would come from the same sender and could be delayed in turn.
    if settings.is_double_bounce(sender) {
        return Vec::new();
    }
    let mut notices = Vec::new();
    let wanted = wanting(&reported, notify::DELAY);
    if !sender.is_empty() && !wanted.is_empty() {
        notices.push(Planned {
            kind: NoticeKind::Delay,
            role: Role::Sender,
            from: String::new(),
            to: sender.to_string(),
            outcomes: wanted,
            wants: Return::Headers,
        });
    }
    if settings.notifies("delay") {
        notices.push(Planned {
            kind: NoticeKind::Delay,
            role: Role::PostmasterCopy,
            from: settings.double_bounce_sender.clone(),
            to: settings.delay_notice_recipient.clone(),
            outcomes: reported,
            wants: Return::Headers,
        });
    }
    notices
}

fn success<'a>(sender: &str, reported: Vec<&'a Outcome>) -> Vec<Planned<'a>> {
    let wanted = wanting(&reported, notify::SUCCESS);
    if sender.is_empty() || wanted.is_empty() {
        return Vec::new();
    }
    vec![Planned {
        kind: NoticeKind::Success,
        role: Role::Sender,
        from: String::new(),
        to: sender.to_string(),
        outcomes: wanted,
        wants: Return::Headers,
    }]
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::queue::{ret, Recipient};

    pub fn settings() -> Settings {
        Settings {
            myhostname: "mail.example.com".into(),
            mail_name: "Postfix".into(),
            notify_classes: vec!["resource".into(), "software".into()],
            bounce_notice_recipient: "postmaster".into(),
            two_bounce_notice_recipient: "postmaster2".into(),
            delay_notice_recipient: "postmaster3".into(),
            double_bounce_sender: "double-bounce".into(),
            bounce_size_limit: 50_000,
            maximal_queue_lifetime: Duration::from_secs(5 * 86_400),
        }
    }

    pub fn outcome(address: &str, notify: u8, action: Action) -> Outcome {
        Outcome {
            recipient: Recipient {
                dsn_notify: notify,
                ..Recipient::new(address)
            },
            action,
            dsn: "5.1.1".into(),
            reason: "unknown user".into(),
            relay: "local".into(),
        }
    }

    fn notices<'a>(plan: Plan<'a>) -> Vec<Planned<'a>> {
        match plan {
            Plan::Notices(n) => n,
            Plan::Discard => panic!("unexpected discard"),
        }
    }

    fn addresses(p: &Planned) -> Vec<String> {
        p.outcomes
            .iter()
            .map(|o| o.recipient.address.clone())
            .collect()
    }

    #[test]
    fn bounce_goes_to_sender_from_null_for_failure_or_default_notify() {
        let outcomes = [
            outcome("a@x", 0, Action::Failed),
            outcome("b@x", notify::FAILURE | notify::DELAY, Action::Failed),
            outcome("c@x", notify::NEVER, Action::Failed),
            outcome("d@x", notify::SUCCESS, Action::Failed),
            outcome("e@x", 0, Action::Delivered),
        ];
        let n = notices(plan(
            NoticeKind::NonDelivery,
            "alice@x",
            0,
            &outcomes,
            &settings(),
        ));
        assert_eq!(n.len(), 1);
        assert_eq!(n[0].role, Role::Sender);
        assert_eq!(n[0].from, "");
        assert_eq!(n[0].to, "alice@x");
        assert_eq!(n[0].wants, Return::Full);
        assert_eq!(n[0].log_as(), Notice::NonDelivery);
        assert_eq!(addresses(&n[0]), ["a@x", "b@x"]);
    }

    #[test]
    fn ret_hdrs_asks_for_headers_only() {
        let outcomes = [outcome("a@x", 0, Action::Failed)];
        let n = notices(plan(
            NoticeKind::NonDelivery,
            "s@x",
            ret::HDRS,
            &outcomes,
            &settings(),
        ));
        assert_eq!(n[0].wants, Return::Headers);
    }

    #[test]
    fn notify_never_everywhere_means_no_notice() {
        let outcomes = [outcome("a@x", notify::NEVER, Action::Failed)];
        let plan = plan(NoticeKind::NonDelivery, "s@x", 0, &outcomes, &settings());
        assert_eq!(plan, Plan::Notices(Vec::new()));
    }

    #[test]
    fn bounce_class_adds_a_headers_only_postmaster_copy_of_all_failures() {
        let mut s = settings();
        s.notify_classes.push("bounce".into());
        let outcomes = [
            outcome("a@x", 0, Action::Failed),
            outcome("c@x", notify::NEVER, Action::Failed),
        ];
        let n = notices(plan(NoticeKind::NonDelivery, "s@x", 0, &outcomes, &s));
        assert_eq!(n.len(), 2);
        assert_eq!(n[1].role, Role::PostmasterCopy);
        assert_eq!(n[1].from, "double-bounce");
        assert_eq!(n[1].to, "postmaster");
        assert_eq!(n[1].wants, Return::Headers);
        assert_eq!(n[1].log_as(), Notice::Postmaster);
        assert!(!n[1].is_critical());
        assert_eq!(addresses(&n[1]), ["a@x", "c@x"]);
    }

    #[test]
    fn failed_bounce_goes_to_postmaster_only_when_notify_classes_say_so() {
        let outcomes = [outcome("a@x", 0, Action::Failed)];
        let quiet = plan(NoticeKind::NonDelivery, "", 0, &outcomes, &settings());
        assert_eq!(quiet, Plan::Notices(Vec::new()));
        for class in ["2bounce", "bounce"] {
            let mut s = settings();
            s.notify_classes.push(class.into());
            let n = notices(plan(NoticeKind::NonDelivery, "", 0, &outcomes, &s));
            assert_eq!(n.len(), 1, "{class}");
            assert_eq!(n[0].role, Role::DoubleBounce);
            assert_eq!(n[0].from, "double-bounce");
            assert_eq!(n[0].to, "postmaster2");
            assert_eq!(n[0].wants, Return::Full);
            assert!(n[0].is_critical());
        }
    }

    #[test]
    fn failed_double_bounce_is_discarded_never_looped() {
        let mut s = settings();
        s.notify_classes = vec!["bounce".into(), "2bounce".into(), "delay".into()];
        let outcomes = [outcome("postmaster@x", 0, Action::Failed)];
        for sender in ["double-bounce", "Double-Bounce@mail.example.com"] {
            let p = plan(NoticeKind::NonDelivery, sender, 0, &outcomes, &s);
            assert_eq!(p, Plan::Discard, "{sender}");
        }
        let delayed = [outcome("postmaster@x", 0, Action::Delayed)];
        let p = plan(NoticeKind::Delay, "double-bounce@x", 0, &delayed, &s);
        assert_eq!(p, Plan::Notices(Vec::new()));
        // Only the local part counts, not a look-alike.
        assert!(!s.is_double_bounce("double-bouncer@x"));
        assert!(!s.is_double_bounce(""));
    }

    #[test]
    fn delay_warnings_follow_notify_delay_and_the_delay_class() {
        let outcomes = [
            outcome("a@x", 0, Action::Delayed),
            outcome("b@x", notify::FAILURE, Action::Delayed),
            outcome("c@x", notify::DELAY, Action::Delayed),
        ];
        let n = notices(plan(NoticeKind::Delay, "s@x", 0, &outcomes, &settings()));
        assert_eq!(n.len(), 1);
        assert_eq!(addresses(&n[0]), ["a@x", "c@x"]);
        assert_eq!(n[0].wants, Return::Headers);
        assert_eq!(n[0].log_as(), Notice::DelayedMail);
        let none = plan(NoticeKind::Delay, "", 0, &outcomes, &settings());
        assert_eq!(none, Plan::Notices(Vec::new()));
        let mut s = settings();
        s.notify_classes.push("delay".into());
        let n = notices(plan(NoticeKind::Delay, "", 0, &outcomes, &s));
        assert_eq!(n.len(), 1);
        assert_eq!(n[0].to, "postmaster3");
        assert_eq!(addresses(&n[0]), ["a@x", "b@x", "c@x"]);
    }

    #[test]
    fn success_reports_only_notify_success() {
        let outcomes = [
            outcome("a@x", 0, Action::Delivered),
            outcome("b@x", notify::SUCCESS | notify::FAILURE, Action::Relayed),
            outcome("c@x", notify::SUCCESS, Action::Failed),
        ];
        let n = notices(plan(NoticeKind::Success, "s@x", 0, &outcomes, &settings()));
        assert_eq!(n.len(), 1);
        assert_eq!(addresses(&n[0]), ["b@x"]);
        assert_eq!(n[0].log_as(), Notice::Delivery);
        let none = plan(NoticeKind::Success, "", 0, &outcomes, &settings());
        assert_eq!(none, Plan::Notices(Vec::new()));
    }
}
