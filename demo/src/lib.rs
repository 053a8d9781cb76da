//! The demo applications, written with `sio-worker` only: an echo worker
//! on `/echo` and a chat on `/`. `sio-demo` runs them with a gateway in one
//! process; `chat-worker` runs them on their own against NATS.

#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};

use axum::http::header;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use sio_gateway::Gateway;
use sio_worker::{ConnectError, DisconnectReason, RawArgs, Socket, Worker};

const PAGE: &str = include_str!("../static/index.html");

/// The stock socket.io browser client, installed from npm (`npm ci` at
/// the repository root) and served by the demo, so the page loads nothing
/// from the internet. `SIO_DEMO_CLIENT_BUNDLE` names it where there is no
/// checkout (the container image).
fn bundle_path() -> PathBuf {
    std::env::var_os("SIO_DEMO_CLIENT_BUNDLE").map_or_else(
        || {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../node_modules/socket.io-client/dist/socket.io.min.js")
        },
        PathBuf::from,
    )
}

/// The browser client bundle, installing it with `npm ci` when missing.
pub fn client_bundle() -> Result<Vec<u8>, String> {
    let path = bundle_path();
    if !path.exists() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        eprintln!("sio-demo: installing the socket.io browser client (npm ci)…");
        let status = std::process::Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&root)
            .status()
            .map_err(|e| format!("cannot run npm: {e}"))?;
        if !status.success() {
            return Err(format!("npm ci failed in {}", root.display()));
        }
    }
    std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))
}

/// The gateway's routes plus the chat page (`/`) and the client bundle
/// (`/socket.io.min.js`).
pub fn app(gateway: &Gateway, bundle: Vec<u8>) -> axum::Router {
    gateway
        .router()
        .route("/", get(|| async { Html(PAGE) }))
        .route(
            "/socket.io.min.js",
            get(move || {
                let bundle = bundle.clone();
                async move { ([(header::CONTENT_TYPE, "text/javascript")], bundle).into_response() }
            }),
        )
}

/// Namespaces whose connects the workers decide (the chat needs a
/// nickname): the gateway's `--authorize` list for this demo.
pub const AUTHORIZE: &[&str] = &["/"];

/// Namespaces the demo serves.
pub const NAMESPACES: &[&str] = &["/", "/echo"];

/// The room everyone starts in.
pub const LOBBY: &str = "lobby";

/// Who a chat socket is.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct User {
    pub nickname: String,
}

/// A chat line as clients receive it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Line {
    pub room: String,
    pub from: String,
    pub text: String,
}

fn nickname(socket: &Socket) -> String {
    socket
        .data::<User>()
        .and_then(Result::ok)
        .map_or_else(|| "someone".into(), |u| u.nickname)
}

/// Registers the echo and chat handlers.
pub fn worker() -> Worker {
    let mut worker = Worker::new();
    echo(&mut worker);
    chat(&mut worker);
    worker
}

/// `/echo`: every event comes back to its sender as `echo`, and acks are
/// answered with the same arguments; `ask` puts a question to the client
/// and answers with the client's own answer.
pub fn echo(worker: &mut Worker) {
    worker
        .of("/echo")
        .on_raw("echo", |socket: Socket, args: RawArgs| async move {
            if socket.wants_ack() {
                socket.ack_raw(&args).await?;
            }
            socket.emit_raw("echo", &args).await
        })
        .on("ask", |socket: Socket, (question,): (String,)| async move {
            let timeout = std::time::Duration::from_secs(5);
            let (answer,): (serde_json::Value,) = socket
                .emit_with_ack("question", &(question,), timeout)
                .await?;
            socket.ack(&(answer,)).await
        });
}

