//! What becomes of a message once every recipient has a result: which
//! recipients are done, which bounce because the message is too old,
//! when the next attempt is due, and whether the sender gets a delay
//! warning. Pure functions of the results and the clock.
//!
//! The retry rule (as Postfix's): the next attempt comes after as long
//! as the message has already waited, clamped to
//! [minimal_backoff_time, maximal_backoff_time]. With the defaults a
//! new message is retried after 300 s, then roughly doubling (600 s,
//! 1200 s, 2400 s), then every 4000 s; no per-message state is needed.

use std::time::{Duration, SystemTime};

use libmail::config::{Config, ConfigError};
use libmail::deliver::Status;

use crate::scheduler::Verdict;

/// The main.cf parameters of this decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub minimal_backoff: Duration,
    pub maximal_backoff: Duration,
    /// maximal_queue_lifetime.
    pub queue_lifetime: Duration,
    /// bounce_queue_lifetime, for mail from the null sender.
    pub bounce_lifetime: Duration,
    /// delay_warning_time; zero: no warnings.
    pub delay_warning: Duration,
}

impl Policy {
    pub fn from_config(config: &Config) -> Result<Policy, ConfigError> {
        let time = |name: &str| config.time(name).map(Duration::from_secs);
        Ok(Policy {
            minimal_backoff: time("minimal_backoff_time")?,
            maximal_backoff: time("maximal_backoff_time")?,
            queue_lifetime: time("maximal_queue_lifetime")?,
            bounce_lifetime: time("bounce_queue_lifetime")?,
            delay_warning: time("delay_warning_time")?,
        })
    }

    /// When to try again a message that arrived at `arrival`.
    pub fn next_attempt(&self, arrival: SystemTime, now: SystemTime) -> SystemTime {
        let waited = now.duration_since(arrival).unwrap_or_default();
        // A maximum below the minimum loses, as min() then max() makes it.
        now + waited.min(self.maximal_backoff).max(self.minimal_backoff)
    }

    /// Whether a deferred message is too old to stay: its deferred
    /// recipients bounce. A lifetime of zero means one attempt only.
    pub fn is_expired(&self, arrival: SystemTime, now: SystemTime, null_sender: bool) -> bool {
        let lifetime = match null_sender {
            true => self.bounce_lifetime,
            false => self.queue_lifetime,
        };
        now.duration_since(arrival).unwrap_or_default() >= lifetime
    }

    /// Whether the sender should now hear that the mail is delayed.
    pub fn delay_warning_due(&self, arrival: SystemTime, now: SystemTime, warned: bool) -> bool {
        !warned
            && !self.delay_warning.is_zero()
            && now.duration_since(arrival).unwrap_or_default() >= self.delay_warning
    }
}

/// The recipients of a finished message, by index, sorted by result.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sorted {
    pub sent: Vec<usize>,
    pub bounced: Vec<usize>,
    pub deferred: Vec<usize>,
}

impl Sorted {
    pub fn new(verdicts: &[Verdict]) -> Sorted {
        let mut out = Sorted::default();
        for (index, verdict) in verdicts.iter().enumerate() {
            match verdict.status {
                Status::Sent => out.sent.push(index),
                Status::Bounced => out.bounced.push(index),
                Status::Deferred => out.deferred.push(index),
            }
        }
        out
    }

    /// An expired message: what was deferred bounces now.
    pub fn expire(&mut self) {
        self.bounced.append(&mut self.deferred);
        self.bounced.sort_unstable();
    }

    /// The bounce notice could not be sent: the bounced recipients stay
    /// in the queue, to be tried (and notified about) again.
    pub fn keep_bounced(&mut self) {
        self.deferred.append(&mut self.bounced);
        self.deferred.sort_unstable();
    }

    /// Recipients that need no further attempt.
    pub fn done(&self) -> Vec<usize> {
        let mut done: Vec<usize> = self.sent.iter().chain(&self.bounced).copied().collect();
        done.sort_unstable();
        done
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn policy() -> Policy {
        Policy {
            minimal_backoff: Duration::from_secs(300),
            maximal_backoff: Duration::from_secs(4000),
            queue_lifetime: Duration::from_secs(5 * 86_400),
            bounce_lifetime: Duration::from_secs(86_400),
            delay_warning: Duration::ZERO,
        }
    }

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
    }

    #[test]
    fn backoff_follows_the_age_within_bounds() {
        let p = policy();
        assert_eq!(p.next_attempt(at(0), at(1)), at(301));
        assert_eq!(p.next_attempt(at(0), at(600)), at(1200));
        assert_eq!(p.next_attempt(at(0), at(1200)), at(2400));
        assert_eq!(p.next_attempt(at(0), at(10_000)), at(14_000));
        // A clock that went back counts as no wait.
        assert_eq!(p.next_attempt(at(50), at(0)), at(300));
    }

    #[test]
    fn expiry_uses_the_lifetime_for_the_sender() {
        let p = policy();
        let day = 86_400;
        assert!(!p.is_expired(at(0), at(2 * day), false));
        assert!(p.is_expired(at(0), at(2 * day), true));
        assert!(p.is_expired(at(0), at(5 * day), false));
        let once = Policy {
            queue_lifetime: Duration::ZERO,
            ..p
        };
        assert!(once.is_expired(at(0), at(0), false));
    }

    #[test]
    fn delay_warnings_only_when_enabled_due_and_not_sent() {
        let p = policy();
        assert!(!p.delay_warning_due(at(0), at(99_999), false));
        let warn = Policy {
            delay_warning: Duration::from_secs(4 * 3600),
            ..p
        };
        assert!(!warn.delay_warning_due(at(0), at(3600), false));
        assert!(warn.delay_warning_due(at(0), at(5 * 3600), false));
        assert!(!warn.delay_warning_due(at(0), at(5 * 3600), true));
    }

    #[test]
    fn sorting_expiring_and_keeping() {
        let v = |status| Verdict::by_qmgr(status, "x", "y");
        let verdicts = [
            v(Status::Deferred),
            v(Status::Sent),
            v(Status::Bounced),
            v(Status::Deferred),
        ];
        let mut sorted = Sorted::new(&verdicts);
        assert_eq!(sorted.sent, [1]);
        assert_eq!(sorted.bounced, [2]);
        assert_eq!(sorted.deferred, [0, 3]);
        assert_eq!(sorted.done(), [1, 2]);
        let mut expired = sorted.clone();
        expired.expire();
        assert_eq!(expired.bounced, [0, 2, 3]);
        assert!(expired.deferred.is_empty());
        sorted.keep_bounced();
        assert_eq!(sorted.deferred, [0, 2, 3]);
        assert_eq!(sorted.done(), [1]);
    }
}
