//! One raw Socket.IO client on `/`, over websocket or long-polling, with
//! no client library: it joins (with `{"room": …}` as auth when given),
//! answers pings, records the latency of every `m` event and ack, and
//! optionally sends `echo` with ack in a loop.

use std::net::{IpAddr, SocketAddr};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use futures_util::{SinkExt as _, StreamExt as _};
use sio_tests::raw::http::Connection;
use sio_tests::raw::packet::{self, engine};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// Microseconds since the generator started: the stamp events carry, so
/// that the receiver can tell how long they took.
pub(crate) fn now_us() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    u64::try_from(START.get_or_init(Instant::now).elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// Websocket or long-polling, or long-polling upgraded to websocket as
/// the stock client does (the namespace joined first, over polling).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub(crate) enum Transport {
    Websocket,
    Polling,
    Upgrade,
}

/// What a client does once connected.
#[derive(Debug, Clone)]
pub(crate) enum Role {
    /// Receives.
    Listen,
    /// Emits `echo` with ack: one in flight when `interval` is `None`,
    /// else one per interval.
    Ack { interval: Option<Duration> },
    /// Emits `count` events `event [stamp, i]` as fast as they come back
    /// as `m [stamp, i]`, at most `window` on their way; counts those that
    /// come back out of order.
    Stream {
        event: &'static str,
        count: u64,
        window: u64,
    },
}

/// Where and how to connect.
#[derive(Debug, Clone)]
pub(crate) struct Spec {
    pub(crate) server: SocketAddr,
    pub(crate) source: IpAddr,
    pub(crate) transport: Transport,
    pub(crate) room: Option<String>,
    pub(crate) role: Role,
    /// Counts `m` events and acks across every client, live.
    pub(crate) counter: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// Where every request after the handshake goes, if not to `server`:
    /// another gateway, which forwards the polling requests to the
    /// session's owner or takes the session over at the upgrade.
    pub(crate) then: Option<SocketAddr>,
}

/// What one client saw.
#[derive(Debug, Default)]
pub(crate) struct Report {
    /// Microseconds from the start of the TCP connect to the namespace
    /// connect; `None` when it never connected.
    pub(crate) connect_us: Option<u64>,
    /// `m` events received.
    pub(crate) received: u64,
    /// Acks received.
    pub(crate) acks: u64,
    /// Latencies (µs) of events and acks.
    pub(crate) latencies: Vec<u32>,
    /// `m` events whose index was not the one after the last.
    pub(crate) reordered: u64,
    /// The index of the last `m` event.
    last: Option<u64>,
    /// Polling requests made after the handshake.
    pub(crate) requests: u64,
    /// Microseconds from opening the websocket of an upgrade to the first
    /// ack over it.
    pub(crate) upgrade_us: Option<u64>,
    pub(crate) error: Option<String>,
}

/// A text packet to send back, if any, and whether the namespace connect
/// arrived.
fn on_packet(text: &str, auth: &str, report: &mut Report) -> (Option<String>, bool) {
    let bytes = text.as_bytes();
    match bytes.first() {
        Some(b'0') => (Some(packet::connect("/", auth)), false),
        Some(b'2') => (Some(packet::PONG.into()), false),
        Some(b'4') => match bytes.get(1) {
            Some(b'0') => (None, true),
            Some(b'2') => {
                if let Some(rest) = text.strip_prefix(r#"42["m","#) {
                    if let Some(stamp) = leading_number(rest) {
                        report.received += 1;
                        record(report, stamp);
                    }
                    let index = rest.split(',').nth(1).and_then(leading_number);
                    if let Some(i) = index {
                        let next = report.last.map_or(0, |l| l + 1);
                        if i != next {
                            report.reordered += 1;
                        }
                        report.last = Some(i);
                    }
                }
                (None, false)
            }
            Some(b'3') => {
                // 43<id>[<stamp>]
                let rest = text.get(2..).unwrap_or_default();
                let rest = rest.trim_start_matches(|c: char| c.is_ascii_digit());
                if let Some(stamp) = rest.strip_prefix('[').and_then(leading_number) {
                    report.acks += 1;
                    record(report, stamp);
                }
                (None, false)
            }
            Some(b'4') => {
                report.error = Some(format!("connect_error: {text}"));
                (None, false)
            }
            _ => (None, false),
        },
        _ => (None, false),
    }
}

fn leading_number(s: &str) -> Option<u64> {
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    s.get(..end)?.parse().ok()
}

fn record(report: &mut Report, stamp: u64) {
    let latency = now_us().saturating_sub(stamp);
    report
        .latencies
        .push(u32::try_from(latency).unwrap_or(u32::MAX));
}

