//! Floors for context: what the parts underneath do on this machine with
//! no Socket.IO at all. NATS publish/subscribe and request/reply (through
//! `sio-bus`, as gateways and workers use it), and websocket round trips
//! against a bare tokio-tungstenite echo server.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt as _, StreamExt as _};
use sio_bus::Bus;
use tokio_tungstenite::tungstenite::Message;

use crate::scenario::Row;
use crate::server::{Launcher, Target};

fn row(target: &str, params: String, metrics: Vec<(String, f64)>) -> Row {
    Row {
        scenario: "floor",
        target: target.into(),
        params,
        metrics,
        generator_bound: false,
        notes: Vec::new(),
    }
}

async fn nats(url: &str) -> Result<Arc<dyn Bus>, String> {
    let options = sio_bus::NatsOptions {
        urls: vec![url.to_owned()],
        ..sio_bus::NatsOptions::default()
    };
    let bus = sio_bus::NatsBus::connect(&options)
        .await
        .map_err(|e| e.to_string())?;
    Ok(Arc::new(bus))
}

/// NATS publish → subscribe throughput and request/reply round trips.
pub(crate) async fn nats_floor(
    launcher: &Launcher,
    messages: u64,
    seconds: f64,
) -> Result<Vec<Row>, String> {
    let running = launcher.start(&Target::Nats)?;
    let url = format!("nats://{}", running.addrs[0]);
    let (publisher, subscriber) = (nats(&url).await?, nats(&url).await?);
    let mut sub = subscriber
        .subscribe("floor.pub".into())
        .await
        .map_err(|e| e.to_string())?;
    publisher.flush().await.map_err(|e| e.to_string())?;
    let payload = Bytes::from(vec![b'x'; 64]);
    let cpu = running.cpu();
    let started = Instant::now();
    let receiving = tokio::spawn(async move {
        let mut n = 0;
        while n < messages && sub.next_within(Duration::from_secs(2)).await.is_ok() {
            n += 1;
        }
        n
    });
    for _ in 0..messages {
        publisher
            .publish("floor.pub".into(), payload.clone())
            .await
            .map_err(|e| e.to_string())?;
    }
    let received = receiving.await.map_err(|e| e.to_string())?;
    let pub_rate = received as f64 / started.elapsed().as_secs_f64();
    let pub_cpu = (running.cpu() - cpu) * 1e6 / received.max(1) as f64;

    let responder = nats(&url).await?;
    let mut requests = responder
        .subscribe("floor.req".into())
        .await
        .map_err(|e| e.to_string())?;
    responder.flush().await.map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        while let Some(m) = requests.next().await {
            if let Some(reply) = m.reply {
                let _ = responder.publish(reply, m.payload).await;
            }
        }
    });
    let cpu = running.cpu();
    let started = Instant::now();
    let mut round_trips = 0u64;
    while started.elapsed().as_secs_f64() < seconds {
        publisher
            .request("floor.req".into(), payload.clone(), Duration::from_secs(2))
            .await
            .map_err(|e| e.to_string())?;
        round_trips += 1;
    }
    let wall = started.elapsed().as_secs_f64();
    Ok(vec![
        row(
            "nats-server",
            format!("publish → subscribe, {messages} × 64 B"),
            vec![
                ("per_s".into(), pub_rate),
                ("server_cpu_us_each".into(), pub_cpu),
            ],
        ),
        row(
            "nats-server",
            "request → reply, one in flight".into(),
            vec![
                ("per_s".into(), round_trips as f64 / wall),
                (
                    "server_cpu_us_each".into(),
                    (running.cpu() - cpu) * 1e6 / round_trips.max(1) as f64,
                ),
            ],
        ),
    ])
}

/// `sio-bench ws-echo <addr>`: a bare websocket echo server.
pub(crate) async fn ws_echo_server(addr: SocketAddr) -> Result<(), String> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| e.to_string())?;
    println!(
        "listening on {}",
        listener.local_addr().map_err(|e| e.to_string())?
    );
    loop {
        let (stream, _) = listener.accept().await.map_err(|e| e.to_string())?;
        tokio::spawn(async move {
            let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                return;
            };
            while let Some(Ok(message)) = ws.next().await {
                if message.is_text() && ws.send(message).await.is_err() {
                    return;
                }
            }
        });
    }
}

/// Round trips of small text frames, one in flight per client.
pub(crate) async fn ws_floor(
    launcher: &Launcher,
    clients: usize,
    seconds: f64,
) -> Result<Row, String> {
    let running = launcher.start(&Target::WsEcho)?;
    let addr = running.addrs[0];
    let mut sockets = Vec::new();
    for _ in 0..clients {
        let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/"))
            .await
            .map_err(|e| e.to_string())?;
        sockets.push(ws);
    }
    let cpu = running.cpu();
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(seconds);
    let tasks: Vec<_> = sockets
        .into_iter()
        .map(|mut ws| {
            tokio::spawn(async move {
                let mut n = 0u64;
                while Instant::now() < deadline {
                    if ws.send(Message::text(r#"42["echo",1]"#)).await.is_err() {
                        break;
                    }
                    match ws.next().await {
                        Some(Ok(_)) => n += 1,
                        _ => break,
                    }
                }
                n
            })
        })
        .collect();
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap_or(0);
    }
    let wall = started.elapsed().as_secs_f64();
    Ok(row(
        "tokio-tungstenite echo",
        format!("{clients} clients, one in flight each"),
        vec![
            ("per_s".into(), total as f64 / wall),
            (
                "server_cpu_us_each".into(),
                (running.cpu() - cpu) * 1e6 / total.max(1) as f64,
            ),
        ],
    ))
}
