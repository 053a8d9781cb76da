//! `sio-demo`: a gateway, the chat and echo workers and the chat page in
//! one process on the in-process bus: no NATS server needed.
//!
//! ```text
//! cargo run -p sio-demo            # then open http://localhost:3000
//! ```
//! Takes the gateway's flags (`--listen`, `--help`, …).

#![forbid(unsafe_code)]

use std::process::ExitCode;

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
    // With `--nats`, this is one gateway of a cluster serving the page;
    // SIO_DEMO_WORKERS=0 leaves the handlers to separate chat-workers.
    let in_process = config.nats.is_empty();
    let run_workers = std::env::var("SIO_DEMO_WORKERS").map_or(true, |v| v != "0");
    let bus = Gateway::connect_bus(&config)
        .await
        .map_err(|e| e.to_string())?;
    let listener = sio_gateway::bind(config.listen, config.backlog).map_err(|e| e.to_string())?;
    let gateway = Gateway::new(config.clone(), bus.clone())
        .await
        .map_err(|e| e.to_string())?;
    let workers = match run_workers {
        true => Some(
            sio_demo::worker()
                .start(bus)
                .await
                .map_err(|e| e.to_string())?,
        ),
        false => None,
    };
    let app = sio_demo::app(&gateway, bundle);
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    let what = match (in_process, workers.is_some()) {
        (true, _) => "gateway, chat and echo workers in one process",
        (false, true) => "a gateway and workers on NATS",
        (false, false) => "a gateway on NATS",
    };
    println!("sio-demo: chat on http://localhost:{port} ({what}; Ctrl-C stops)");
    let served = gateway
        .serve_with(listener, app, sio_gateway::shutdown_signal())
        .await;
    if let Some(workers) = workers {
        workers.shutdown().await;
    }
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
