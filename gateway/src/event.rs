//! Client events on their way to the workers (`P.ev`): each socket's one at
//! a time and in order, each held by one worker under a lease, handed to
//! another when that worker goes silent, and answered with an error ack
//! when none handles it.
//!
//! An event goes out with a reply subject of this gateway's inbox. The
//! worker that takes it says `Working` every third of the lease while the
//! handler runs, sends the ack when the handler makes it, and `Done` when
//! the handler returns; only then does the socket's next event go out, so
//! its handlers run one after another whichever worker takes each. A
//! lease that runs out hands the event to the queue group again, with the
//! next attempt number; after `--event-attempts`, or with nobody
//! subscribed, or with the bus down past `--event-timeout`, a client that
//! asked for an ack gets the error ack of [`Unhandled`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use sio_bus::{Message, Subscription};
use sio_protocol::envelope::{self, AckReply, Delivery, EventReply};
use sio_protocol::socketio::{Ack, Event, Kind, Packet};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::client::Client;
use crate::config::ms;
use crate::fault::{Fault, Unhandled};
use crate::node::Node;
use crate::queue::{Job, Push};
use crate::socket::Socket;

/// How often a no-responders answer is retried just after the bus came
/// back, while workers reconnect too.
const SETTLE_RETRY: Duration = Duration::from_millis(100);
/// The pause before a publish that failed is tried again.
const PUBLISH_RETRY: Duration = Duration::from_millis(50);

/// Answers to the events this gateway handed over: one subscription on
/// `<inbox>.*`, each event listening on a token of its own.
#[derive(Debug)]
pub(crate) struct Replies {
    inbox: String,
    next: AtomicU64,
    listening: Mutex<HashMap<u64, mpsc::Sender<Message>>>,
}

/// One hand-over's reply subject and what arrives on it; stops listening
/// when dropped.
#[derive(Debug)]
struct Listener {
    replies: Arc<Replies>,
    token: u64,
    subject: String,
    rx: mpsc::Receiver<Message>,
}

impl Replies {
    pub(crate) fn new(inbox: String) -> Self {
        Self {
            inbox,
            next: AtomicU64::new(0),
            listening: Mutex::default(),
        }
    }

    /// The subject this gateway's subscription covers.
    pub(crate) fn subject(&self) -> String {
        format!("{}.*", self.inbox)
    }

    fn listening(&self) -> std::sync::MutexGuard<'_, HashMap<u64, mpsc::Sender<Message>>> {
        self.listening.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn listen(self: &Arc<Self>) -> Listener {
        let token = self.next.fetch_add(1, Ordering::Relaxed);
        // A worker says a few things per hand-over; more are dropped and
        // the lease decides.
        let (tx, rx) = mpsc::channel(4);
        self.listening().insert(token, tx);
        Listener {
            replies: self.clone(),
            token,
            subject: format!("{}.{token}", self.inbox),
            rx,
        }
    }

    fn route(&self, message: Message) {
        let token = message
            .subject
            .rsplit('.')
            .next()
            .and_then(|t| t.parse().ok());
        let Some(tx) = token.and_then(|t| self.listening().get(&t).cloned()) else {
            return;
        };
        let _ = tx.try_send(message);
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.replies.listening().remove(&self.token);
    }
}

/// Routes what arrives on the inbox until the bus closes.
pub(crate) async fn serve(replies: Arc<Replies>, mut sub: Subscription) {
    while let Some(message) = sub.next().await {
        replies.route(message);
    }
}

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
        let Ok(payload) = socket.event(&event, Delivery::default()) else {
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
        handle(&node, &socket, event).await;
        drop(slot);
    });
}

/// Hands a socket's jobs over one after another until none is left.
async fn drive(node: Arc<Node>, socket: Arc<Socket>, mut job: Job) {
    loop {
        match job {
            Job::Event(event) => handle(&node, &socket, event).await,
            Job::Notice { subject, payload } => node.publish(subject, payload).await,
        }
        match socket.next_job() {
            Some(next) => job = next,
            None => return,
        }
    }
}

/// Hands one event over and answers its client.
async fn handle(node: &Arc<Node>, socket: &Arc<Socket>, event: Event<'static>) {
    let mut ack = AckTo::new(socket.clone(), event.id);
    let finished = match hand_over(node, socket, &event, &mut ack).await {
        Ok(finished) => finished,
        Err(why) => {
            tracing::debug!(ns = %socket.ns, event = event.name(), %why, "event not handled");
            node.metrics.event(why.code());
            ack.refuse(node, why);
            return;
        }
    };
    if finished.unordered {
        node.learn_unordered(&socket.ns, event.name());
    }
    if finished.failed {
        node.metrics.event(Unhandled::HandlerFailed.code());
        ack.refuse(node, Unhandled::HandlerFailed);
        return;
    }
    node.metrics.event("handled");
    if ack.id.is_some() {
        // The handler returned without its ack: it may still make it.
        tokio::spawn(late(node.clone(), finished.listener, ack));
    }
}

