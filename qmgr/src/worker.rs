//! Delivery threads: one per delivery slot of a transport, made when
//! the scheduler first needs that many and kept for the life of qmgr.
//! Each keeps its connection to the agent open for the next request
//! (the agent process stays with it), and hands every reply back to the
//! scheduler thread over a channel.

use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, SystemTime};

use libmail::deliver::{DeliveryClient, DeliveryReply, DeliveryRequest};
use libmail::ipc::IpcError;

use crate::scheduler::JobId;

/// An idle connection is closed after this long, so that the agent
/// process behind it can go (its max_idle).
const IDLE_CLOSE: Duration = Duration::from_secs(60);

/// What a delivery thread sends back.
#[derive(Debug)]
pub struct Delivered {
    pub transport: String,
    pub worker: usize,
    pub job: JobId,
    /// When the request went to the agent.
    pub started: SystemTime,
    /// The reply, or why there is none (`connect to transport
    /// private/local: No such file or directory`).
    pub reply: Result<DeliveryReply, String>,
}

/// One piece of work for a delivery thread.
pub struct Order {
    pub job: JobId,
    pub request: DeliveryRequest,
}

/// The delivery threads of one transport.
pub struct Pool {
    transport: String,
    /// The agent's socket.
    socket: PathBuf,
    workers: Vec<Sender<Order>>,
    /// Idle threads, the most recently used last: it is the one most
    /// likely to have a live connection.
    idle: Vec<usize>,
}

impl Pool {
    pub fn new(transport: &str, socket: PathBuf) -> Pool {
        Pool {
            transport: transport.to_string(),
            socket,
            workers: Vec::new(),
            idle: Vec::new(),
        }
    }

    /// Hands the order to an idle thread, or to a new one.
    pub fn dispatch<E: From<Delivered> + Send + 'static>(
        &mut self,
        order: Order,
        events: &Sender<E>,
    ) -> Result<(), String> {
        let index = match self.idle.pop() {
            Some(index) => index,
            None => self.spawn(events)?,
        };
        self.workers[index]
            .send(order)
            .map_err(|_| format!("{} delivery thread is gone", self.transport))
    }

    /// A thread finished its order.
    pub fn release(&mut self, worker: usize) {
        if worker < self.workers.len() && !self.idle.contains(&worker) {
            self.idle.push(worker);
        }
    }

    fn spawn<E: From<Delivered> + Send + 'static>(
        &mut self,
        events: &Sender<E>,
    ) -> Result<usize, String> {
        let (orders, receiver) = mpsc::channel();
        let index = self.workers.len();
        let transport = self.transport.clone();
        let socket = self.socket.clone();
        let events = events.clone();
        std::thread::Builder::new()
            .name(format!("{transport}-{index}"))
            .spawn(move || run(&transport, &socket, index, &receiver, &events))
            .map_err(|e| format!("cannot start a {} delivery thread: {e}", self.transport))?;
        self.workers.push(orders);
        Ok(index)
    }
}

/// A delivery thread: takes orders until qmgr drops the pool.
fn run<E: From<Delivered>>(
    transport: &str,
    socket: &std::path::Path,
    worker: usize,
    orders: &Receiver<Order>,
    events: &Sender<E>,
) {
    let mut connection: Option<DeliveryClient> = None;
    loop {
        let order = match &connection {
            Some(_) => match orders.recv_timeout(IDLE_CLOSE) {
                Ok(order) => order,
                Err(RecvTimeoutError::Timeout) => {
                    connection = None;
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => return,
            },
            None => match orders.recv() {
                Ok(order) => order,
                Err(_) => return,
            },
        };
        let started = SystemTime::now();
        let reply = deliver(socket, transport, &mut connection, &order.request);
        let done = Delivered {
            transport: transport.to_string(),
            worker,
            job: order.job,
            started,
            reply,
        };
        if events.send(E::from(done)).is_err() {
            return;
        }
    }
}

/// Sends the request on the kept connection, or on a new one when
/// there is none or the agent closed the kept one (it exits after
/// max_use requests or max_idle seconds).
fn deliver(
    socket: &std::path::Path,
    transport: &str,
    connection: &mut Option<DeliveryClient>,
    request: &DeliveryRequest,
) -> Result<DeliveryReply, String> {
    if let Some(client) = connection.as_mut() {
        match client.deliver(request) {
            Ok(reply) => return Ok(reply),
            Err(err) if went_away(&err) => *connection = None,
            Err(err) => {
                *connection = None;
                return Err(format!("{transport} agent: {}", describe(&err)));
            }
        }
    }
    let mut client = DeliveryClient::connect(socket).map_err(|err| {
        format!(
            "connect to transport private/{transport}: {}",
            describe(&err)
        )
    })?;
    let reply = client
        .deliver(request)
        .map_err(|err| format!("{transport} agent: {}", describe(&err)))?;
    *connection = Some(client);
    Ok(reply)
}

/// An error as Postfix words it: system errors without `(os error N)`.
fn describe(err: &IpcError) -> String {
    match err {
        IpcError::Io(io) => libmail::error::strerror(io),
        other => other.to_string(),
    }
}

/// The agent closed a kept connection between requests.
fn went_away(err: &IpcError) -> bool {
    match err {
        IpcError::Closed => true,
        IpcError::Io(io) => matches!(
            io.kind(),
            std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
        ),
        _ => false,
    }
}
