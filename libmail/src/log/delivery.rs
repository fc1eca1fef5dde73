//! The log lines of a message's way out (DESIGN.md §7), each made by one
//! function from typed fields, in the shape log analyzers such as
//! pflogsumm parse:
//!
//! ```text
//! ID: from=<alice@example.com>, size=370, nrcpt=1 (queue active)
//! ID: to=<bob@example.com>, orig_to=<bob>, relay=local, delay=0.12,
//!     delays=0.06/0.02/0/0.04, dsn=2.0.0, status=sent (delivered to maildir)
//! ID: sender non-delivery notification: NEWID
//! ID: from=<alice@example.com>, status=expired, returned to sender
//! ID: removed
//! ```

use std::time::{Duration, SystemTime};

/// The moments that make the four delays of `delays=a/b/c/d`: before the
/// queue manager (arrival to active), in the queue manager (to the
/// agent's start), connection setup, and transmission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delays {
    pub arrival: SystemTime,
    pub active: SystemTime,
    pub agent_start: SystemTime,
    pub connected: SystemTime,
    pub done: SystemTime,
}

impl Delays {
    /// Delays for a result decided at `now` without any agent (qmgr's
    /// own deferrals): all of the time after arrival counts as queue
    /// manager time.
    pub fn in_qmgr(arrival: SystemTime, active: SystemTime, now: SystemTime) -> Delays {
        Delays {
            arrival,
            active,
            agent_start: now,
            connected: now,
            done: now,
        }
    }

    fn parts(&self) -> [Duration; 4] {
        let between = |a: SystemTime, b: SystemTime| b.duration_since(a).unwrap_or_default();
        [
            between(self.arrival, self.active),
            between(self.active, self.agent_start),
            between(self.agent_start, self.connected),
            between(self.connected, self.done),
        ]
    }

    /// `delay=T, delays=a/b/c/d`.
    pub fn text(&self) -> String {
        let total = self.done.duration_since(self.arrival).unwrap_or_default();
        let [a, b, c, d] = self.parts();
        format!(
            "delay={}, delays={}/{}/{}/{}",
            seconds(total),
            seconds(a),
            seconds(b),
            seconds(c),
            seconds(d)
        )
    }
}

/// A delay as Postfix logs it: whole seconds from 10 s on, one decimal
/// from 1 s, two decimals below (delay_logging_resolution_limit = 2),
/// without trailing zeros, and `0` for less than that.
pub fn seconds(delay: Duration) -> String {
    let secs = delay.as_secs_f64();
    let text = if secs >= 10.0 {
        return format!("{}", delay.as_secs());
    } else if secs >= 1.0 {
        format!("{:.1}", (secs * 10.0).floor() / 10.0)
    } else {
        format!("{:.2}", (secs * 100.0).floor() / 100.0)
    };
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text.is_empty() {
        "0".to_string()
    } else {
        text.to_string()
    }
}

/// One recipient's outcome, as a delivery agent (or qmgr) logs it.
#[derive(Debug, Clone)]
pub struct RecipientStatus<'a> {
    pub queue_id: &'a str,
    pub recipient: &'a str,
    /// Shown as `orig_to=<…>` when not empty and not the recipient.
    pub orig_recipient: &'a str,
    /// `local`, `none`, `mx.example.com[192.0.2.1]:25`.
    pub relay: &'a str,
    pub delays: Delays,
    pub dsn: &'a str,
    /// `sent`, `deferred`, `bounced`, `expired`.
    pub status: &'a str,
    pub reason: &'a str,
}

impl RecipientStatus<'_> {
    pub fn line(&self) -> String {
        let mut line = format!("{}: to=<{}>", self.queue_id, self.recipient);
        if !self.orig_recipient.is_empty() && self.orig_recipient != self.recipient {
            line.push_str(&format!(", orig_to=<{}>", self.orig_recipient));
        }
        line.push_str(&format!(
            ", relay={}, {}, dsn={}, status={} ({})",
            self.relay,
            self.delays.text(),
            self.dsn,
            self.status,
            self.reason
        ));
        line
    }
}

/// `ID: from=<sender>, size=N, nrcpt=N (queue active)`.
pub fn queue_active(queue_id: &str, sender: &str, size: u64, nrcpt: usize) -> String {
    format!("{queue_id}: from=<{sender}>, size={size}, nrcpt={nrcpt} (queue active)")
}

