//! The worker: handlers per namespace, fed by the bus.
//!
//! A worker queue-subscribes (group `sio-workers` by default) to the
//! connect, event and disconnect subjects of each namespace it handles, so
//! every message reaches exactly one worker of the group. Handlers run
//! concurrently, up to a limit; a failing or panicking handler is logged
//! and the worker goes on.
//!
//! Order: a gateway hands a socket's next events to the workers (a run of
//! one name, in one message) once the handlers of those before have
//! returned; the worker runs them one after another. So one socket's
//! handlers run one at a time, in the order the client sent the events,
//! whichever worker takes each run. While a handler runs, its worker
//! renews the lease on the reply subject; it sends each ack as soon as
//! it is made and says which events are `Done`. A namespace or an event
//! may opt out ([`Namespace::unordered`]).

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::FutureExt as _;
use futures_util::future::BoxFuture;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sio_bus::{Bus, Message, Subscription};
use sio_protocol::envelope::{
    self, ConnectReply, ConnectRequest, Disconnect, DisconnectReason, EventReply,
};
use tokio::sync::Semaphore;

use crate::Error;
use crate::args::{self, RawArgs};
use crate::emitter::Emitter;
use crate::socket::{AckSlot, Socket};

/// A connect refused by a connect handler; the client receives it as
/// `connect_error` with `message` (and `data`, when set).
#[derive(Debug, Clone)]
pub struct ConnectError {
    message: String,
    data: Option<serde_json::Value>,
}

impl ConnectError {
    /// A refusal the client sees as `err.message`.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            data: None,
        }
    }

    /// Extra details the client finds in `err.data`.
    pub fn with_data(mut self, data: impl Serialize) -> Self {
        self.data = serde_json::to_value(data).ok();
        self
    }

    fn to_json(&self) -> String {
        #[derive(Serialize)]
        struct Wire<'a> {
            message: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            data: &'a Option<serde_json::Value>,
        }
        let wire = Wire {
            message: &self.message,
            data: &self.data,
        };
        serde_json::to_string(&wire).unwrap_or_default()
    }
}

/// What a handler may return: nothing, or a result whose error is logged.
/// The error may be this crate's [`Error`] (kept as it is), any other
/// error type (kept as the source of [`Error::Handler`]), or a message
/// (`String`, `&str`).
pub trait HandlerResult: Send {
    /// The handler's outcome as the worker reports it.
    fn into_result(self) -> Result<(), Error>;
}

impl HandlerResult for () {
    fn into_result(self) -> Result<(), Error> {
        Ok(())
    }
}

impl<E> HandlerResult for Result<(), E>
where
    E: Into<Box<dyn std::error::Error + Send + Sync>> + Send,
{
    fn into_result(self) -> Result<(), Error> {
        self.map_err(|e| Error::from_handler(e.into()))
    }
}

type EventHandler = Arc<
    dyn Fn(Socket, &str, &[bytes::Bytes]) -> Result<BoxFuture<'static, Result<(), Error>>, Error>
        + Send
        + Sync,
>;
type ConnectHandler =
    Arc<dyn Fn(Socket) -> BoxFuture<'static, Result<(), ConnectError>> + Send + Sync>;
type DisconnectHandler =
    Arc<dyn Fn(Socket, DisconnectReason) -> BoxFuture<'static, Result<(), Error>> + Send + Sync>;

/// The handlers of one namespace.
#[derive(Default, Clone)]
pub struct Namespace {
    on_connect: Option<ConnectHandler>,
    events: HashMap<String, EventHandler>,
    on_disconnect: Option<DisconnectHandler>,
    unordered: Unordered,
}

/// Which events of a namespace opted out of per-socket order.
#[derive(Debug, Default, Clone)]
enum Unordered {
    #[default]
    None,
    Some(HashSet<String>),
    All,
}

