//! `P.ctl`: the cluster operations every gateway answers for its own
//! sockets (fetchSockets, socketsJoin/Leave, disconnectSockets, broadcast
//! with acks, presence).

use std::sync::{Arc, Weak};

use sio_protocol::envelope::{self, ControlReply, ControlRequest, ControlResult, Selector};

use crate::command::emit_with_ack;
use crate::config::ms;
use crate::delivery;
use crate::node::Node;
use crate::presence;
use crate::socket::Socket;

/// Serves `P.ctl` until the bus goes away.
pub(crate) async fn serve(node: Weak<Node>, mut sub: sio_bus::Subscription) {
    while let Some(message) = sub.next().await {
        let Some(node) = node.upgrade() else {
            return;
        };
        let Some(reply) = message.reply else { continue };
        let request = match envelope::decode_owned::<ControlRequest>(&message.payload) {
            Ok(request) => request,
            Err(error) => {
                tracing::error!(%error, "bad control envelope");
                node.metrics.drop("bad_envelope");
                continue;
            }
        };
        tokio::spawn(async move {
            let body = on_control(&node, request).await;
            let answer = ControlReply {
                gateway: node.id,
                body,
            };
            if let Ok(bytes) = envelope::encode(&answer) {
                node.publish(reply, bytes.into()).await;
            }
        });
    }
}

fn select(node: &Node, selector: &Selector) -> Vec<Arc<Socket>> {
    node.registry
        .select(&selector.ns, &selector.rooms, &selector.except)
}

async fn on_control(node: &Arc<Node>, request: ControlRequest) -> ControlResult {
    let done = |n: usize| ControlResult::Done {
        sockets: u64::try_from(n).unwrap_or(u64::MAX),
    };
    match request {
        ControlRequest::Presence => {
            ControlResult::Presence(presence::presence(node, &node.config.listen.to_string()))
        }
        ControlRequest::FetchSockets(selector) => ControlResult::Sockets(
            select(node, &selector)
                .iter()
                .filter_map(|s| s.context().ok())
                .collect(),
        ),
        ControlRequest::SocketsJoin { selector, rooms } => {
            let sockets = select(node, &selector);
            for socket in &sockets {
                delivery::join(node, socket, &rooms).await;
            }
            done(sockets.len())
        }
        ControlRequest::SocketsLeave { selector, rooms } => {
            let sockets = select(node, &selector);
            for socket in &sockets {
                node.registry.leave(socket, &rooms);
                node.record(socket);
            }
            done(sockets.len())
        }
        ControlRequest::DisconnectSockets { selector, close } => {
            let sockets = select(node, &selector);
            for socket in &sockets {
                node.disconnect(socket, close);
            }
            done(sockets.len())
        }
        ControlRequest::BroadcastWithAck {
            selector,
            data,
            attachments,
            timeout_ms,
        } => {
            let sockets = select(node, &selector);
            let expected = u64::try_from(sockets.len()).unwrap_or(u64::MAX);
            let answers: Vec<_> = sockets
                .iter()
                .map(|socket| emit_with_ack(node, socket, &data, &attachments))
                .collect();
            let deadline = tokio::time::Instant::now() + ms(timeout_ms);
            let mut acks = Vec::new();
            for (socket, answer) in sockets.iter().zip(answers) {
                let Some((id, answer)) = answer else { continue };
                match tokio::time::timeout_at(deadline, answer).await {
                    Ok(Ok(reply)) => acks.push(reply),
                    _ => socket.forget_ack(id),
                }
            }
            ControlResult::Acks { acks, expected }
        }
    }
}
