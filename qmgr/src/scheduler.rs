//! The scheduler as a plain state machine without I/O: messages come in
//! with each recipient's route, delivery jobs go out, results come back.
//! It groups recipients by destination (transport and queue name), cuts
//! jobs at the transport's recipient limit, keeps each destination within
//! its concurrency window (slow start: +1 per good delivery up to the
//! limit, -1 per failed one; a destination whose failed pseudo-cohorts
//! reach the limit is dead until minimal_backoff_time passes) and each
//! transport within its agent's process limit, and says when a message
//! has a result for every recipient. The daemon adds threads, sockets and
//! the queue files.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, SystemTime};

use libmail::deliver::Status;

/// A message in memory, named by the daemon.
pub type MessageKey = u64;
/// A delivery job in flight.
pub type JobId = u64;

/// What Postfix calls the per-transport scheduler parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransportLimits {
    /// Recipients per delivery request (`_destination_recipient_limit`).
    pub recipient_limit: usize,
    /// Parallel deliveries per destination (`_destination_concurrency_limit`).
    pub concurrency_limit: u32,
    /// Where a destination's window starts (`_initial_destination_concurrency`).
    pub initial_concurrency: u32,
    /// Failed pseudo-cohorts that make a destination dead; 0: never.
    pub failed_cohort_limit: u32,
    /// Deliveries in flight for the whole transport (master.cf maxproc).
    pub process_limit: usize,
}

impl Default for TransportLimits {
    /// Postfix's defaults for a transport with no settings of its own.
    fn default() -> TransportLimits {
        TransportLimits {
            recipient_limit: 50,
            concurrency_limit: 20,
            initial_concurrency: 5,
            failed_cohort_limit: 1,
            process_limit: 100,
        }
    }
}

/// The result for one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub status: Status,
    pub dsn: String,
    pub reason: String,
    pub relay: String,
}

impl Verdict {
    /// A result qmgr decides itself: nothing left the machine.
    pub fn by_qmgr(status: Status, dsn: &str, reason: &str) -> Verdict {
        Verdict {
            status,
            dsn: dsn.to_string(),
            reason: reason.to_string(),
            relay: "none".to_string(),
        }
    }
}

/// Where one recipient goes, as decided when the message is activated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// Deliver through `transport` to `nexthop`; recipients with the
    /// same transport and `queue` share a destination (the queue is the
    /// nexthop, or the recipient itself for a transport that takes one
    /// recipient per request, as Postfix does for local).
    Deliver {
        transport: String,
        nexthop: String,
        queue: String,
    },
    /// qmgr already knows the result (resolver failure, error transport).
    Decided(Verdict),
}

/// One delivery request to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub id: JobId,
    pub message: MessageKey,
    pub transport: String,
    pub nexthop: String,
    /// Indexes into the message's recipient list.
    pub recipients: Vec<usize>,
}

/// A result qmgr decided without an agent, which nobody has logged yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub message: MessageKey,
    pub recipient: usize,
    pub verdict: Verdict,
}

/// A message with a result for every recipient, by recipient index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completed {
    pub message: MessageKey,
    pub verdicts: Vec<Verdict>,
}

/// Transport and queue name.
type DestKey = (String, String);

/// Recipients of one message waiting for one destination.
#[derive(Debug)]
struct Batch {
    message: MessageKey,
    nexthop: String,
    recipients: VecDeque<usize>,
}

#[derive(Debug)]
struct Destination {
    pending: VecDeque<Batch>,
    in_flight: u32,
    window: u32,
    failed_cohorts: f64,
    /// Listed in `Scheduler::ready`.
    listed: bool,
}

/// A destination taken out of service, and why.
#[derive(Debug, Clone)]
struct Dead {
    until: SystemTime,
    dsn: String,
    reason: String,
}

#[derive(Debug)]
struct Transport {
    limits: TransportLimits,
    in_flight: usize,
}

#[derive(Debug)]
struct MessageState {
    verdicts: Vec<Option<Verdict>>,
    remaining: usize,
}

#[derive(Debug)]
struct InFlight {
    dest: DestKey,
    message: MessageKey,
    recipients: Vec<usize>,
}