impl std::fmt::Debug for Namespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Namespace")
            .field("events", &self.events.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Namespace {
    /// Runs for each client joining the namespace. On namespaces the
    /// gateway is told to `--authorize`, an `Err` refuses the client and
    /// `set_data`/`join` shape the accepted socket; elsewhere the client is
    /// already in and the handler only hears about it.
    pub fn on_connect<F, Fut>(&mut self, handler: F) -> &mut Self
    where
        F: Fn(Socket) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), ConnectError>> + Send + 'static,
    {
        self.on_connect = Some(Arc::new(move |socket| Box::pin(handler(socket))));
        self
    }

    /// Handles `event`; its arguments arrive as `A` (a tuple such as
    /// `(String, u32)`, `()` for none, or `Vec<serde_json::Value>` for
    /// anything). Answer an acknowledgement with [`Socket::ack`].
    pub fn on<A, F, Fut, R>(&mut self, event: impl Into<String>, handler: F) -> &mut Self
    where
        A: DeserializeOwned + Send + 'static,
        F: Fn(Socket, A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = R> + Send + 'static,
        R: HandlerResult,
    {
        let handler = Arc::new(handler);
        let erased: EventHandler = Arc::new(move |socket, data, attachments| {
            let args: A = args::from_event(data, attachments)?;
            let handler = handler.clone();
            Ok(Box::pin(async move {
                handler(socket, args).await.into_result()
            }))
        });
        self.events.insert(event.into(), erased);
        self
    }

    /// Handles `event` with its arguments untouched, to pass them along
    /// (see [`Socket::emit_raw`] and [`Socket::ack_raw`]).
    pub fn on_raw<F, Fut, R>(&mut self, event: impl Into<String>, handler: F) -> &mut Self
    where
        F: Fn(Socket, RawArgs) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = R> + Send + 'static,
        R: HandlerResult,
    {
        let handler = Arc::new(handler);
        let erased: EventHandler = Arc::new(move |socket, data, attachments| {
            let args = RawArgs::from_event(data, attachments)?;
            let handler = handler.clone();
            Ok(Box::pin(async move {
                handler(socket, args).await.into_result()
            }))
        });
        self.events.insert(event.into(), erased);
        self
    }

    /// Lets these events of one socket run at the same time as its other
    /// events, in any order, for throughput (typing indicators, cursor
    /// positions). Without an ack they also lose the hand-over to another
    /// worker when one dies: the gateway publishes them and forgets them,
    /// once it has heard of the opt-out from a worker's first reply.
    pub fn unordered<I, E>(&mut self, events: I) -> &mut Self
    where
        I: IntoIterator<Item = E>,
        E: Into<String>,
    {
        if let Unordered::None = self.unordered {
            self.unordered = Unordered::Some(HashSet::new());
        }
        if let Unordered::Some(set) = &mut self.unordered {
            set.extend(events.into_iter().map(Into::into));
        }
        self
    }

    /// Opts every event of the namespace out of per-socket order, as
    /// [`Namespace::unordered`] does for some.
    pub fn all_unordered(&mut self) -> &mut Self {
        self.unordered = Unordered::All;
        self
    }

    fn is_unordered(&self, event: &str) -> bool {
        match &self.unordered {
            Unordered::None => false,
            Unordered::Some(set) => set.contains(event),
            Unordered::All => true,
        }
    }

    /// Runs when a socket leaves the namespace, with socket.io's reason.
    pub fn on_disconnect<F, Fut, R>(&mut self, handler: F) -> &mut Self
    where
        F: Fn(Socket, DisconnectReason) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = R> + Send + 'static,
        R: HandlerResult,
    {
        let handler = Arc::new(handler);
        self.on_disconnect = Some(Arc::new(move |socket, reason| {
            let handler = handler.clone();
            Box::pin(async move { handler(socket, reason).await.into_result() })
        }));
        self
    }
}

/// Handlers for any number of namespaces, served from a bus.
#[derive(Debug, Clone)]
pub struct Worker {
    namespaces: HashMap<String, Namespace>,
    concurrency: usize,
    group: String,
    prefix: String,
}

impl Default for Worker {
    fn default() -> Self {
        Self::new()
    }
}

impl Worker {
    /// A worker with no handlers yet.
    pub fn new() -> Self {
        Self {
            namespaces: HashMap::new(),
            concurrency: 1024,
            group: "sio-workers".into(),
            prefix: sio_protocol::subject::Subjects::DEFAULT_PREFIX.into(),
        }
    }

    /// The handlers of namespace `ns` (`"/"` is the default namespace).
    pub fn of(&mut self, ns: impl Into<String>) -> &mut Namespace {
        self.namespaces.entry(ns.into()).or_default()
    }

    /// Most handlers running at once (default 1024).
    pub fn concurrency(mut self, limit: usize) -> Self {
        self.concurrency = limit.max(1);
        self
    }

    /// The queue group workers share (default `sio-workers`).
    pub fn group(mut self, group: impl Into<String>) -> Self {
        self.group = group.into();
        self
    }

    /// The subject prefix of the gateways (default `sio`).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Serves until the bus closes.
    pub async fn run(self, bus: Arc<dyn Bus>) -> Result<(), Error> {
        self.run_until(bus, std::future::pending()).await
    }

    /// Serves until `shutdown` resolves, then leaves the queue group and
    /// waits for the handlers still running.
    pub async fn run_until(
        self,
        bus: Arc<dyn Bus>,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), Error> {
        let running = self.start(bus).await?;
        shutdown.await;
        running.shutdown().await;
        Ok(())
    }

    /// Subscribes and starts serving in the background; when this returns,
    /// the worker receives every message sent from then on.
    pub async fn start(self, bus: Arc<dyn Bus>) -> Result<Running, Error> {
        let emitter = Emitter::with_prefix(bus.clone(), &self.prefix)?;
        let subjects = emitter.subjects.clone();
        let (tx, rx) = tokio::sync::mpsc::channel::<(Kind, Message, String)>(self.concurrency);
        let mut feeds = Vec::new();
        for ns in self.namespaces.keys() {
            let subscriptions = [
                (Kind::Connect, subjects.connect(ns)),
                (Kind::Event, subjects.events(ns)),
                (Kind::Disconnect, subjects.disconnect(ns)),
            ];
            for (kind, subject) in subscriptions {
                let sub = bus.queue_subscribe(subject, self.group.clone()).await?;
                feeds.push(tokio::spawn(feed(sub, kind, ns.clone(), tx.clone())));
            }
        }
        bus.flush().await?;
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let handled = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(dispatch(self, emitter, rx, feeds, stopped, handled.clone()));
        Ok(Running {
            stop,
            task,
            handled,
        })
    }
}

/// A started worker. Dropping it stops the worker too.
#[derive(Debug)]
pub struct Running {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
    handled: Arc<AtomicU64>,
}

impl Running {
    /// Messages this worker has taken so far: connects, disconnects, and
    /// runs of events (one or more events of a socket handed over together).
    pub fn handled(&self) -> u64 {
        self.handled.load(Ordering::Relaxed)
    }

    /// Leaves the queue group, then waits for the handlers still running.
    pub async fn shutdown(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

async fn dispatch(
    worker: Worker,
    emitter: Emitter,
    mut rx: tokio::sync::mpsc::Receiver<(Kind, Message, String)>,
    feeds: Vec<tokio::task::JoinHandle<()>>,
    mut stopped: tokio::sync::oneshot::Receiver<()>,
    handled: Arc<AtomicU64>,
) {
    let limit = Arc::new(Semaphore::new(worker.concurrency));
    let namespaces = Arc::new(worker.namespaces);
    loop {
        let (kind, message, ns) = tokio::select! {
            next = rx.recv() => match next {
                Some(next) => next,
                None => break,
            },
            _ = &mut stopped => break,
        };
        let Ok(permit) = limit.clone().acquire_owned().await else {
            break;
        };
        handled.fetch_add(1, Ordering::Relaxed);
        let Some(handlers) = namespaces.get(&ns).cloned() else {
            continue;
        };
        let emitter = emitter.clone();
        tokio::spawn(async move {
            let served = AssertUnwindSafe(serve(kind, message, &handlers, emitter))
                .catch_unwind()
                .await;
            if served.is_err() {
                tracing::error!(%ns, ?kind, "a handler panicked");
            }
            drop(permit);
        });
    }
    for feed in feeds {
        feed.abort();
    }
    // Every permit back means every handler finished.
    let all = u32::try_from(worker.concurrency).unwrap_or(u32::MAX);
    let _ = limit.acquire_many(all).await;
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Connect,
    Event,
    Disconnect,
}

async fn feed(
    mut sub: Subscription,
    kind: Kind,
    ns: String,
    tx: tokio::sync::mpsc::Sender<(Kind, Message, String)>,
) {
    while let Some(message) = sub.next().await {
        if tx.send((kind, message, ns.clone())).await.is_err() {
            return;
        }
    }
}

/// Serves one message. The one place where a failure leaves the worker:
/// the gateway hears no more of it than that the event's handler failed
/// (a connect it asked about and got no answer for is refused after its
/// timeout), so it becomes a log record, with its source chain and the
/// subject it came on (which names the namespace and event).
async fn serve(kind: Kind, mut message: Message, handlers: &Namespace, emitter: Emitter) {
    let result = match kind {
        Kind::Connect => connect(&mut message, handlers, emitter).await,
        Kind::Event => event(&mut message, handlers, emitter).await,
        Kind::Disconnect => disconnect(&message, handlers, emitter).await,
    };
    let Err(error) = result else {
        return;
    };
    let subject = &message.subject;
    let chain = Chain(&error);
    if matches!(error, Error::Envelope(_)) {
        // A message this worker cannot read (from another version?).
        tracing::error!(?kind, %subject, error = %chain, "bad envelope");
    } else {
        tracing::warn!(?kind, %subject, error = %chain, "handler failed");
    }
}

/// An error and its sources, each cause once: a message that already
/// quotes its source (as this workspace's errors do) is not repeated.
struct Chain<'a>(&'a Error);

impl std::fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut last = self.0.to_string();
        f.write_str(&last)?;
        let mut source = std::error::Error::source(self.0);
        while let Some(cause) = source {
            let text = cause.to_string();
            if !last.contains(&text) {
                write!(f, ": {text}")?;
            }
            last = text;
            source = cause.source();
        }
        Ok(())
    }
}

