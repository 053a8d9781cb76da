//! One emit from a process of its own, through NATS:
//!
//! ```text
//! cargo run -p sio-demo --bin emit -- nats://127.0.0.1:4222 / lobby message '[{"room":"lobby","from":"cron","text":"hi"}]'
//! ```

#![forbid(unsafe_code)]

#[tokio::main]
async fn main() -> std::process::ExitCode {
    sio_demo::emit_cli().await
}
