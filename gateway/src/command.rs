//! `P.gw.<gateway-id>`: commands for this gateway's sockets (emit, emit
//! with ack, join, leave, disconnect, set data) and broadcasts that target
//! some of them by socket id.

use std::sync::{Arc, Weak};

use sio_protocol::envelope::{self, AckReply, Command, CommandReply, SocketCommand};
use sio_protocol::id::Sid;
use sio_protocol::socketio::{Event, Kind, Packet};
use tokio::sync::oneshot;

use crate::config::ms;
use crate::delivery;
use crate::node::Node;
use crate::socket::{self, Socket};

/// Serves a polling request forwarded by another gateway (the transport
/// layer's, handed in so that this file need not reach up to it).
pub(crate) type Poll = fn(
    Arc<Node>,
    Sid,
    bool,
    bytes::Bytes,
) -> futures_util::future::BoxFuture<'static, CommandReply>;

/// Serves `P.gw.<id>` until the bus goes away.
pub(crate) async fn serve(node: Weak<Node>, mut sub: sio_bus::Subscription, poll: Poll) {
    while let Some(message) = sub.next().await {
        let Some(node) = node.upgrade() else {
            return;
        };
        let command = match envelope::decode_owned::<Command>(&message.payload) {
            Ok(command) => command,
            Err(error) => {
                tracing::error!(%error, "bad command envelope");
                node.metrics.drop("bad_envelope");
                continue;
            }
        };
        // Emits are served in order; anything that waits runs on its own.
        let waits = matches!(
            command,
            Command::Socket {
                action: SocketCommand::EmitWithAck { .. } | SocketCommand::Join { .. },
                ..
            } | Command::Poll { .. }
        );
        let serve = async move {
            let reply = match command {
                Command::Poll { sid, post, body } => poll(node.clone(), sid, post, body).await,
                command => on_command(&node, command).await,
            };
            if let (Some(to), Ok(bytes)) = (message.reply, envelope::encode(&reply)) {
                node.publish(to, bytes.into()).await;
            }
        };
        if waits {
            tokio::spawn(serve);
        } else {
            serve.await;
        }
    }
}

async fn on_command(node: &Arc<Node>, command: Command) -> CommandReply {
    let (socket, action) = match command {
        Command::Broadcast(emit) => {
            delivery::deliver_emit(node, &emit);
            return CommandReply::Done;
        }
        Command::Socket { socket, action } => (socket, action),
        Command::Poll { .. } => return CommandReply::UnknownSocket,
    };
    let Some(socket) = node.registry.socket(&socket) else {
        return CommandReply::UnknownSocket;
    };
    match action {
        SocketCommand::Emit { volatile, packet } => {
            if let Some(frames) = delivery::packet_frames(node, &packet) {
                delivery::deliver(node, &socket, &frames, volatile);
            }
        }
        SocketCommand::EmitWithAck {
            data,
            attachments,
            timeout_ms,
        } => {
            let Some((id, answer)) = emit_with_ack(node, &socket, &data, &attachments) else {
                return CommandReply::Done;
            };
            return match tokio::time::timeout(ms(timeout_ms), answer).await {
                Ok(Ok(reply)) => CommandReply::Ack(reply),
                _ => {
                    socket.forget_ack(id);
                    CommandReply::AckTimeout
                }
            };
        }
        SocketCommand::Join { rooms } => delivery::join(node, &socket, &rooms).await,
        SocketCommand::Leave { rooms } => node.registry.leave(&socket, &rooms),
        SocketCommand::Disconnect { close } => node.disconnect(&socket, close),
        SocketCommand::SetData { data } => socket.set_data(data),
    }
    CommandReply::Done
}

/// Sends a socket an event that asks for an ack; `None` (counted) if the
/// data is not a valid event.
pub(crate) fn emit_with_ack(
    node: &Arc<Node>,
    socket: &Socket,
    data: &str,
    attachments: &[bytes::Bytes],
) -> Option<(u64, oneshot::Receiver<AckReply>)> {
    let binary = (!attachments.is_empty()).then(|| attachments.to_vec());
    let Ok(event) = Event::from_data(data.to_owned().into(), binary) else {
        node.metrics.drop("bad_envelope");
        return None;
    };
    let (id, answer) = socket.expect_ack();
    let packet = Packet::new(socket.ns.clone(), Kind::Event(event.with_id(id)));
    node.send_to(socket, &socket::frames(&packet));
    Some((id, answer))
}