async fn connect(
    message: &mut Message,
    handlers: &Namespace,
    emitter: Emitter,
) -> Result<(), Error> {
    let request: ConnectRequest = envelope::decode_owned(&message.payload)?;
    let asked = message.reply.is_some();
    let socket = Socket::new(request.socket, emitter.clone(), asked);
    let decision = match &handlers.on_connect {
        Some(handler) => handler(socket.clone()).await,
        None => Ok(()),
    };
    let Some(reply) = message.reply.take() else {
        return match decision {
            Ok(()) => Ok(()),
            Err(refused) => Err(Error::RefusedUnasked(refused.message)),
        };
    };
    let answer = match decision {
        Ok(()) => {
            let accepted = socket.accepted();
            ConnectReply::Accept {
                data: accepted.data,
                rooms: accepted.rooms,
            }
        }
        Err(refused) => ConnectReply::Reject {
            data: refused.to_json(),
        },
    };
    let bytes = envelope::encode(&answer)?;
    Ok(emitter.bus.publish(reply, bytes.into()).await?)
}

/// Serves events a gateway handed over together, one after another in
/// their order. A failing handler is logged here and the next one runs.
async fn event(message: &mut Message, handlers: &Namespace, emitter: Emitter) -> Result<(), Error> {
    let events: envelope::Events<'_> = envelope::decode(&message.payload)?;
    let held = message.reply.take().map(|reply| Held {
        reply,
        lease: Duration::from_millis(u64::from(events.delivery.lease_ms)),
        emitter: &emitter,
    });
    let unordered = events
        .events
        .first()
        .is_some_and(|e| handlers.is_unordered(&e.event));
    let mut outcomes = Vec::new();
    let mut first = 0;
    let mut panicked = None;
    // One renewal clock for the whole run: a run of quick handlers that
    // together outlast the lease renews it too.
    let mut renew = held.as_ref().map(Held::renewals);
    for (index, event) in (0u32..).zip(&events.events) {
        let slot = held
            .as_ref()
            .filter(|_| event.ack)
            .map(|h| AckSlot::new(h.reply.clone(), index));
        let socket = Socket::event(
            events.socket.clone(),
            emitter.clone(),
            slot.clone(),
            events.delivery,
        );
        let run = match handlers.events.get(event.event.as_ref()) {
            Some(handler) => handler(socket, &event.data, &event.attachments),
            None => {
                tracing::debug!(event = %event.event, "no handler");
                Ok(Box::pin(async { Ok(()) }) as BoxFuture<'static, _>)
            }
        };
        let outcome = match (&held, run) {
            (_, Err(error)) => Err(error),
            (None, Ok(run)) => AssertUnwindSafe(run)
                .catch_unwind()
                .await
                .unwrap_or_else(|panic| {
                    panicked = Some(panic);
                    Ok(())
                }),
            (Some(held), Ok(run)) => match held.run(run, slot.as_deref(), renew.as_mut()).await {
                Ok(result) => result,
                Err(panic) => {
                    panicked = Some(panic);
                    Err(Error::Handler("the handler panicked".into()))
                }
            },
        };
        let failed = outcome.is_err();
        if let Err(error) = outcome {
            let subject = &message.subject;
            tracing::warn!(%subject, event = %event.event, error = %Chain(&error), "handler failed");
        }
        let Some(held) = &held else { continue };
        let ack = slot.as_ref().and_then(|s| s.returned());
        // An ack or a failure goes at once; quiet outcomes wait for the
        // next that does, or the end, in one message.
        let urgent = ack.is_some() || failed;
        outcomes.push(envelope::Outcome { ack, failed });
        if urgent {
            held.done(first, std::mem::take(&mut outcomes), unordered)
                .await;
            first = index + 1;
        }
    }
    if let Some(held) = &held {
        if !outcomes.is_empty() {
            held.done(first, outcomes, unordered).await;
        }
    }
    match panicked {
        // Told the gateway; now the dispatch logs it.
        Some(panic) => std::panic::resume_unwind(panic),
        None => Ok(()),
    }
}

/// Events a gateway waits on: the worker renews their lease while a
/// handler runs, sends an ack once made, and says which are done.
struct Held<'a> {
    reply: String,
    lease: Duration,
    emitter: &'a Emitter,
}

