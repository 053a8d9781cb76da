//! `sio-gateway` built into the test package, so the process tests can
//! start it (`CARGO_BIN_EXE_gateway-process`).

#[tokio::main]
async fn main() -> std::process::ExitCode {
    sio_gateway::main_with(std::env::args_os()).await
}