/// The scheduler's whole state.
#[derive(Debug)]
pub struct Scheduler {
    /// How long a dead destination stays dead (minimal_backoff_time).
    dead_time: Duration,
    transports: HashMap<String, Transport>,
    destinations: HashMap<DestKey, Destination>,
    dead: HashMap<DestKey, Dead>,
    /// Destinations with pending recipients, served round robin.
    ready: VecDeque<DestKey>,
    messages: HashMap<MessageKey, MessageState>,
    jobs: HashMap<JobId, InFlight>,
    next_job: JobId,
    recipients: usize,
    decisions: Vec<Decision>,
    completed: Vec<Completed>,
}

impl Scheduler {
    pub fn new(dead_time: Duration) -> Scheduler {
        Scheduler {
            dead_time,
            transports: HashMap::new(),
            destinations: HashMap::new(),
            dead: HashMap::new(),
            ready: VecDeque::new(),
            messages: HashMap::new(),
            jobs: HashMap::new(),
            next_job: 1,
            recipients: 0,
            decisions: Vec::new(),
            completed: Vec::new(),
        }
    }

    pub fn knows_transport(&self, name: &str) -> bool {
        self.transports.contains_key(name)
    }

    /// Sets a transport's limits; the daemon does it before the first
    /// message that uses the transport (unknown ones get the defaults).
    pub fn add_transport(&mut self, name: &str, limits: TransportLimits) {
        let limits = TransportLimits {
            recipient_limit: limits.recipient_limit.max(1),
            concurrency_limit: limits.concurrency_limit.max(1),
            initial_concurrency: limits.initial_concurrency.max(1),
            process_limit: limits.process_limit.max(1),
            ..limits
        };
        self.transports.insert(
            name.to_string(),
            Transport {
                limits,
                in_flight: 0,
            },
        );
    }

    /// Messages in memory.
    pub fn message_count(&self) -> usize {
        self.messages.len()
    }

    /// Recipients in memory.
    pub fn recipient_count(&self) -> usize {
        self.recipients
    }

    /// Jobs handed out and not yet done.
    pub fn jobs_in_flight(&self) -> usize {
        self.jobs.len()
    }

    /// Results qmgr decided itself since the last call, to be logged.
    pub fn take_decisions(&mut self) -> Vec<Decision> {
        std::mem::take(&mut self.decisions)
    }

    /// Messages finished since the last call.
    pub fn take_completed(&mut self) -> Vec<Completed> {
        std::mem::take(&mut self.completed)
    }

    /// Takes in a message: one placement per recipient, in the order of
    /// the message's recipient list.
    pub fn add_message(
        &mut self,
        now: SystemTime,
        message: MessageKey,
        placements: Vec<Placement>,
    ) {
        let count = placements.len();
        self.recipients += count;
        self.messages.insert(
            message,
            MessageState {
                verdicts: vec![None; count],
                remaining: count,
            },
        );
        // Recipients of one destination go out together, in file order.
        let mut batches: Vec<(DestKey, Batch)> = Vec::new();
        for (index, placement) in placements.into_iter().enumerate() {
            let (transport, nexthop, queue) = match placement {
                Placement::Decided(verdict) => {
                    self.decide(message, index, verdict);
                    continue;
                }
                Placement::Deliver {
                    transport,
                    nexthop,
                    queue,
                } => (transport, nexthop, queue),
            };
            let key = (transport, queue);
            if let Some(verdict) = self.suspended(now, &key) {
                self.decide(message, index, verdict);
                continue;
            }
            match batches
                .iter_mut()
                .find(|(k, b)| *k == key && b.nexthop == nexthop)
            {
                Some((_, batch)) => batch.recipients.push_back(index),
                None => batches.push((
                    key,
                    Batch {
                        message,
                        nexthop,
                        recipients: VecDeque::from([index]),
                    },
                )),
            }
        }
        for (key, batch) in batches {
            self.enqueue(key, batch);
        }
        self.finish_if_done(message);
    }

    /// The deferral for a recipient of a dead destination; a destination
    /// whose time is up comes back to life.
    fn suspended(&mut self, now: SystemTime, key: &DestKey) -> Option<Verdict> {
        let dead = self.dead.get(key)?;
        if dead.until <= now {
            self.dead.remove(key);
            let initial = self.limits(&key.0).initial_concurrency;
            if let Some(dest) = self.destinations.get_mut(key) {
                dest.window = dest.window.max(initial);
                dest.failed_cohorts = 0.0;
            }
            return None;
        }
        Some(suspended_verdict(dead))
    }

