//! The queue manager's I/O around the scheduler: scanning incoming/ and
//! deferred/, moving messages into active/, resolving recipients,
//! handing jobs to the delivery threads, and recording each finished
//! message (notices, then removal, or marks, reasons and a move to
//! deferred/ with the next retry time as the file's mtime).
//!
//! Everything happens on one thread, which owns the state; the delivery
//! threads and the trigger thread talk to it over one channel.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::Path;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant, SystemTime};

use libmail::agent;
use libmail::bounce::{self, Action, BounceError, NoticeKind, Outcome};
use libmail::config::master_cf::MasterCf;
use libmail::config::{Config, ConfigError};
use libmail::deliver::{agent_path, DeliveryRequest, Status};
use libmail::flush;
use libmail::log::delivery::{self, Delays, RecipientStatus};
use libmail::msg;
use libmail::queue::defer_log::{self, DeferLog, DeferredRecipient};
use libmail::queue::lock;
use libmail::queue::{
    mark_recipients_done, notify, Envelope, Queue, QueueError, QueueFile, QueueId, Recipient,
    ACTIVE, DEFERRED, INCOMING,
};
use libmail::resolve::{ResolveError, Resolver};
use libmail::trigger;

use crate::retry::Sorted;
use crate::scheduler::{Completed, Job, MessageKey, Placement, Scheduler, Verdict};
use crate::settings::{self, Settings};
use crate::worker::{Delivered, Order, Pool};

/// How often incoming/ is looked at while there is work, triggers or not.
const INCOMING_SCAN_INTERVAL: Duration = Duration::from_secs(1);
/// How long a qmgr whose master went away waits for deliveries in
/// flight, so that their results are recorded rather than repeated.
const EXIT_GRACE: Duration = Duration::from_secs(5);

/// What the scheduler thread hears about.
#[derive(Debug)]
pub enum Event {
    /// Bytes from the qmgr socket.
    Trigger(Vec<u8>),
    Delivered(Delivered),
    /// The trigger loop ended: master is gone.
    MasterGone,
}

