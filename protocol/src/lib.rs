//! Sans-IO protocol core of sio-nats.
//!
//! Data flow: a client's bytes arrive at a gateway as Engine.IO
//! [`engineio::Packet`]s (a websocket frame or a polling payload); message
//! packets carry Socket.IO [`socketio::Packet`]s; the gateway wraps events
//! in bus [`envelope`]s and publishes them on the [`subject`]s of the bus
//! contract, where workers pick them up. Emits travel back the same way,
//! carrying an already-encoded packet that the gateway frames once for all
//! its local recipients.
//!
//! Nothing here does I/O or reads a clock: time comes in as arguments,
//! and every decoder returns a typed error instead of panicking.

#![forbid(unsafe_code)]

pub mod engineio;
pub mod envelope;
pub mod id;
pub mod socketio;
pub mod subject;
