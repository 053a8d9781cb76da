//! The HTTP surface: the Engine.IO endpoint (polling and websocket),
//! `/health`, `/ready` and `/metrics`. Every Engine.IO request error is
//! answered here, in one place, with its HTTP status and JSON body.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use sio_protocol::engineio::{self, ErrorCode};
use sio_protocol::envelope::{EncodedHandshake, Handshake};
use sio_protocol::id::Sid;
use sio_protocol::socketio::Decoder;

use crate::client::Client;
use crate::config::Transport;
use crate::fault::engine_error;
use crate::handover;
use crate::node::Node;
use crate::outbox::{Frame, Outbox};
use crate::session::Session;
use crate::transport::{polling, websocket};

/// The Engine.IO endpoint and the operations endpoints.
pub(crate) fn router(shared: Arc<Node>) -> Router {
    Router::new()
        .route(&shared.config.path, any(engine))
        .with_state(shared.clone())
        .merge(operations(shared))
}

/// `/health`, `/ready` and `/metrics`, also served alone on `--ops-listen`.
pub(crate) fn operations(shared: Arc<Node>) -> Router {
    Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .with_state(shared)
}

async fn ready(State(shared): State<Arc<Node>>) -> Response {
    let bus_up = shared.bus.state() == sio_bus::State::Connected;
    if bus_up && !shared.is_draining() {
        (StatusCode::OK, "ready").into_response()
    } else {
        let why = if bus_up {
            "draining"
        } else {
            "bus disconnected"
        };
        (StatusCode::SERVICE_UNAVAILABLE, why).into_response()
    }
}

async fn metrics(State(shared): State<Arc<Node>>) -> Response {
    let connected = shared.bus.state() == sio_bus::State::Connected;
    shared.metrics.bus_connected.set(i64::from(connected));
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        shared.metrics.render(),
    )
        .into_response()
}

/// The query parameters Engine.IO cares about.
#[derive(Debug, Default)]
struct Query {
    eio: Option<String>,
    transport: Option<String>,
    sid: Option<String>,
    all: Vec<(String, String)>,
}

fn parse_query(raw: Option<&str>) -> Query {
    let all: Vec<(String, String)> =
        serde_urlencoded::from_str(raw.unwrap_or_default()).unwrap_or_default();
    let find = |k: &str| all.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
    Query {
        eio: find("EIO"),
        transport: find("transport"),
        sid: find("sid"),
        all: all.clone(),
    }
}

async fn engine(
    State(shared): State<Arc<Node>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    let origin = request.headers().get(header::ORIGIN).cloned();
    let mut response = if request.method() == Method::OPTIONS {
        StatusCode::NO_CONTENT.into_response()
    } else {
        route(&shared, peer, request).await
    };
    cors(&shared, origin, response.headers_mut());
    response
}

