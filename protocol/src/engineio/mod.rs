//! Engine.IO v4: the transport layer under Socket.IO.
//!
//! A session speaks [`Packet`]s, put on the wire once as [`Frame`]s. Over
//! websocket each frame is one message; over HTTP long-polling packets travel in a [`payload`]
//! separated by `\x1e`, binary ones as `b` + base64. The handshake is an
//! `open` packet carrying a [`Handshake`]; request-level failures are
//! [`ErrorCode`]s with their HTTP status.

mod error;
mod frame;
mod handshake;
mod packet;
pub mod payload;

pub use error::{Error, ErrorCode};
pub use frame::{Frame, is_message};
pub use handshake::Handshake;
pub use packet::Packet;

/// The protocol revision this crate implements (`EIO=4` in the query).
pub const PROTOCOL_VERSION: u8 = 4;
