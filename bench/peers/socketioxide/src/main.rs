//! socketioxide peer server for the sio-nats benchmark suite.
//!
//! A single-process Socket.IO v5 / Engine.IO v4 server built on
//! [socketioxide](https://crates.io/crates/socketioxide) and plain hyper, speaking the
//! bench protocol on namespace `/` (polling and websocket, path `/socket.io/`):
//!
//! - on connect the socket joins room `all`, plus `auth.room` when it is a string;
//! - `echo` (with ack): the ack is answered with exactly the arguments received;
//! - `fanout` `[room, count, stamp, pad]`: emits `m` `[stamp, i, pad]` to every socket
//!   of `room` `count` times (i = 0..count-1), then answers an ack (if any) with
//!   `[count]`; malformed arguments are ignored;
//! - `tick` `[stamp, i]`: emits `m` `[stamp, i]` back to the sender.
//!
//! Environment: `PORT` (default 3000, bound on 127.0.0.1) and `SIOX_BUFFER` (optional
//! integer: socketioxide's per-socket send buffer size, `max_buffer_size`, in packets;
//! unset keeps socketioxide's default). Prints `listening on <port>` once listening and
//! exits cleanly on SIGTERM or SIGINT.
//!
//! Build and run (from the repository root; its own target dir keeps the workspace's
//! build untouched):
//!
//! ```text
//! CARGO_TARGET_DIR=target/peers cargo build --release --manifest-path bench/peers/socketioxide/Cargo.toml
//! PORT=3200 target/peers/release/socketioxide-peer
//! PORT=3200 SIOX_BUFFER=100000 target/peers/release/socketioxide-peer
//! ```
#![forbid(unsafe_code)]

use std::fmt;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use serde::de::{Deserialize, Deserializer, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeTuple, Serializer};
use serde_json::Value;
use socketioxide::extract::{AckSender, Data, SocketRef, TryData};
use socketioxide::{BroadcastError, SocketIo};
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};

/// Engine.IO limits of the protocol (socket.io's `maxHttpBufferSize` 1e6).
const MAX_PAYLOAD: usize = 1_000_000;
const PING_INTERVAL: Duration = Duration::from_millis(25_000);
const PING_TIMEOUT: Duration = Duration::from_millis(20_000);

/// `m` packets that did not reach a socket because socketioxide refused them (its send
/// buffer was full, or it was closing). Reported on stderr at shutdown.
static DROPPED: AtomicU64 = AtomicU64::new(0);
/// `fanout` acks that socketioxide refused for the same reasons.
static DROPPED_ACKS: AtomicU64 = AtomicU64::new(0);

/// All the arguments of an event or ack, whatever their number.
///
/// socketioxide decodes a tuple-like type from the whole argument list (anything else
/// gets only the first argument), and sends a tuple-like value as one argument per
/// element, so this type (de)serializes through serde's tuple model.
struct Args(Vec<Value>);

impl<'de> Deserialize<'de> for Args {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        struct ArgsVisitor;
        impl<'de> Visitor<'de> for ArgsVisitor {
            type Value = Args;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of event arguments")
            }
            fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<Args, S::Error> {
                let mut args = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                while let Some(v) = seq.next_element::<Value>()? {
                    args.push(v);
                }
                Ok(Args(args))
            }
        }
        de.deserialize_tuple(usize::MAX, ArgsVisitor)
    }
}

impl Serialize for Args {
    fn serialize<S: Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        let mut tup = ser.serialize_tuple(self.0.len())?;
        for v in &self.0 {
            tup.serialize_element(v)?;
        }
        tup.end()
    }
}

async fn on_connect(socket: SocketRef, TryData(auth): TryData<Value>) {
    socket.join("all");
    if let Ok(auth) = auth {
        if let Some(room) = auth.get("room").and_then(Value::as_str) {
            socket.join(room.to_owned());
        }
    }
    socket.on("echo", on_echo);
    socket.on("fanout", on_fanout);
    socket.on("tick", on_tick);
}

async fn on_tick(socket: SocketRef, Data(args): Data<Args>) {
    let _ = socket.emit("m", &args);
}

async fn on_echo(ack: AckSender, Data(args): Data<Args>) {
    let _ = ack.send(&args);
}

