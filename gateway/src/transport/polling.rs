//! HTTP long-polling: a GET waits for queued packets, a POST carries the
//! client's packets; both are payloads of `\x1e`-separated packets.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::future::BoxFuture;
use sio_protocol::engineio::{ErrorCode, payload};
use sio_protocol::envelope::{self, Command, CommandReply};
use sio_protocol::id::Sid;

use crate::client::Client;
use crate::config::{Transport, ms};
use crate::fault::{Fault, engine_error};
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

/// How much longer than pingInterval a forwarded GET may take: the owner
/// answers it by then (its ping releases it).
const FORWARD_MARGIN: Duration = Duration::from_secs(5);

/// A polling request for a session of another gateway (its sid names it):
/// sent to the owner over `P.gw.<owner>` and answered with the owner's
/// status and body. A gateway that is gone has no subscriber there, so the
/// client hears "Session ID unknown" at once and reconnects.
pub(crate) async fn forward(node: &Arc<Node>, sid: Sid, post: bool, body: Body) -> Response {
    let body = match post {
        true => match axum::body::to_bytes(body, node.config.max_http_buffer_size).await {
            Ok(bytes) => bytes,
            Err(_) => return Fault::PayloadTooLarge.response(),
        },
        false => Bytes::new(),
    };
    let Ok(command) = envelope::encode(&Command::Poll { sid, post, body }) else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let wait = ms(node.config.ping_interval) + FORWARD_MARGIN;
    let subject = node.subjects.gateway(sid.gateway());
    node.metrics.polls_forwarded.inc();
    let reply = node.bus.request(subject, command.into(), wait).await;
    let reply = reply.map_err(|e| e.to_string()).and_then(|bytes| {
        envelope::decode_owned::<CommandReply>(&bytes).map_err(|e| e.to_string())
    });
    match reply {
        Ok(CommandReply::Polled {
            status,
            content_type,
            body,
        }) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
            (status, [(header::CONTENT_TYPE, content_type)], body).into_response()
        }
        Ok(_) | Err(_) => {
            node.metrics.drop("forward_unanswered");
            engine_error(ErrorCode::SessionIdUnknown)
        }
    }
}

/// The owner's side of [`forward`]: the request served as if it had come
/// here, its answer sent back whole.
pub(crate) fn forwarded(
    node: Arc<Node>,
    sid: Sid,
    post: bool,
    body: Bytes,
) -> BoxFuture<'static, CommandReply> {
    Box::pin(async move {
        node.metrics.polls_served.inc();
        let response = match node.registry.client(&sid) {
            None => engine_error(ErrorCode::SessionIdUnknown),
            Some(client) if client.session.state().transport != Transport::Polling => {
                engine_error(ErrorCode::BadRequest)
            }
            Some(client) if post => self::post(&node, client, Body::from(body)).await,
            Some(client) => get(&node, client).await,
        };
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        // Bodies here are payloads the gateway made, bounded by the send
        // queue.
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap_or_default();
        CommandReply::Polled {
            status,
            content_type,
            body,
        }
    })
}
