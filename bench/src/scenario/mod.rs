//! The scenarios. Each starts its server set afresh, drives it with raw
//! clients and returns one [`Row`] of metrics. One file per scenario; here
//! the sizes, the connected clients and the metrics they share.

mod ack;
mod anywhere;
mod balanced;
mod burst;
mod idle;
mod recover;
mod rooms;
mod sparse;
mod stream;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use crate::client::{self, Report, Role, Spec, Transport};
use crate::server::{Launcher, Running, Target, cpu_seconds};

/// One measurement: a target under one set of parameters.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Row {
    pub(crate) scenario: &'static str,
    pub(crate) target: String,
    pub(crate) params: String,
    pub(crate) metrics: Vec<(String, f64)>,
    /// Where the load generator used ≥ 90 % of its threads' CPU, the
    /// numbers say more about it than about the server.
    pub(crate) generator_bound: bool,
    pub(crate) notes: Vec<String>,
}

impl Row {
    pub(crate) fn metric(&self, name: &str) -> Option<f64> {
        self.metrics
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| *v)
    }
}

/// Sizes: the full suite, or the quick one that CI runs.
#[derive(Debug, Clone)]
pub(crate) struct Sizes {
    pub(crate) idle: Vec<usize>,
    pub(crate) fanout_clients: usize,
    pub(crate) burst_messages: u32,
    pub(crate) sparse_rates: Vec<u32>,
    pub(crate) seconds: f64,
    pub(crate) ack_clients: usize,
    pub(crate) rooms: usize,
    pub(crate) room_messages: u32,
    pub(crate) polling_clients: usize,
    pub(crate) polling_messages: u32,
    pub(crate) floor_messages: u64,
    pub(crate) stream_events: u64,
}

impl Sizes {
    pub(crate) fn full() -> Self {
        Self {
            idle: vec![1_000, 10_000, 19_000],
            fanout_clients: 1_000,
            burst_messages: 1_000,
            sparse_rates: vec![50, 100, 250, 1_000],
            seconds: 10.0,
            ack_clients: 100,
            rooms: 100,
            room_messages: 20,
            polling_clients: 1_000,
            polling_messages: 100,
            floor_messages: 1_000_000,
            stream_events: 50_000,
        }
    }

    pub(crate) fn quick() -> Self {
        Self {
            idle: vec![300],
            fanout_clients: 200,
            burst_messages: 50,
            sparse_rates: vec![100],
            seconds: 1.5,
            ack_clients: 20,
            rooms: 20,
            room_messages: 5,
            polling_clients: 100,
            polling_messages: 10,
            floor_messages: 10_000,
            stream_events: 2_000,
        }
    }
}

/// The context every scenario runs in.
#[derive(Debug, Clone)]
pub(crate) struct Bench {
    pub(crate) launcher: Launcher,
    pub(crate) sizes: Sizes,
    /// Threads of the generator's runtime (for the bottleneck flag).
    pub(crate) threads: usize,
}

/// Source address for client `i`: 127.0.0.1–127.0.0.8, so that ~19k
/// connections do not run out of ports.
fn source(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1 + (i % 8) as u8))
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    f64::from(sorted[i.min(sorted.len() - 1)])
}

/// The `p50_ms`-style metric of sorted microsecond latencies.
fn latency(sorted: &[u32], p: f64) -> (String, f64) {
    (
        format!("p{:.0}_ms", p * 100.0),
        percentile(sorted, p) / 1000.0,
    )
}

/// The `cpu_us_per_delivery` metric: server CPU over what clients received.
fn cpu_per_delivery(server_cpu: f64, received: u64) -> (String, f64) {
    (
        "cpu_us_per_delivery".into(),
        server_cpu * 1e6 / received.max(1) as f64,
    )
}

/// The `dropped` metric: deliveries expected and not received.
fn dropped(expected: u64, received: u64) -> (String, f64) {
    ("dropped".into(), expected.saturating_sub(received) as f64)
}

/// Connected clients and the way to stop them.
struct Clients {
    stop: watch::Sender<bool>,
    handles: Vec<tokio::task::JoinHandle<Report>>,
    counter: Arc<AtomicU64>,
    connect_seconds: f64,
}

impl Clients {
    /// Connects every client, at most `in_flight` connecting at once.
    async fn connect(specs: impl IntoIterator<Item = Spec>, in_flight: usize) -> Self {
        let (stop, stop_rx) = watch::channel(false);
        let specs: Vec<Spec> = specs.into_iter().collect();
        let counter = specs
            .first()
            .map_or_else(|| Arc::new(AtomicU64::new(0)), |s| s.counter.clone());
        let (joined_tx, mut joined) = mpsc::channel(specs.len().max(1));
        let started = Instant::now();
        let mut pending = 0;
        let total = specs.len();
        let mut handles = Vec::with_capacity(total);
        for spec in specs {
            while pending >= in_flight {
                if joined.recv().await.is_some() {
                    pending -= 1;
                }
            }
            handles.push(tokio::spawn(client::run(
                spec,
                joined_tx.clone(),
                stop_rx.clone(),
            )));
            pending += 1;
        }
        while pending > 0 {
            match tokio::time::timeout(Duration::from_secs(30), joined.recv()).await {
                Ok(Some(())) => pending -= 1,
                _ => break,
            }
        }
        Self {
            stop,
            handles,
            counter,
            connect_seconds: started.elapsed().as_secs_f64(),
        }
    }

