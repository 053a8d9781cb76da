//! Each socket's events handled in order and none lost, with real parts:
//! nats-server, two gateway processes, one or three worker processes
//! (`order-worker`), 100 stock `socket.io-client` clients in rooms of 10,
//! each sending 200 numbered events to a handler that emits each to the
//! sender's room after a pseudo-random pause (`tests/js/order-clients.js`
//! checks every sequence as it arrives). Then the same with a worker
//! killed (kill -9) halfway and with nats-server killed for 3 s; and the
//! error acks a client gets when no worker is there or the one holding
//! its event stays silent.
//!
//! The tests of this file run one at a time: each loads both cores.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use sio_bus::{Bus, MemoryBus};
use sio_gateway::Config;
use sio_protocol::envelope;
use sio_protocol::subject::Subjects;
use sio_tests::harness::npm_ci;
use sio_tests::process::{Process, free_addr, ready};
use sio_tests::proxy::Proxy;
use sio_tests::raw::{WAIT, Ws, http, metrics};
use sio_tests::{BusKind, NatsServer, TestGateway, test_config};

/// Held by each test of this file while it runs.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// What `order-clients.js` counted.
#[derive(Debug, Deserialize)]
struct Summary {
    sent: u64,
    received: u64,
    expected: u64,
    reordered: u64,
    gaps: u64,
    replayed: u64,
    repeated: u64,
    redelivered: u64,
    acks: u64,
    acks_redelivered: u64,
    wrong_acks: u64,
    error_acks: BTreeMap<String, u64>,
    ack_timeouts: u64,
    ack_max_ms: u64,
    disconnects: u64,
    connect_errors: u64,
    examples: Vec<String>,
}

impl Summary {
    /// Every event delivered to every member of its room once, in order
    /// (a repeat only where its attempt says it was handed over again),
    /// every ack answered with its own event's answer, nobody cut off.
    fn assert_exact(&self, clients: u64, events: u64) {
        self.assert_handled(clients, events);
        assert_eq!(self.received, self.expected, "{self:#?}");
        assert_eq!((self.gaps, self.repeated), (0, 0), "{self:#?}");
    }

    /// Every event handled in order and its ack answered, nobody cut off;
    /// what a receiver got was never older than what it had, except a
    /// redelivery, and the last of every sequence reached every receiver.
    fn assert_handled(&self, clients: u64, events: u64) {
        assert_eq!(self.sent, clients * events, "{self:#?}");
        assert_eq!(self.reordered, 0, "{self:#?}");
        assert_eq!(self.received + self.gaps, self.expected, "{self:#?}");
        assert_eq!(self.acks, self.sent, "{self:#?}");
        assert_eq!(self.wrong_acks, 0, "{self:#?}");
        assert!(self.error_acks.is_empty(), "{self:#?}");
        assert_eq!(self.ack_timeouts, 0, "{self:#?}");
        assert_eq!(self.disconnects, 0, "{self:#?}");
        assert_eq!(self.connect_errors, 0, "{self:#?}");
        assert!(self.examples.is_empty(), "{self:#?}");
    }

    /// No event was handed over twice.
    fn assert_once(&self) {
        assert_eq!(
            (self.replayed, self.redelivered, self.acks_redelivered),
            (0, 0, 0),
            "{self:#?}"
        );
    }
}

const CLIENTS: u64 = 100;
const EVENTS: u64 = 200;

/// The client load against `gateways`; `interval` milliseconds between
/// one client's events (0: all at once).
fn clients(gateways: &[SocketAddr], interval: u64) -> Process {
    npm_ci();
    let urls: Vec<String> = gateways.iter().map(|a| format!("http://{a}")).collect();
    let (clients, events, interval) = (
        CLIENTS.to_string(),
        EVENTS.to_string(),
        interval.to_string(),
    );
    Process::start_with(
        "node",
        &["tests/js/order-clients.js"],
        &[
            ("SIO_URLS", &urls.join(",")),
            ("SIO_CLIENTS", &clients),
            ("SIO_EVENTS", &events),
            ("SIO_INTERVAL", &interval),
        ],
    )
}

