//! Raw wire clients: HTTP/1.1 over a TCP stream and websocket frames, so
//! tests control every byte a client sends. [`http`] and [`packet`] are the
//! parts the load generator (`sio-bench`) uses too; the rest is the tests'
//! convenience on top: panics instead of errors, waits bounded by [`WAIT`].

pub mod http;
pub mod packet;

pub use http::Response;
pub use packet::engine;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt as _, StreamExt as _};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long a test waits for something that should happen.
pub const WAIT: Duration = Duration::from_secs(5);

/// Sends one request (`Connection: close`) and reads the whole response.
pub async fn http(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    tokio::time::timeout(WAIT, http::fetch(addr, method, target, headers, body))
        .await
        .expect("response in time")
        .unwrap_or_else(|e| panic!("{method} {target}: {e}"))
}

/// One value of the gateway's `/metrics` at `addr`, e.g.
/// `sio_gateway_sessions`.
pub async fn metric(addr: SocketAddr, name: &str) -> u64 {
    metrics(addr)
        .await
        .get(name)
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
}

/// One reading of the gateway's `/metrics` at `addr`, for several values
/// from the same moment.
pub async fn metrics(addr: SocketAddr) -> Metrics {
    Metrics(http(addr, "GET", "/metrics", &[], b"").await.text())
}

/// The text of one `/metrics` reading.
#[derive(Debug)]
pub struct Metrics(pub String);

impl Metrics {
    /// The value of one series, e.g.
    /// `sio_gateway_drops_total{reason="slow_consumer"}`; `None` if absent.
    pub fn get(&self, name: &str) -> Option<u64> {
        http::metric_value(&self.0, name)
    }
}

/// A polling session.
#[derive(Debug, Clone)]
pub struct Polling {
    pub addr: SocketAddr,
    pub sid: String,
    /// The handshake JSON.
    pub open: serde_json::Value,
}

impl Polling {
    /// Opens a session over polling and checks the open packet.
    pub async fn open(addr: SocketAddr) -> Self {
        let r = http(addr, "GET", &engine(packet::POLLING), &[], b"").await;
        assert_eq!(r.status, 200, "{}", r.text());
        let text = r.text();
        let open = packet::open(&text).expect("open packet with handshake JSON");
        let sid = packet::sid(&open).expect("sid").to_owned();
        Self { addr, sid, open }
    }

    pub fn query(&self) -> String {
        packet::polling_query(&self.sid)
    }

    pub async fn get(&self) -> Response {
        http(self.addr, "GET", &engine(&self.query()), &[], b"").await
    }

    pub async fn post(&self, body: &[u8]) -> Response {
        http(
            self.addr,
            "POST",
            &engine(&self.query()),
            &[("Content-Type", "text/plain;charset=UTF-8")],
            body,
        )
        .await
    }
}

type Stream = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A websocket connection speaking raw frames.
#[derive(Debug)]
pub struct Ws {
    stream: Stream,
}

impl Ws {
    /// Connects with `query` (e.g. `EIO=4&transport=websocket`).
    pub async fn connect(addr: SocketAddr, query: &str) -> Self {
        let (stream, _) = tokio_tungstenite::connect_async(packet::ws_url(addr, query))
            .await
            .expect("websocket");
        Self { stream }
    }

    /// A new session directly on websocket; returns it and the handshake.
    pub async fn open(addr: SocketAddr) -> (Self, serde_json::Value) {
        let mut ws = Self::connect(addr, packet::WEBSOCKET).await;
        let text = ws.text().await;
        let open = packet::open(&text).expect("open packet with handshake JSON");
        (ws, open)
    }

    /// A new session joined to `nsp` ("/" or "/name"); returns the socket id.
    pub async fn joined(addr: SocketAddr, nsp: &str) -> (Self, String) {
        let (mut ws, _) = Self::open(addr).await;
        let connect = packet::connect(nsp, "");
        ws.send(&connect).await;
        let reply = ws.text().await;
        let json = reply
            .strip_prefix(&connect)
            .unwrap_or_else(|| panic!("connect reply {reply:?}"));
        let v: serde_json::Value = serde_json::from_str(json).expect("connect JSON");
        (ws, v["sid"].as_str().expect("sid").to_owned())
    }

    pub async fn send(&mut self, text: &str) {
        self.stream.send(Message::text(text)).await.expect("send");
    }

    /// The client's end of the connection.
    pub fn local_addr(&self) -> SocketAddr {
        match self.stream.get_ref() {
            MaybeTlsStream::Plain(tcp) => tcp.local_addr().expect("local address"),
            _ => panic!("plain TCP only"),
        }
    }