async fn route(shared: &Arc<Node>, peer: SocketAddr, request: Request) -> Response {
    let query = parse_query(request.uri().query());
    let transport = query
        .transport
        .as_deref()
        .and_then(Transport::parse)
        .filter(|t| shared.config.transports.contains(t));
    let Some(transport) = transport else {
        return engine_error(ErrorCode::TransportUnknown);
    };
    let (mut parts, body) = request.into_parts();
    let wants_websocket = transport == Transport::Websocket;
    let upgrade = if wants_websocket {
        WebSocketUpgrade::from_request_parts(&mut parts, &())
            .await
            .ok()
    } else {
        None
    };
    if let Some(sid) = &query.sid {
        let sid = sid.parse::<Sid>().ok();
        let client = sid.and_then(|sid| shared.registry.client(&sid));
        let Some(client) = client else {
            // Another gateway's session (no sticky balancing): its owner
            // serves the request.
            let method = &parts.method;
            return match sid {
                Some(sid) if sid.gateway() != shared.id && transport == Transport::Polling => {
                    match *method {
                        Method::GET => polling::forward(shared, sid, false, body).await,
                        Method::POST => polling::forward(shared, sid, true, body).await,
                        _ => engine_error(ErrorCode::BadRequest),
                    }
                }
                // Its upgrade: the session moves here. A draining gateway
                // takes none over: the client goes on polling where it is.
                Some(sid) if sid.gateway() != shared.id => match upgrade {
                    Some(_) if shared.is_draining() => {
                        StatusCode::SERVICE_UNAVAILABLE.into_response()
                    }
                    Some(ws) => {
                        // Counted here from now on, as a session opened here.
                        let reported = client_handshake(shared, peer, &parts, Vec::new()).address;
                        let address = match address_slot(shared, peer, &reported) {
                            Ok(slot) => slot,
                            Err(refused) => return refused.into_response(),
                        };
                        if !handover::ask(shared, sid).await {
                            return engine_error(ErrorCode::SessionIdUnknown);
                        }
                        let shared = shared.clone();
                        configure(&shared, ws)
                            .on_upgrade(move |ws| handover::take(shared, sid, ws, address))
                    }
                    None => engine_error(ErrorCode::BadRequest),
                },
                _ => engine_error(ErrorCode::SessionIdUnknown),
            };
        };
        let current = client.session.state().transport;
        return match (transport, upgrade) {
            (Transport::Websocket, Some(ws)) => {
                let shared = shared.clone();
                configure(&shared, ws).on_upgrade(move |ws| websocket::upgrade(shared, client, ws))
            }
            (Transport::Websocket, None) => engine_error(ErrorCode::BadRequest),
            (Transport::Polling, _) if current != Transport::Polling => {
                engine_error(ErrorCode::BadRequest)
            }
            (Transport::Polling, _) if parts.method == Method::GET => {
                polling::get(shared, client).await
            }
            (Transport::Polling, _) if parts.method == Method::POST => {
                polling::post(shared, client, body).await
            }
            (Transport::Polling, _) => engine_error(ErrorCode::BadRequest),
        };
    }
    if parts.method != Method::GET {
        return engine_error(ErrorCode::BadHandshakeMethod);
    }
    if wants_websocket && upgrade.is_none() {
        return engine_error(ErrorCode::BadRequest);
    }
    if query.eio.as_deref() != Some("4") {
        return engine_error(ErrorCode::UnsupportedProtocolVersion);
    }
    if shared.is_draining() || shared.registry.client_count() >= shared.config.max_connections {
        shared.metrics.drop("connection_refused");
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let handshake = client_handshake(shared, peer, &parts, query.all);
    let address = match address_slot(shared, peer, &handshake.address) {
        Ok(slot) => slot,
        Err(refused) => return refused.into_response(),
    };
    let Ok(sid) = Sid::random(shared.id) else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let Ok(handshake) = EncodedHandshake::new(&handshake) else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let now = shared.now();
    let session = Session::new(
        sid,
        transport,
        Outbox::new(
            shared.config.send_queue_packets,
            shared.config.send_queue_bytes,
        ),
        (now, now.saturating_add(shared.config.ping_interval)),
    );
    let client = Arc::new(Client::new(
        Arc::new(session),
        handshake,
        Decoder::new(shared.config.max_attachments),
        address,
    ));
    let open = open_packet(shared, sid, transport);
    let mut response = match upgrade {
        Some(ws) => {
            let node = shared.clone();
            let open = Frame::Text(open.into());
            configure(shared, ws).on_upgrade(move |ws| websocket::open(node, client, open, ws))
        }
        None => {
            shared.open(client, Transport::Polling);
            polling::ok("text/plain; charset=UTF-8", open)
        }
    };
    set_cookie(shared, sid, response.headers_mut());
    response
}

/// Websocket limits: explicit buffers (the library defaults cost over
/// 100 KB per connection) and maxHttpBufferSize as the message limit.
fn configure(shared: &Node, ws: WebSocketUpgrade) -> WebSocketUpgrade {
    let c = &shared.config;
    ws.read_buffer_size(c.ws_read_buffer)
        .write_buffer_size(c.ws_write_buffer)
        .max_write_buffer_size(
            c.send_queue_bytes
                .max(c.ws_write_buffer.saturating_mul(2))
                .max(c.max_http_buffer_size.saturating_mul(2)),
        )
        .max_message_size(c.max_http_buffer_size)
        .max_frame_size(c.max_http_buffer_size)
}

fn open_packet(shared: &Node, sid: Sid, transport: Transport) -> String {
    let c = &shared.config;
    let can_upgrade = transport == Transport::Polling
        && c.allow_upgrades
        && c.transports.contains(&Transport::Websocket);
    let handshake = engineio::Handshake {
        sid: sid.to_string(),
        upgrades: if can_upgrade {
            vec!["websocket".into()]
        } else {
            Vec::new()
        },
        ping_interval: c.ping_interval,
        ping_timeout: c.ping_timeout,
        max_payload: u64::try_from(c.max_http_buffer_size).unwrap_or(u64::MAX),
    };
    engineio::Packet::Open(handshake.to_json().into()).to_text()
}

/// Behind a trusted proxy with per-address limits, sessions count against
/// the address it `reported` (the TCP peer is the proxy); one it garbled,
/// against the proxy's. `Err` is the refusal's status (503, counted).
fn address_slot(
    shared: &Node,
    peer: SocketAddr,
    reported: &str,
) -> Result<Option<crate::address::Slot>, StatusCode> {
    let limits = shared.config.per_address();
    if !shared.config.trust_proxy || limits.off() {
        return Ok(None);
    }
    let ip = reported.parse().unwrap_or(peer.ip());
    shared
        .addresses
        .take(ip, limits)
        .map(Some)
        .map_err(|refusal| {
            shared.metrics.drop(refusal.metric());
            StatusCode::SERVICE_UNAVAILABLE
        })
}

fn client_handshake(
    shared: &Node,
    peer: SocketAddr,
    parts: &axum::http::request::Parts,
    query: Vec<(String, String)>,
) -> Handshake {
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect();
    let address = shared
        .config
        .trust_proxy
        .then(|| forwarded_for(&parts.headers))
        .flatten()
        .unwrap_or_else(|| peer.ip().to_string());
    Handshake {
        headers,
        query,
        address,
        issued: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        url: parts.uri.to_string(),
        secure: parts.uri.scheme_str() == Some("https"),
        auth: None,
    }
}

/// The client address a trusted proxy reports: the first `for=` of
/// `Forwarded`, else the first address of `X-Forwarded-For`.
fn forwarded_for(headers: &HeaderMap) -> Option<String> {
    let forwarded = headers
        .get(header::FORWARDED)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.split([',', ';'])
                .filter_map(|part| part.trim().strip_prefix("for="))
                .map(|a| {
                    a.trim_matches('"')
                        .trim_start_matches('[')
                        .trim_end_matches(']')
                        .to_owned()
                })
                .next()
        });
    forwarded.or_else(|| {
        headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(|a| a.trim().to_owned())
            .filter(|a| !a.is_empty())
    })
}