fn summary(clients: &Process) -> Summary {
    let line = clients.expect("summary ");
    let json = line.split_once("summary ").unwrap().1;
    serde_json::from_str(json).unwrap()
}

/// Waits for a progress line past `fraction` of the deliveries.
fn past(clients: &Process, fraction: f64) {
    loop {
        let line = clients.expect("progress ");
        let (got, want) = line
            .split_once("progress ")
            .and_then(|(_, n)| n.split_once('/'))
            .unwrap();
        let (got, want): (f64, f64) = (got.parse().unwrap(), want.parse().unwrap());
        if got >= want * fraction {
            return;
        }
    }
}

fn gateway(nats: &str, addr: SocketAddr, lease: u64) -> Process {
    let (addr, lease) = (addr.to_string(), lease.to_string());
    Process::start(
        env!("CARGO_BIN_EXE_gateway-process"),
        &[
            "--listen",
            &addr,
            "--nats",
            nats,
            "--event-lease",
            &lease,
            "--heartbeat-interval",
            "500",
        ],
    )
}

/// `n` worker processes; with `long` pauses of 300 ms on some events.
fn workers(nats: &str, n: usize, long: bool) -> Vec<Process> {
    let long = if long { "300" } else { "0" };
    (0..n)
        .map(|_| {
            let w = Process::start(env!("CARGO_BIN_EXE_order-worker"), &[nats, "2", long]);
            w.expect("serving");
            w
        })
        .collect()
}

/// Two gateway processes on `nats`, ready.
async fn gateways(nats: &str, lease: u64) -> (Vec<Process>, Vec<SocketAddr>) {
    let addrs = vec![free_addr(), free_addr()];
    let processes = addrs.iter().map(|&a| gateway(nats, a, lease)).collect();
    for &a in &addrs {
        ready(a).await;
    }
    (processes, addrs)
}

/// Stops the workers and says how many messages each handled.
fn handled(workers: &mut [Process]) -> Vec<u64> {
    workers
        .iter_mut()
        .map(|w| {
            w.terminate();
            w.expect("handled")
                .split_whitespace()
                .find_map(|t| t.parse().ok())
                .unwrap()
        })
        .collect()
}

async fn redeliveries(gateways: &[SocketAddr]) -> u64 {
    let mut total = 0;
    for &g in gateways {
        total += metrics(g)
            .await
            .get("sio_gateway_event_redeliveries_total")
            .unwrap();
    }
    total
}