    pub async fn send_binary(&mut self, data: &[u8]) {
        self.stream
            .send(Message::binary(data.to_vec()))
            .await
            .expect("send");
    }

    /// The next frame other than a server ping (answered), or `None` once
    /// the connection closed.
    pub async fn next(&mut self) -> Option<Message> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let message = tokio::time::timeout_at(deadline, self.stream.next())
                .await
                .expect("a frame in time");
            match message {
                Some(Ok(Message::Text(t))) if t.as_str() == packet::PING => {
                    self.send(packet::PONG).await
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(m)) => return Some(m),
            }
        }
    }

    /// The next frame exactly as it comes (pings not answered), or `None`
    /// once the connection closed.
    pub async fn raw(&mut self) -> Option<Message> {
        match tokio::time::timeout(WAIT, self.stream.next())
            .await
            .expect("a frame in time")
        {
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => None,
            Some(Ok(m)) => Some(m),
        }
    }

    /// The next text frame.
    pub async fn text(&mut self) -> String {
        match self.next().await {
            Some(Message::Text(t)) => t.as_str().to_owned(),
            other => panic!("expected a text frame, got {other:?}"),
        }
    }

    /// The next binary frame.
    pub async fn binary(&mut self) -> Bytes {
        match self.next().await {
            Some(Message::Binary(b)) => b,
            other => panic!("expected a binary frame, got {other:?}"),
        }
    }

    /// The next text frame within `wait`, if any (pings answered).
    pub async fn text_within(&mut self, wait: Duration) -> Option<String> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.stream.next()).await {
                Err(_) => return None,
                Ok(Some(Ok(Message::Text(t)))) if t.as_str() == packet::PING => {
                    self.send(packet::PONG).await
                }
                Ok(Some(Ok(Message::Text(t)))) => return Some(t.as_str().to_owned()),
                Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => {}
                Ok(other) => panic!("expected a text frame, got {other:?}"),
            }
        }
    }

    /// Nothing but pings arrives for `wait`.
    pub async fn quiet(&mut self, wait: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.stream.next()).await {
                Err(_) => return true,
                Ok(Some(Ok(Message::Text(t)))) if t.as_str() == packet::PING => {
                    self.send(packet::PONG).await
                }
                Ok(_) => return false,
            }
        }
    }

    /// Reads until the server closes the connection; panics on any
    /// Socket.IO traffic other than `allowed` prefixes.
    pub async fn closed(&mut self) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.stream.next())
                .await
                .expect("close in time")
            {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            }
        }
    }

    /// Sends a raw frame of any kind.
    pub async fn send_message(&mut self, message: Message) -> Result<(), tungstenite::Error> {
        self.stream.send(message).await
    }
}

/// The kernel's TCP state (`/proc/net/tcp`, e.g. `01` = ESTABLISHED) of the
/// IPv4 socket whose own end is `local` and whose peer is `remote`; `None`
/// once there is no such socket.
pub fn tcp_state(local: SocketAddr, remote: SocketAddr) -> Option<String> {
    let hex = |a: SocketAddr| match a {
        SocketAddr::V4(v4) => format!(
            "{:08X}:{:04X}",
            u32::from_le_bytes(v4.ip().octets()),
            v4.port()
        ),
        SocketAddr::V6(_) => panic!("IPv4 only"),
    };
    let (local, remote) = (hex(local), hex(remote));
    std::fs::read_to_string("/proc/net/tcp")
        .expect("/proc/net/tcp")
        .lines()
        .skip(1)
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.get(1) == Some(&local.as_str()) && f.get(2) == Some(&remote.as_str()))
        .and_then(|f| f.get(3).map(|s| (*s).to_owned()))
}

/// What a worker says when it has handled the events handed over to it
/// together: `Done` for each, with its ack when the client asked for one.
/// For tests that play the worker on the bus themselves.
pub fn events_done(acks: Vec<Option<sio_protocol::envelope::AckReply>>) -> Bytes {
    let outcomes = acks
        .into_iter()
        .map(|ack| sio_protocol::envelope::Outcome { ack, failed: false })
        .collect();
    let done = sio_protocol::envelope::EventReply::Done {
        first: 0,
        outcomes,
        unordered: false,
    };
    match sio_protocol::envelope::encode(&done) {
        Ok(bytes) => bytes.into(),
        Err(e) => panic!("{e}"),
    }
}