impl From<Delivered> for Event {
    fn from(delivered: Delivered) -> Event {
        Event::Delivered(delivered)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Queue(#[from] QueueError),
    #[error("{0}")]
    Resolve(#[from] ResolveError),
}

/// A message in the active queue.
struct Active {
    id: QueueId,
    envelope: Envelope,
    /// The recipients not yet done, which the scheduler's indexes name.
    recipients: Vec<Recipient>,
    active_time: SystemTime,
    /// Came from deferred/ or active/: may have a defer log.
    retried: bool,
    /// `postsuper -e`/`-f` asked for it to be returned now.
    forced_expire: bool,
}

/// The queue manager.
pub struct Daemon {
    config: Config,
    master: Option<MasterCf>,
    queue: Queue,
    resolver: Resolver,
    settings: Settings,
    scheduler: Scheduler,
    messages: HashMap<MessageKey, Active>,
    /// IDs of the messages in `messages`.
    loaded: HashSet<QueueId>,
    next_key: MessageKey,
    jobs: HashMap<u64, Job>,
    pools: HashMap<String, Pool>,
    events: Sender<Event>,
    receiver: Receiver<Event>,
    /// Files found by the scans and not yet activated, by queue.
    resumed: VecDeque<QueueId>,
    incoming: VecDeque<QueueId>,
    deferred: VecDeque<QueueId>,
    scan_incoming: bool,
    last_incoming_scan: Instant,
    next_deferred_scan: Instant,
    stopping: bool,
}

impl Daemon {
    pub fn new(
        config: Config,
        master: Option<MasterCf>,
        events: Sender<Event>,
        receiver: Receiver<Event>,
    ) -> Result<Daemon, DaemonError> {
        let settings = Settings::from_config(&config)?;
        let now = Instant::now();
        Ok(Daemon {
            queue: Queue::from_config(&config)?,
            resolver: Resolver::new(&config)?,
            scheduler: Scheduler::new(settings.policy.minimal_backoff),
            next_deferred_scan: now + settings.queue_run_delay,
            settings,
            config,
            master,
            messages: HashMap::new(),
            loaded: HashSet::new(),
            next_key: 1,
            jobs: HashMap::new(),
            pools: HashMap::new(),
            events,
            receiver,
            resumed: VecDeque::new(),
            incoming: VecDeque::new(),
            deferred: VecDeque::new(),
            scan_incoming: false,
            last_incoming_scan: now,
            stopping: false,
        })
    }

    /// Runs until master goes away.
    pub fn run(&mut self) {
        self.start();
        while self.step() {}
    }

    /// What a (re)started qmgr finds: messages a previous qmgr left in
    /// active/ first, then new mail, then deferred mail that is due.
    pub fn start(&mut self) {
        self.resumed = self.scan(ACTIVE).into();
        self.scan_incoming_now();
        self.scan_deferred(false);
    }

    /// One round: start what can start, wait for news, handle it. False
    /// when it is time to exit.
    pub fn step(&mut self) -> bool {
        self.activate_waiting();
        self.dispatch();
        match self.receiver.recv_timeout(self.timeout()) {
            Ok(event) => {
                self.handle(event);
                while let Ok(event) = self.receiver.try_recv() {
                    self.handle(event);
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return false,
        }
        if self.stopping {
            self.finish_in_flight();
            return false;
        }
        self.timers();
        true
    }

    /// Whether there is anything to do or waiting to be done.
    fn busy(&self) -> bool {
        self.scheduler.message_count() > 0
            || !self.resumed.is_empty()
            || !self.incoming.is_empty()
            || !self.deferred.is_empty()
    }

    fn timeout(&self) -> Duration {
        let now = Instant::now();
        let deferred = self.next_deferred_scan.saturating_duration_since(now);
        if !self.busy() {
            return deferred.max(Duration::from_millis(10));
        }
        let incoming =
            (self.last_incoming_scan + INCOMING_SCAN_INTERVAL).saturating_duration_since(now);
        incoming.min(deferred).max(Duration::from_millis(10))
    }

    fn timers(&mut self) {
        let now = Instant::now();
        let due = now.duration_since(self.last_incoming_scan) >= INCOMING_SCAN_INTERVAL;
        if self.scan_incoming || (due && self.busy()) {
            self.scan_incoming_now();
        }
        if now >= self.next_deferred_scan {
            self.scan_deferred(false);
        }
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Trigger(bytes) => self.trigger(&bytes),
            Event::Delivered(delivered) => self.delivered(delivered),
            Event::MasterGone => self.stopping = true,
        }
    }

    /// Every trigger means a look at incoming/; some ask for more.
    fn trigger(&mut self, bytes: &[u8]) {
        self.scan_incoming = true;
        let asked = |request: &[u8]| bytes.contains(&request[0]);
        if asked(trigger::qmgr::FLUSH_DEAD) {
            self.scheduler.flush_dead();
        }
        // F alone (the flush daemon's ETRN) only revives destinations.
        let all = [trigger::qmgr::SCAN_ALL, trigger::qmgr::SCAN_DEFERRED];
        if all.into_iter().any(asked) {
            self.scan_deferred(true);
        }
    }

    /// The IDs in `queue` that are not in memory already.
    fn scan(&self, queue: &str) -> Vec<QueueId> {
        match self.queue.scan(queue) {
            Ok(ids) => ids
                .into_iter()
                .filter(|id| !self.loaded.contains(id))
                .collect(),
            Err(err) => {
                msg::warning(format_args!("scan {queue}: {err}"));
                Vec::new()
            }
        }
    }

    fn scan_incoming_now(&mut self) {
        self.incoming = self.scan(INCOMING).into();
        self.scan_incoming = false;
        self.last_incoming_scan = Instant::now();
    }

    /// Deferred mail whose retry time (mtime) has come, or all of it.
    fn scan_deferred(&mut self, all: bool) {
        let now = SystemTime::now();
        let due = |id: &QueueId| {
            all || std::fs::metadata(self.queue.path(DEFERRED, id))
                .and_then(|m| m.modified())
                .is_ok_and(|retry| retry <= now)
        };
        self.deferred = self.scan(DEFERRED).into_iter().filter(due).collect();
        self.next_deferred_scan = Instant::now() + self.settings.queue_run_delay;
    }

    /// Activates waiting messages while memory limits allow.
    fn activate_waiting(&mut self) {
        if self.stopping {
            return;
        }
        loop {
            let full = self.scheduler.message_count() >= self.settings.message_active_limit
                || self.scheduler.recipient_count() >= self.settings.message_recipient_limit;
            if full {
                return;
            }
            let next = if let Some(id) = self.resumed.pop_front() {
                (id, ACTIVE)
            } else if let Some(id) = self.incoming.pop_front() {
                (id, INCOMING)
            } else if let Some(id) = self.deferred.pop_front() {
                (id, DEFERRED)
            } else {
                return;
            };
            self.activate(next.0, next.1);
        }
    }

    /// Moves a message into active/ and hands its recipients to the
    /// scheduler.
    fn activate(&mut self, id: QueueId, from: &str) {
        if self.loaded.contains(&id) {
            return;
        }
        if from != ACTIVE {
            match self.queue.rename(&id, from, ACTIVE) {
                Ok(_) => {}
                // Taken away meanwhile (postsuper, or already delivered).
                Err(err) if err.is_not_found() => return,
                Err(err) => return msg::warning(err),
            }
        }
        let Some((mut envelope, mode)) = self.read_envelope(&id) else {
            return;
        };
        let forced_expire = lock::is_forced_expire(mode);
        let retried = from != INCOMING || self.has_defer_log(&id);
        let recipients: Vec<Recipient> = std::mem::take(&mut envelope.recipients)
            .into_iter()
            .filter(|r| !r.done)
            .collect();
        msg::info(delivery::queue_active(
            id.as_str(),
            &envelope.sender,
            envelope.sizes.message_size,
            recipients.len(),
        ));
        let active = Active {
            id,
            envelope,
            recipients,
            active_time: SystemTime::now(),
            retried,
            forced_expire,
        };
        if active.recipients.is_empty() {
            return self.remove_message(&active);
        }
        let placements: Vec<Placement> = match forced_expire {
            true => self.expire_placements(&active),
            false => active
                .recipients
                .iter()
                .map(|rcpt| self.place(&active.id, &active.envelope, rcpt))
                .collect(),
        };
        let key = self.next_key;
        self.next_key += 1;
        self.loaded.insert(active.id.clone());
        self.messages.insert(key, active);
        self.scheduler
            .add_message(SystemTime::now(), key, placements);
        self.after_scheduler(None);
    }

    /// Whether a message has been tried before though it came from
    /// incoming/: the flush service moves deferred mail there.
    fn has_defer_log(&self, id: &QueueId) -> bool {
        std::fs::symlink_metadata(self.queue.path(libmail::queue::DEFER, id)).is_ok()
    }

    /// A message postsuper marked for expiry is not delivered: each
    /// recipient is deferred with its last reason (which the notice then
    /// gives), or as administratively expired, and `finish` returns it.
    fn expire_placements(&self, active: &Active) -> Vec<Placement> {
        let log = match active.retried {
            true => defer_log::read(&self.queue, &active.id).ok().flatten(),
            false => None,
        };
        let reason_of = |rcpt: &Recipient| {
            log.as_ref()?
                .recipients
                .iter()
                .find(|d| d.offset == rcpt.offset || d.recipient == rcpt.address)
        };
        active
            .recipients
            .iter()
            .map(|rcpt| {
                let verdict = match reason_of(rcpt) {
                    Some(d) => Verdict::by_qmgr(Status::Deferred, &d.dsn, &d.reason),
                    None => Verdict::by_qmgr(
                        Status::Deferred,
                        "4.7.0",
                        "message is administratively expired",
                    ),
                };
                Placement::Decided(verdict)
            })
            .collect()
    }

    /// The envelope and file mode of an active file; a damaged file goes
    /// to corrupt/.
    fn read_envelope(&self, id: &QueueId) -> Option<(Envelope, u32)> {
        let path = self.queue.path(ACTIVE, id);
        match QueueFile::open(&path) {
            Ok(file) => {
                let mode = file.mode();
                Some((file.into_envelope(), mode))
            }
            Err(err) => {
                if let Some(damage) = err.damage() {
                    if let Err(err) = self.queue.save_corrupt(ACTIVE, id, damage) {
                        msg::warning(err);
                    }
                } else if !err.is_not_found() {
                    msg::warning(err);
                }
                None
            }
        }
    }

    /// Where one recipient goes: the content filter, or the resolver's
    /// answer; the error, retry and discard transports are answered here.
    fn place(&mut self, id: &QueueId, envelope: &Envelope, rcpt: &Recipient) -> Placement {
        let filter = envelope.content_filter.as_deref().and_then(parse_filter);
        let (transport, nexthop) = match filter {
            Some((transport, nexthop)) if !nexthop.is_empty() => (transport, nexthop),
            filter => match self.resolver.resolve(&rcpt.address) {
                Ok(resolved) => match filter {
                    Some((transport, _)) => (transport, resolved.nexthop),
                    None => (resolved.transport, resolved.nexthop),
                },
                Err(err) => {
                    msg::warning(format_args!(
                        "{id}: address resolver failure for {}: {err}",
                        rcpt.address
                    ));
                    return Placement::Decided(Verdict::by_qmgr(
                        Status::Deferred,
                        "4.3.0",
                        "address resolver failure",
                    ));
                }
            },
        };
        if let Some((status, dsn)) = answered_here(&transport) {
            return Placement::Decided(error_verdict(status, dsn, &nexthop));
        }
        if !self.scheduler.knows_transport(&transport) {
            let limits = settings::transport_limits(&self.config, self.master.as_ref(), &transport)
                .unwrap_or_else(|err| {
                    msg::warning(err);
                    Default::default()
                });
            self.scheduler.add_transport(&transport, limits);
        }
        // One recipient per request: the recipient is the destination, so
        // that the concurrency limit applies per recipient (Postfix does
        // this for local, whose limit protects one mailbox).
        let queue = match self.scheduler.transport_limits(&transport).recipient_limit {
            1 => rcpt.address.to_ascii_lowercase(),
            _ => nexthop.to_ascii_lowercase(),
        };
        Placement::Deliver {
            transport,
            nexthop,
            queue,
        }
    }

    /// Hands every job the scheduler allows to a delivery thread.
    fn dispatch(&mut self) {
        if self.stopping {
            return;
        }
        while let Some(job) = self.scheduler.next_job() {
            let Some(active) = self.messages.get(&job.message) else {
                // Cannot happen: a message stays until all its jobs end.
                self.scheduler
                    .job_done(SystemTime::now(), job.id, Vec::new(), false);
                continue;
            };
            let request = DeliveryRequest {
                queue_name: ACTIVE.to_string(),
                queue_id: active.id.to_string(),
                arrival_time: active.envelope.arrival_time,
                active_time: active.active_time,
                sender: active.envelope.sender.clone(),
                nexthop: job.nexthop.clone(),
                dsn_envid: active.envelope.dsn_envid.clone(),
                dsn_ret: active.envelope.dsn_ret,
                recipients: job
                    .recipients
                    .iter()
                    .filter_map(|&i| active.recipients.get(i).cloned())
                    .collect(),
            };
            let directory = self.queue.directory();
            let pool = self.pools.entry(job.transport.clone()).or_insert_with(|| {
                Pool::new(&job.transport, agent_path(directory, &job.transport))
            });
            let order = Order {
                job: job.id,
                request,
            };
            let sent = pool.dispatch(order, &self.events);
            let started = SystemTime::now();
            self.jobs.insert(job.id, job.clone());
            if let Err(err) = sent {
                self.agent_failed(job.id, started, &err);
            }
        }
    }

    /// A delivery thread is back with a reply, or without one.
    fn delivered(&mut self, delivered: Delivered) {
        if let Some(pool) = self.pools.get_mut(&delivered.transport) {
            pool.release(delivered.worker);
        }
        let reply = match delivered.reply {
            Ok(reply) => reply,
            Err(err) => return self.agent_failed(delivered.job, delivered.started, &err),
        };
        let Some(job) = self.jobs.remove(&delivered.job) else {
            return;
        };
        let Some(active) = self.messages.get(&job.message) else {
            self.scheduler
                .job_done(SystemTime::now(), job.id, Vec::new(), false);
            return;
        };
        // Results name recipients by record offset; the scheduler by index.
        let results: Vec<(usize, Verdict)> = reply
            .results
            .into_iter()
            .filter_map(|r| {
                let index = job.recipients.iter().copied().find(|&i| {
                    active
                        .recipients
                        .get(i)
                        .is_some_and(|a| a.offset == r.offset)
                })?;
                let verdict = Verdict {
                    status: r.status,
                    dsn: r.dsn,
                    reason: r.reason,
                    relay: r.relay,
                };
                Some((index, verdict))
            })
            .collect();
        let failed = site_failed(&results);
        self.scheduler
            .job_done(SystemTime::now(), job.id, results, failed);
        self.after_scheduler(Some(delivered.started));
    }

    /// No agent answered: the job's recipients are deferred, and logged
    /// here since no agent logged them.
    fn agent_failed(&mut self, job_id: u64, started: SystemTime, why: &str) {
        msg::warning(why);
        let Some(job) = self.jobs.remove(&job_id) else {
            return;
        };
        let verdict = Verdict::by_qmgr(Status::Deferred, "4.3.0", "mail transport unavailable");
        for &index in &job.recipients {
            self.log_status(job.message, index, &verdict, Some(started));
        }
        let results = job
            .recipients
            .iter()
            .map(|&i| (i, verdict.clone()))
            .collect();
        self.scheduler
            .job_done(SystemTime::now(), job.id, results, true);
        self.after_scheduler(Some(started));
    }

    /// Logs what qmgr decided itself and records finished messages.
    fn after_scheduler(&mut self, started: Option<SystemTime>) {
        for decision in self.scheduler.take_decisions() {
            self.log_status(
                decision.message,
                decision.recipient,
                &decision.verdict,
                started,
            );
        }
        for completed in self.scheduler.take_completed() {
            self.finish(completed);
        }
    }

    /// `ID: to=<…>, relay=none, delay=…, dsn=4.3.0, status=deferred (…)`.
    fn log_status(
        &self,
        key: MessageKey,
        index: usize,
        verdict: &Verdict,
        started: Option<SystemTime>,
    ) {
        let Some(active) = self.messages.get(&key) else {
            return;
        };
        let Some(rcpt) = active.recipients.get(index) else {
            return;
        };
        let now = SystemTime::now();
        let mut delays = Delays::in_qmgr(active.envelope.arrival_time, active.active_time, now);
        if let Some(started) = started {
            delays.agent_start = started;
        }
        let line = RecipientStatus {
            queue_id: active.id.as_str(),
            recipient: &rcpt.address,
            orig_recipient: &rcpt.orig_recipient,
            relay: &verdict.relay,
            delays,
            dsn: &verdict.dsn,
            status: verdict.status.name(),
            reason: &verdict.reason,
        }
        .line();
        msg::info(line);
    }

    /// Records a message whose recipients all have a result (DESIGN.md
    /// §4): notices first, then removal, or marks and a move to
    /// deferred/; a notice that cannot be sent keeps its recipients.
    fn finish(&mut self, completed: Completed) {
        let Some(active) = self.messages.remove(&completed.message) else {
            return;
        };
        self.loaded.remove(&active.id);
        let verdicts = &completed.verdicts;
        let policy = self.settings.policy;
        let now = SystemTime::now();
        let arrival = active.envelope.arrival_time;
        let mut sorted = Sorted::new(verdicts);
        if (!sorted.bounced.is_empty() || !sorted.deferred.is_empty()) && self.vanished(&active) {
            return;
        }
        let null_sender = active.envelope.sender.is_empty();
        let expired = !sorted.deferred.is_empty()
            && (active.forced_expire || policy.is_expired(arrival, now, null_sender));
        if expired {
            sorted.expire();
        }
        let mut file = None;
        if !sorted.bounced.is_empty() {
            let outcomes = outcomes(&active, verdicts, &sorted.bounced, |_| Action::Failed);
            match self.notice(&active, &mut file, NoticeKind::NonDelivery, &outcomes) {
                Ok(()) if expired => msg::info(delivery::expired(
                    active.id.as_str(),
                    &active.envelope.sender,
                )),
                Ok(()) => {}
                Err(err) => {
                    msg::warning(format_args!(
                        "{}: non-delivery notification: {err}",
                        active.id
                    ));
                    sorted.keep_bounced();
                }
            }
        }
        self.success_notices(&active, verdicts, &sorted, &mut file);
        if sorted.deferred.is_empty() {
            return self.remove_message(&active);
        }
        self.defer_message(&active, verdicts, &sorted, &mut file, now);
    }

    /// NOTIFY=SUCCESS recipients that were delivered. A notice that
    /// cannot be sent is reported but does not bring back a delivered
    /// recipient (that would deliver it twice).
    fn success_notices(
        &self,
        active: &Active,
        verdicts: &[Verdict],
        sorted: &Sorted,
        file: &mut Option<QueueFile>,
    ) {
        let wanted: Vec<usize> = sorted
            .sent
            .iter()
            .copied()
            .filter(|&i| {
                active
                    .recipients
                    .get(i)
                    .is_some_and(|r| r.dsn_notify & notify::SUCCESS != 0)
            })
            .collect();
        if wanted.is_empty() {
            return;
        }
        let outcomes = outcomes(active, verdicts, &wanted, |v| match v.relay.as_str() {
            "local" | "virtual" => Action::Delivered,
            _ => Action::Relayed,
        });
        if let Err(err) = self.notice(active, file, NoticeKind::Success, &outcomes) {
            msg::warning(format_args!(
                "{}: delivery status notification: {err}",
                active.id
            ));
        }
    }

    fn notice(
        &self,
        active: &Active,
        file: &mut Option<QueueFile>,
        kind: NoticeKind,
        outcomes: &[Outcome],
    ) -> Result<(), BounceError> {
        if file.is_none() {
            *file = Some(QueueFile::open(&self.queue.path(ACTIVE, &active.id))?);
        }
        match file {
            Some(file) => {
                bounce::send_notice(&self.config, kind, active.id.as_str(), file, outcomes)
            }
            None => Ok(()),
        }
    }

    /// Whether the file left active/ while qmgr worked on it: postsuper
    /// deleted, held or requeued it. Its fate is postsuper's now; the
    /// delivery agents marked what they finished in the file itself.
    fn vanished(&self, active: &Active) -> bool {
        let path = self.queue.path(ACTIVE, &active.id);
        matches!(std::fs::symlink_metadata(path), Err(err) if err.kind() == std::io::ErrorKind::NotFound)
    }

    /// Every recipient is done: the file goes, and its defer log.
    fn remove_message(&self, active: &Active) {
        match self.queue.remove(ACTIVE, &active.id) {
            Ok(()) => {}
            // Taken away by postsuper, which said so itself.
            Err(err) if err.is_not_found() => return,
            Err(err) => return msg::warning(err),
        }
        if active.retried {
            if let Err(err) = defer_log::remove(&self.queue, &active.id) {
                msg::warning(err);
            }
        }
        msg::info(delivery::removed(active.id.as_str()));
    }

    /// Some recipients wait: mark the others done, write why, warn the
    /// sender if it is time, and move the file to deferred/ with its next
    /// retry time as mtime.
    fn defer_message(
        &self,
        active: &Active,
        verdicts: &[Verdict],
        sorted: &Sorted,
        file: &mut Option<QueueFile>,
        now: SystemTime,
    ) {
        let id = &active.id;
        let offsets: Vec<u64> = sorted
            .done()
            .iter()
            .filter_map(|&i| active.recipients.get(i).map(|r| r.offset))
            .collect();
        if !offsets.is_empty() {
            if let Err(err) = mark_recipients_done(&self.queue.path(ACTIVE, id), &offsets) {
                msg::warning(err);
            }
        }
        let mut log = DeferLog {
            recipients: sorted
                .deferred
                .iter()
                .filter_map(|&i| Some(deferred_entry(active.recipients.get(i)?, verdicts.get(i)?)))
                .collect(),
            delay_warned: false,
        };
        if active.retried {
            log.delay_warned = defer_log::read(&self.queue, id)
                .ok()
                .flatten()
                .is_some_and(|old| old.delay_warned);
        }
        let arrival = active.envelope.arrival_time;
        if self
            .settings
            .policy
            .delay_warning_due(arrival, now, log.delay_warned)
        {
            let outcomes = outcomes(active, verdicts, &sorted.deferred, |_| Action::Delayed);
            match self.notice(active, file, NoticeKind::Delay, &outcomes) {
                Ok(()) => log.delay_warned = true,
                Err(err) => msg::warning(format_args!("{id}: delay notification: {err}")),
            }
        }
        if let Err(err) = defer_log::write(&self.queue, id, &log) {
            msg::warning(err);
        }
        match self.queue.rename(id, ACTIVE, DEFERRED) {
            Ok(path) => set_retry_time(&path, self.settings.policy.next_attempt(arrival, now)),
            Err(err) => msg::warning(err),
        }
        // After the move, so that an ETRN in between finds it deferred.
        self.tell_flush(active, &sorted.deferred);
    }

    /// The fast flush service keeps, per site, the mail waiting for it
    /// (ETRN, `postqueue -s`); the site is the recipient's domain. It
    /// decides which sites it keeps (fast_flush_domains).
    fn tell_flush(&self, active: &Active, deferred: &[usize]) {
        let mut sites: Vec<String> = deferred
            .iter()
            .filter_map(|&i| active.recipients.get(i))
            .filter_map(|rcpt| rcpt.address.rsplit_once('@'))
            .map(|(_, domain)| domain.to_ascii_lowercase())
            .filter(|domain| !domain.is_empty())
            .collect();
        sites.sort_unstable();
        sites.dedup();
        for site in sites {
            flush::add(&self.config, &site, active.id.as_str());
        }
    }

    /// Master is gone: record what the agents are still doing (for a
    /// little while) so that it is not delivered again by the next qmgr.
    fn finish_in_flight(&mut self) {
        let deadline = Instant::now() + EXIT_GRACE;
        while self.scheduler.jobs_in_flight() > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.receiver.recv_timeout(left) {
                Ok(Event::Delivered(delivered)) => self.delivered(delivered),
                Ok(_) => {}
                Err(_) => return,
            }
        }
    }
}

/// `transport:nexthop` of a content filter.
fn parse_filter(filter: &str) -> Option<(String, String)> {
    let (transport, nexthop) = filter.split_once(':').unwrap_or((filter, ""));
    let transport = transport.trim();
    (!transport.is_empty()).then(|| (transport.to_string(), nexthop.trim().to_string()))
}

/// The stock transports whose nexthop is their answer, with the status
/// and default code they give every recipient: answering them here
/// saves a round trip to an agent that would only repeat the nexthop.
/// Services under other names go to their agents.
fn answered_here(transport: &str) -> Option<(Status, &'static str)> {
    match transport {
        "error" => Some((Status::Bounced, "5.0.0")),
        "retry" => Some((Status::Deferred, "4.0.0")),
        "discard" => Some((Status::Sent, "2.0.0")),
        _ => None,
    }
}

/// The verdict of error, retry or discard: the nexthop is the reason,
/// and may start with its own status code (`5.1.1 user unknown`).
fn error_verdict(status: Status, dsn: &str, text: &str) -> Verdict {
    let v = agent::nexthop_verdict(status, dsn, text);
    Verdict::by_qmgr(v.status, &v.dsn, &v.reason)
}

/// A job failed at the destination rather than at the recipients:
/// everything was deferred without reaching a server.
fn site_failed(results: &[(usize, Verdict)]) -> bool {
    !results.is_empty()
        && results
            .iter()
            .all(|(_, v)| v.status == Status::Deferred && (v.relay.is_empty() || v.relay == "none"))
}

fn outcomes(
    active: &Active,
    verdicts: &[Verdict],
    indexes: &[usize],
    action: impl Fn(&Verdict) -> Action,
) -> Vec<Outcome> {
    indexes
        .iter()
        .filter_map(|&i| {
            let verdict = verdicts.get(i)?;
            Some(Outcome {
                recipient: active.recipients.get(i)?.clone(),
                action: action(verdict),
                dsn: verdict.dsn.clone(),
                reason: verdict.reason.clone(),
                relay: verdict.relay.clone(),
            })
        })
        .collect()
}

fn deferred_entry(rcpt: &Recipient, verdict: &Verdict) -> DeferredRecipient {
    DeferredRecipient {
        recipient: rcpt.address.clone(),
        orig_recipient: rcpt.orig_recipient.clone(),
        offset: rcpt.offset,
        dsn: verdict.dsn.clone(),
        reason: verdict.reason.clone(),
    }
}

/// A deferred file's mtime (and atime) is its next retry time.
fn set_retry_time(path: &Path, when: SystemTime) {
    let since = when
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let time = nix::sys::time::TimeSpec::from(since);
    let flag = nix::sys::stat::UtimensatFlags::FollowSymlink;
    if let Err(err) = nix::sys::stat::utimensat(None, path, &time, &time, flag) {
        msg::warning(format_args!("set retry time of {}: {err}", path.display()));
    }
}

#[cfg(test)]
mod tests;