async fn in_order_over_nats(worker_processes: usize) {
    let _serial = SERIAL.lock().await;
    let nats = NatsServer::start().unwrap();
    let (_gws, addrs) = gateways(&nats.url(), 5_000).await;
    let mut workers = workers(&nats.url(), worker_processes, false);
    let load = clients(&addrs, 0);
    let summary = summary(&load);
    summary.assert_exact(CLIENTS, EVENTS);
    summary.assert_once();
    let handled = handled(&mut workers);
    assert!(
        handled.iter().all(|&h| h > 0),
        "every worker of the group took events: {handled:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_worker_process_keeps_each_sockets_order() {
    in_order_over_nats(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_worker_processes_keep_each_sockets_order() {
    in_order_over_nats(3).await;
}

/// The embedded bus: two gateways and the worker in this process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_in_process_bus_keeps_each_sockets_order() {
    let _serial = SERIAL.lock().await;
    let bus: Arc<dyn Bus> = Arc::new(MemoryBus::default());
    let config = Config {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        ..Config::default()
    };
    let a = TestGateway::start(config.clone(), bus.clone()).await;
    let b = TestGateway::start(config, bus.clone()).await;
    let running = sio_tests::order::worker(2, 0).start(bus).await.unwrap();
    let load = clients(&[a.addr, b.addr], 0);
    let summary = tokio::task::spawn_blocking(move || summary(&load))
        .await
        .unwrap();
    summary.assert_exact(CLIENTS, EVENTS);
    summary.assert_once();
    running.shutdown().await;
}

/// kill -9 one of three workers while it holds events: each is handed to
/// another after the lease (1 s here), with its attempt number.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_loses_no_event() {
    let _serial = SERIAL.lock().await;
    let nats = NatsServer::start().unwrap();
    let (_gws, addrs) = gateways(&nats.url(), 1_000).await;
    let mut workers = workers(&nats.url(), 3, true);
    // Paced, so that the kill falls while events are being sent.
    let load = clients(&addrs, 5);
    past(&load, 0.3);
    // While it holds an event (one of its long ones has begun).
    workers[0].skip_printed();
    workers[0].expect("holding");
    workers[0].child.kill().unwrap();
    let _ = workers[0].child.wait();
    let summary = summary(&load);
    summary.assert_exact(CLIENTS, EVENTS);
    let redelivered = redeliveries(&addrs).await;
    assert!(
        redelivered > 0,
        "the killed worker held events (else the test proves nothing)"
    );
    assert!(
        summary.ack_max_ms < 10_000,
        "each ack within lease × attempts and the queue ahead: {summary:#?}"
    );
    handled(&mut workers[1..]);
}

/// kill -9 nats-server under load and start it again on its port 3 s
/// later: the clients stay connected, `/ready` says what happened, and
/// every event sent meanwhile is handled after, in order, its ack
/// answered. What the handlers emitted around the restart to a gateway
/// that was not back on NATS yet is lost (core NATS delivers at most
/// once; replaying it is JetStream's part): those are counted as gaps,
/// never as reordering, and every sequence's last emit reaches everyone.
/// An emit may also arrive twice as it was (counted as repeated, allowed
/// here only).
///
/// One worker reaches NATS through a proxy that keeps it away 1.5 s
/// longer, and the server is killed while that worker holds an event: its
/// handler emits and finishes during the outage, and what it said goes out
/// only as it reconnects. The gateway waits for it (the lease ran out while
/// the bus was away) rather than handing the event to the other worker,
/// whose emits of it and of the next events would arrive first (reordered).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_restart_loses_no_event() {
    let _serial = SERIAL.lock().await;
    let mut nats = NatsServer::start().unwrap();
    let (_gws, addrs) = gateways(&nats.url(), 1_000).await;
    let proxy = Proxy::start(vec![nats.addr()]).await;
    let late = Process::start(
        env!("CARGO_BIN_EXE_order-worker"),
        &[&format!("nats://{}", proxy.addr), "2", "300"],
    );
    late.expect("serving");
    let _other = workers(&nats.url(), 1, false);
    // 200 events 20 ms apart: 4 s of sending, the outage in the middle.
    let load = clients(&addrs, 20);
    past(&load, 0.1);
    late.skip_printed();
    late.expect("holding");
    proxy.hold();
    nats.stop();
    for &g in &addrs {
        until_ready(g, false).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    nats.restart().unwrap();
    for &g in &addrs {
        until_ready(g, true).await;
    }
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    proxy.release();
    let summary = summary(&load);
    summary.assert_handled(CLIENTS, EVENTS);
}

/// Waits (10 s at most) for `/ready` to say `up`.
async fn until_ready(gateway: SocketAddr, up: bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let status = http(gateway, "GET", "/ready", &[], b"").await.status;
        if (status == 200) == up {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "/ready on {gateway} never became {up}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// No worker subscribed (NATS no-responders): an event's ack is the
/// `no_worker` error at once, not after the lease, and a connect to an
/// authorized namespace is refused with `connect_error`.
async fn no_worker_is_answered_at_once(kind: BusKind) {
    let bus = kind.start().await;
    let config = Config {
        namespaces: vec!["/".into(), "/chat".into()],
        authorize: vec!["/chat".into()],
        event_lease: 5_000,
        ..test_config()
    };
    let gw = TestGateway::start(config, bus.bus.clone()).await;
    let (mut ws, _) = Ws::joined(gw.addr, "/").await;
    let started = tokio::time::Instant::now();
    ws.send(r#"421["anyone"]"#).await;
    assert_eq!(
        ws.text().await,
        r#"431[{"code":"no_worker","error":"no worker answered"}]"#
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "answered before a lease could run out"
    );
    ws.send("40/chat,").await;
    assert_eq!(
        ws.text().await,
        r#"44/chat,{"message":"no worker answered"}"#
    );
    let m = metrics(gw.addr).await;
    assert_eq!(
        m.get(r#"sio_gateway_events_total{outcome="no_worker"}"#),
        Some(1)
    );
}

#[tokio::test]
async fn no_worker_is_answered_at_once_memory() {
    no_worker_is_answered_at_once(BusKind::Memory).await;
}

#[tokio::test]
async fn no_worker_is_answered_at_once_nats() {
    no_worker_is_answered_at_once(BusKind::Nats).await;
}

/// A worker that takes events and never says a word: after each lease
/// the event goes out again with the next attempt number, and after the
/// last the client gets the `worker_lost` error ack; the socket's next
/// event goes on.
#[tokio::test]
async fn a_silent_worker_is_replaced_then_reported() {
    let bus: Arc<dyn Bus> = Arc::new(MemoryBus::default());
    let config = Config {
        event_lease: 200,
        event_attempts: 2,
        ..test_config()
    };
    let gw = TestGateway::start(config, bus.clone()).await;
    let mut silent = bus
        .queue_subscribe(Subjects::default().all_events(), "w".into())
        .await
        .unwrap();
    let (mut ws, _) = Ws::joined(gw.addr, "/").await;
    ws.send(r#"421["lost"]"#).await;
    ws.send(r#"422["next"]"#).await;
    let mut attempts = Vec::new();
    for _ in 0..2 {
        let m = silent.next_within(WAIT).await.unwrap();
        let evs: envelope::Events<'_> = envelope::decode(&m.payload).unwrap();
        let names: Vec<&str> = evs.events.iter().map(|e| e.event.as_ref()).collect();
        attempts.push((names.join(","), evs.delivery.attempt, evs.delivery.lease_ms));
    }
    assert_eq!(
        attempts,
        [("lost".to_owned(), 1, 200), ("lost".to_owned(), 2, 200)]
    );
    assert_eq!(
        ws.text().await,
        r#"431[{"code":"worker_lost","error":"the workers holding the event were lost"}]"#
    );
    // The next event is handed over only now; this time it is done.
    let m = silent.next_within(WAIT).await.unwrap();
    let evs: envelope::Events<'_> = envelope::decode(&m.payload).unwrap();
    assert_eq!(
        (evs.events[0].event.as_ref(), evs.delivery.attempt),
        ("next", 1)
    );
    let working = envelope::encode(&envelope::EventReply::Working).unwrap();
    let reply = m.reply.unwrap();
    // Renewed past its lease, then done with its ack.
    for _ in 0..3 {
        bus.publish(reply.clone(), working.clone().into())
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ack = envelope::AckReply {
        data: "[\"ok\"]".into(),
        attachments: Vec::new(),
    };
    bus.publish(reply, sio_tests::raw::events_done(vec![Some(ack)]))
        .await
        .unwrap();
    assert_eq!(ws.text().await, r#"432["ok"]"#);
    let m = metrics(gw.addr).await;
    assert_eq!(m.get("sio_gateway_event_redeliveries_total"), Some(1));
    assert_eq!(
        m.get(r#"sio_gateway_events_total{outcome="worker_lost"}"#),
        Some(1)
    );
}