/// `/`: nicknames (from the auth payload), rooms, messages to a room,
/// a typing indicator (opted out of per-socket order: a late one is
/// worthless, and it need not wait behind a message), the users of a
/// room.
pub fn chat(worker: &mut Worker) {
    worker
        .of("/")
        .on_connect(|socket: Socket| async move {
            let user = socket
                .auth::<User>()
                .and_then(Result::ok)
                .filter(|u| !u.nickname.trim().is_empty() && u.nickname.len() <= 32)
                .ok_or_else(|| ConnectError::new("choose a nickname (1 to 32 characters)"))?;
            let nickname = user.nickname.trim().to_owned();
            socket
                .set_data(&User {
                    nickname: nickname.clone(),
                })
                .await
                .ok();
            socket.join([LOBBY]).await.ok();
            socket
                .to(LOBBY)
                .emit("joined", &(LOBBY, &nickname))
                .await
                .ok();
            socket.emit("welcome", &(&nickname, LOBBY)).await.ok();
            Ok(())
        })
        .on("join", |socket: Socket, (room,): (String,)| async move {
            let room = room.trim().to_owned();
            if room.is_empty() || room.len() > 64 {
                return socket.ack(&(false,)).await;
            }
            socket.join([room.clone()]).await?;
            socket
                .to(room.clone())
                .emit("joined", &(&room, nickname(&socket)))
                .await?;
            socket.ack(&(true,)).await
        })
        .on("leave", |socket: Socket, (room,): (String,)| async move {
            socket.leave([room.clone()]).await?;
            socket
                .to(room.clone())
                .emit("left", &(&room, nickname(&socket)))
                .await
        })
        .on(
            "message",
            |socket: Socket, (room, text): (String, String)| async move {
                if !socket.rooms().contains(&room) || text.is_empty() || text.len() > 2000 {
                    return socket.ack(&(false,)).await;
                }
                let line = Line {
                    room: room.clone(),
                    from: nickname(&socket),
                    text,
                };
                socket.of("/").to(room).emit("message", &(&line,)).await?;
                socket.ack(&(true,)).await
            },
        )
        .on("users", |socket: Socket, (room,): (String,)| async move {
            // Everyone in the room, on every gateway.
            let members = socket.of("/").to(room).fetch_sockets().await?;
            let mut names: Vec<String> = members
                .iter()
                .filter_map(|m| m.data::<User>().and_then(Result::ok))
                .map(|u| u.nickname)
                .collect();
            names.sort();
            socket.ack(&(names,)).await
        })
        .on("quit", |socket: Socket, ()| async move {
            socket.disconnect(false).await
        })
        .on("typing", |socket: Socket, (room,): (String,)| async move {
            socket
                .to(room.clone())
                .volatile()
                .emit("typing", &(&room, nickname(&socket)))
                .await
        })
        .unordered(["typing"])
        .on_disconnect(|socket: Socket, _: DisconnectReason| async move {
            for room in socket.rooms() {
                socket
                    .to(room.clone())
                    .emit("left", &(room, nickname(&socket)))
                    .await?;
            }
            Ok::<(), sio_worker::Error>(())
        });
}

async fn connect(url: &str, name: &str) -> Result<std::sync::Arc<dyn sio_bus::Bus>, String> {
    let options = sio_bus::NatsOptions {
        urls: url.split(',').map(str::to_owned).collect(),
        name: Some(name.into()),
        ..sio_bus::NatsOptions::default()
    };
    let bus = sio_bus::NatsBus::connect(&options)
        .await
        .map_err(|e| e.to_string())?;
    Ok(std::sync::Arc::new(bus))
}

/// The `chat-worker` program: the demo's workers against NATS at `url`
/// until SIGTERM or SIGINT; says how many messages it handled.
pub async fn worker_main(url: &str) -> Result<(), String> {
    let bus = connect(url, "chat-worker").await?;
    let running = worker().start(bus).await.map_err(|e| e.to_string())?;
    println!("chat-worker: serving / and /echo from {url}");
    sio_gateway::shutdown_signal().await;
    let handled = running.handled();
    running.shutdown().await;
    println!("chat-worker: handled {handled} messages");
    Ok(())
}

/// The `emit` program: one emit from a process of its own,
/// `emit <nats-url> <namespace> <room or -> <event> [<JSON array of arguments>]`.
pub async fn emit_main(args: &[String]) -> Result<(), String> {
    let [url, ns, room, event, rest @ ..] = args else {
        return Err("usage: emit <nats-url> <namespace> <room or -> <event> [<JSON array>]".into());
    };
    let arguments: serde_json::Value = match rest.first() {
        Some(json) => serde_json::from_str(json).map_err(|e| format!("arguments: {e}"))?,
        None => serde_json::Value::Array(Vec::new()),
    };
    let io = sio_worker::Emitter::new(connect(url, "emit").await?);
    let mut target = io.of(ns.as_str());
    if room != "-" {
        target = target.to(room.as_str());
    }
    target
        .emit(event, &arguments)
        .await
        .map_err(|e| e.to_string())?;
    // The message must leave before the process does.
    io.flush().await.map_err(|e| e.to_string())
}

fn exit(program: &str, result: Result<(), String>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{program}: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// `chat-worker [<nats-url>]` (default `nats://127.0.0.1:4222`).
pub async fn worker_cli() -> std::process::ExitCode {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "nats://127.0.0.1:4222".into());
    exit("chat-worker", worker_main(&url).await)
}

/// `emit <nats-url> <namespace> <room or -> <event> [<JSON array>]`.
pub async fn emit_cli() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    exit("emit", emit_main(&args).await)
}