fn auth(room: Option<&str>) -> String {
    room.map(|r| serde_json::json!({ "room": r }).to_string())
        .unwrap_or_default()
}

fn echo(id: u64) -> String {
    format!(r#"42{id}["echo",{}]"#, now_us())
}

fn numbered(event: &str, i: u64) -> String {
    format!(r#"42["{event}",{},{i}]"#, now_us())
}

async fn tcp(server: SocketAddr, source: IpAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(source, 0))?;
    let stream = socket.connect(server).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Runs a client until `stop` turns true; `joined` is told once when the
/// namespace connect arrived (or the client failed).
pub(crate) async fn run(
    spec: Spec,
    joined: tokio::sync::mpsc::Sender<()>,
    stop: watch::Receiver<bool>,
) -> Report {
    let mut report = Report::default();
    let result = match spec.transport {
        Transport::Websocket => websocket(&spec, &joined, stop, &mut report).await,
        Transport::Polling => polling(&spec, &joined, stop, &mut report).await,
        Transport::Upgrade => upgrade(&spec, &joined, stop, &mut report).await,
    };
    if let Err(e) = result {
        report.error.get_or_insert(e);
    }
    // A client that failed before joining still counts as done.
    if report.connect_us.is_none() {
        let _ = joined.send(()).await;
    }
    report
}

async fn websocket(
    spec: &Spec,
    joined: &tokio::sync::mpsc::Sender<()>,
    stop: watch::Receiver<bool>,
    report: &mut Report,
) -> Result<(), String> {
    let started = now_us();
    let ws = open_websocket(spec.server, spec.source, packet::WEBSOCKET).await?;
    serve_websocket(ws, spec, joined, stop, report, (started, false)).await
}

pub(crate) type Ws = tokio_tungstenite::WebSocketStream<TcpStream>;

pub(crate) async fn open_websocket(
    server: SocketAddr,
    source: IpAddr,
    query: &str,
) -> Result<Ws, String> {
    let stream = tcp(server, source).await.map_err(|e| e.to_string())?;
    let url = packet::ws_url(server, query);
    // Small buffers: the generator must stay lighter than the servers.
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
        .max_write_buffer_size(1 << 20);
    let (ws, _) = tokio_tungstenite::client_async_with_config(url, stream, Some(config))
        .await
        .map_err(|e| e.to_string())?;
    Ok(ws)
}

/// Joins over polling, then upgrades (on `then`, if set): the probe, the
/// switch, and one ack over the websocket, timed; then listens on it.
async fn upgrade(
    spec: &Spec,
    joined: &tokio::sync::mpsc::Sender<()>,
    stop: watch::Receiver<bool>,
    report: &mut Report,
) -> Result<(), String> {
    let started = now_us();
    let (mut http, sid) = open_polling(spec).await?;
    let path = engine(&packet::polling_query(&sid));
    let auth = auth(spec.room.as_deref());
    request(&mut http, "POST", &path, &packet::connect("/", &auth)).await?;
    while !request(&mut http, "GET", &path, "")
        .await?
        .split(packet::SEPARATOR)
        .any(|p| p.starts_with("40"))
    {}
    report.connect_us = Some(now_us().saturating_sub(started));
    let began = now_us();
    let to = spec.then.unwrap_or(spec.server);
    let mut ws = open_websocket(
        to,
        spec.source,
        &format!("EIO=4&transport=websocket&sid={sid}"),
    )
    .await?;
    ws.send(Message::text("2probe"))
        .await
        .map_err(|e| e.to_string())?;
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) if t.as_str() == "3probe" => break,
            Some(Ok(_)) => {}
            other => return Err(format!("no probe answer: {other:?}")),
        }
    }
    ws.send(Message::text("5"))
        .await
        .map_err(|e| e.to_string())?;
    ws.send(Message::text(echo(0)))
        .await
        .map_err(|e| e.to_string())?;
    while report.acks == 0 {
        let text = match ws.next().await {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(_)) => continue,
            other => return Err(format!("no ack after the upgrade: {other:?}")),
        };
        if let (Some(answer), _) = on_packet(text.as_str(), &auth, report) {
            ws.send(Message::text(answer))
                .await
                .map_err(|e| e.to_string())?;
        }
    }
    report.upgrade_us = Some(now_us().saturating_sub(began));
    // What is measured next is the emits, not this ack.
    report.acks = 0;
    report.latencies.clear();
    let _ = joined.send(()).await;
    serve_websocket(ws, spec, joined, stop, report, (started, true)).await
}

