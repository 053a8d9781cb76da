//! The Engine.IO transports, polling and websocket. Both read packets into
//! the session ([`Session::receive`](crate::session::Session::receive)) and
//! hand what goes up to the Socket.IO dispatch: the one seam between the
//! two layers.

pub(crate) mod polling;
pub(crate) mod websocket;

use std::sync::Arc;

use sio_protocol::engineio::Packet;

use crate::client::Client;
use crate::dispatch;
use crate::node::Node;
use crate::session::Inbound;

/// Handles one Engine.IO packet from the client's active transport.
pub(crate) async fn receive(node: &Arc<Node>, client: &Arc<Client>, packet: Packet<'_>) {
    let session = &client.session;
    let pong = matches!(packet, Packet::Pong(_));
    match session.receive(packet, node.now(), node.config.ping_interval) {
        Inbound::Message(text) => dispatch::message(node, client, &text).await,
        Inbound::Binary(data) => dispatch::binary(node, client, data).await,
        Inbound::Close(fault) => node.close(session, fault),
        Inbound::Nothing if pong => node.schedule(client),
        Inbound::Nothing => {}
    }
}
