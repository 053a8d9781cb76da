#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod args;
mod emitter;
mod error;
mod presence;
mod socket;
mod worker;

pub use args::RawArgs;
pub use emitter::{Emitter, Operators, RemoteSocket};
pub use error::Error;
pub use sio_protocol::envelope::{DisconnectReason, Handshake};
pub use sio_protocol::id::SocketId;
pub use socket::Socket;
pub use worker::{ConnectError, HandlerResult, Namespace, Running, Worker};