/// Serves a joined (or joining) websocket client until `stop`.
async fn serve_websocket(
    ws: Ws,
    spec: &Spec,
    joined: &tokio::sync::mpsc::Sender<()>,
    mut stop: watch::Receiver<bool>,
    report: &mut Report,
    (started, mut connected): (u64, bool),
) -> Result<(), String> {
    let (mut tx, mut rx) = ws.split();
    let auth = auth(spec.room.as_deref());
    let mut next_id = 0u64;
    let mut ticker = match &spec.role {
        Role::Ack {
            interval: Some(every),
        } => Some(tokio::time::interval(*every)),
        _ => None,
    };
    loop {
        tokio::select! {
            message = rx.next() => {
                let text = match message {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => return Err(e.to_string()),
                    None => return Err("closed by the server".into()),
                };
                let (acks_before, seen_before) = (report.acks, report.received);
                let (answer, now_joined) = on_packet(text.as_str(), &auth, report);
                let seen = report.received + report.acks - acks_before - seen_before;
                if seen > 0 {
                    spec.counter.fetch_add(seen, std::sync::atomic::Ordering::Relaxed);
                }
                if let Some(answer) = answer {
                    tx.send(Message::text(answer)).await.map_err(|e| e.to_string())?;
                }
                let first = now_joined && !connected;
                let acked = report.acks > acks_before;
                if first {
                    connected = true;
                    report.connect_us = Some(now_us().saturating_sub(started));
                    let _ = joined.send(()).await;
                }
                // Unpaced acks: the next one as soon as the last came back.
                if matches!(spec.role, Role::Ack { interval: None }) && (first || acked) && !*stop.borrow() {
                    next_id += 1;
                    tx.send(Message::text(echo(next_id))).await.map_err(|e| e.to_string())?;
                }
                if let Role::Stream { event, count, window } = spec.role {
                    // The first window at once, then one per event back.
                    let want = (report.received + window).min(count);
                    let mut frames = Vec::new();
                    while next_id < want && (first || seen > 0) {
                        frames.push(Ok(Message::text(numbered(event, next_id))));
                        next_id += 1;
                    }
                    if !frames.is_empty() {
                        let mut frames = futures_util::stream::iter(frames);
                        tx.send_all(&mut frames).await.map_err(|e| e.to_string())?;
                    }
                }
            }
            () = tick(&mut ticker), if connected => {
                next_id += 1;
                tx.send(Message::text(echo(next_id))).await.map_err(|e| e.to_string())?;
            }
            _ = stop.changed() => {
                let _ = tx.send(Message::Close(None)).await;
                return Ok(());
            }
        }
    }
}