type Panic = Box<dyn std::any::Any + Send>;

impl Held<'_> {
    /// A clock that ticks every third of the lease: two renewals may be
    /// late or lost before the gateway gives the events to another worker.
    fn renewals(&self) -> tokio::time::Interval {
        let period = (self.lease / 3).max(Duration::from_millis(1));
        tokio::time::interval_at(tokio::time::Instant::now() + period, period)
    }

    /// Runs one handler, renewing the lease on `renew`'s ticks and sending
    /// its ack as soon as it is made and the handler waits.
    async fn run(
        &self,
        handler: BoxFuture<'static, Result<(), Error>>,
        slot: Option<&AckSlot>,
        mut renew: Option<&mut tokio::time::Interval>,
    ) -> Result<Result<(), Error>, Panic> {
        let mut handler = AssertUnwindSafe(handler).catch_unwind();
        loop {
            tokio::select! {
                biased;
                outcome = &mut handler => return outcome,
                () = made(slot) => {
                    if let Some((index, ack)) = slot.and_then(AckSlot::take) {
                        self.send(&EventReply::Ack { index, ack }).await;
                    }
                }
                () = tick(renew.as_deref_mut()), if !self.lease.is_zero() => {
                    self.send(&EventReply::Working).await;
                }
            }
        }
    }

    async fn done(&self, first: u32, outcomes: Vec<envelope::Outcome>, unordered: bool) {
        let done = EventReply::Done {
            first,
            outcomes,
            unordered,
        };
        self.send(&done).await;
    }

    async fn send(&self, reply: &EventReply) {
        let sent = match envelope::encode(reply) {
            Ok(bytes) => {
                let bus = &self.emitter.bus;
                bus.publish(self.reply.clone(), bytes.into())
                    .await
                    .map_err(Error::from)
            }
            Err(e) => Err(e.into()),
        };
        if let Err(error) = sent {
            tracing::warn!(error = %Chain(&error), "cannot answer the gateway");
        }
    }
}

