//! `sio-bench`: a load generator that speaks raw Engine.IO v4 / Socket.IO
//! v5 over websocket, lighter than the servers it measures: small
//! websocket buffers, one task per client, pings answered, clients spread
//! over the source addresses 127.0.0.1–127.0.0.8.
//!
//! `sio-bench idle --url ws://127.0.0.1:3000/socket.io/ --pid <server pid> -n 10000`
//! opens idle connections (each joins the `/` namespace) and reports the
//! server's resident memory per connection.

#![forbid(unsafe_code)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use futures_util::{SinkExt as _, StreamExt as _};
use tokio::net::TcpSocket;
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

#[derive(Parser)]
#[command(about = "Load generator for sio-nats and other Socket.IO servers")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Idle connections: server RSS per websocket connection.
    Idle {
        /// The server's Engine.IO endpoint as a ws:// URL.
        #[arg(long, default_value = "ws://127.0.0.1:3000/socket.io/")]
        url: String,
        /// The server's process id, to read its memory.
        #[arg(long)]
        pid: u32,
        /// Connections to open.
        #[arg(short = 'n', long, default_value_t = 1000)]
        connections: usize,
        /// Connects in flight at once.
        #[arg(long, default_value_t = 200)]
        in_flight: usize,
        /// Seconds to hold the connections before measuring.
        #[arg(long, default_value_t = 3)]
        settle: u64,
    },
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
        .max_write_buffer_size(64 * 1024)
}

/// Opens one Socket.IO connection on `/` over websocket and keeps it alive
/// (answering pings) until the server closes it.
async fn idle_client(
    url: String,
    host: SocketAddr,
    source: IpAddr,
    ready: Arc<AtomicUsize>,
) -> Result<(), String> {
    let socket = TcpSocket::new_v4().map_err(|e| e.to_string())?;
    socket
        .bind(SocketAddr::new(source, 0))
        .map_err(|e| e.to_string())?;
    let stream = socket.connect(host).await.map_err(|e| e.to_string())?;
    let url = format!("{url}?EIO=4&transport=websocket");
    let (mut ws, _) = tokio_tungstenite::client_async_with_config(url, stream, Some(ws_config()))
        .await
        .map_err(|e| e.to_string())?;
    let mut joined = false;
    while let Some(message) = ws.next().await {
        let Ok(Message::Text(text)) = message else {
            break;
        };
        match text.as_str() {
            t if t.starts_with('0') => ws
                .send(Message::text("40"))
                .await
                .map_err(|e| e.to_string())?,
            t if t.starts_with("40") && !joined => {
                joined = true;
                ready.fetch_add(1, Ordering::Relaxed);
            }
            "2" => ws
                .send(Message::text("3"))
                .await
                .map_err(|e| e.to_string())?,
            _ => {}
        }
    }
    Ok(())
}

fn host_of(url: &str) -> Result<SocketAddr, String> {
    let rest = url
        .strip_prefix("ws://")
        .ok_or("the URL must start with ws://")?;
    let authority = rest.split('/').next().unwrap_or_default();
    authority.parse().map_err(|e| format!("{authority}: {e}"))
}

async fn idle(
    url: String,
    pid: u32,
    connections: usize,
    in_flight: usize,
    settle: u64,
) -> Result<(), String> {
    let host = host_of(&url)?;
    let before = rss_kib(pid).ok_or("cannot read the server's memory")?;
    let ready = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(Semaphore::new(in_flight.max(1)));
    let started = Instant::now();
    for i in 0..connections {
        let source = IpAddr::V4(Ipv4Addr::new(
            127,
            0,
            0,
            1 + u8::try_from(i % 8).unwrap_or(0),
        ));
        let permit = gate
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| e.to_string())?;
        let (url, ready) = (url.clone(), ready.clone());
        let target = i + 1;
        tokio::spawn(async move {
            let counter = ready.clone();
            let client = tokio::spawn(idle_client(url, host, source, ready));
            // Release the permit once this client joined (or failed).
            while counter.load(Ordering::Relaxed) < target && !client.is_finished() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            drop(permit);
            if let Ok(Err(e)) = client.await {
                eprintln!("client {i}: {e}");
            }
        });
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while ready.load(Ordering::Relaxed) < connections && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let connected = ready.load(Ordering::Relaxed);
    let elapsed = started.elapsed();
    tokio::time::sleep(Duration::from_secs(settle)).await;
    let after = rss_kib(pid).ok_or("cannot read the server's memory")?;
    let per = (after.saturating_sub(before)) as f64 / connected.max(1) as f64;
    println!(
        "connections: {connected}/{connections} in {:.2}s ({:.0}/s)\nserver RSS: {before} KiB before, {after} KiB after\nper connection: {per:.2} KiB",
        elapsed.as_secs_f64(),
        connected as f64 / elapsed.as_secs_f64()
    );
    Ok(())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let result = match Cli::parse().command {
        Command::Idle {
            url,
            pid,
            connections,
            in_flight,
            settle,
        } => idle(url, pid, connections, in_flight, settle).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sio-bench: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
