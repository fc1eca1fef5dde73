//! One delivery request: the message's recipients for one nexthop, sent
//! over a cached session or to the hosts the nexthop leads to, in order,
//! until every recipient has a final answer or the hosts run out. A 5xx
//! answer bounces a recipient at once; a 4xx answer or a broken
//! connection leaves it for the next host, and deferred after the last.

use std::time::SystemTime;

use libmail::deliver::{DeliveryRequest, Status};
use libmail::dns::Lookup;
use libmail::msg;
use libmail::queue::Queue;

use crate::cache::Cache;
use crate::nexthop::{self, Myself, Nexthop, Target};
use crate::session::{Failure, Session, TlsChoice};
use crate::settings::Settings;
use crate::tls::{Level, Tls};
use crate::transaction::{Envelope, Outcome, Rcpt, Transaction};

/// The message as the agent sends it.
pub struct Message {
    pub envelope: Envelope,
    /// Header fields and body, LF line ends, as in the queue file.
    pub content: Vec<u8>,
    /// A header field has non-ASCII text.
    pub utf8_headers: bool,
}

/// One recipient's result and when its session was ready.
#[derive(Debug, Clone)]
pub struct Done {
    pub status: Status,
    pub dsn: String,
    pub reason: String,
    pub relay: String,
    pub connected: SystemTime,
}

pub struct Agent {
    pub queue: Queue,
    pub settings: Settings,
    dns: Box<dyn Lookup>,
    tls: Option<Tls>,
    pub cache: Cache,
}

/// Where one request stands.
struct Progress {
    results: Vec<Option<Done>>,
    /// The newest temporary failure, for those left at the end.
    last_soft: Option<(Failure, String)>,
}

impl Progress {
    fn pending(&self) -> Vec<usize> {
        (0..self.results.len())
            .filter(|&i| self.results[i].is_none())
            .collect()
    }

    fn finish(
        &mut self,
        index: usize,
        status: Status,
        dsn: &str,
        reason: &str,
        relay: &str,
        at: SystemTime,
    ) {
        self.results[index] = Some(Done {
            status,
            dsn: dsn.to_string(),
            reason: reason.to_string(),
            relay: relay.to_string(),
            connected: at,
        });
    }

    /// Every recipient still open gets `failure` now if it is permanent;
    /// a temporary one is remembered for the end.
    fn fail_pending(&mut self, failure: Failure, relay: &str, at: SystemTime) {
        if failure.permanent {
            for index in self.pending() {
                self.finish(
                    index,
                    Status::Bounced,
                    &failure.dsn,
                    &failure.reason,
                    relay,
                    at,
                );
            }
        } else {
            self.last_soft = Some((failure, relay.to_string()));
        }
    }
}

/// What happened to a session handed a transaction.
enum Used {
    /// Done with it (kept in the cache or closed).
    Finished,
    /// A cached connection the server had closed: nothing was sent.
    Stale,
}

impl Agent {
    pub fn new(queue: Queue, settings: Settings, dns: Box<dyn Lookup>) -> Result<Agent, String> {
        let tls = match settings.tls.level {
            Level::None => None,
            _ => Some(Tls::new(&settings.tls)?),
        };
        let cache = Cache::new(settings.cache_time_limit);
        Ok(Agent {
            queue,
            settings,
            dns,
            tls,
            cache,
        })
    }

    /// The result for every recipient of the request, in its order.
    pub fn deliver(&mut self, request: &DeliveryRequest, message: &Message) -> Vec<Done> {
        let mut progress = Progress {
            results: vec![None; request.recipients.len()],
            last_soft: None,
        };
        let key = request.nexthop.to_ascii_lowercase();
        if let Some(session) = self.cache.take(&key) {
            if let Used::Stale = self.use_session(session, &key, message, &mut progress) {
                progress.last_soft = None;
            }
        }
        if !progress.pending().is_empty() {
            self.try_hosts(request, &key, message, &mut progress);
        }
        let now = SystemTime::now();
        let (failure, relay) = progress.last_soft.clone().unwrap_or_else(|| {
            let f = Failure {
                permanent: false,
                dsn: "4.4.1".into(),
                reason: "delivery temporarily suspended: no server answered".into(),
                before_mail: false,
            };
            (f, "none".to_string())
        });
        for index in progress.pending() {
            progress.finish(
                index,
                Status::Deferred,
                &failure.dsn,
                &failure.reason,
                &relay,
                now,
            );
        }
        progress.results.into_iter().flatten().collect()
    }

    fn try_hosts(
        &mut self,
        request: &DeliveryRequest,
        key: &str,
        message: &Message,
        progress: &mut Progress,
    ) {
        let now = SystemTime::now();
        let nexthop = match Nexthop::parse(&request.nexthop, &self.settings.known_tcp_ports) {
            Ok(nexthop) => nexthop,
            Err(why) => {
                msg::warning(format_args!("{}: {why}", request.queue_id));
                let failure = failure(false, "4.3.5", why);
                return progress.fail_pending(failure, "none", now);
            }
        };
        let myself = Myself {
            hostname: &self.settings.myhostname,
            addresses: &self.settings.my_addresses,
        };
        let targets = nexthop::targets(
            self.dns.as_ref(),
            &nexthop,
            self.settings.families,
            &myself,
            self.settings.mx_address_limit,
        );
        let targets = match targets {
            Ok(targets) => targets,
            Err(route) => {
                let failure = failure(route.permanent, route.dsn, route.reason);
                return progress.fail_pending(failure, "none", now);
            }
        };
        let mut sessions = 0;
        for target in targets {
            if progress.pending().is_empty() || sessions >= self.settings.mx_session_limit {
                break;
            }
            let session = match self.open(&target) {
                Ok(session) => session,
                Err(failure) => {
                    if failure.dsn == "4.4.1" {
                        msg::info(&failure.reason);
                    }
                    progress.fail_pending(failure, "none", SystemTime::now());
                    continue;
                }
            };
            sessions += 1;
            self.use_session(session, key, message, progress);
        }
    }

