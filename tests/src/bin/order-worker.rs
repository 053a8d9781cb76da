//! The ordering load's worker as a process of its own
//! (`CARGO_BIN_EXE_order-worker`).

#[tokio::main]
async fn main() -> std::process::ExitCode {
    sio_tests::order::main().await
}
