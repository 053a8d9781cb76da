//! Harness for the cross-crate tests: real `nats-server` processes on free
//! loopback ports, gateways, workers and the stock socket.io client.
//!
//! Skeleton: the harness arrives with the gateway.

#![forbid(unsafe_code)]
