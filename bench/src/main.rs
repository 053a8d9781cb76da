//! `sio-bench`: the benchmark suite. A load generator that speaks raw
//! Engine.IO v4 / Socket.IO v5 over websocket and long-polling (no client
//! library), the servers it measures started as processes (sio-nats, and
//! the peers in `bench/peers/`), and the results as JSON, markdown and SVG.
//!
//! ```text
//! cargo build --release -p sio-bench
//! taskset -c 0 target/release/sio-bench suite --server-cpus 1      # everything
//! target/release/sio-bench suite --quick                            # seconds
//! ```

#![forbid(unsafe_code)]
// Measurements are counts and durations turned into rates: the casts are
// the point, and the values are far below where precision would matter.
#![allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::indexing_slicing
)]

mod app;
mod client;
mod floor;
mod report;
mod scenario;
mod server;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::client::Transport;
use crate::scenario::{Bench, Row, Sizes};
use crate::server::{Launcher, Target};

#[derive(Parser)]
#[command(about = "Benchmarks sio-nats side by side with Socket.IO peers")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the scenarios against sio-nats and the peers.
    Suite {
        /// Small sizes, sio-nats only unless --peers says otherwise.
        #[arg(long)]
        quick: bool,
        /// Peers: node, node-redis, socketioxide, socketioxide-buffer
        /// (comma-separated; default all in the full suite, none in quick).
        #[arg(long, value_delimiter = ',')]
        peers: Option<Vec<String>>,
        /// Scenarios: idle, burst, sparse, ack, stream, rooms, polling,
        /// anywhere, balanced, recover, floor (default all).
        #[arg(long, value_delimiter = ',')]
        scenarios: Option<Vec<String>>,
        /// Pin the servers to these CPUs (`taskset -c`); pin the generator
        /// by starting it under taskset.
        #[arg(long)]
        server_cpus: Option<String>,
        /// Threads of the load generator.
        #[arg(long, default_value_t = 1)]
        threads: usize,
        /// Markdown file whose results section is rewritten.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Where the JSON results and the plots go.
        #[arg(long)]
        artifacts: Option<PathBuf>,
    },
    /// A sio-gateway (started by the suite; takes sio-gateway's flags).
    #[command(disable_help_flag = true)]
    Gateway {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
    /// A bare tokio-tungstenite echo server (started by the suite).
    WsEcho {
        /// Address to listen on.
        addr: std::net::SocketAddr,
    },
    /// The sio-nats bench worker (started by the suite).
    Worker {
        /// NATS server URL(s), comma-separated.
        url: String,
    },
}

const ALL_PEERS: [&str; 4] = ["node", "node-redis", "socketioxide", "socketioxide-buffer"];

fn peer(name: &str) -> Result<Target, String> {
    Ok(match name {
        "node" => Target::Node { processes: 1 },
        "node-redis" => Target::Node { processes: 2 },
        "socketioxide" => Target::Socketioxide { buffer: None },
        "socketioxide-buffer" => Target::Socketioxide {
            buffer: Some(65_536),
        },
        other => return Err(format!("unknown peer {other}; one of {ALL_PEERS:?}")),
    })
}

/// Runs one measurement, printing progress; a failure becomes a note.
async fn measure(
    rows: &mut Vec<Row>,
    what: String,
    run: impl Future<Output = Result<Row, String>>,
) {
    eprint!("sio-bench: {what} … ");
    match run.await {
        Ok(row) => {
            let summary: Vec<String> = row
                .metrics
                .iter()
                .map(|(n, v)| format!("{n}={v:.2}"))
                .collect();
            eprintln!("{}", summary.join(" "));
            rows.push(row);
        }
        Err(e) => eprintln!("failed: {e}"),
    }
}

