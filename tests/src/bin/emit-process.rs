//! The demo's `emit` built into the test package, so the process tests can
//! start it (`CARGO_BIN_EXE_emit-process`).

#[tokio::main]
async fn main() -> std::process::ExitCode {
    sio_demo::emit_cli().await
}