/// `ID: removed`.
pub fn removed(queue_id: &str) -> String {
    format!("{queue_id}: removed")
}

/// `ID: from=<sender>, status=expired, returned to sender`.
pub fn expired(queue_id: &str, sender: &str) -> String {
    format!("{queue_id}: from=<{sender}>, status=expired, returned to sender")
}

/// The kinds of notice qmgr sends about a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    /// To the sender: some recipients failed.
    NonDelivery,
    /// To the sender: still trying (delay_warning_time).
    DelayedMail,
    /// To the sender: NOTIFY=SUCCESS recipients were delivered.
    Delivery,
    /// To postmaster: a copy of a non-delivery notice, or a bounce that
    /// could not be delivered (2bounce).
    Postmaster,
    /// To postmaster: a copy of a delay notice.
    PostmasterDelay,
}

/// `ID: sender non-delivery notification: NEWID` and its siblings.
pub fn notice_sent(queue_id: &str, notice: Notice, new_id: &str) -> String {
    let what = match notice {
        Notice::NonDelivery => "sender non-delivery notification",
        Notice::DelayedMail => "sender delay notification",
        Notice::Delivery => "sender delivery status notification",
        Notice::Postmaster => "postmaster non-delivery notification",
        Notice::PostmasterDelay => "postmaster delay notification",
    };
    format!("{queue_id}: {what}: {new_id}")
}

/// `ID: discarding undeliverable postmaster notification`: a double
/// bounce that failed too, dropped so that nothing loops.
pub fn discarding_double_bounce(queue_id: &str) -> String {
    format!("{queue_id}: discarding undeliverable postmaster notification")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn at(millis: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(1_700_000_000_000 + millis)
    }

    #[test]
    fn delays_are_rounded_as_postfix_does() {
        assert_eq!(seconds(Duration::ZERO), "0");
        assert_eq!(seconds(Duration::from_millis(4)), "0");
        assert_eq!(seconds(Duration::from_millis(40)), "0.04");
        assert_eq!(seconds(Duration::from_millis(100)), "0.1");
        assert_eq!(seconds(Duration::from_millis(360)), "0.36");
        assert_eq!(seconds(Duration::from_millis(1450)), "1.4");
        assert_eq!(seconds(Duration::from_millis(2000)), "2");
        assert_eq!(seconds(Duration::from_millis(23_400)), "23");
        assert_eq!(seconds(Duration::from_secs(4000)), "4000");
    }

    #[test]
    fn recipient_status_line() {
        let delays = Delays {
            arrival: at(0),
            active: at(23_000),
            agent_start: at(23_040),
            connected: at(23_040),
            done: at(23_050),
        };
        let line = RecipientStatus {
            queue_id: "4F9D1C2A3B",
            recipient: "ansible@example.com",
            orig_recipient: "ansible",
            relay: "local",
            delays,
            dsn: "2.0.0",
            status: "sent",
            reason: "delivered to mailbox",
        }
        .line();
        assert_eq!(
            line,
            "4F9D1C2A3B: to=<ansible@example.com>, orig_to=<ansible>, relay=local, \
             delay=23, delays=23/0.04/0/0.01, dsn=2.0.0, status=sent (delivered to mailbox)"
        );
    }

    #[test]
    fn orig_to_only_when_different() {
        let now = at(0);
        let line = RecipientStatus {
            queue_id: "X",
            recipient: "a@b",
            orig_recipient: "a@b",
            relay: "none",
            delays: Delays::in_qmgr(now, now, now),
            dsn: "4.3.0",
            status: "deferred",
            reason: "mail transport unavailable",
        }
        .line();
        assert_eq!(
            line,
            "X: to=<a@b>, relay=none, delay=0, delays=0/0/0/0, dsn=4.3.0, \
             status=deferred (mail transport unavailable)"
        );
    }

    #[test]
    fn message_lines() {
        assert_eq!(
            queue_active("X", "a@b", 370, 1),
            "X: from=<a@b>, size=370, nrcpt=1 (queue active)"
        );
        assert_eq!(removed("X"), "X: removed");
        assert_eq!(
            expired("X", ""),
            "X: from=<>, status=expired, returned to sender"
        );
        assert_eq!(
            notice_sent("X", Notice::NonDelivery, "Y"),
            "X: sender non-delivery notification: Y"
        );
    }
}
