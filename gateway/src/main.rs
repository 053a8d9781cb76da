//! `sio-gateway`: the gateway binary. `sio-gateway --help` lists every
//! option; flags beat `SIO_*` environment variables, which beat the TOML
//! file given by `--config`, which beats the defaults.

#![forbid(unsafe_code)]

#[tokio::main]
async fn main() -> std::process::ExitCode {
    sio_gateway::main_with(std::env::args_os()).await
}
