//! The demo's `chat-worker` built into the test package, so the process
//! tests can start it (`CARGO_BIN_EXE_worker-process`).

#[tokio::main]
async fn main() -> std::process::ExitCode {
    sio_demo::worker_cli().await
}
