//! Raw wire clients: HTTP/1.1 over a TCP stream and websocket frames, so
//! tests control every byte a client sends.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt as _, StreamExt as _};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long a test waits for something that should happen.
pub const WAIT: Duration = Duration::from_secs(5);

/// An HTTP response, read to the end of the connection.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Sends one request (`Connection: close`) and reads the whole response.
pub async fn http(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let mut request =
        format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    stream.write_all(request.as_bytes()).await.expect("write");
    stream.write_all(body).await.expect("write body");
    let mut raw = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut raw))
        .await
        .expect("response in time")
        .expect("read");
    parse(&raw)
}

/// One value of the gateway's `/metrics` at `addr`, e.g.
/// `sio_gateway_sessions`.
pub async fn metric(addr: SocketAddr, name: &str) -> u64 {
    let text = http(addr, "GET", "/metrics", &[], b"").await.text();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
}

fn parse(raw: &[u8]) -> Response {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("header end");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .expect("status line")
        .split(' ')
        .nth(1)
        .expect("status")
        .parse()
        .expect("status code");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"))
    {
        body = dechunk(&body);
    }
    Response {
        status,
        headers,
        body,
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("chunk size");
        let size = usize::from_str_radix(
            std::str::from_utf8(&data[..line_end]).expect("hex").trim(),
            16,
        )
        .expect("hex size");
        data = &data[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

/// The Engine.IO endpoint with a query.
pub fn engine(query: &str) -> String {
    format!("/socket.io/?{query}")
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
        let r = http(addr, "GET", &engine("EIO=4&transport=polling"), &[], b"").await;
        assert_eq!(r.status, 200, "{}", r.text());
        let text = r.text();
        let json = text.strip_prefix('0').expect("open packet");
        let open: serde_json::Value = serde_json::from_str(json).expect("handshake JSON");
        let sid = open["sid"].as_str().expect("sid").to_owned();
        Self { addr, sid, open }
    }

    pub fn query(&self) -> String {
        format!("EIO=4&transport=polling&sid={}", self.sid)
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
        let (stream, _) = tokio_tungstenite::connect_async(format!("ws://{addr}{}", engine(query)))
            .await
            .expect("websocket");
        Self { stream }
    }

    /// A new session directly on websocket; returns it and the handshake.
    pub async fn open(addr: SocketAddr) -> (Self, serde_json::Value) {
        let mut ws = Self::connect(addr, "EIO=4&transport=websocket").await;
        let text = ws.text().await;
        let open = serde_json::from_str(text.strip_prefix('0').expect("open packet"))
            .expect("handshake JSON");
        (ws, open)
    }

    /// A new session joined to `nsp` ("/" or "/name"); returns the socket id.
    pub async fn joined(addr: SocketAddr, nsp: &str) -> (Self, String) {
        let (mut ws, _) = Self::open(addr).await;
        let prefix = if nsp == "/" {
            String::new()
        } else {
            format!("{nsp},")
        };
        ws.send(&format!("40{prefix}")).await;
        let reply = ws.text().await;
        let json = reply
            .strip_prefix(&format!("40{prefix}"))
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
                Some(Ok(Message::Text(t))) if t.as_str() == "2" => self.send("3").await,
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
                Ok(Some(Ok(Message::Text(t)))) if t.as_str() == "2" => self.send("3").await,
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
                Ok(Some(Ok(Message::Text(t)))) if t.as_str() == "2" => self.send("3").await,
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
