//! HTTP long-polling: a GET waits for queued packets, a POST carries the
//! client's packets; both are payloads of `\x1e`-separated packets.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use sio_protocol::engineio::payload;

use crate::client::Client;
use crate::fault::Fault;
use crate::node::Node;

/// Packets in one POST body, at most.
const MAX_PACKETS_PER_POST: usize = 4096;

/// A 200 polling answer.
pub(crate) fn ok(content_type: &'static str, body: String) -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, content_type)], body).into_response()
}

/// Ends the session for `fault` and answers the request that caused it.
fn fail(node: &Arc<Node>, client: &Client, fault: Fault) -> Response {
    node.close(&client.session, fault);
    fault.response()
}

/// Answers a GET with everything queued, waiting for the first packet.
pub(crate) async fn get(node: &Arc<Node>, client: Arc<Client>) -> Response {
    let session = &client.session;
    let Some(mut reader) = session.outbox.try_reader() else {
        // Two GETs at once: the reference server closes the session.
        return fail(node, &client, Fault::ConcurrentGet);
    };
    let mut frames = reader.recv().await;
    // Frames pushed after that take and before a close (e.g. one DISCONNECT
    // per namespace) belong in this response, before the last frame.
    frames.extend(reader.take());
    frames.extend(session.last_poll_frame());
    let mut body = String::new();
    payload::encode(&frames, &mut body);
    ok("text/plain; charset=UTF-8", body)
}

/// Reads a POST body and handles its packets in order.
pub(crate) async fn post(node: &Arc<Node>, client: Arc<Client>, body: Body) -> Response {
    {
        let mut state = client.session.state();
        if state.posting {
            drop(state);
            return fail(node, &client, Fault::ConcurrentPost);
        }
        state.posting = true;
    }
    let response = read_and_handle(node, &client, body).await;
    client.session.state().posting = false;
    response
}

async fn read_and_handle(node: &Arc<Node>, client: &Arc<Client>, body: Body) -> Response {
    let Ok(bytes) = axum::body::to_bytes(body, node.config.max_http_buffer_size).await else {
        return fail(node, client, Fault::PayloadTooLarge);
    };
    let packets = match payload::decode(&bytes, MAX_PACKETS_PER_POST) {
        Ok(packets) => packets,
        Err(error) => {
            tracing::debug!(sid = %client.session.sid, %error, "bad polling payload");
            return fail(node, client, Fault::Parse);
        }
    };
    for packet in packets {
        if client.session.is_closed() {
            break;
        }
        super::receive(node, client, packet).await;
    }
    ok("text/html", "ok".into())
}
