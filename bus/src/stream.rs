//! A stream on the bus's durable layer (NATS JetStream): what was
//! published on some subjects, kept for a while and read back in the
//! order the server took it.

use std::fmt::Debug;
use std::time::{Duration, SystemTime};

use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;

use crate::{Error, Message};

/// How a stream is made when it is missing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamConfig {
    /// Letters, digits, `-` and `_`.
    pub name: String,
    /// The subjects it keeps (wildcards allowed).
    pub subjects: Vec<String>,
    /// Copies in a NATS cluster (1 on one server).
    pub replicas: usize,
    /// How long a message is kept.
    pub max_age: Duration,
    /// The most it keeps in all; the oldest go first.
    pub max_bytes: u64,
}

/// Messages read back, oldest first.
pub type Replay = BoxStream<'static, Result<Message, Error>>;

pub trait Stream: Send + Sync + Debug + 'static {
    /// Everything kept on any of `subjects` since `since`, oldest first,
    /// then what arrives after, for as long as the replay is read.
    fn replay(
        &self,
        subjects: Vec<String>,
        since: SystemTime,
    ) -> BoxFuture<'_, Result<Replay, Error>>;
}
