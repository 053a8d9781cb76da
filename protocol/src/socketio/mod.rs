//! Socket.IO v5: namespaces, events and acks on top of Engine.IO messages.
//!
//! A [`Packet`] is decoded from the text of an Engine.IO message; binary
//! packets announce N attachments that follow as N binary messages, which
//! the incremental [`Decoder`] collects. JSON data stays raw, validated
//! text (see [`json`]): the gateway forwards it to workers without building
//! a tree, and only the worker parses it into the handler's types.

pub mod binary;
mod decoder;
mod error;
pub mod json;
mod packet;
pub mod recovery;

pub use decoder::Decoder;
pub use error::Error;
pub use packet::{Ack, Event, Kind, Packet, PacketType};

/// The protocol revision this crate implements.
pub const PROTOCOL_VERSION: u8 = 5;

/// The default namespace.
pub const DEFAULT_NAMESPACE: &str = "/";

/// Event names a client may not emit: they mean something to the
/// libraries on either side.
pub const RESERVED_EVENTS: [&str; 6] = [
    "connect",
    "connect_error",
    "disconnect",
    "disconnecting",
    "newListener",
    "removeListener",
];

/// The default bound on attachments in one binary packet. Each attachment
/// is itself bounded by the Engine.IO `maxPayload`.
pub const DEFAULT_MAX_ATTACHMENTS: usize = 64;
