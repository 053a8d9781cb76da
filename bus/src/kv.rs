//! A key-value bucket on the bus's durable layer (NATS JetStream KV): what
//! must outlive the process that wrote it.

use std::fmt::Debug;

use bytes::Bytes;
use futures_util::future::BoxFuture;

use crate::Error;

/// How a bucket is made when it is missing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvConfig {
    /// Letters, digits, `-` and `_`.
    pub bucket: String,
    /// Copies in a NATS cluster (1 on one server).
    pub replicas: usize,
    /// How long a value lives after it was written (`None`: until it is
    /// deleted).
    pub max_age: Option<std::time::Duration>,
}

/// A value and its revision (what [`Kv::claim`] compares).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvEntry {
    pub value: Bytes,
    pub revision: u64,
}

pub trait Kv: Send + Sync + Debug + 'static {
    /// Writes `value` at `key`; returns its revision.
    fn put(&self, key: String, value: Bytes) -> BoxFuture<'_, Result<u64, Error>>;

    /// Removes `key`.
    fn delete(&self, key: String) -> BoxFuture<'_, Result<(), Error>>;

    /// The value at `key`, if any.
    fn get(&self, key: String) -> BoxFuture<'_, Result<Option<KvEntry>, Error>>;

    /// Writes `value` at `key` if its revision is still `revision`: true
    /// for the one writer that got there first.
    fn claim(&self, key: String, value: Bytes, revision: u64)
    -> BoxFuture<'_, Result<bool, Error>>;

    /// Every key that starts with `prefix`.
    fn keys(&self, prefix: String) -> BoxFuture<'_, Result<Vec<String>, Error>>;
}