fn set_cookie(shared: &Node, sid: Sid, headers: &mut HeaderMap) {
    let c = &shared.config;
    if !c.cookie {
        return;
    }
    let mut cookie = format!("{}={sid}; Path={}", c.cookie_name, c.cookie_path);
    if c.cookie_http_only {
        cookie.push_str("; HttpOnly");
    }
    cookie.push_str("; SameSite=");
    cookie.push_str(&c.cookie_same_site);
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        headers.append(header::SET_COOKIE, value);
    }
}

fn cors(shared: &Node, origin: Option<HeaderValue>, headers: &mut HeaderMap) {
    let c = &shared.config;
    if c.cors_origins.is_empty() {
        return;
    }
    let any = c.cors_origins.iter().any(|o| o == "*");
    let allowed = match &origin {
        Some(o) if any || c.cors_origins.iter().any(|a| a.as_bytes() == o.as_bytes()) => o.clone(),
        None if any => HeaderValue::from_static("*"),
        _ => return,
    };
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allowed);
    headers.insert(header::VARY, HeaderValue::from_static("Origin"));
    if c.cors_credentials {
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
    }
    if let Ok(methods) = HeaderValue::from_str(&c.cors_methods.join(",")) {
        headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, methods);
    }
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("content-type"),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_addresses() {
        let mut h = HeaderMap::new();
        assert_eq!(forwarded_for(&h), None);
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_static("203.0.113.7, 10.0.0.1"),
        );
        assert_eq!(forwarded_for(&h).as_deref(), Some("203.0.113.7"));
        h.insert(
            header::FORWARDED,
            HeaderValue::from_static("for=\"[2001:db8::1]\";proto=https, for=10.0.0.1"),
        );
        assert_eq!(forwarded_for(&h).as_deref(), Some("2001:db8::1"));
    }

    #[test]
    fn query() {
        let q = parse_query(Some("EIO=4&transport=polling&sid=abc&t=N8hyd6w"));
        assert_eq!(q.eio.as_deref(), Some("4"));
        assert_eq!(q.transport.as_deref(), Some("polling"));
        assert_eq!(q.sid.as_deref(), Some("abc"));
        assert_eq!(q.all.len(), 4);
        assert!(parse_query(None).transport.is_none());
    }
}
