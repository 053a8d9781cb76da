//! Websocket: one Engine.IO packet per frame, binary messages as binary
//! frames. Either the session starts here, or a polling session upgrades:
//! `2probe` / `3probe`, a noop to release the pending GET, then `5`.

use std::collections::VecDeque;
use std::sync::Arc;

use axum::extract::ws::{Message, WebSocket};
use futures_util::SinkExt as _;
use sio_protocol::engineio::Packet;

use crate::client::Client;
use crate::config::{Transport, ms};
use crate::fault::Fault;
use crate::node::Node;
use crate::outbox::{Frame, Reader};
use crate::session::Session;

/// Serves a session that starts on this websocket: OPEN, then packets.
///
/// Every idle client holds this future, so its size is memory per client:
/// the websocket is captured once (an `async fn` would store its argument
/// twice) and the loops borrow it.
#[expect(
    clippy::manual_async_fn,
    reason = "an async fn stores the websocket twice"
)]
pub(crate) fn open(
    node: Arc<Node>,
    client: Arc<Client>,
    open: Frame,
    mut ws: WebSocket,
) -> impl Future<Output = ()> + Send {
    async move {
        if client.session.send([open]).is_err() {
            return;
        }
        let Some(reader) = client.session.outbox.try_reader() else {
            return;
        };
        node.open(client.clone(), Transport::Websocket);
        serve(&node, &client, &mut ws, reader).await;
        close(&mut ws).await;
    }
}

/// Upgrades a polling session to this websocket, then serves it (the
/// websocket held as in [`open`]).
#[expect(
    clippy::manual_async_fn,
    reason = "an async fn stores the websocket twice"
)]
pub(crate) fn upgrade(
    node: Arc<Node>,
    client: Arc<Client>,
    mut ws: WebSocket,
) -> impl Future<Output = ()> + Send {
    async move {
        if let Some(reader) = probe(&node, &client.session, &mut ws).await {
            serve(&node, &client, &mut ws, reader).await;
        }
        close(&mut ws).await;
    }
}

/// The upgrade handshake; the session's reader once the websocket carries
/// the session.
async fn probe(node: &Node, session: &Session, ws: &mut WebSocket) -> Option<Reader> {
    if !session.begin_upgrade(node.config.allow_upgrades) {
        return None;
    }
    // Release a pending GET so the client can pause polling.
    let probed = || {
        let _ = session.send([Frame::noop()]);
    };
    if !switch(node, ws, session.closed(), probed).await {
        session.abort_upgrade();
        return None;
    }
    session.finish_upgrade();
    node.metrics.connection(Transport::Polling.as_str(), -1);
    node.metrics.connection(Transport::Websocket.as_str(), 1);
    tokio::select! {
        reader = session.outbox.reader() => Some(reader),
        () = session.closed() => None,
    }
}

/// The client's side of an upgrade: each `2probe` is answered `3probe`
/// (then `probed` runs), until `5`. False for anything else, for nothing
/// within the upgrade timeout, or once `cancel` resolves.
pub(crate) async fn switch(
    node: &Node,
    ws: &mut WebSocket,
    cancel: impl Future<Output = ()>,
    mut probed: impl FnMut(),
) -> bool {
    let deadline = tokio::time::Instant::now() + ms(node.config.upgrade_timeout);
    let mut cancel = std::pin::pin!(cancel);
    loop {
        let message = tokio::select! {
            m = ws.recv() => m,
            () = tokio::time::sleep_until(deadline) => None,
            () = &mut cancel => None,
        };
        let Some(Ok(Message::Text(text))) = message else {
            return false;
        };
        match Packet::decode(text.as_str()) {
            Ok(Packet::Ping(data)) if data == Packet::PROBE => {
                // Bounded like the reads: a client that sends probes but
                // does not read must not hold this task.
                let sent = tokio::select! {
                    r = ws.send(self::message(Frame::probe_pong())) => r.is_ok(),
                    () = tokio::time::sleep_until(deadline) => false,
                    () = &mut cancel => false,
                };
                if !sent {
                    return false;
                }
                probed();
            }
            Ok(Packet::Upgrade) => return true,
            _ => return false,
        }
    }
}

