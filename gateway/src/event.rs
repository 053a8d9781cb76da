//! Client events on their way to the workers (`P.ev`): each socket's in
//! order, one run at a time, held by one worker under a lease, handed to
//! another when that worker goes silent, and answered with an error ack
//! when none handles them.
//!
//! A socket's next events (the one whose turn it is and those of the same
//! name queued right behind it, up to [`BATCH`]) go out in one envelope
//! with a reply subject of this gateway's inbox. The worker that takes
//! them runs their handlers one after another, says `Working` every third
//! of the lease while one runs, sends an ack as soon as a handler makes
//! it, and `Done` with each one's outcome; once every one is done the
//! socket's next run goes out, so its handlers run in order whichever
//! worker takes each run. A lease that runs out hands the unfinished ones
//! to the queue group again, with the next attempt number; after
//! `--event-attempts` such leases, or with nobody subscribed, or with the
//! bus down past `--event-timeout`, a client that asked for an ack gets
//! the error ack of [`Unhandled`].

use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use sio_protocol::envelope::{self, AckReply, Command, Delivery, EventReply, SocketCommand};
use sio_protocol::socketio::{Ack, Event, Kind, Packet};
use tokio::time::Instant;

use crate::client::Client;
use crate::config::ms;
use crate::fault::{Fault, Unhandled};
use crate::node::Node;
use crate::queue::{Job, Push};
use crate::replies::Listener;
use crate::socket::Socket;

/// How often a no-responders answer is retried just after the bus came
/// back, while workers reconnect too.
const SETTLE_RETRY: Duration = Duration::from_millis(100);
/// The pause before a publish that failed is tried again.
const PUBLISH_RETRY: Duration = Duration::from_millis(50);

/// Keeps the node's view of the bus current, so that waiters wake when it
/// comes back.
pub(crate) async fn watch(node: Weak<Node>) {
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    loop {
        tick.tick().await;
        let Some(node) = node.upgrade() else { return };
        node.observe_bus();
    }
}

/// This gateway, when it holds a socket another one opened (handed over).
fn holder(node: &Node, socket: &Socket) -> Option<sio_protocol::id::GatewayId> {
    (socket.id.gateway() != node.id).then_some(node.id)
}

/// Queues a job for the workers behind the socket's others.
fn push(node: &Arc<Node>, socket: Arc<Socket>, job: Job) {
    match socket.push(job, node.queue_bounds()) {
        Push::Start(job) => {
            tokio::spawn(drive(node.clone(), socket, job));
        }
        Push::Queued => {}
        Push::Full(Job::Event(event)) => {
            node.metrics.event(Unhandled::Overloaded.code());
            AckTo::new(socket, event.id).refuse(node, Unhandled::Overloaded);
        }
        Push::Full(Job::Notice { .. }) => {}
    }
}

/// Tells the workers of the socket's connect, before any of its events.
pub(crate) fn notify(node: &Arc<Node>, socket: Arc<Socket>, subject: String, payload: Bytes) {
    push(node, socket, Job::Notice { subject, payload });
}

/// An event from `socket`'s client.
pub(crate) fn submit(
    node: &Arc<Node>,
    client: &Arc<Client>,
    socket: Arc<Socket>,
    event: Event<'static>,
) {
    if !node.is_unordered(&socket.ns, event.name()) {
        push(node, socket, Job::Event(event));
        return;
    }
    node.metrics.event("unordered");
    if event.id.is_none() {
        // Opted out: published and forgotten, as socket.io's volatile.
        let once = Delivery {
            attempt: 1,
            lease_ms: 0,
            holder: holder(node, &socket),
        };
        let Ok(payload) = socket.events(std::slice::from_ref(&event), once) else {
            return;
        };
        let subject = node.subjects.event(&socket.ns, event.name());
        let node = node.clone();
        tokio::spawn(async move { node.publish_now(subject, payload.into()).await });
        return;
    }
    // Each waits for its ack beside the others, holding its payload.
    let Some(slot) = client.ask(node.config.send_queue_packets) else {
        node.close(&client.session, Fault::AckFlood);
        return;
    };
    let node = node.clone();
    tokio::spawn(async move {
        handle(&node, &socket, vec![event]).await;
        drop(slot);
    });
}

/// Hands a socket's jobs over one after another until none is left: a
/// run of events of one name together, to one worker.
async fn drive(node: Arc<Node>, socket: Arc<Socket>, mut job: Job) {
    loop {
        match job {
            Job::Event(event) => {
                let mut events = vec![event];
                socket.take_like(&mut events, BATCH);
                handle(&node, &socket, events).await;
            }
            Job::Notice { subject, payload } => node.publish(subject, payload).await,
        }
        match socket.next_job() {
            Some(next) => job = next,
            None => break,
        }
    }
    // Handed over meanwhile: its new gateway may go on with its events.
    // Sent through this gateway's own `P.gw` subject, which forwards it:
    // behind what the handlers sent the socket there before their Done.
    if socket.moved_to().is_some() {
        let action = SocketCommand::Settled;
        node.command(
            node.id,
            &Command::Socket {
                socket: socket.id,
                action,
            },
        );
    }
}