/// The next tick of a paced client; never, for the others.
async fn tick(ticker: &mut Option<tokio::time::Interval>) {
    match ticker {
        Some(t) => {
            t.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// One polling request on `http`: the body of a 200 response.
async fn request(
    http: &mut Connection,
    method: &str,
    path: &str,
    body: &str,
) -> Result<String, String> {
    const TEXT: [(&str, &str); 1] = [("Content-Type", "text/plain;charset=UTF-8")];
    let (status, body) = http
        .request(method, path, &TEXT, body.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let body = String::from_utf8(body).map_err(|e| e.to_string())?;
    if status != 200 {
        return Err(format!("HTTP {status}: {body}"));
    }
    Ok(body)
}

/// A polling session's handshake: the connection it came on, and its sid.
async fn open_polling(spec: &Spec) -> Result<(Connection, String), String> {
    let stream = tcp(spec.server, spec.source)
        .await
        .map_err(|e| e.to_string())?;
    let mut http = Connection::new(stream, spec.server.to_string());
    let handshake = request(&mut http, "GET", &engine(packet::POLLING), "").await?;
    let sid = packet::open(&handshake)
        .as_ref()
        .and_then(packet::sid)
        .map(str::to_owned)
        .ok_or_else(|| format!("no sid in {handshake}"))?;
    Ok((http, sid))
}

/// Long-polling on one connection, used in turn for the GET and the
/// POSTs (the protocol allows it, and it keeps one descriptor per client).
async fn polling(
    spec: &Spec,
    joined: &tokio::sync::mpsc::Sender<()>,
    mut stop: watch::Receiver<bool>,
    report: &mut Report,
) -> Result<(), String> {
    let started = now_us();
    let (mut http, sid) = open_polling(spec).await?;
    let path = engine(&packet::polling_query(&sid));
    let auth = auth(spec.room.as_deref());
    if let Some(then) = spec.then {
        let stream = tcp(then, spec.source).await.map_err(|e| e.to_string())?;
        http = Connection::new(stream, then.to_string());
    }
    request(&mut http, "POST", &path, &packet::connect("/", &auth)).await?;
    let mut connected = false;
    let mut next_id = 0u64;
    loop {
        report.requests += 1;
        let poll = request(&mut http, "GET", &path, "");
        let payload = tokio::select! {
            payload = poll => payload?,
            _ = stop.changed() => return Ok(()),
        };
        let mut answers = Vec::new();
        let (seen_before, acks_before) = (report.received, report.acks);
        for text in payload.split(packet::SEPARATOR) {
            let (answer, now_joined) = on_packet(text, &auth, report);
            answers.extend(answer.filter(|a| !a.starts_with("40")));
            let first = now_joined && !connected;
            if first {
                connected = true;
                report.connect_us = Some(now_us().saturating_sub(started));
                let _ = joined.send(()).await;
            }
            // Unpaced acks: the next one as soon as the last came back.
            let acked = report.acks > acks_before && answers.iter().all(|a| !a.starts_with("42"));
            if matches!(spec.role, Role::Ack { interval: None }) && (first || acked) {
                next_id += 1;
                answers.push(echo(next_id));
            }
        }
        spec.counter.fetch_add(
            report.received - seen_before + report.acks - acks_before,
            std::sync::atomic::Ordering::Relaxed,
        );
        if !answers.is_empty() {
            report.requests += 1;
            request(&mut http, "POST", &path, &answers.join(packet::SEPARATOR)).await?;
        }
        if *stop.borrow() {
            return Ok(());
        }
    }
}

/// A websocket client that sends the `fanout` triggers; it answers pings
/// in the background.
pub(crate) struct Control {
    tx: tokio::sync::mpsc::UnboundedSender<String>,
}

impl Control {
    /// Connects to `/` (in room `ctl`) and waits for the namespace connect.
    pub(crate) async fn connect(server: SocketAddr) -> Result<Self, String> {
        let stream = tcp(server, IpAddr::from([127, 0, 0, 1]))
            .await
            .map_err(|e| e.to_string())?;
        let url = packet::ws_url(server, packet::WEBSOCKET);
        let (ws, _) = tokio_tungstenite::client_async(url, stream)
            .await
            .map_err(|e| e.to_string())?;
        let (mut sink, mut rx) = ws.split();
        let (tx, mut outgoing) = tokio::sync::mpsc::unbounded_channel::<String>();
        let (joined_tx, joined) = tokio::sync::oneshot::channel();
        let mut joined_tx = Some(joined_tx);
        tokio::spawn(async move {
            let mut report = Report::default();
            let auth = auth(Some("ctl"));
            loop {
                tokio::select! {
                    message = rx.next() => {
                        let Some(Ok(message)) = message else { return };
                        let Message::Text(text) = message else { continue };
                        let (answer, now_joined) = on_packet(text.as_str(), &auth, &mut report);
                        if let Some(answer) = answer {
                            if sink.send(Message::text(answer)).await.is_err() {
                                return;
                            }
                        }
                        if now_joined {
                            if let Some(j) = joined_tx.take() {
                                let _ = j.send(());
                            }
                        }
                    }
                    text = outgoing.recv() => {
                        let Some(text) = text else { return };
                        if sink.send(Message::text(text)).await.is_err() {
                            return;
                        }
                    }
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(10), joined)
            .await
            .map_err(|_| "the control client never joined")?
            .map_err(|_| "the control client was closed")?;
        Ok(Self { tx })
    }

    /// Asks the server for `count` emits of `m` to `room`, stamped now.
    pub(crate) fn fanout(&self, room: &str, count: u32, pad: &str) {
        let text = format!(r#"42["fanout","{room}",{count},{},"{pad}"]"#, now_us());
        let _ = self.tx.send(text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_and_acks_are_counted() {
        let mut report = Report::default();
        let stamp = now_us();
        on_packet(&format!(r#"42["m",{stamp},3,"xx"]"#), "", &mut report);
        on_packet(&format!("4317[{stamp}]"), "", &mut report);
        on_packet(r#"42["other",1]"#, "", &mut report);
        assert_eq!(
            (report.received, report.acks, report.latencies.len()),
            (1, 1, 2)
        );
        assert_eq!(on_packet("2", "", &mut report).0.as_deref(), Some("3"));
        assert_eq!(
            on_packet(r#"0{"sid":"x"}"#, r#"{"room":"r1"}"#, &mut report)
                .0
                .as_deref(),
            Some(r#"40{"room":"r1"}"#)
        );
        assert!(on_packet(r#"40{"sid":"y"}"#, "", &mut report).1);
    }
}
