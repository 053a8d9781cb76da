//! Connection state recovery's steps on this gateway (the state it keeps
//! is [`crate::recovery`]'s): a socket whose transport was lost is parked
//! in its rooms; a client back with its pid within the window gets it
//! back with what it missed; a window that ends without it lets the
//! socket go, its workers told why it left.

use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use sio_protocol::envelope::DisconnectReason;
use sio_protocol::socketio::recovery::Recovery;

use crate::client::Client;
use crate::node::Node;
use crate::outbox::Frame;
use crate::recovery::{Log, Parked};
use crate::socket::Socket;

fn parked(node: &Node) -> MutexGuard<'_, Parked> {
    lock(&node.parked)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The reasons socket.io lets a client recover from: the transport's, not
/// a namespace disconnect or a client that sent garbage.
const fn recoverable(reason: DisconnectReason) -> bool {
    matches!(
        reason,
        DisconnectReason::TransportClose
            | DisconnectReason::TransportError
            | DisconnectReason::PingTimeout
            | DisconnectReason::ForcedClose
            | DisconnectReason::ServerShuttingDown
    )
}

/// Parks a socket whose transport was lost for `reason`, if its client
/// may recover it; false if it leaves now.
pub(crate) fn park(node: &Node, socket: &Arc<Socket>, reason: DisconnectReason) -> bool {
    let Some(pid) = socket.pid else { return false };
    // A gateway that is going away keeps nothing for later.
    if node.is_draining() || !recoverable(reason) || socket.is_gone() || !socket.park(reason) {
        return false;
    }
    // Whoever waits for an ack hears now that none will come.
    socket.forget_acks();
    let until = node
        .now()
        .saturating_add(node.config.max_disconnection_duration);
    let mut parked = parked(node);
    parked.park(pid, socket.clone(), until);
    node.metrics.recoverable.set(gauge(parked.len()));
    true
}

fn gauge(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A parked socket leaves for another reason (a worker disconnects it).
pub(crate) fn unpark(node: &Arc<Node>, socket: &Arc<Socket>, reason: DisconnectReason) {
    let mut parked = parked(node);
    if parked.remove(socket) {
        node.metrics.recoverable.set(gauge(parked.len()));
        drop(parked);
        node.forget_socket(socket, reason);
    }
}

/// The socket `recovery` asks for in place of `fresh`, in the registry
/// from now on (pending until its CONNECT reply), with the frames its
/// client missed; `None` if it cannot be had (counted), and `fresh` goes
/// on as a new socket.
pub(crate) fn restore(
    node: &Arc<Node>,
    client: &Client,
    fresh: &Socket,
    recovery: Recovery,
) -> Option<(Arc<Socket>, Vec<Frame>)> {
    let outcome = |label| {
        node.metrics
            .recoveries
            .get_or_create(&crate::metrics::OutcomeLabel { outcome: label })
            .inc()
    };
    let taken = {
        let mut parked = parked(node);
        let taken = parked.take(&recovery.pid, &fresh.ns, node.now());
        node.metrics.recoverable.set(gauge(parked.len()));
        taken
    };
    let parked = match taken {
        None => {
            outcome("unknown");
            return None;
        }
        Some(Err(expired)) => {
            outcome("expired");
            leave(node, &expired);
            return None;
        }
        Some(Ok(parked)) => parked,
    };
    let log = Log::new(node.config.recovery_bounds(), false);
    let restored = Socket::restore(
        &parked,
        fresh.session.clone(),
        client.handshake().clone(),
        fresh.auth(),
        log,
    );
    let restored = match restored {
        Ok(socket) => Arc::new(socket),
        Err(error) => {
            tracing::error!(%error, "cannot encode a socket context");
            leave(node, &parked);
            return None;
        }
    };
    let swap = || node.registry.add_socket(restored.clone());
    match parked.replace(recovery.offset, swap) {
        Ok((missed, log)) => {
            restored.adopt(log);
            // Gone, but not out of the registry or the rooms: they are
            // the restored socket's now (the same id).
            parked.leave();
            outcome("recovered");
            let frames = missed
                .iter()
                .flat_map(|e| e.frames().iter().cloned())
                .collect();
            Some((restored, frames))
        }
        Err(why) => {
            outcome(why.outcome());
            leave(node, &parked);
            None
        }
    }
}

/// A parked socket whose client will not have it back leaves.
fn leave(node: &Arc<Node>, socket: &Arc<Socket>) {
    let reason = socket.parked().unwrap_or(DisconnectReason::TransportClose);
    node.forget_socket(socket, reason);
}

/// The gateway is going away: every parked socket leaves now, its
/// workers told, as its memory goes with the process.
pub(crate) fn release_all(node: &Arc<Node>) {
    let gone = {
        let mut parked = parked(node);
        let (gone, _) = parked.expired(u64::MAX);
        node.metrics.recoverable.set(0);
        gone
    };
    for socket in &gone {
        leave(node, socket);
    }
}

/// Lets parked sockets go as their windows end, for as long as the
/// gateway lives.
pub(crate) async fn expire(node: Weak<Node>) {
    loop {
        let wait = {
            let Some(node) = node.upgrade() else { return };
            let now = node.now();
            let (gone, next) = {
                let mut parked = parked(&node);
                let expired = parked.expired(now);
                node.metrics.recoverable.set(gauge(parked.len()));
                expired
            };
            for socket in &gone {
                leave(&node, socket);
            }
            next.map_or(1000, |at| at.saturating_sub(now).clamp(1, 1000))
        };
        tokio::time::sleep(Duration::from_millis(wait)).await;
    }
}
