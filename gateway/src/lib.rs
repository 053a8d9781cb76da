//! The gateway: terminates Engine.IO v4 polling and websocket transports
//! for stock Socket.IO clients, owns sessions keyed by sid and the local
//! room index, publishes client events to the bus and delivers emits to
//! its local members. It holds no application logic.

#![forbid(unsafe_code)]

mod cli;
pub mod config;
pub mod logging;

pub use config::Config;
