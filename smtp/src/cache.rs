//! Connection reuse: after a clean transaction, the session stays open
//! for smtp_connection_cache_time_limit, keyed by nexthop, so that the
//! next request for the same destination skips connect, greeting, EHLO
//! and TLS. Postfix keeps these in scache(8); one agent process serves
//! one qmgr delivery thread at a time, so a cache per process does the
//! same without a daemon.

use std::time::{Duration, Instant};

use crate::session::Session;

pub struct Cache {
    limit: Duration,
    idle: Vec<(String, Session, Instant)>,
}

impl Cache {
    pub fn new(limit: Duration) -> Cache {
        Cache {
            limit,
            idle: Vec::new(),
        }
    }

    pub fn enabled(&self) -> bool {
        !self.limit.is_zero()
    }

    /// A live session for `nexthop`, if one is cached and not too old.
    pub fn take(&mut self, nexthop: &str) -> Option<Session> {
        self.expire();
        let index = self.idle.iter().position(|(key, _, _)| key == nexthop)?;
        Some(self.idle.swap_remove(index).1)
    }

    pub fn put(&mut self, nexthop: &str, session: Session) {
        self.expire();
        // One idle session per nexthop is enough for one agent process.
        if let Some(index) = self.idle.iter().position(|(key, _, _)| key == nexthop) {
            let (_, old, _) = self.idle.swap_remove(index);
            old.quit();
        }
        self.idle
            .push((nexthop.to_string(), session, Instant::now()));
    }

    /// How long until the oldest idle session must go; None when empty.
    pub fn next_expiry(&self) -> Option<Duration> {
        self.idle
            .iter()
            .map(|(_, _, at)| self.limit.saturating_sub(at.elapsed()))
            .min()
    }

    /// QUIT the sessions idle longer than the limit.
    pub fn expire(&mut self) {
        let limit = self.limit;
        let (old, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.idle)
            .into_iter()
            .partition(|(_, _, at)| at.elapsed() >= limit);
        self.idle = keep;
        for (_, session, _) in old {
            session.quit();
        }
    }

    /// Every idle session, at exit.
    pub fn close_all(&mut self) {
        for (_, session, _) in std::mem::take(&mut self.idle) {
            session.quit();
        }
    }
}