/// A JSON number that is an integer in 1..=2^53-1 (JavaScript's safe integers).
fn fanout_count(v: &Value) -> Option<u64> {
    const MAX_SAFE: u64 = (1 << 53) - 1;
    let n = match v.as_u64() {
        Some(n) => n,
        None => {
            let f = v.as_f64()?;
            if f.fract() != 0.0 || !(1.0..=MAX_SAFE as f64).contains(&f) {
                return None;
            }
            f as u64
        }
    };
    (1..=MAX_SAFE).contains(&n).then_some(n)
}

async fn on_fanout(io: SocketIo, ack: AckSender, Data(Args(args)): Data<Args>) {
    let (
        Some(Value::String(room)),
        Some(count),
        Some(stamp @ Value::Number(_)),
        Some(Value::String(pad)),
    ) = (
        args.first(),
        args.get(1).and_then(fanout_count),
        args.get(2),
        args.get(3),
    )
    else {
        return; // malformed: ignore
    };
    for i in 0..count {
        let dropped = match io.to(room.clone()).emit("m", &(stamp, i, pad)).await {
            Ok(()) => 0,
            Err(BroadcastError::Socket(errs)) => errs.len() as u64,
            Err(_) => 1,
        };
        if dropped > 0 {
            DROPPED.fetch_add(dropped, Ordering::Relaxed);
        }
    }
    if ack.send(&count).is_err() {
        DROPPED_ACKS.fetch_add(1, Ordering::Relaxed);
    }
}

fn env_number<T: std::str::FromStr>(name: &str) -> Result<Option<T>, String> {
    match std::env::var(name) {
        Ok(s) if s.trim().is_empty() => Ok(None),
        Ok(s) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| format!("{name} must be a non-negative integer, got {s:?}")),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(e) => Err(format!("{name}: {e}")),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("socketioxide-peer: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), String> {
    let port: u16 = env_number("PORT")?.unwrap_or(3000);
    let buffer: Option<usize> = env_number("SIOX_BUFFER")?;
    // The buffer is a bounded tokio mpsc channel per socket: 0 or more than tokio's
    // semaphore limit would panic at the first connection, so refuse them up front.
    if let Some(size) = buffer {
        if size == 0 || size > usize::MAX >> 3 {
            return Err(format!(
                "SIOX_BUFFER must be in 1..={}, got {size}",
                usize::MAX >> 3
            ));
        }
    }

    let mut builder = SocketIo::builder()
        .req_path("/socket.io")
        .ping_interval(PING_INTERVAL)
        .ping_timeout(PING_TIMEOUT)
        .max_payload(MAX_PAYLOAD as u64)
        .ws_max_message_size(MAX_PAYLOAD);
    if let Some(size) = buffer {
        builder = builder.max_buffer_size(size);
    }
    let (svc, io) = builder.build_svc();
    io.ns("/", on_connect);

    let mut sigterm = signal(SignalKind::terminate()).map_err(|e| format!("SIGTERM: {e}"))?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(|e| format!("SIGINT: {e}"))?;

    let listener = TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(|e| format!("bind 127.0.0.1:{port}: {e}"))?;
    let local_port = listener.local_addr().map_err(|e| e.to_string())?.port();
    println!("listening on {local_port}");

    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    let svc = svc.clone();
                    tokio::spawn(async move {
                        let _ = http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), svc)
                            .with_upgrades()
                            .await;
                    });
                }
                Err(e) => {
                    // e.g. out of file descriptors: back off instead of spinning.
                    eprintln!("socketioxide-peer: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            _ = sigterm.recv() => break,
            _ = sigint.recv() => break,
        }
    }

    drop(listener);
    let _ = tokio::time::timeout(Duration::from_secs(3), io.close()).await;
    let (dropped, acks) = (
        DROPPED.load(Ordering::Relaxed),
        DROPPED_ACKS.load(Ordering::Relaxed),
    );
    if dropped + acks > 0 {
        eprintln!(
            "socketioxide-peer: dropped {dropped} `m` packets and {acks} fanout acks \
             (socket send buffer full or socket closed)"
        );
    }
    Ok(())
}
