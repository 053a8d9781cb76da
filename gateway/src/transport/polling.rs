//! HTTP long-polling: a GET waits for queued packets, a POST carries the
//! client's packets; both are payloads of `\x1e`-separated packets.

use std::sync::Arc;

use axum::body::Body;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use sio_protocol::engineio::{self, payload::SEPARATOR};
use sio_protocol::envelope::DisconnectReason;

use crate::gateway::Shared;
use crate::http::{engine_error, text_response};
use crate::outbox::Frame;
use crate::session::{Session, Upgrade};
use sio_protocol::engineio::ErrorCode;

/// Packets in one POST body, at most.
const MAX_PACKETS_PER_POST: usize = 4096;

/// Answers a GET with everything queued, waiting for the first packet.
pub(crate) async fn get(shared: &Arc<Shared>, session: Arc<Session>) -> Response {
    let Some(mut reader) = session.outbox.try_reader() else {
        // Two GETs at once: the reference server closes the session.
        shared.close_session(&session, DisconnectReason::TransportError);
        return engine_error(ErrorCode::BadRequest);
    };
    let mut frames = reader.recv().await;
    // Frames pushed after that take and before a close (e.g. one DISCONNECT
    // per namespace) belong in this response, before the close packet.
    frames.extend(reader.take());
    let mut body = String::new();
    for (i, frame) in frames.iter().enumerate() {
        if i > 0 {
            body.push(SEPARATOR);
        }
        match frame {
            Frame::Text(text) => body.push_str(text.as_str()),
            Frame::Binary(data) => {
                body.push('b');
                base64::engine::general_purpose::STANDARD.encode_string(data, &mut body);
            }
        }
    }
    if session.is_closed() && session.state().upgrade != Upgrade::Done {
        if !body.is_empty() {
            body.push(SEPARATOR);
        }
        body.push('1');
    }
    text_response(StatusCode::OK, "text/plain; charset=UTF-8", body)
}

/// Reads a POST body and handles its packets in order.
pub(crate) async fn post(shared: &Arc<Shared>, session: Arc<Session>, body: Body) -> Response {
    {
        let mut state = session.state();
        if state.posting {
            drop(state);
            shared.close_session(&session, DisconnectReason::TransportError);
            return engine_error(ErrorCode::BadRequest);
        }
        state.posting = true;
    }
    let response = read_and_handle(shared, &session, body).await;
    session.state().posting = false;
    response
}

async fn read_and_handle(shared: &Arc<Shared>, session: &Arc<Session>, body: Body) -> Response {
    let limit = shared.config.max_http_buffer_size;
    let Ok(bytes) = axum::body::to_bytes(body, limit).await else {
        shared.metrics.drop("payload_too_large");
        shared.close_session(session, DisconnectReason::TransportError);
        return StatusCode::PAYLOAD_TOO_LARGE.into_response();
    };
    let packets = match engineio::payload::decode(&bytes, MAX_PACKETS_PER_POST) {
        Ok(packets) => packets,
        Err(error) => {
            tracing::debug!(sid = %session.sid, %error, "bad polling payload");
            shared.metrics.drop("parse_error");
            shared.close_session(session, DisconnectReason::ParseError);
            return engine_error(ErrorCode::BadRequest);
        }
    };
    for packet in packets {
        if session.is_closed() {
            break;
        }
        super::on_packet(shared, session, packet).await;
    }
    text_response(StatusCode::OK, "text/html", "ok".into())
}
