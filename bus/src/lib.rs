//! The bus between gateways and workers: a narrow trait (publish,
//! subscribe, queue-subscribe, request/reply) with a NATS implementation
//! and an in-process one, the embedded default. Subjects and envelopes come
//! from `sio-protocol`; nothing here knows about Socket.IO.
//!
//! Skeleton: the trait and both implementations arrive with the gateway.

#![forbid(unsafe_code)]

pub use sio_protocol::{envelope, subject};
