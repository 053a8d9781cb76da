//! Runs what a client's Socket.IO core decides ([`Action`]): the bus
//! requests and publishes, the waits and their bounds. This is the seam
//! the transports hand a session's messages to.

use std::sync::Arc;

use bytes::Bytes;
use sio_protocol::envelope::{self, Command, ConnectReply, DisconnectReason, SocketCommand};
use sio_protocol::socketio::{Kind, Packet};

use crate::client::{Action, Client, error_object, namespace_label};
use crate::config::ms;
use crate::fault::Fault;
use crate::node::Node;
use crate::recover::Catch;
use crate::socket::{self, Socket};
use crate::{delivery, event, recover};

/// A message (Socket.IO text) from the client's transport.
pub(crate) async fn message(node: &Arc<Node>, client: &Arc<Client>, text: &str) {
    let action = client.message(text, node.rules());
    run(node, client, action).await;
}

/// A binary message from the client's transport.
pub(crate) async fn binary(node: &Arc<Node>, client: &Arc<Client>, data: Bytes) {
    let action = client.binary(data, node.rules());
    run(node, client, action).await;
}

async fn run(node: &Arc<Node>, client: &Arc<Client>, action: Action) {
    // Every packet the client completed, whatever it led to.
    if !matches!(action, Action::Pending | Action::Close(Fault::Parse)) {
        node.metrics.packets_in.inc();
    }
    match action {
        Action::Pending | Action::None => {}
        Action::Close(fault) => node.close(&client.session, fault),
        Action::Send(frames) => node.send(&client.session, frames),
        Action::Refuse(frames) => {
            node.metrics.drop("namespace_limit");
            node.send(&client.session, frames);
        }
        Action::Connect {
            socket,
            authorize,
            recovery: None,
        } => connect(node, client, socket, authorize, Catch::default()).await,
        Action::Connect {
            socket,
            authorize,
            recovery: Some(recovery),
        } => {
            // It may wait on other gateways: off the transport's loop, which
            // meanwhile answers pings and writes (the namespace is pending).
            let (node, client) = (node.clone(), client.clone());
            tokio::spawn(async move {
                let restored = recover::restore(&node, &client, &socket, recovery).await;
                match restored {
                    Some((socket, missed)) if node.config.skip_middlewares => {
                        client.decided(&socket.ns);
                        establish(&node, &client, socket, None, Vec::new(), missed).await;
                    }
                    Some((socket, missed)) => {
                        connect(&node, &client, socket, authorize, missed).await;
                    }
                    None => connect(&node, &client, socket, authorize, Catch::default()).await,
                }
            });
        }
        Action::Leave(socket, reason) => node.remove_socket(client, &socket, reason),
        Action::Event { socket, event } => event::submit(node, client, socket, event),
        Action::AckElsewhere { socket, id, reply } => {
            let action = SocketCommand::ClientAck { id, reply };
            let command = Command::Socket {
                socket: socket.id,
                action,
            };
            node.command(socket.id.gateway(), &command);
        }
    }
}

/// Asks the workers (or tells them) of a connect; `missed` is what the
/// client of a recovered socket gets after the reply.
async fn connect(
    node: &Arc<Node>,
    client: &Arc<Client>,
    socket: Arc<Socket>,
    authorize: bool,
    missed: Catch,
) {
    let Ok(payload) = socket.connect_request().map(Bytes::from) else {
        return;
    };
    let subject = node.subjects.connect(&socket.ns);
    if !authorize {
        establish(node, client, socket.clone(), None, Vec::new(), missed).await;
        // Published in the socket's turn: ahead of its events, and never
        // holding up its transport while the bus is away.
        event::notify(node, socket, subject, payload);
        return;
    }
    // Reachable by commands while the workers decide, so that what their
    // connect handler emits is held for after the reply.
    node.registry.add_socket(socket.clone());
    // The workers decide; meanwhile the client's other namespaces go on.
    let node = node.clone();
    let client = client.clone();
    tokio::spawn(async move {
        // Sent only while the bus is up: a request left in the NATS
        // client's buffer could reach a worker after the client was
        // refused.
        let deadline = tokio::time::Instant::now() + ms(node.config.connect_request_timeout);
        let reply = match node.bus_ready(deadline).await {
            true => {
                let timeout = deadline.saturating_duration_since(tokio::time::Instant::now());
                let reply = node.bus.request(subject, payload, timeout).await;
                reply.map_err(|e| e.to_string()).and_then(|b| {
                    envelope::decode_owned::<ConnectReply>(&b).map_err(|e| e.to_string())
                })
            }
            false => Err("the bus is unavailable".to_owned()),
        };
        client.decided(&socket.ns);
        match reply {
            Ok(ConnectReply::Accept { data, rooms }) => {
                establish(&node, &client, socket, data, rooms, missed).await;
            }
            Ok(ConnectReply::Reject { data }) => refuse(&node, &socket, data),
            Err(error) => {
                tracing::warn!(ns = %socket.ns, %error, "connect not authorized: no worker answered");
                node.metrics.drop("connect_unanswered");
                refuse(&node, &socket, error_object("no worker answered"));
            }
        }
    });
}

/// Refuses a pending connect with `data` as the `connect_error`.
fn refuse(node: &Arc<Node>, socket: &Arc<Socket>, data: String) {
    drop_socket(node, socket);
    let refusal = Packet::new(socket.ns.clone(), Kind::ConnectError(data.into()));
    node.send_packet(&socket.session, &refusal);
}

/// A socket that never became live leaves; a recovered one was live to
/// the workers all along: parked again if its client went away meanwhile,
/// else they hear that it left.
fn drop_socket(node: &Arc<Node>, socket: &Arc<Socket>) {
    if socket.is_recovered() {
        let lost = DisconnectReason::TransportClose;
        if !(socket.session.is_closed() && node.park(socket, lost)) {
            node.forget_socket(socket, DisconnectReason::ServerNamespaceDisconnect);
        }
        return;
    }
    socket.leave();
    node.registry.remove_socket(&socket.id);
    node.registry.unindex(socket);
}

/// Makes an accepted socket live and tells the client; what a recovered
/// socket's client missed follows the reply, then what was emitted to it
/// meanwhile.
async fn establish(
    node: &Arc<Node>,
    client: &Arc<Client>,
    socket: Arc<Socket>,
    data: Option<String>,
    rooms: Vec<String>,
    missed: Catch,
) {
    if data.is_some() {
        socket.set_data(data);
    }
    if !client.establish(&socket) {
        drop_socket(node, &socket);
        return;
    }
    node.registry.add_socket(socket.clone());
    node.metrics
        .socket_joined(namespace_label(&node.config, &socket.ns));
    let ready = delivery::join(node, &socket, &rooms);
    let reply = match socket.pid {
        Some(pid) => serde_json::json!({ "sid": socket.id.to_string(), "pid": pid.to_string() }),
        None => serde_json::json!({ "sid": socket.id.to_string() }),
    };
    let reply = Packet::new(
        socket.ns.clone(),
        Kind::Connect(Some(reply.to_string().into())),
    );
    let mut first = socket::frames(&reply);
    first.extend(missed.frames);
    match socket.go_live(first, &missed.emits) {
        Ok(()) => {
            node.metrics.packets_out.inc();
        }
        Err(_) => node.close(&socket.session, Fault::SlowConsumer),
    }
    // While the bus is away the subscriptions wait for it, not the client.
    if node.bus_ready(tokio::time::Instant::now()).await {
        ready.await;
    }
}