    fn enqueue(&mut self, key: DestKey, batch: Batch) {
        let initial = self.limits(&key.0).initial_concurrency;
        let limit = self.limits(&key.0).concurrency_limit;
        let dest = self
            .destinations
            .entry(key.clone())
            .or_insert_with(|| Destination {
                pending: VecDeque::new(),
                in_flight: 0,
                window: initial.min(limit),
                failed_cohorts: 0.0,
                listed: false,
            });
        dest.pending.push_back(batch);
        if !dest.listed {
            dest.listed = true;
            self.ready.push_back(key);
        }
    }

    /// The limits of a transport (the defaults for one not added).
    pub fn transport_limits(&self, transport: &str) -> TransportLimits {
        self.limits(transport)
    }

    fn limits(&self, transport: &str) -> TransportLimits {
        self.transports
            .get(transport)
            .map(|t| t.limits)
            .unwrap_or_default()
    }

    /// The next job that the windows and process limits allow, taking
    /// destinations in turn.
    pub fn next_job(&mut self) -> Option<Job> {
        for _ in 0..self.ready.len() {
            let key = self.ready.pop_front()?;
            let limits = self.limits(&key.0);
            let transport_busy = self
                .transports
                .get(&key.0)
                .is_some_and(|t| t.in_flight >= limits.process_limit);
            let Some(dest) = self.destinations.get_mut(&key) else {
                continue;
            };
            if dest.pending.is_empty() {
                dest.listed = false;
                continue;
            }
            if transport_busy || dest.in_flight >= dest.window {
                self.ready.push_back(key);
                continue;
            }
            let (message, nexthop, recipients) = take_job(dest, limits.recipient_limit)?;
            dest.in_flight += 1;
            if dest.pending.is_empty() {
                dest.listed = false;
            } else {
                self.ready.push_back(key.clone());
            }
            if let Some(t) = self.transports.get_mut(&key.0) {
                t.in_flight += 1;
            }
            let id = self.next_job;
            self.next_job += 1;
            self.jobs.insert(
                id,
                InFlight {
                    dest: key.clone(),
                    message,
                    recipients: recipients.clone(),
                },
            );
            return Some(Job {
                id,
                message,
                transport: key.0,
                nexthop,
                recipients,
            });
        }
        None
    }

    /// Takes in a job's results (by recipient index). `failed` says that
    /// the destination (or the agent) failed rather than the recipients:
    /// the window shrinks, and may close. A recipient of the job without a
    /// result is deferred.
    pub fn job_done(
        &mut self,
        now: SystemTime,
        id: JobId,
        results: Vec<(usize, Verdict)>,
        failed: bool,
    ) {
        let Some(job) = self.jobs.remove(&id) else {
            return;
        };
        if let Some(t) = self.transports.get_mut(&job.dest.0) {
            t.in_flight = t.in_flight.saturating_sub(1);
        }
        let failure = results
            .iter()
            .find(|(_, v)| v.status == Status::Deferred)
            .map(|(_, v)| v.clone());
        for (index, verdict) in results {
            if job.recipients.contains(&index) {
                self.record(job.message, index, verdict);
            }
        }
        for &index in &job.recipients {
            if self.is_open(job.message, index) {
                let verdict = Verdict::by_qmgr(
                    Status::Deferred,
                    "4.3.0",
                    "delivery agent did not report a status",
                );
                self.decide(job.message, index, verdict);
            }
        }
        self.feedback(now, &job.dest, failed, failure);
        self.finish_if_done(job.message);
        self.forget_if_idle(&job.dest);
    }

    /// Slow start and its reverse.
    fn feedback(&mut self, now: SystemTime, key: &DestKey, failed: bool, failure: Option<Verdict>) {
        let limits = self.limits(&key.0);
        let Some(dest) = self.destinations.get_mut(key) else {
            return;
        };
        dest.in_flight = dest.in_flight.saturating_sub(1);
        if !failed {
            dest.failed_cohorts = 0.0;
            if dest.window > 0 {
                dest.window = (dest.window + 1).min(limits.concurrency_limit);
            }
            return;
        }
        if dest.window == 0 {
            return;
        }
        // A pseudo-cohort is as many deliveries as the window is wide.
        dest.failed_cohorts += 1.0 / f64::from(dest.window);
        let limit = f64::from(limits.failed_cohort_limit);
        if limits.failed_cohort_limit > 0 && dest.failed_cohorts >= limit {
            let failure = failure.unwrap_or_else(|| {
                Verdict::by_qmgr(Status::Deferred, "4.3.0", "mail transport unavailable")
            });
            self.kill(now, key, failure);
        } else {
            dest.window = dest.window.saturating_sub(1).max(1);
        }
    }