/// The gateway a socket was handed over by finished its events (or is
/// given up on): its queue here goes on.
pub(crate) fn settled(node: &Arc<Node>, socket: &Arc<Socket>) {
    if socket.settle() {
        resume(node, socket);
    }
}

/// Goes on with a socket's queue that was held.
pub(crate) fn resume(node: &Arc<Node>, socket: &Arc<Socket>) {
    if let Some(job) = socket.next_job() {
        tokio::spawn(drive(node.clone(), socket.clone(), job));
    }
}

/// Most handed over together: enough to spread a round trip to the
/// workers over many events, small enough for one NATS message.
const BATCH: crate::queue::Bounds = crate::queue::Bounds {
    jobs: crate::replies::BATCH,
    bytes: 64 << 10,
};

/// Events handed over together, and what became of each so far.
struct Batch {
    events: Vec<Event<'static>>,
    acks: Vec<AckTo>,
    /// How many have finished, from the first.
    done: usize,
    unordered: bool,
}

/// Hands events over and answers their clients.
async fn handle(node: &Arc<Node>, socket: &Arc<Socket>, events: Vec<Event<'static>>) {
    let acks = events
        .iter()
        .map(|e| AckTo::new(socket.clone(), e.id))
        .collect();
    let mut batch = Batch {
        events,
        acks,
        done: 0,
        unordered: false,
    };
    let result = hand_over(node, socket, &mut batch).await;
    if batch.unordered {
        if let Some(first) = batch.events.first() {
            node.learn_unordered(&socket.ns, first.name());
        }
    }
    match result {
        Ok((listener, base)) => {
            if batch.acks.iter().any(|a| a.id.is_some()) {
                // Handlers returned without their acks: they may still
                // make them.
                let acks = batch.acks.split_off(base);
                tokio::spawn(late(node.clone(), listener, acks));
            }
        }
        Err(why) => {
            let left = batch.events.len() - batch.done;
            tracing::debug!(ns = %socket.ns, left, %why, "events not handled");
            for ack in batch.acks.iter_mut().skip(batch.done) {
                node.metrics.event(why.code());
                ack.refuse(node, why);
            }
        }
    }
}

/// Hands the batch's unfinished events to the workers until they are
/// done, or their bounds are spent. Returns the last hand-over's reply
/// subject and the index its events start at.
async fn hand_over(
    node: &Arc<Node>,
    socket: &Socket,
    batch: &mut Batch,
) -> Result<(Listener, usize), Unhandled> {
    let config = &node.config;
    let Some(first) = batch.events.first() else {
        return Err(Unhandled::Internal);
    };
    let subject = node.subjects.event(&socket.ns, first.name());
    let lease_ms = u32::try_from(config.event_lease).unwrap_or(u32::MAX);
    let deadline = Instant::now() + ms(config.event_timeout);
    // Every hand-over after the first is another attempt, whatever made
    // it, so that a handler that sees one twice can tell; only leases
    // that ran out count against `--event-attempts`.
    let mut attempt = 0;
    let mut silent = 0;
    loop {
        if !node.bus_ready(deadline).await {
            return Err(Unhandled::BusUnavailable);
        }
        attempt += 1;
        if attempt > 1 {
            let again = batch.events.len() - batch.done;
            node.metrics.redeliveries.inc_by(again as u64);
        }
        let base = batch.done;
        let rest = batch.events.get(base..).unwrap_or_default();
        let payload = match socket.events(
            rest,
            Delivery {
                attempt,
                lease_ms,
                holder: holder(node, socket),
            },
        ) {
            Ok(payload) => Bytes::from(payload),
            Err(error) => {
                tracing::error!(%error, "cannot encode an events envelope");
                return Err(Unhandled::Internal);
            }
        };
        let mut listener = node.replies.listen();
        let reply = listener.subject.clone();
        let sent = node.bus.publish_with_reply(subject.clone(), reply, payload);
        match tokio::time::timeout_at(deadline, sent).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::debug!(%error, "events not published");
                node.metrics.bus_errors.inc();
                if Instant::now() >= deadline {
                    return Err(Unhandled::BusUnavailable);
                }
                tokio::time::sleep(PUBLISH_RETRY).await;
                continue;
            }
            Err(_) => return Err(Unhandled::BusUnavailable),
        }
        match listen(node, &mut listener, batch, base).await {
            Heard::Done => return Ok((listener, base)),
            Heard::NoResponders if node.settling() && Instant::now() < deadline => {
                // Workers may still be reconnecting.
                tokio::time::sleep(SETTLE_RETRY).await;
            }
            Heard::NoResponders => return Err(Unhandled::NoWorker),
            Heard::Silent => {
                silent += 1;
                if silent >= config.event_attempts {
                    return Err(Unhandled::WorkerLost);
                }
            }
        }
    }
}

enum Heard {
    /// Every event of the batch finished.
    Done,
    /// Nobody is subscribed to the events' subject.
    NoResponders,
    /// The lease ran out without a word.
    Silent,
}

