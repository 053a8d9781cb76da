//! The demo's workers (chat on `/`, echo on `/echo`) as a process of their
//! own, for a deployment with NATS:
//!
//! ```text
//! nats-server &
//! cargo run -p sio-gateway -- --nats nats://127.0.0.1:4222 --namespaces /,/echo --authorize /
//! cargo run -p sio-demo --bin chat-worker -- nats://127.0.0.1:4222
//! ```

#![forbid(unsafe_code)]

#[tokio::main]
async fn main() -> std::process::ExitCode {
    sio_demo::worker_cli().await
}
