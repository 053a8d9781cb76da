//! The demo's workers (chat on `/`, echo on `/echo`) as a process of their
//! own, for a deployment with NATS:
//!
//! ```text
//! nats-server &
//! cargo run -p sio-gateway -- --nats nats://127.0.0.1:4222 --namespaces /,/echo --authorize /
//! cargo run -p sio-demo --bin chat-worker -- nats://127.0.0.1:4222
//! ```

#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::sync::Arc;

use sio_bus::{NatsBus, NatsOptions};

#[tokio::main]
async fn main() -> ExitCode {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "nats://127.0.0.1:4222".into());
    let options = NatsOptions {
        urls: url.split(',').map(str::to_owned).collect(),
        name: Some("chat-worker".into()),
        ..NatsOptions::default()
    };
    let bus = match NatsBus::connect(&options).await {
        Ok(bus) => Arc::new(bus),
        Err(error) => {
            eprintln!("chat-worker: {error}");
            return ExitCode::FAILURE;
        }
    };
    println!("chat-worker: serving / and /echo from {url}");
    match sio_demo::worker()
        .run_until(bus, sio_gateway::shutdown_signal())
        .await
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("chat-worker: {error}");
            ExitCode::FAILURE
        }
    }
}
