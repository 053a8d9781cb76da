//! The worker SDK: register handlers per namespace and event, receive
//! typed arguments, answer acknowledgements, emit to rooms and sockets.
//! An [`Emitter`] does the emitting part for any process on the bus.
//!
//! Workers are stateless: everything a handler needs (socket id, namespace,
//! handshake, socket data, rooms) arrives with each event, so any number
//! of workers can serve the same gateways.
//!
//! ```no_run
//! use std::sync::Arc;
//! use sio_worker::{Socket, Worker};
//!
//! # async fn run(bus: Arc<dyn sio_bus::Bus>) -> Result<(), sio_worker::Error> {
//! let mut worker = Worker::new();
//! worker.of("/").on("chat", |socket: Socket, (text,): (String,)| async move {
//!     socket.to("lobby").emit("chat", &(socket.id().to_string(), text)).await
//! });
//! worker.run(bus).await
//! # }
//! ```

#![forbid(unsafe_code)]

mod args;
mod emitter;
mod error;
mod socket;
mod worker;

pub use args::RawArgs;
pub use emitter::{Emitter, Operators};
pub use error::Error;
pub use sio_protocol::envelope::{DisconnectReason, Handshake};
pub use sio_protocol::id::SocketId;
pub use socket::Socket;
pub use worker::{ConnectError, HandlerResult, Namespace, Running, Worker};
