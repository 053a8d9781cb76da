//! The bus between gateways and workers.
//!
//! A narrow, object-safe [`Bus`] trait (publish, subscribe, queue-subscribe,
//! request/reply, scatter/gather) with two implementations that behave the
//! same: [`NatsBus`] over a real NATS server, and [`MemoryBus`], the
//! embedded default that runs gateway and workers in one process with no
//! server. Subjects and envelopes come from `sio-protocol`; nothing here
//! knows about Socket.IO.
//!
//! Both follow NATS semantics: `*` matches one subject token and `>` the
//! rest; a queue group delivers each message to one of its members; a
//! subscriber that does not keep up loses messages (counted) rather than
//! growing memory; a request to a subject nobody listens on fails at once
//! with [`Error::NoResponders`].

#![forbid(unsafe_code)]

mod kv;
mod memory;
mod nats;
mod stream;

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;

pub use kv::{Kv, KvConfig, KvEntry};
pub use memory::MemoryBus;
pub use nats::{NatsBus, NatsOptions};
pub use sio_protocol::{envelope, subject};
pub use stream::{Replay, Stream, StreamConfig};

/// A message as a subscriber receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub subject: String,
    /// Where to send the answer, for requests.
    pub reply: Option<String>,
    pub payload: Bytes,
    /// The server's answer to a message sent with a reply subject that
    /// nobody was subscribed to (NATS status 503); its payload is empty.
    pub no_responders: bool,
}

/// What can go wrong on the bus. Failures of the NATS client keep its
/// error as their [`source`](std::error::Error::source); as elsewhere in
/// sio-nats, the message repeats the cause so that printing the error
/// alone says what happened.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("nobody is subscribed to {0}")]
    NoResponders(String),
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    #[error("the bus connection is closed")]
    Closed,
    #[error("invalid subject {0:?}")]
    InvalidSubject(String),
    /// [`NatsBus::connect`] was given no server URL.
    #[error("no NATS URL given")]
    NoUrl,
    /// A server URL that does not parse.
    #[error("NATS URL {url:?}: {source}")]
    Url {
        url: String,
        #[source]
        source: std::io::Error,
    },
    /// The `.creds` file could not be read or parsed.
    #[error("NATS credentials {}: {source}", path.display())]
    Credentials {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The bus has no durable layer: the in-process bus, whose process
    /// is all there is.
    #[error("the in-process bus keeps nothing")]
    NotDurable,
    /// The server runs without JetStream (or it failed).
    #[error("no JetStream: {0}")]
    NoJetStream(String),
    /// The NATS client failed at `operation`; `source` is its error.
    #[error("NATS {operation}: {source}")]
    Nats {
        operation: Operation,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// The NATS client call an [`Error::Nats`] comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Connect,
    Publish,
    Subscribe,
    Request,
    Flush,
    KeyValue,
    Stream,
}

impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Connect => "connect",
            Self::Publish => "publish",
            Self::Subscribe => "subscribe",
            Self::Request => "request",
            Self::Flush => "flush",
            Self::KeyValue => "key-value",
            Self::Stream => "stream",
        })
    }
}

/// How [`Bus::publish_kept`] has a message kept.
#[derive(Debug, Clone)]
pub struct Keep {
    /// The stream that keeps the subject (when it exists).
    pub stream: String,
    /// The message's id (`Nats-Msg-Id`): the same message sent again is
    /// stored once.
    pub id: String,
    /// How long to go on sending it.
    pub within: Duration,
}

/// Whether the bus can carry messages right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Connected,
    /// Reconnecting: publishes are buffered by the client or fail.
    Disconnected,
}

/// A stream of messages for one subscription; unsubscribes when dropped.
#[derive(Debug)]
pub struct Subscription {
    inner: Inner,
}

#[derive(Debug)]
enum Inner {
    Memory(memory::Receiver),
    Nats(async_nats::Subscriber),
}

impl Subscription {
    /// The next message, or `None` once the bus is gone.
    pub async fn next(&mut self) -> Option<Message> {
        match &mut self.inner {
            Inner::Memory(rx) => rx.recv().await,
            Inner::Nats(sub) => {
                use futures_util::StreamExt as _;
                sub.next().await.map(|m| Message {
                    subject: m.subject.to_string(),
                    reply: m.reply.map(|r| r.to_string()),
                    payload: m.payload,
                    no_responders: m.status == Some(async_nats::StatusCode::NO_RESPONDERS),
                })
            }
        }
    }
}

