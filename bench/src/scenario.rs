//! The scenarios. Each starts its server set afresh, drives it with raw
//! clients and returns one [`Row`] of metrics.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use crate::client::{self, Control, Report, Role, Spec, Transport};
use crate::server::{Launcher, Running, Target, cpu_seconds, emits_received};

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

fn listeners(
    running: &Running,
    n: usize,
    transport: Transport,
    room: impl Fn(usize) -> String,
    gateway: impl Fn(usize) -> usize,
    counter: &Arc<AtomicU64>,
) -> Vec<Spec> {
    (0..n)
        .map(|i| Spec {
            server: running.addrs[gateway(i) % running.addrs.len()],
            source: source(i),
            transport,
            room: Some(room(i)),
            role: Role::Listen,
            counter: counter.clone(),
        })
        .collect()
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

    /// Scenario 1, idle connections: server RSS per connection, connect rate and
    /// latency.
    pub(crate) async fn idle(
        &self,
        target: &Target,
        transport: Transport,
        n: usize,
    ) -> Result<Row, String> {
        let running = self.launcher.start(target)?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let before = running.front_rss();
        let counter = Arc::new(AtomicU64::new(0));
        let specs = listeners(&running, n, transport, |_| "idle".into(), |i| i, &counter);
        let meter = Meter::start(&running);
        let clients = Clients::connect(specs, 256).await;
        let (_, _, _, bound) = meter.stop(&running, self.threads);
        let connect_seconds = clients.connect_seconds;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let after = running.front_rss();
        let reports = clients.finish().await;
        let mut connects: Vec<u32> = reports
            .iter()
            .filter_map(|r| r.connect_us)
            .map(|us| u32::try_from(us).unwrap_or(u32::MAX))
            .collect();
        connects.sort_unstable();
        let mut row = self.row("idle", target, format!("{n} {transport:?}"));
        row.generator_bound = bound;
        let ok = connects.len();
        row.metrics = vec![
            ("connected".into(), ok as f64),
            (
                "rss_per_conn_kib".into(),
                after.saturating_sub(before) as f64 / ok.max(1) as f64,
            ),
            ("connects_per_s".into(), ok as f64 / connect_seconds),
            ("connect_p50_ms".into(), percentile(&connects, 0.5) / 1000.0),
            (
                "connect_p99_ms".into(),
                percentile(&connects, 0.99) / 1000.0,
            ),
        ];
        failures(&reports, &mut row.notes);
        Ok(row)
    }

    /// Scenarios 2 and 6, a burst: `messages` emits to one room of `clients`, as fast
    /// as the server goes.
    pub(crate) async fn burst(
        &self,
        target: &Target,
        transport: Transport,
        clients: usize,
        messages: u32,
    ) -> Result<Row, String> {
        let running = self.launcher.start(target)?;
        let counter = Arc::new(AtomicU64::new(0));
        let specs = listeners(
            &running,
            clients,
            transport,
            |_| "r0".into(),
            |i| i,
            &counter,
        );
        let connected = Clients::connect(specs, 256).await;
        let control = Control::connect(running.addrs[0]).await?;
        let expected = clients as u64 * u64::from(messages);
        let meter = Meter::start(&running);
        let started = Instant::now();
        control.fanout("r0", messages, "burst");
        let last = connected.wait_for(expected, Duration::from_secs(3)).await;
        let (_, server_cpu, front_cpu, bound) = meter.stop(&running, self.threads);
        let received = connected.received();
        let reports = connected.finish().await;
        let seconds = last
            .saturating_duration_since(started)
            .as_secs_f64()
            .max(1e-6);
        let lat = latencies(&reports);
        let scenario = match transport {
            Transport::Websocket => "burst",
            Transport::Polling => "polling",
        };
        let mut row = self.row(scenario, target, format!("{clients} clients × {messages}"));
        row.generator_bound = bound;
        row.metrics = vec![
            ("deliveries_per_s".into(), received as f64 / seconds),
            (
                "per_front_core_s".into(),
                received as f64 / front_cpu.max(0.01),
            ),
            cpu_per_delivery(server_cpu, received),
            dropped(expected, received),
            latency(&lat, 0.5),
            latency(&lat, 0.99),
        ];
        failures(&reports, &mut row.notes);
        Ok(row)
    }

    /// Scenario 3, sparse fan-out: `rate` messages a second to one room.
    pub(crate) async fn sparse(&self, target: &Target, rate: u32) -> Result<Row, String> {
        let clients = self.sizes.fanout_clients;
        let running = self.launcher.start(target)?;
        let counter = Arc::new(AtomicU64::new(0));
        let specs = listeners(
            &running,
            clients,
            Transport::Websocket,
            |_| "r0".into(),
            |i| i,
            &counter,
        );
        let connected = Clients::connect(specs, 256).await;
        let control = Control::connect(running.addrs[0]).await?;
        let total = (f64::from(rate) * self.sizes.seconds).round() as u64;
        let meter = Meter::start(&running);
        let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        for _ in 0..total {
            tick.tick().await;
            control.fanout("r0", 1, "sparse");
        }
        let expected = total * clients as u64;
        connected.wait_for(expected, Duration::from_secs(2)).await;
        let (_, server_cpu, _, bound) = meter.stop(&running, self.threads);
        let received = connected.received();
        let reports = connected.finish().await;
        let lat = latencies(&reports);
        let mut row = self.row("sparse", target, format!("{rate}/s × {clients} clients"));
        row.generator_bound = bound;
        row.metrics = vec![
            cpu_per_delivery(server_cpu, received),
            dropped(expected, received),
            latency(&lat, 0.5),
            latency(&lat, 0.99),
        ];
        failures(&reports, &mut row.notes);
        Ok(row)
    }

    /// Scenario 4, ack round trips: `clients` emitting `echo` with ack, one in
    /// flight each (`per_client` = None) or at a fixed rate each.
    pub(crate) async fn ack(
        &self,
        target: &Target,
        per_client: Option<u32>,
    ) -> Result<Row, String> {
        let clients = self.sizes.ack_clients;
        let running = self.launcher.start(target)?;
        let counter = Arc::new(AtomicU64::new(0));
        let interval = per_client.map(|r| Duration::from_secs_f64(1.0 / f64::from(r)));
        let specs = (0..clients).map(|i| Spec {
            server: running.addrs[i % running.addrs.len()],
            source: source(i),
            transport: Transport::Websocket,
            room: None,
            role: Role::Ack { interval },
            counter: counter.clone(),
        });
        let connected = Clients::connect(specs, 256).await;
        let start_acks = connected.received();
        let meter_run = Meter::start(&running);
        tokio::time::sleep(Duration::from_secs_f64(self.sizes.seconds)).await;
        let acks = connected.received() - start_acks;
        let (wall, server_cpu, _, bound) = meter_run.stop(&running, self.threads);
        let reports = connected.finish().await;
        let lat = latencies(&reports);
        let params = match per_client {
            None => format!("{clients} clients, unpaced"),
            Some(r) => format!("{clients} clients × {r}/s"),
        };
        let mut row = self.row("ack", target, params);
        row.generator_bound = bound;
        row.metrics = vec![
            ("acks_per_s".into(), acks as f64 / wall),
            latency(&lat, 0.5),
            latency(&lat, 0.99),
            (
                "cpu_us_per_ack".into(),
                server_cpu * 1e6 / acks.max(1) as f64,
            ),
        ];
        failures(&reports, &mut row.notes);
        Ok(row)
    }

    /// Scenario 5, many gateways: clients spread evenly over rooms, each room's
    /// members on one gateway; every room gets `room_messages` emits.
    /// Counts the emits gateways received for rooms they have no member of.
    pub(crate) async fn rooms(&self, target: &Target) -> Result<Row, String> {
        let (clients, rooms, messages) = (
            self.sizes.fanout_clients,
            self.sizes.rooms,
            self.sizes.room_messages,
        );
        let running = self.launcher.start(target)?;
        let counter = Arc::new(AtomicU64::new(0));
        let specs = listeners(
            &running,
            clients,
            Transport::Websocket,
            |i| format!("r{}", i % rooms),
            |i| i % rooms,
            &counter,
        );
        let connected = Clients::connect(specs, 256).await;
        let control = Control::connect(running.addrs[0]).await?;
        let is_sio = matches!(target, Target::SioNats { .. });
        let received_before: u64 = match is_sio {
            true => running
                .addrs
                .iter()
                .map(|a| emits_received(*a))
                .sum::<Result<u64, _>>()?,
            false => 0,
        };
        let expected = clients as u64 * u64::from(messages);
        let meter = Meter::start(&running);
        let started = Instant::now();
        for room in 0..rooms {
            control.fanout(&format!("r{room}"), messages, "rooms");
        }
        let last = connected.wait_for(expected, Duration::from_secs(3)).await;
        let (_, server_cpu, _, bound) = meter.stop(&running, self.threads);
        let received = connected.received();
        let reports = connected.finish().await;
        let seconds = last
            .saturating_duration_since(started)
            .as_secs_f64()
            .max(1e-6);
        let mut row = self.row(
            "rooms",
            target,
            format!("{clients} clients, {rooms} rooms × {messages}"),
        );
        row.generator_bound = bound;
        row.metrics = vec![
            ("deliveries_per_s".into(), received as f64 / seconds),
            cpu_per_delivery(server_cpu, received),
            dropped(expected, received),
        ];
        if is_sio {
            let after: u64 = running
                .addrs
                .iter()
                .map(|a| emits_received(*a))
                .sum::<Result<u64, _>>()?;
            // Each room lives on one gateway: every emit should reach
            // exactly one.
            let emits = rooms as u64 * u64::from(messages);
            row.metrics.push((
                "emits_to_non_members".into(),
                (after - received_before).saturating_sub(emits) as f64,
            ));
        }
        failures(&reports, &mut row.notes);
        Ok(row)
    }
}