    /// A new session, in plaintext again when opportunistic TLS failed.
    fn open(&self, target: &Target) -> Result<Session, Failure> {
        let level = self.settings.tls.level;
        let mut choice = TlsChoice {
            tls: self.tls.as_ref(),
            level,
            attempt: true,
        };
        let session = match Session::open(target, &self.settings, &choice) {
            Err(f) if f.dsn == "4.7.5" && !level.mandatory() => {
                msg::warning(format_args!("{}; trying again without TLS", f.reason));
                choice.attempt = false;
                Session::open(target, &self.settings, &choice)
            }
            other => other,
        }?;
        if let (Some(line), true) = (&session.tls_line, self.settings.tls.loglevel >= 1) {
            msg::info(line);
        }
        Ok(session)
    }

    /// Sends the message to the recipients still open over `session`.
    fn use_session(
        &mut self,
        mut session: Session,
        key: &str,
        message: &Message,
        progress: &mut Progress,
    ) -> Used {
        let connected = SystemTime::now();
        let relay = session.target.relay();
        if let Some(failure) = self.refuse_early(&session, message) {
            progress.fail_pending(failure, &relay, connected);
            self.release(session, key, progress, false);
            return Used::Finished;
        }
        let pending = progress.pending();
        let envelope = Envelope {
            recipients: pending
                .iter()
                .map(|&i| message.envelope.recipients[i].clone())
                .collect(),
            ..message.envelope.clone()
        };
        let reused = session.transactions > 0;
        let mut transaction = Transaction::new(envelope, session.features.clone());
        let clean = match session.transact(&mut transaction, &message.content) {
            Ok(clean) => clean,
            Err(failure) if reused && failure.before_mail => return Used::Stale,
            Err(failure) => {
                progress.fail_pending(failure, &relay, connected);
                return Used::Finished;
            }
        };
        for (outcome, &index) in transaction.outcomes().iter().zip(&pending) {
            match outcome {
                Outcome::Delivered(reply) => progress.finish(
                    index,
                    Status::Sent,
                    &reply.status(),
                    &reply.text(),
                    &relay,
                    connected,
                ),
                Outcome::Refused(reply, stage) => {
                    let failure = Failure::said(&session.target, reply, stage.command());
                    match failure.permanent {
                        true => progress.finish(
                            index,
                            Status::Bounced,
                            &failure.dsn,
                            &failure.reason,
                            &relay,
                            connected,
                        ),
                        false => progress.last_soft = Some((failure, relay.clone())),
                    }
                }
                Outcome::Pending => {}
            }
        }
        self.release(session, key, progress, clean);
        Used::Finished
    }

    /// Failures known before MAIL FROM: a message the server said is too
    /// big, or an SMTPUTF8 message to a server without SMTPUTF8.
    fn refuse_early(&self, session: &Session, message: &Message) -> Option<Failure> {
        let features = &session.features;
        let envelope = &message.envelope;
        if let Some(limit) = features.size.filter(|&l| l > 0 && envelope.size > l) {
            let reason = format!(
                "message size {} exceeds size limit {limit} of server {}",
                envelope.size,
                session.target.name_addr()
            );
            return Some(failure(true, "5.3.4", reason));
        }
        let utf8_envelope = !envelope.sender.is_ascii()
            || envelope.recipients.iter().any(|r| !r.address.is_ascii());
        let needs = utf8_envelope || (envelope.smtputf8 && message.utf8_headers);
        if needs && !features.smtputf8 {
            let reason = format!(
                "SMTPUTF8 is required, but was not offered by host {}",
                session.target.name_addr()
            );
            return Some(failure(true, "5.6.7", reason));
        }
        None
    }

    /// Back to the cache when it is in a state to take more mail, closed
    /// with QUIT otherwise.
    fn release(&mut self, mut session: Session, key: &str, progress: &Progress, clean: bool) {
        let keep = self.cache.enabled()
            && progress.pending().is_empty()
            && session.reusable(&self.settings)
            && (clean || session.reset());
        match keep {
            true => self.cache.put(key, session),
            false => session.quit(),
        }
    }
}

fn failure(permanent: bool, dsn: &str, reason: String) -> Failure {
    Failure {
        permanent,
        dsn: dsn.to_string(),
        reason,
        before_mail: false,
    }
}

/// The transaction's view of a request's recipients.
pub fn rcpts(request: &DeliveryRequest) -> Vec<Rcpt> {
    request
        .recipients
        .iter()
        .map(|r| Rcpt {
            address: r.address.clone(),
            notify: r.dsn_notify,
            orcpt: r.dsn_orcpt.clone(),
        })
        .collect()
}
