//! `sio-gateway`: the gateway binary. `sio-gateway --help` lists every
//! option; flags beat `SIO_*` environment variables, which beat the TOML
//! file given by `--config`, which beats the defaults.

#![forbid(unsafe_code)]

use std::process::ExitCode;

use sio_gateway::{Config, logging};

#[tokio::main]
async fn main() -> ExitCode {
    let config = match Config::load(std::env::args_os()) {
        Ok(config) => config,
        Err(error) => return error.report(),
    };
    if let Err(error) = logging::init(config.log_format, &config.log_level) {
        eprintln!("sio-gateway: {error}");
        return ExitCode::FAILURE;
    }
    match sio_gateway::run(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "gateway stopped");
            eprintln!("sio-gateway: {error}");
            ExitCode::FAILURE
        }
    }
}
