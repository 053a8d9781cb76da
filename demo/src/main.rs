//! `sio-demo`: a gateway, the chat and echo workers and the chat page in
//! one process on the in-process bus: no NATS server needed.
//!
//! ```text
//! cargo run -p sio-demo            # then open http://localhost:3000
//! ```
//! Takes the gateway's flags (`--listen`, `--help`, …).

#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::sync::Arc;

use sio_bus::{Bus, MemoryBus};
use sio_gateway::{Config, Gateway, logging};

async fn run(mut config: Config) -> Result<(), String> {
    for ns in sio_demo::NAMESPACES {
        if !config.namespaces.iter().any(|n| n == ns) {
            config.namespaces.push((*ns).into());
        }
    }
    config
        .authorize
        .extend(sio_demo::AUTHORIZE.iter().map(|ns| (*ns).to_owned()));
    let bundle = sio_demo::client_bundle()?;
    let bus: Arc<dyn Bus> = Arc::new(MemoryBus::default());
    let listener = sio_gateway::bind(config.listen, config.backlog).map_err(|e| e.to_string())?;
    let gateway = Gateway::new(config.clone(), bus.clone())
        .await
        .map_err(|e| e.to_string())?;
    let workers = sio_demo::worker()
        .start(bus)
        .await
        .map_err(|e| e.to_string())?;
    let app = sio_demo::app(&gateway, bundle);
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    println!(
        "sio-demo: chat on http://localhost:{port} (gateway, chat and echo workers in one process; Ctrl-C stops)"
    );
    let served = gateway
        .serve_with(listener, app, sio_gateway::shutdown_signal())
        .await;
    workers.shutdown().await;
    served.map_err(|e| e.to_string())
}

#[tokio::main]
async fn main() -> ExitCode {
    let config = match Config::load(std::env::args_os()) {
        Ok(config) => config,
        Err(error) => return error.report(),
    };
    if let Err(error) = logging::init(config.log_format, &config.log_level) {
        eprintln!("sio-demo: {error}");
        return ExitCode::FAILURE;
    }
    match run(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("sio-demo: {error}");
            ExitCode::FAILURE
        }
    }
}