/// What the worker said when the handler returned.
struct Finished {
    failed: bool,
    unordered: bool,
    listener: Listener,
}

/// Hands `event` to the workers until one says it is done, or the event's
/// bounds are spent.
async fn hand_over(
    node: &Arc<Node>,
    socket: &Socket,
    event: &Event<'static>,
    ack: &mut AckTo,
) -> Result<Finished, Unhandled> {
    let config = &node.config;
    let subject = node.subjects.event(&socket.ns, event.name());
    let lease_ms = u32::try_from(config.event_lease).unwrap_or(u32::MAX);
    let mut delivery = Delivery {
        attempt: 1,
        lease_ms,
    };
    let mut payload = match socket.event(event, delivery) {
        Ok(payload) => Bytes::from(payload),
        Err(error) => {
            tracing::error!(%error, "cannot encode an event envelope");
            return Err(Unhandled::Internal);
        }
    };
    let deadline = Instant::now() + ms(config.event_timeout);
    loop {
        if !node.bus_ready(deadline).await {
            return Err(Unhandled::BusUnavailable);
        }
        let mut listener = node.replies.listen();
        let reply = listener.subject.clone();
        let sent = node
            .bus
            .publish_with_reply(subject.clone(), reply, payload.clone());
        match tokio::time::timeout_at(deadline, sent).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::debug!(%error, "event not published");
                node.metrics.bus_errors.inc();
                tokio::time::sleep(PUBLISH_RETRY).await;
                continue;
            }
            Err(_) => return Err(Unhandled::BusUnavailable),
        }
        match listen(node, &mut listener, ack).await {
            Heard::Done { failed, unordered } => {
                return Ok(Finished {
                    failed,
                    unordered,
                    listener,
                });
            }
            Heard::NoResponders if node.settling() && Instant::now() < deadline => {
                // Workers may still be reconnecting: the same attempt again.
                tokio::time::sleep(SETTLE_RETRY).await;
                continue;
            }
            Heard::NoResponders => return Err(Unhandled::NoWorker),
            Heard::Silent => {}
        }
        if delivery.attempt >= config.event_attempts {
            return Err(Unhandled::WorkerLost);
        }
        let next = Delivery {
            attempt: delivery.attempt + 1,
            lease_ms,
        };
        payload = match delivery.rewrite(&payload, next) {
            Ok(payload) => Bytes::from(payload),
            Err(error) => {
                tracing::error!(%error, "cannot re-encode an event envelope");
                return Err(Unhandled::Internal);
            }
        };
        delivery = next;
        node.metrics.redeliveries.inc();
    }
}

enum Heard {
    Done {
        failed: bool,
        unordered: bool,
    },
    /// Nobody is subscribed to the event's subject.
    NoResponders,
    /// The lease ran out without a word.
    Silent,
}

/// Listens to one hand-over until the worker is done or silent a lease
/// long; passes its ack on to the client.
async fn listen(node: &Arc<Node>, listener: &mut Listener, ack: &mut AckTo) -> Heard {
    let lease = ms(node.config.event_lease);
    loop {
        let Ok(Some(message)) = tokio::time::timeout(lease, listener.rx.recv()).await else {
            return Heard::Silent;
        };
        if message.no_responders {
            return Heard::NoResponders;
        }
        match envelope::decode_owned::<EventReply>(&message.payload) {
            Ok(EventReply::Working) => {}
            Ok(EventReply::Ack(reply)) => ack.answer(node, reply),
            Ok(EventReply::Done {
                ack: reply,
                failed,
                unordered,
            }) => {
                if let Some(reply) = reply {
                    ack.answer(node, reply);
                }
                return Heard::Done { failed, unordered };
            }
            Err(error) => tracing::warn!(%error, "unreadable event reply"),
        }
    }
}

/// Waits up to `--ack-timeout` for an ack a handler makes after returning.
async fn late(node: Arc<Node>, mut listener: Listener, mut ack: AckTo) {
    let until = Instant::now() + ms(node.config.ack_timeout);
    while let Ok(Some(message)) = tokio::time::timeout_at(until, listener.rx.recv()).await {
        if let Ok(EventReply::Ack(reply)) = envelope::decode_owned(&message.payload) {
            ack.answer(&node, reply);
            return;
        }
    }
    node.metrics.drop("ack_unanswered");
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
        if self.socket.is_gone() {
            return;
        }
        let ack = Ack {
            id,
            data: data.into(),
            attachments,
        };
        let packet = Packet::new(self.socket.ns.clone(), Kind::Ack(ack));
        node.send_packet(&self.socket.session, &packet);
    }
}