    /// Declares a destination dead and defers what waits for it.
    fn kill(&mut self, now: SystemTime, key: &DestKey, failure: Verdict) {
        let dead = Dead {
            until: now + self.dead_time,
            dsn: failure.dsn,
            reason: failure.reason,
        };
        let verdict = suspended_verdict(&dead);
        self.dead.insert(key.clone(), dead);
        let Some(dest) = self.destinations.get_mut(key) else {
            return;
        };
        dest.window = 0;
        let batches: Vec<Batch> = dest.pending.drain(..).collect();
        for batch in batches {
            for index in batch.recipients {
                self.decide(batch.message, index, verdict.clone());
            }
            self.finish_if_done(batch.message);
        }
    }

    /// Forgets dead destinations (`postqueue -f`, `postfix flush`).
    pub fn flush_dead(&mut self) {
        self.dead.clear();
        for (key, dest) in self.destinations.iter_mut() {
            if dest.window == 0 {
                dest.window = self
                    .transports
                    .get(&key.0)
                    .map_or(1, |t| t.limits.initial_concurrency);
                dest.failed_cohorts = 0.0;
            }
        }
    }

    /// Whether `key` is dead at `now`.
    #[cfg(test)]
    pub fn is_dead(&self, now: SystemTime, transport: &str, queue: &str) -> bool {
        let key = (transport.to_string(), queue.to_string());
        self.dead.get(&key).is_some_and(|d| d.until > now)
    }

    fn forget_if_idle(&mut self, key: &DestKey) {
        let idle = self
            .destinations
            .get(key)
            .is_some_and(|d| d.pending.is_empty() && d.in_flight == 0 && !d.listed);
        if idle {
            self.destinations.remove(key);
        }
    }

    fn is_open(&self, message: MessageKey, index: usize) -> bool {
        self.messages
            .get(&message)
            .and_then(|m| m.verdicts.get(index))
            .is_some_and(Option::is_none)
    }

    /// A result qmgr decided: recorded, and kept for the log.
    fn decide(&mut self, message: MessageKey, index: usize, verdict: Verdict) {
        if self.record(message, index, verdict.clone()) {
            self.decisions.push(Decision {
                message,
                recipient: index,
                verdict,
            });
        }
    }

    /// Records a recipient's first result; false when it had one.
    fn record(&mut self, message: MessageKey, index: usize, verdict: Verdict) -> bool {
        let Some(state) = self.messages.get_mut(&message) else {
            return false;
        };
        match state.verdicts.get_mut(index) {
            Some(slot @ None) => {
                *slot = Some(verdict);
                state.remaining -= 1;
                true
            }
            _ => false,
        }
    }

    fn finish_if_done(&mut self, message: MessageKey) {
        if self
            .messages
            .get(&message)
            .is_some_and(|m| m.remaining == 0)
        {
            if let Some(state) = self.messages.remove(&message) {
                self.recipients -= state.verdicts.len();
                let verdicts = state.verdicts.into_iter().flatten().collect();
                self.completed.push(Completed { message, verdicts });
            }
        }
    }
}

/// Up to `limit` recipients of the first waiting message.
fn take_job(dest: &mut Destination, limit: usize) -> Option<(MessageKey, String, Vec<usize>)> {
    let batch = dest.pending.front_mut()?;
    let count = batch.recipients.len().min(limit);
    let recipients: Vec<usize> = batch.recipients.drain(..count).collect();
    let taken = (batch.message, batch.nexthop.clone(), recipients);
    if batch.recipients.is_empty() {
        dest.pending.pop_front();
    }
    Some(taken)
}