/// The next tick of the renewal clock; never without one.
async fn tick(renew: Option<&mut tokio::time::Interval>) {
    match renew {
        Some(renew) => {
            renew.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// Resolves when the handler made its ack; never without a slot.
async fn made(slot: Option<&AckSlot>) {
    match slot {
        Some(slot) => slot.made.notified().await,
        None => std::future::pending().await,
    }
}

async fn disconnect(
    message: &Message,
    handlers: &Namespace,
    emitter: Emitter,
) -> Result<(), Error> {
    let disconnect: Disconnect = envelope::decode_owned(&message.payload)?;
    let Some(handler) = &handlers.on_disconnect else {
        return Ok(());
    };
    let socket = Socket::new(disconnect.socket, emitter, false);
    handler(socket, disconnect.reason).await
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    #[test]
    fn a_handler_error_of_this_crate_stays_itself() {
        let result: Result<(), Error> = Err(Error::AckTimeout);
        assert!(matches!(result.into_result(), Err(Error::AckTimeout)));
    }

    #[test]
    fn other_handler_errors_become_the_source() {
        let io = std::io::Error::other("disk full");
        let Err(error) = Err::<(), _>(io).into_result() else {
            panic!("an error");
        };
        assert!(matches!(error, Error::Handler(_)), "{error:?}");
        let source = error
            .source()
            .and_then(|s| s.downcast_ref::<std::io::Error>());
        assert_eq!(
            source.map(ToString::to_string).as_deref(),
            Some("disk full")
        );
        let Err(error) = Err::<(), _>("no such room").into_result() else {
            panic!("an error");
        };
        assert_eq!(error.to_string(), "no such room");
    }

    #[test]
    fn the_log_names_each_cause_once() {
        // Quoted by the message already: not repeated.
        let bus = Error::Bus(sio_bus::Error::Nats {
            operation: sio_bus::Operation::Publish,
            source: Box::new(std::io::Error::other("connection reset")),
        });
        assert_eq!(
            Chain(&bus).to_string(),
            "bus: NATS publish: connection reset"
        );
        // Not quoted: appended.
        #[derive(Debug, thiserror::Error)]
        #[error("cannot load the room")]
        struct Load(#[source] std::io::Error);
        let handler = Error::from_handler(Box::new(Load(std::io::Error::other("disk full"))));
        assert_eq!(
            Chain(&handler).to_string(),
            "cannot load the room: disk full"
        );
    }
}