/// Serves a session this websocket carries already (one handed over
/// from another gateway).
pub(crate) async fn carry(node: &Arc<Node>, client: &Arc<Client>, ws: &mut WebSocket) {
    if let Some(reader) = client.session.outbox.try_reader() {
        serve(node, client, ws, reader).await;
    }
}

/// Serves a session whose transport is this websocket: frames from the
/// client are handled in order; queued frames are written in batches, one
/// flush per batch.
async fn serve(node: &Arc<Node>, client: &Arc<Client>, ws: &mut WebSocket, mut reader: Reader) {
    let session = &client.session;
    loop {
        tokio::select! {
            message = ws.recv() => match message {
                Some(Ok(Message::Text(text))) => match Packet::decode(text.as_str()) {
                    Ok(packet) => Box::pin(super::receive(node, client, packet)).await,
                    Err(_) => node.close(session, Fault::Parse),
                },
                Some(Ok(Message::Binary(data))) => {
                    // A binary message as it came: no packet to decode.
                    Box::pin(crate::dispatch::binary(node, client, data)).await;
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(Message::Close(_))) | None => node.close(session, Fault::ConnectionLost),
                Some(Err(error)) => {
                    tracing::debug!(sid = %session.sid, %error, "websocket error");
                    node.close(session, fault(error));
                }
            },
            mut frames = reader.recv() => {
                // A client cut while it does not read (its queue overflowed
                // behind this write) must not keep the connection open.
                let written = tokio::select! {
                    biased;
                    result = Box::pin(write_batch(ws, &mut frames)) => result.is_ok(),
                    () = session.closed() => false,
                };
                if !written {
                    // Kept for the last write below.
                    reader.unsend(frames);
                    node.close(session, Fault::Websocket);
                }
            }
        }
        if session.is_closed() {
            // Send what was queued before the close (e.g. DISCONNECT).
            let mut last = reader.take();
            let _ = tokio::time::timeout(CLOSE_WAIT, Box::pin(write_batch(ws, &mut last))).await;
            return;
        }
    }
}

/// A connection that simply went away is a transport close, as in the
/// reference server; a protocol violation (oversized or malformed frame)
/// is a transport error.
fn fault(error: axum::Error) -> Fault {
    use tokio_tungstenite::tungstenite::error::{Error, ProtocolError};
    let inner = error.into_inner();
    match inner.downcast_ref::<Error>() {
        Some(
            Error::ConnectionClosed
            | Error::AlreadyClosed
            | Error::Io(_)
            | Error::Protocol(ProtocolError::ResetWithoutClosingHandshake),
        ) => Fault::ConnectionLost,
        _ => Fault::Websocket,
    }
}

fn message(frame: Frame) -> Message {
    match frame {
        Frame::Text(text) => Message::Text(text),
        Frame::Binary(data) => Message::Binary(data),
    }
}

/// Writes queued frames with one flush for all of them.
async fn write_batch(ws: &mut WebSocket, frames: &mut VecDeque<Frame>) -> Result<(), axum::Error> {
    // A frame leaves the queue once the websocket has it, so a write cut
    // short keeps the rest for the last, bounded attempt.
    while let Some(frame) = frames.front() {
        ws.feed(message(frame.clone())).await?;
        frames.pop_front();
    }
    ws.flush().await
}

/// How long the last frames and the close frame may take to leave; a
/// client that is not reading has its connection dropped instead.
const CLOSE_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

pub(crate) async fn close(ws: &mut WebSocket) {
    let _ = tokio::time::timeout(CLOSE_WAIT, ws.send(Message::Close(None))).await;
}