fn suspended_verdict(dead: &Dead) -> Verdict {
    Verdict::by_qmgr(
        Status::Deferred,
        &dead.dsn,
        &format!("delivery temporarily suspended: {}", dead.reason),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    fn to(transport: &str, nexthop: &str) -> Placement {
        Placement::Deliver {
            transport: transport.into(),
            nexthop: nexthop.into(),
            queue: nexthop.into(),
        }
    }

    fn sent() -> Verdict {
        Verdict {
            status: Status::Sent,
            dsn: "2.0.0".into(),
            reason: "250 ok".into(),
            relay: "mx".into(),
        }
    }

    fn refused() -> Verdict {
        Verdict {
            status: Status::Deferred,
            dsn: "4.4.1".into(),
            reason: "connect to mx: Connection refused".into(),
            relay: "none".into(),
        }
    }

    fn scheduler(limits: TransportLimits) -> Scheduler {
        let mut s = Scheduler::new(Duration::from_secs(300));
        s.add_transport("smtp", limits);
        s
    }

    fn all_jobs(s: &mut Scheduler) -> Vec<Job> {
        std::iter::from_fn(|| s.next_job()).collect()
    }

    fn answer(s: &mut Scheduler, job: &Job, verdict: Verdict, failed: bool) {
        let results = job
            .recipients
            .iter()
            .map(|&i| (i, verdict.clone()))
            .collect();
        s.job_done(now(), job.id, results, failed);
    }

    #[test]
    fn recipients_are_grouped_by_destination_and_cut_at_the_limit() {
        let mut s = scheduler(TransportLimits {
            recipient_limit: 2,
            ..TransportLimits::default()
        });
        let placements = vec![
            to("smtp", "a.example"),
            to("smtp", "b.example"),
            to("smtp", "a.example"),
            to("smtp", "a.example"),
        ];
        s.add_message(now(), 7, placements);
        let jobs = all_jobs(&mut s);
        let mut shapes: Vec<(String, Vec<usize>)> = jobs
            .iter()
            .map(|j| (j.nexthop.clone(), j.recipients.clone()))
            .collect();
        shapes.sort();
        assert_eq!(
            shapes,
            [
                ("a.example".to_string(), vec![0, 2]),
                ("a.example".to_string(), vec![3]),
                ("b.example".to_string(), vec![1]),
            ]
        );
        assert!(jobs.iter().all(|j| j.message == 7 && j.transport == "smtp"));
        for job in &jobs[..2] {
            answer(&mut s, job, sent(), false);
        }
        assert!(s.take_completed().is_empty());
        answer(&mut s, &jobs[2], sent(), false);
        let done = s.take_completed();
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].verdicts, vec![sent(); 4]);
        assert_eq!(s.recipient_count(), 0);
        assert_eq!(s.message_count(), 0);
    }

    #[test]
    fn window_starts_small_and_grows_with_success() {
        let mut s = scheduler(TransportLimits {
            recipient_limit: 1,
            concurrency_limit: 4,
            initial_concurrency: 2,
            ..TransportLimits::default()
        });
        s.add_message(now(), 1, vec![to("smtp", "a.example"); 10]);
        let first = all_jobs(&mut s);
        assert_eq!(first.len(), 2);
        answer(&mut s, &first[0], sent(), false);
        // Window 3, one in flight: two more.
        assert_eq!(all_jobs(&mut s).len(), 2);
    }

    #[test]
    fn window_never_exceeds_the_limit() {
        let mut s = scheduler(TransportLimits {
            recipient_limit: 1,
            concurrency_limit: 3,
            initial_concurrency: 3,
            ..TransportLimits::default()
        });
        s.add_message(now(), 1, vec![to("smtp", "a.example"); 10]);
        let jobs = all_jobs(&mut s);
        assert_eq!(jobs.len(), 3);
        answer(&mut s, &jobs[0], sent(), false);
        assert_eq!(all_jobs(&mut s).len(), 1);
    }

    #[test]
    fn failures_shrink_the_window_and_a_failed_cohort_kills() {
        let mut s = scheduler(TransportLimits {
            recipient_limit: 1,
            concurrency_limit: 10,
            initial_concurrency: 2,
            failed_cohort_limit: 1,
            ..TransportLimits::default()
        });
        s.add_message(now(), 1, vec![to("smtp", "a.example"); 6]);
        let jobs = all_jobs(&mut s);
        assert_eq!(jobs.len(), 2);
        // Half a cohort failed: the window shrinks to 1.
        answer(&mut s, &jobs[0], refused(), true);
        assert!(all_jobs(&mut s).is_empty());
        assert!(!s.is_dead(now(), "smtp", "a.example"));
        // The other half: dead, and everything waiting is deferred.
        answer(&mut s, &jobs[1], refused(), true);
        assert!(s.is_dead(now(), "smtp", "a.example"));
        assert!(all_jobs(&mut s).is_empty());
        let decisions = s.take_decisions();
        assert_eq!(decisions.len(), 4);
        assert_eq!(
            decisions[0].verdict.reason,
            "delivery temporarily suspended: connect to mx: Connection refused"
        );
        assert_eq!(decisions[0].verdict.dsn, "4.4.1");
        let done = s.take_completed();
        assert_eq!(done.len(), 1);
        assert!(done[0]
            .verdicts
            .iter()
            .all(|v| v.status == Status::Deferred));

        // New mail for it is deferred at once, until the dead time ends.
        s.add_message(now(), 2, vec![to("smtp", "a.example")]);
        assert_eq!(s.take_completed().len(), 1);
        let later = now() + Duration::from_secs(301);
        s.add_message(later, 3, vec![to("smtp", "a.example")]);
        assert_eq!(all_jobs(&mut s).len(), 1);
    }

    #[test]
    fn a_success_resets_the_failed_cohorts() {
        let mut s = scheduler(TransportLimits {
            recipient_limit: 1,
            initial_concurrency: 2,
            failed_cohort_limit: 1,
            ..TransportLimits::default()
        });
        s.add_message(now(), 1, vec![to("smtp", "a.example"); 4]);
        let jobs = all_jobs(&mut s);
        answer(&mut s, &jobs[0], refused(), true);
        answer(&mut s, &jobs[1], sent(), false);
        let next = all_jobs(&mut s);
        assert_eq!(next.len(), 2);
        answer(&mut s, &next[0], refused(), true);
        assert!(!s.is_dead(now(), "smtp", "a.example"));
    }

    #[test]
    fn flush_revives_dead_destinations() {
        let mut s = scheduler(TransportLimits {
            recipient_limit: 1,
            initial_concurrency: 1,
            ..TransportLimits::default()
        });
        s.add_message(now(), 1, vec![to("smtp", "a.example")]);
        let jobs = all_jobs(&mut s);
        answer(&mut s, &jobs[0], refused(), true);
        assert!(s.is_dead(now(), "smtp", "a.example"));
        s.flush_dead();
        assert!(!s.is_dead(now(), "smtp", "a.example"));
        s.add_message(now(), 2, vec![to("smtp", "a.example")]);
        assert_eq!(all_jobs(&mut s).len(), 1);
    }

    #[test]
    fn the_process_limit_caps_the_transport() {
        let mut s = scheduler(TransportLimits {
            recipient_limit: 1,
            process_limit: 3,
            ..TransportLimits::default()
        });
        let placements = ["a", "b", "c", "d", "e"].map(|d| to("smtp", d)).to_vec();
        s.add_message(now(), 1, placements);
        let jobs = all_jobs(&mut s);
        assert_eq!(jobs.len(), 3);
        assert_eq!(s.jobs_in_flight(), 3);
        answer(&mut s, &jobs[0], sent(), false);
        assert_eq!(all_jobs(&mut s).len(), 1);
    }

    #[test]
    fn decided_recipients_and_missing_results() {
        let mut s = scheduler(TransportLimits::default());
        let bounce = Verdict::by_qmgr(Status::Bounced, "5.0.0", "no such route");
        s.add_message(
            now(),
            1,
            vec![
                Placement::Decided(bounce.clone()),
                to("smtp", "a.example"),
                to("smtp", "a.example"),
            ],
        );
        assert_eq!(s.take_decisions().len(), 1);
        let jobs = all_jobs(&mut s);
        assert_eq!(jobs.len(), 1);
        // The agent answers for one recipient only.
        s.job_done(now(), jobs[0].id, vec![(1, sent())], false);
        let decisions = s.take_decisions();
        assert_eq!(decisions.len(), 1);
        assert_eq!(decisions[0].recipient, 2);
        assert_eq!(decisions[0].verdict.status, Status::Deferred);
        let done = s.take_completed();
        assert_eq!(done[0].verdicts[0], bounce);
        assert_eq!(done[0].verdicts[1], sent());
    }

    #[test]
    fn a_message_with_only_decided_recipients_completes_at_once() {
        let mut s = scheduler(TransportLimits::default());
        let defer = Verdict::by_qmgr(Status::Deferred, "4.3.0", "address resolver failure");
        s.add_message(now(), 9, vec![Placement::Decided(defer)]);
        assert_eq!(s.take_completed().len(), 1);
        assert!(s.next_job().is_none());
    }

    #[test]
    fn destinations_take_turns() {
        let mut s = scheduler(TransportLimits {
            recipient_limit: 1,
            initial_concurrency: 1,
            concurrency_limit: 1,
            ..TransportLimits::default()
        });
        s.add_message(
            now(),
            1,
            vec![to("smtp", "a"), to("smtp", "a"), to("smtp", "b")],
        );
        let jobs = all_jobs(&mut s);
        let mut hops: Vec<&str> = jobs.iter().map(|j| j.nexthop.as_str()).collect();
        hops.sort();
        assert_eq!(hops, ["a", "b"]);
    }
}