    fn received(&self) -> u64 {
        self.counter.load(Ordering::Relaxed)
    }

    /// Waits until `expected` arrived, or nothing arrived for `quiet`.
    /// Returns when the last one arrived.
    async fn wait_for(&self, expected: u64, quiet: Duration) -> Instant {
        let mut last = self.received();
        let mut last_at = Instant::now();
        while last < expected && last_at.elapsed() < quiet {
            tokio::time::sleep(Duration::from_millis(2)).await;
            let now = self.received();
            if now != last {
                last = now;
                last_at = Instant::now();
            }
        }
        last_at
    }

    async fn finish(self) -> Vec<Report> {
        let _ = self.stop.send(true);
        let mut reports = Vec::new();
        for handle in self.handles {
            if let Ok(report) = handle.await {
                reports.push(report);
            }
        }
        reports
    }
}

impl Clients {
    /// Connects `n` listeners to `running`: client `i` in room `room(i)`,
    /// on the server `gateway(i)` (modulo how many there are).
    async fn listen(
        running: &Running,
        n: usize,
        transport: Transport,
        room: impl Fn(usize) -> String,
        gateway: impl Fn(usize) -> usize,
    ) -> Self {
        let counter = Arc::new(AtomicU64::new(0));
        let specs = (0..n).map(|i| Spec {
            server: running.addrs[gateway(i) % running.addrs.len()],
            source: source(i),
            transport,
            room: Some(room(i)),
            role: Role::Listen,
            counter: counter.clone(),
            then: None,
        });
        Self::connect(specs, 256).await
    }
}

/// The end of an ack run: how many came back in how long, at what cost.
struct Acked {
    acks: u64,
    wall: f64,
    server_cpu: f64,
    generator_bound: bool,
    reports: Vec<Report>,
}

/// The end of a fan-out: what the listeners received, and what it cost.
struct Delivered {
    /// When the last delivery arrived.
    last: Instant,
    received: u64,
    server_cpu: f64,
    front_cpu: f64,
    generator_bound: bool,
    reports: Vec<Report>,
}

impl Delivered {
    /// The `deliveries_per_s` metric, from `started` to the last delivery.
    fn per_s(&self, started: Instant) -> (String, f64) {
        let seconds = self
            .last
            .saturating_duration_since(started)
            .as_secs_f64()
            .max(1e-6);
        ("deliveries_per_s".into(), self.received as f64 / seconds)
    }
}

/// Latencies of all reports, sorted.
fn latencies(reports: &[Report]) -> Vec<u32> {
    let mut all: Vec<u32> = reports
        .iter()
        .flat_map(|r| r.latencies.iter().copied())
        .collect();
    all.sort_unstable();
    all
}

fn failures(reports: &[Report], notes: &mut Vec<String>) -> f64 {
    let failed: Vec<&String> = reports.iter().filter_map(|r| r.error.as_ref()).collect();
    if let Some(first) = failed.first() {
        notes.push(format!("{} clients failed, e.g. {first}", failed.len()));
    }
    failed.len() as f64
}

/// CPU of the generator itself, to flag where it was the bottleneck.
struct Meter {
    started: Instant,
    own: f64,
    server: f64,
    front: f64,
}

impl Meter {
    fn start(running: &Running) -> Self {
        Self {
            started: Instant::now(),
            own: cpu_seconds(std::process::id()),
            server: running.cpu(),
            front: running.front_cpu(),
        }
    }

    /// (wall seconds, server CPU seconds, front CPU seconds, generator-bound)
    fn stop(&self, running: &Running, threads: usize) -> (f64, f64, f64, bool) {
        let wall = self.started.elapsed().as_secs_f64();
        let own = cpu_seconds(std::process::id()) - self.own;
        (
            wall,
            running.cpu() - self.server,
            running.front_cpu() - self.front,
            own >= 0.9 * wall * threads as f64,
        )
    }
}

impl Bench {
    /// Waits until `expected` deliveries arrived (or none for `quiet`),
    /// then stops `meter` and the clients.
    async fn delivered(
        &self,
        running: &Running,
        clients: Clients,
        meter: &Meter,
        expected: u64,
        quiet: Duration,
    ) -> Delivered {
        let last = clients.wait_for(expected, quiet).await;
        let (_, server_cpu, front_cpu, generator_bound) = meter.stop(running, self.threads);
        let received = clients.received();
        let reports = clients.finish().await;
        Delivered {
            last,
            received,
            server_cpu,
            front_cpu,
            generator_bound,
            reports,
        }
    }

    /// The acks `connected` clients get for `seconds`, and what the
    /// server spent on them.
    async fn acked(&self, running: &Running, connected: Clients) -> Acked {
        let start_acks = connected.received();
        let meter = Meter::start(running);
        tokio::time::sleep(Duration::from_secs_f64(self.sizes.seconds)).await;
        let acks = connected.received() - start_acks;
        let (wall, server_cpu, _, generator_bound) = meter.stop(running, self.threads);
        let reports = connected.finish().await;
        Acked {
            acks,
            wall,
            server_cpu,
            generator_bound,
            reports,
        }
    }

    fn row(&self, scenario: &'static str, target: &Target, params: String) -> Row {
        Row {
            scenario,
            target: target.name(),
            params,
            metrics: Vec::new(),
            generator_bound: false,
            notes: Vec::new(),
        }
    }
}