/// The bus as gateways and workers see it. Object-safe so that either
/// implementation can sit behind `Arc<dyn Bus>`.
pub trait Bus: Send + Sync + std::fmt::Debug + 'static {
    /// Publishes a message; fire and forget.
    fn publish(&self, subject: String, payload: Bytes) -> BoxFuture<'_, Result<(), Error>>;

    /// Publishes a message that expects answers on `reply`. If nobody is
    /// subscribed to `subject`, `reply` receives a message whose
    /// [`Message::no_responders`] is set, as NATS does.
    fn publish_with_reply(
        &self,
        subject: String,
        reply: String,
        payload: Bytes,
    ) -> BoxFuture<'_, Result<(), Error>>;

    /// Publishes a message that a stream of the durable layer may keep (an
    /// emit): while `keep.stream` exists, resolves once it has stored the
    /// message, sent again under `keep.id` (the stream drops a repeat)
    /// until it has, or `keep.within` ran out. Without that stream, and on
    /// the in-process bus, a plain [`Bus::publish`].
    fn publish_kept(
        &self,
        subject: String,
        payload: Bytes,
        keep: Keep,
    ) -> BoxFuture<'_, Result<(), Error>> {
        let _ = keep;
        self.publish(subject, payload)
    }

    /// Receives every message on subjects matching `subject`.
    fn subscribe(&self, subject: String) -> BoxFuture<'_, Result<Subscription, Error>>;

    /// Like [`Bus::subscribe`], but each message goes to one member of `group`.
    fn queue_subscribe(
        &self,
        subject: String,
        group: String,
    ) -> BoxFuture<'_, Result<Subscription, Error>>;

    /// Sends a request and waits for the first answer.
    fn request(
        &self,
        subject: String,
        payload: Bytes,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<Bytes, Error>>;

    /// A fresh subject for answers (an inbox).
    fn new_inbox(&self) -> String;

    /// Resolves once everything sent so far (subscriptions included) has
    /// reached the server, so other connections see it.
    fn flush(&self) -> BoxFuture<'_, Result<(), Error>>;

    /// Whether messages flow right now.
    fn state(&self) -> State;

    /// Opens (creating it if missing) a key-value bucket on the bus's
    /// durable layer: JetStream on NATS; the in-process bus has none.
    fn key_value(&self, config: KvConfig) -> BoxFuture<'_, Result<std::sync::Arc<dyn Kv>, Error>> {
        let _ = config;
        Box::pin(async { Err(Error::NotDurable) })
    }

    /// Opens (creating it if missing) a stream on the bus's durable layer:
    /// JetStream on NATS; the in-process bus has none.
    fn stream(
        &self,
        config: StreamConfig,
    ) -> BoxFuture<'_, Result<std::sync::Arc<dyn Stream>, Error>> {
        let _ = config;
        Box::pin(async { Err(Error::NotDurable) })
    }

    /// Sends a request to many and gathers up to `expected` answers until
    /// `timeout`; fewer answers are not an error (the caller decides).
    fn gather(
        &self,
        subject: String,
        payload: Bytes,
        expected: usize,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<Vec<Bytes>, Error>> {
        Box::pin(async move {
            let inbox = self.new_inbox();
            let mut sub = self.subscribe(inbox.clone()).await?;
            self.publish_with_reply(subject, inbox, payload).await?;
            let mut answers = Vec::with_capacity(expected.min(64));
            let deadline = tokio::time::Instant::now() + timeout;
            while answers.len() < expected {
                match tokio::time::timeout_at(deadline, sub.next()).await {
                    Ok(Some(m)) => answers.push(m.payload),
                    Ok(None) => return Err(Error::Closed),
                    Err(_) => break,
                }
            }
            Ok(answers)
        })
    }
}

impl Subscription {
    /// The next message within `timeout`.
    pub async fn next_within(&mut self, timeout: Duration) -> Result<Message, Error> {
        match tokio::time::timeout(timeout, self.next()).await {
            Ok(Some(m)) => Ok(m),
            Ok(None) => Err(Error::Closed),
            Err(_) => Err(Error::Timeout(timeout)),
        }
    }

    fn memory(rx: memory::Receiver) -> Self {
        Self {
            inner: Inner::Memory(rx),
        }
    }

    fn nats(sub: async_nats::Subscriber) -> Self {
        Self {
            inner: Inner::Nats(sub),
        }
    }
}
