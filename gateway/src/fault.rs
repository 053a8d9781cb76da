//! Why a gateway ends a client's session, and why a client event was not
//! handled, and what each means on the wire and in the metrics: the one
//! place where a failure is mapped to its socket.io disconnect reason, its
//! metric label, its HTTP response or the error ack its client gets.

use axum::http::StatusCode;
use axum::response::{IntoResponse as _, Response};
use sio_protocol::engineio::ErrorCode;
use sio_protocol::envelope::DisconnectReason;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Fault {
    #[error("the client sent the close packet")]
    ClientClose,
    #[error("the connection went away")]
    ConnectionLost,
    #[error("websocket protocol error")]
    Websocket,
    #[error("no pong within pingTimeout")]
    PingTimeout,
    #[error("no namespace joined within connectTimeout")]
    ConnectTimeout,
    #[error("malformed packet")]
    Parse,
    #[error("the client sent a ping")]
    ClientPing,
    #[error("a packet for a namespace the client has not joined")]
    UnknownNamespace,
    #[error("two polling GETs at once")]
    ConcurrentGet,
    #[error("two polling POSTs at once")]
    ConcurrentPost,
    #[error("POST body over maxHttpBufferSize")]
    PayloadTooLarge,
    #[error("send queue full: the client does not keep up")]
    SlowConsumer,
    #[error("more events waiting for an ack than the send queue holds")]
    AckFlood,
    #[error("no randomness for a socket id")]
    NoRandomness,
    #[error("closed by the application")]
    Forced,
    #[error("the gateway is shutting down")]
    ShuttingDown,
    #[error("handed over to the gateway that holds its websocket")]
    HandedOver,
}

impl Fault {
    /// The reason socket.io reports to the workers' disconnect handlers.
    pub(crate) const fn reason(self) -> DisconnectReason {
        match self {
            Self::ClientClose | Self::ConnectionLost | Self::ConnectTimeout | Self::HandedOver => {
                DisconnectReason::TransportClose
            }
            Self::Websocket
            | Self::ClientPing
            | Self::ConcurrentGet
            | Self::ConcurrentPost
            | Self::PayloadTooLarge
            | Self::SlowConsumer
            | Self::AckFlood
            | Self::NoRandomness => DisconnectReason::TransportError,
            Self::PingTimeout => DisconnectReason::PingTimeout,
            Self::Parse => DisconnectReason::ParseError,
            Self::UnknownNamespace | Self::Forced => DisconnectReason::ForcedClose,
            Self::ShuttingDown => DisconnectReason::ServerShuttingDown,
        }
    }

    /// The `drops{reason}` label, for faults that are the client's doing.
    pub(crate) const fn metric(self) -> Option<&'static str> {
        match self {
            Self::Parse => Some("parse_error"),
            Self::PayloadTooLarge => Some("payload_too_large"),
            Self::SlowConsumer => Some("slow_consumer"),
            Self::AckFlood => Some("ack_flood"),
            _ => None,
        }
    }

    /// The answer to the HTTP request that caused the fault.
    pub(crate) fn response(self) -> Response {
        match self {
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE.into_response(),
            _ => engine_error(ErrorCode::BadRequest),
        }
    }
}

/// Why a client event was not handled. A client that asked for an ack
/// gets one whose only argument is `{"error": <message>, "code": <code>}`
/// (the protocol has no error ack; this is the documented convention);
/// each is counted in `events{outcome=<code>}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Unhandled {
    /// Nobody subscribed to the event (NATS no-responders): at once.
    #[error("no worker answered")]
    NoWorker,
    /// Every worker it was handed to went silent past its lease.
    #[error("the workers holding the event were lost")]
    WorkerLost,
    /// The bus stayed down past `--event-timeout`.
    #[error("the bus is unavailable")]
    BusUnavailable,
    /// The socket's queue was full (`--event-queue`).
    #[error("too many events waiting")]
    Overloaded,
    /// The handler failed or panicked before it acked.
    #[error("the handler failed")]
    HandlerFailed,
    /// The gateway could not write the event's envelope.
    #[error("the gateway could not encode the event")]
    Internal,
}

impl Unhandled {
    pub(crate) const fn code(self) -> &'static str {
        match self {
            Self::NoWorker => "no_worker",
            Self::WorkerLost => "worker_lost",
            Self::BusUnavailable => "bus_unavailable",
            Self::Overloaded => "overloaded",
            Self::HandlerFailed => "handler_failed",
            Self::Internal => "internal",
        }
    }

    /// The ack arguments (a JSON array) its client gets.
    pub(crate) fn ack_data(self) -> String {
        serde_json::json!([{ "error": self.to_string(), "code": self.code() }]).to_string()
    }
}

/// The Engine.IO error response: `{"code":N,"message":"…"}`.
pub(crate) fn engine_error(code: ErrorCode) -> Response {
    let status = StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
    (
        status,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        code.body(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_on_the_wire() {
        assert_eq!(Fault::ClientClose.reason().as_str(), "transport close");
        assert_eq!(Fault::PingTimeout.reason().as_str(), "ping timeout");
        assert_eq!(Fault::Parse.reason().as_str(), "parse error");
        assert_eq!(Fault::SlowConsumer.reason().as_str(), "transport error");
        assert_eq!(Fault::Forced.reason().as_str(), "forced close");
        assert_eq!(Fault::Parse.metric(), Some("parse_error"));
        assert_eq!(Fault::ClientClose.metric(), None);
        assert_eq!(Fault::Parse.response().status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            Fault::PayloadTooLarge.response().status(),
            StatusCode::PAYLOAD_TOO_LARGE
        );
    }

    #[test]
    fn unhandled_events_on_the_wire() {
        assert_eq!(
            Unhandled::NoWorker.ack_data(),
            r#"[{"code":"no_worker","error":"no worker answered"}]"#
        );
        assert_eq!(Unhandled::Overloaded.code(), "overloaded");
    }
}
