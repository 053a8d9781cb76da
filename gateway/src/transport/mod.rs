//! The Engine.IO transports. Both hand decoded packets to [`on_packet`]
//! and [`on_binary`]; neither knows about Socket.IO.

pub(crate) mod polling;
pub(crate) mod websocket;

use std::sync::Arc;

use bytes::Bytes;
use sio_protocol::engineio::Packet;
use sio_protocol::envelope::DisconnectReason;

use crate::gateway::Shared;
use crate::session::Session;
use crate::socket;

/// Handles one Engine.IO packet from the client's active transport.
pub(crate) async fn on_packet(shared: &Arc<Shared>, session: &Arc<Session>, packet: Packet<'_>) {
    match packet {
        Packet::Pong(_) => shared.ponged(session),
        Packet::Message(text) => match socket::decode_text(session, &text) {
            Ok(Some(packet)) => shared.on_socket_packet(session, packet).await,
            Ok(None) => {}
            Err(error) => parse_error(shared, session, &error),
        },
        Packet::Binary(data) => on_binary(shared, session, Bytes::from(data.into_owned())).await,
        Packet::Close => shared.close_session(session, DisconnectReason::TransportClose),
        // In Engine.IO v4 only the server pings (probes travel on the
        // upgrading websocket, before it carries the session).
        Packet::Ping(_) => shared.close_session(session, DisconnectReason::TransportError),
        Packet::Open(_) | Packet::Upgrade | Packet::Noop => {}
    }
}

/// Handles a binary message: the next attachment of a binary packet.
pub(crate) async fn on_binary(shared: &Arc<Shared>, session: &Arc<Session>, data: Bytes) {
    match socket::decode_binary(session, data) {
        Ok(Some(packet)) => shared.on_socket_packet(session, packet).await,
        Ok(None) => {}
        Err(error) => parse_error(shared, session, &error),
    }
}

fn parse_error(shared: &Arc<Shared>, session: &Session, error: &dyn std::error::Error) {
    tracing::debug!(sid = %session.sid, %error, "closing session on a bad packet");
    shared.metrics.drop("parse_error");
    shared.close_session(session, DisconnectReason::ParseError);
}
