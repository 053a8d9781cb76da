//! Harness for the cross-crate tests: real `nats-server` processes on free
//! loopback ports, and the buses under test.

#![forbid(unsafe_code)]

pub mod nats;

pub use nats::NatsServer;
