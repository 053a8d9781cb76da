//! Harness for the cross-crate tests: real `nats-server` processes on free
//! loopback ports, gateways on free ports, and raw wire clients that speak
//! Engine.IO / Socket.IO without a client library.

#![forbid(unsafe_code)]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

pub mod harness;
pub mod nats;
pub mod nginx;
pub mod order;
pub mod process;
pub mod proxy;
pub mod raw;

pub use harness::{BusKind, TestGateway, test_config};
pub use nats::NatsServer;