#[allow(clippy::too_many_arguments)]
async fn suite(
    quick: bool,
    peers: Option<Vec<String>>,
    scenarios: Option<Vec<String>>,
    server_cpus: Option<String>,
    threads: usize,
    out: Option<PathBuf>,
    artifacts: Option<PathBuf>,
) -> Result<(), String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let bench = Bench {
        launcher: Launcher {
            exe,
            root: root.clone(),
            cpus: server_cpus,
        },
        sizes: if quick { Sizes::quick() } else { Sizes::full() },
        threads,
    };
    let peers: Vec<Target> = peers
        .unwrap_or_else(|| match quick {
            true => Vec::new(),
            false => ALL_PEERS.iter().map(|p| (*p).to_owned()).collect(),
        })
        .iter()
        // `--peers ''` means none.
        .filter(|p| !p.is_empty())
        .map(|p| peer(p))
        .collect::<Result<_, _>>()?;
    let wanted = |s: &str| {
        scenarios
            .as_ref()
            .is_none_or(|list| list.iter().any(|w| w == s))
    };
    let mut targets = vec![Target::SioNats { gateways: 1 }];
    targets.extend(peers.iter().cloned());
    // Fan-out with connection state recovery on, beside the same off.
    let recovering: Vec<Target> = targets
        .iter()
        .filter(|t| matches!(t, Target::SioNats { .. } | Target::Node { processes: 1 }))
        .map(|t| Target::Recovering(Box::new(t.clone())))
        .collect();
    let fan_out: Vec<&Target> = targets.iter().chain(&recovering).collect();
    let single: Vec<&Target> = targets
        .iter()
        .filter(|t| !matches!(t, Target::Node { processes: 2.. }))
        .collect();
    let sizes = bench.sizes.clone();
    let mut rows = Vec::new();

    if wanted("idle") {
        for n in &sizes.idle {
            for transport in [Transport::Websocket, Transport::Polling] {
                for t in &single {
                    let what = format!("idle {n} {transport:?} on {}", t.name());
                    measure(&mut rows, what, bench.idle(t, transport, *n)).await;
                }
            }
        }
    }
    if wanted("burst") {
        for t in &fan_out {
            let what = format!("burst on {}", t.name());
            let run = bench.burst(
                t,
                Transport::Websocket,
                sizes.fanout_clients,
                sizes.burst_messages,
            );
            measure(&mut rows, what, run).await;
        }
    }
    if wanted("sparse") {
        for rate in &sizes.sparse_rates {
            for t in &fan_out {
                measure(
                    &mut rows,
                    format!("sparse {rate}/s on {}", t.name()),
                    bench.sparse(t, *rate),
                )
                .await;
            }
        }
    }
    if wanted("ack") {
        for per_client in [None, Some(100)] {
            for t in &targets {
                measure(
                    &mut rows,
                    format!("ack {per_client:?} on {}", t.name()),
                    bench.ack(t, per_client),
                )
                .await;
            }
        }
    }
    if wanted("stream") {
        for event in ["tick", "tick_free"] {
            for t in &targets {
                if event == "tick_free" && !matches!(t, Target::SioNats { .. }) {
                    continue;
                }
                measure(
                    &mut rows,
                    format!("stream {event} on {}", t.name()),
                    bench.stream(t, event),
                )
                .await;
            }
        }
    }
    if wanted("rooms") {
        let mut with = vec![
            Target::SioNats { gateways: 1 },
            Target::SioNats { gateways: 2 },
            Target::SioNats { gateways: 3 },
        ];
        with.extend(
            peers
                .iter()
                .filter(|p| matches!(p, Target::Node { processes: 2.. }))
                .cloned(),
        );
        for t in &with {
            measure(&mut rows, format!("rooms on {}", t.name()), bench.rooms(t)).await;
        }
    }
    if wanted("polling") {
        for t in &single {
            let what = format!("polling on {}", t.name());
            let run = bench.burst(
                t,
                Transport::Polling,
                sizes.polling_clients,
                sizes.polling_messages,
            );
            measure(&mut rows, what, run).await;
        }
    }
    if wanted("anywhere") {
        for transport in [Transport::Polling, Transport::Upgrade] {
            for elsewhere in [false, true] {
                let what = format!("{transport:?} anywhere, elsewhere: {elsewhere}");
                measure(&mut rows, what, bench.anywhere(transport, elsewhere)).await;
            }
        }
    }

    if wanted("balanced") {
        let mut behind = vec![Target::SioNats { gateways: 3 }];
        if peers
            .iter()
            .any(|p| matches!(p, Target::Node { processes: 2.. }))
        {
            behind.push(Target::Node { processes: 3 });
        }
        for t in &behind {
            for sticky in [true, false] {
                let what = format!("balanced (sticky: {sticky}) on {}", t.name());
                measure(&mut rows, what, bench.balanced(t, sticky)).await;
            }
        }
    }

    if wanted("recover") {
        for t in &recovering {
            measure(
                &mut rows,
                format!("recover on {}", t.name()),
                bench.recover(t, 1_000),
            )
            .await;
        }
    }

    if wanted("floor") {
        let launcher = &bench.launcher;
        eprint!("sio-bench: floors … ");
        match floor::nats_floor(launcher, sizes.floor_messages, sizes.seconds).await {
            Ok(floors) => rows.extend(floors),
            Err(e) => eprintln!("nats floor failed: {e}"),
        }
        match floor::ws_floor(launcher, sizes.ack_clients, sizes.seconds).await {
            Ok(floor) => rows.push(floor),
            Err(e) => eprintln!("websocket floor failed: {e}"),
        }
        eprintln!("done");
    }

    let artifacts = artifacts.unwrap_or_else(|| root.join("target/bench"));
    std::fs::create_dir_all(&artifacts).map_err(|e| e.to_string())?;
    let json = serde_json::to_string_pretty(&rows).map_err(|e| e.to_string())?;
    std::fs::write(artifacts.join("results.json"), json).map_err(|e| e.to_string())?;
    report::plots(&rows, &artifacts).map_err(|e| e.to_string())?;
    let plots_link = out.as_ref().and_then(|o| {
        let base = o.parent()?.canonicalize().ok()?;
        let dir = artifacts.canonicalize().ok()?;
        dir.strip_prefix(&base)
            .ok()
            .map(|p| p.display().to_string())
    });
    let tables = report::machine() + &report::markdown(&rows, plots_link.as_deref());
    match out {
        Some(path) => {
            let doc = std::fs::read_to_string(&path).unwrap_or_default();
            std::fs::write(&path, report::splice(&doc, &tables)).map_err(|e| e.to_string())?;
            eprintln!(
                "sio-bench: results in {} and {}",
                path.display(),
                artifacts.display()
            );
        }
        None => println!("{tables}"),
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Command::Suite { threads, .. } = &cli.command {
        builder.worker_threads((*threads).max(1));
    }
    let runtime = match builder.enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sio-bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Command::Gateway { args } = cli.command {
        let argv = std::iter::once(std::ffi::OsString::from("sio-gateway")).chain(args);
        return runtime.block_on(sio_gateway::main_with(argv));
    }
    let result = runtime.block_on(async {
        match cli.command {
            Command::Suite {
                quick,
                peers,
                scenarios,
                server_cpus,
                threads,
                out,
                artifacts,
            } => {
                suite(
                    quick,
                    peers,
                    scenarios,
                    server_cpus,
                    threads,
                    out,
                    artifacts,
                )
                .await
            }
            Command::Worker { url } => app::serve(&url).await,
            Command::WsEcho { addr } => floor::ws_echo_server(addr).await,
            Command::Gateway { .. } => Ok(()),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sio-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