/// Listens to one hand-over (of the batch's events from `base`) until all
/// are done or the worker is silent a lease long.
///
/// A lease that runs out while the bus is away, or just after it came
/// back, is given again once the bus is up: the worker could not speak,
/// and what it said meanwhile (its emits, then its `Done`) is on its way
/// as it reconnects. Handing the events to another worker then would run
/// them twice and let the first worker's late emits arrive after the
/// second's, out of order.
async fn listen(
    node: &Arc<Node>,
    listener: &mut Listener,
    batch: &mut Batch,
    base: usize,
) -> Heard {
    let lease = ms(node.config.event_lease);
    while batch.done < batch.events.len() {
        let message = match tokio::time::timeout(lease, listener.rx.recv()).await {
            Ok(Some(message)) => message,
            Ok(None) => return Heard::Silent,
            Err(_) if node.unsettled() => {
                let until = Instant::now() + ms(node.config.event_timeout);
                if !node.bus_ready(until).await {
                    return Heard::Silent;
                }
                continue;
            }
            Err(_) => return Heard::Silent,
        };
        if message.no_responders {
            return Heard::NoResponders;
        }
        match envelope::decode_owned::<EventReply>(&message.payload) {
            Ok(reply) => batch.hear(node, reply, base),
            Err(error) => tracing::warn!(%error, "unreadable event reply"),
        }
    }
    Heard::Done
}

impl Batch {
    /// What a worker said about the events from `base`.
    fn hear(&mut self, node: &Arc<Node>, reply: EventReply, base: usize) {
        match reply {
            EventReply::Working => {}
            EventReply::Ack { index, ack } => {
                let at = usize::try_from(index).map_or(usize::MAX, |i| base.saturating_add(i));
                if let Some(to) = self.acks.get_mut(at) {
                    to.answer(node, ack);
                }
            }
            EventReply::Done {
                first,
                outcomes,
                unordered,
            } => {
                self.unordered |= unordered;
                let first = usize::try_from(first).map_or(usize::MAX, |i| base.saturating_add(i));
                for (at, outcome) in (first..).zip(outcomes) {
                    // Only the next one counts: a repeat or a gap is a
                    // confused worker, and the lease decides.
                    if at != self.done {
                        continue;
                    }
                    let Some(to) = self.acks.get_mut(at) else {
                        break;
                    };
                    if let Some(ack) = outcome.ack {
                        to.answer(node, ack);
                    }
                    if outcome.failed {
                        node.metrics.event(Unhandled::HandlerFailed.code());
                        to.refuse(node, Unhandled::HandlerFailed);
                    } else {
                        node.metrics.event("handled");
                    }
                    self.done += 1;
                }
            }
        }
    }
}

/// Waits up to `--ack-timeout` for acks handlers make after returning;
/// `acks` are those of the last hand-over's events.
async fn late(node: Arc<Node>, mut listener: Listener, mut acks: Vec<AckTo>) {
    let until = Instant::now() + ms(node.config.ack_timeout);
    while acks.iter().any(|a| a.id.is_some()) {
        let Ok(Some(message)) = tokio::time::timeout_at(until, listener.rx.recv()).await else {
            break;
        };
        if let Ok(EventReply::Ack { index, ack }) = envelope::decode_owned(&message.payload) {
            let at = usize::try_from(index).unwrap_or(usize::MAX);
            if let Some(to) = acks.get_mut(at) {
                to.answer(&node, ack);
            }
        }
    }
    for _ in acks.iter().filter(|a| a.id.is_some()) {
        node.metrics.drop("ack_unanswered");
    }
}

/// The ack a client asked for, answered at most once.
struct AckTo {
    socket: Arc<Socket>,
    id: Option<u64>,
    since: std::time::Instant,
}

impl AckTo {
    fn new(socket: Arc<Socket>, id: Option<u64>) -> Self {
        Self {
            socket,
            id,
            since: std::time::Instant::now(),
        }
    }

    fn answer(&mut self, node: &Arc<Node>, reply: AckReply) {
        let Some(id) = self.id.take() else { return };
        let elapsed = self.since.elapsed().as_secs_f64();
        node.metrics.ack_rtt.observe(elapsed);
        let attachments = (!reply.attachments.is_empty()).then_some(reply.attachments);
        self.send(node, id, reply.data, attachments);
    }

    fn refuse(&mut self, node: &Arc<Node>, why: Unhandled) {
        if let Some(id) = self.id.take() {
            self.send(node, id, why.ack_data(), None);
        }
    }

    fn send(&self, node: &Arc<Node>, id: u64, data: String, attachments: Option<Vec<Bytes>>) {
        let ack = Ack {
            id,
            data: data.into(),
            attachments,
        };
        let packet = Packet::new(self.socket.ns.clone(), Kind::Ack(ack));
        if self.socket.moved_to().is_some() {
            // Handed over: to its new gateway.
            node.send_to(&self.socket, &crate::socket::frames(&packet));
        } else if !self.socket.is_gone() {
            node.send_packet(&self.socket.session, &packet);
        }
    }
}
