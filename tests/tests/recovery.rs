//! Connection state recovery on one gateway, with the stock
//! `socket.io-client` (`tests/js-recovery/recovery.test.js`): a client whose
//! transport drops comes back with its socket id, rooms and data, and gets
//! every packet emitted meanwhile (to its rooms, its id, its namespace, to
//! itself) once and in order; before its first event too; volatile emits
//! do not disturb its offsets; past the window it is a new socket, and the
//! workers hear the old one's disconnect then; and a client that comes
//! back through a balancer to another gateway is recovered from the one
//! that kept its socket (`tests/js-recovery/elsewhere.test.js`). On both
//! buses.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use serde_json::json;
use sio_gateway::Gateway;
use sio_tests::NatsServer;
use sio_tests::harness::{connect, node_suite};
use sio_tests::nginx::{self, Nginx};
use sio_tests::process::{Process, free_addr, gateway_args, ready};
use sio_tests::proxy::Proxy;
use sio_tests::raw::Ws;
use sio_tests::raw::{Metrics, metrics};
use sio_tests::{BusKind, TestGateway, on_both_buses, test_config};
use sio_worker::{Operators, Socket, Worker};

on_both_buses!(stock_client_recovers, stock_client_recovers_elsewhere);

/// The rolling restart runs alone (its three gateway processes, 20 clients
/// and timers want the machine's two cores); the others side by side.
static SOLO: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// What the workers saw of each socket id.
#[derive(Debug, Default)]
struct Seen {
    connects: HashMap<String, u32>,
    disconnects: HashMap<String, String>,
    /// How many disconnects each socket got.
    left: HashMap<String, u32>,
    /// How many joins the workers made.
    joins: u32,
}

/// A `blast` request: `count` events `n` (`tag`, number) numbered from
/// `from`, to `to` (`room:<name>`, `id:<socket id>`, `all` for the
/// namespace, `me` for the asking socket, straight), each followed by a
/// volatile `v` when its number is a multiple of `volatile_every` (if not
/// 0) after `pause_ms` (so that it finds no packet queued, and is not
/// dropped).
#[derive(Debug, Deserialize)]
struct Blast {
    to: String,
    tag: String,
    from: u32,
    count: u32,
    #[serde(default)]
    volatile_every: u32,
    #[serde(default)]
    pause_ms: u64,
}

fn worker(seen: Arc<Mutex<Seen>>) -> Worker {
    let mut worker = Worker::new();
    let (on_connect, on_disconnect, on_join, ask) =
        (seen.clone(), seen.clone(), seen.clone(), seen);
    worker
        .of("/")
        .on_connect(move |socket: Socket| {
            let seen = on_connect.clone();
            async move {
                let mut seen = seen.lock().unwrap();
                *seen.connects.entry(socket.id().to_string()).or_default() += 1;
                Ok(())
            }
        })
        .on_disconnect(move |socket: Socket, reason| {
            let seen = on_disconnect.clone();
            async move {
                let mut seen = seen.lock().unwrap();
                let id = socket.id().to_string();
                *seen.left.entry(id.clone()).or_default() += 1;
                seen.disconnects.insert(id, reason.as_str().to_owned());
            }
        })
        .on("join", move |socket: Socket, (room,): (String,)| {
            let seen = on_join.clone();
            async move {
                socket.join([room]).await?;
                seen.lock().unwrap().joins += 1;
                socket.ack(&()).await
            }
        })
        .on("whoami", |socket: Socket, ()| async move {
            let auth = socket.handshake().auth.clone();
            let reply = json!({
                "id": socket.id().to_string(),
                "recovered": socket.recovered(),
                "auth": auth,
                "rooms": socket.rooms(),
                "data": socket.data::<serde_json::Value>().and_then(Result::ok),
            });
            socket.ack(&(reply,)).await
        })
        .on(
            "remember",
            |socket: Socket, (data,): (serde_json::Value,)| async move {
                socket.set_data(&data).await?;
                socket.ack(&()).await
            },
        )
        .on("seen", move |socket: Socket, (id,): (String,)| {
            let seen = ask.clone();
            async move {
                let reply = {
                    let seen = seen.lock().unwrap();
                    json!({
                        "connects": seen.connects.get(&id).copied().unwrap_or(0),
                        "disconnect": seen.disconnects.get(&id),
                    })
                };
                socket.ack(&(reply,)).await
            }
        })
        .on("blast", |socket: Socket, (blast,): (Blast,)| async move {
            for n in blast.from..blast.from + blast.count {
                let args = (&blast.tag, n);
                match blast.to.as_str() {
                    // Straight to the socket, not through its room.
                    "me" => socket.emit("n", &args).await?,
                    to => target(&socket, to).emit("n", &args).await?,
                }
                if blast.pause_ms > 0 {
                    tokio::time::sleep(Duration::from_millis(blast.pause_ms)).await;
                }
                if blast.volatile_every > 0 && n % blast.volatile_every == 0 {
                    target(&socket, &blast.to)
                        .volatile()
                        .emit("v", &(n,))
                        .await?;
                }
            }
            // A socket blasting itself may be gone before the answer.
            match socket.wants_ack() {
                true => socket.ack(&()).await,
                false => Ok(()),
            }
        });
    worker
}

/// Where a `blast` goes.
fn target(socket: &Socket, to: &str) -> Operators {
    match to.split_once(':') {
        Some((_, room)) => socket.to(room),
        None if to == "me" => socket.to(socket.id().to_string()),
        None => socket.of("/"),
    }
}

/// A gateway with recovery, and heartbeats as a client on a real network
/// has them: a client whose reconnection waits a second is not cut for a
/// missed ping meanwhile.
fn recovering() -> sio_gateway::Config {
    let mut config = test_config();
    config.connection_state_recovery = true;
    config.ping_interval = 5_000;
    config.ping_timeout = 5_000;
    config
}

async fn stock_client_recovers(kind: BusKind) {
    let _turn = SOLO.read().await;
    let bus = kind.start().await;
    let mut config = recovering();
    config.max_disconnection_duration = 10_000;
    let gateway = TestGateway::start(config.clone(), bus.bus.clone()).await;
    config.max_disconnection_duration = 1_000;
    let short = TestGateway::start(config, bus.bus.clone()).await;
    let seen = Arc::new(Mutex::new(Seen::default()));
    let running = worker(seen).start(bus.bus.clone()).await.unwrap();
    node_suite(
        "tests/js-recovery/recovery.test.js",
        &format!("http://{}", gateway.addr),
        &[("SIO_SHORT_URL", &format!("http://{}", short.addr))],
    )
    .await;
    // Counted: four recovered (two transports, before the first event,
    // volatile in between), one pid that was no longer parked (it left on
    // purpose); on the short window, one that came too late.
    let (long, short) = (metrics(gateway.addr).await, metrics(short.addr).await);
    let outcome =
        |m: &Metrics, o: &str| m.get(&format!("sio_gateway_recoveries_total{{outcome=\"{o}\"}}"));
    assert_eq!(outcome(&long, "recovered"), Some(4), "{}", long.0);
    assert_eq!(outcome(&long, "unknown"), Some(1));
    assert_eq!(outcome(&short, "unknown"), Some(1), "{}", short.0);
    assert_eq!(outcome(&short, "recovered"), None);
    // Every client closed: nothing is kept any more.
    for m in [&long, &short] {
        assert_eq!(m.get("sio_gateway_recoverable_sockets"), Some(0));
        assert_eq!(m.get("sio_gateway_recovery_bytes"), Some(0));
    }
    running.shutdown().await;
}

/// Two gateways behind a round-robin proxy: the client's every connection
/// lands on the other one.
async fn stock_client_recovers_elsewhere(kind: BusKind) {
    let _turn = SOLO.read().await;
    let bus = kind.start().await;
    let config = recovering();
    let first = TestGateway::start(config.clone(), bus.bus.clone()).await;
    let second = TestGateway::start(config, bus.bus.clone()).await;
    let proxy = Proxy::start(vec![first.addr, second.addr]).await;
    let seen = Arc::new(Mutex::new(Seen::default()));
    let running = worker(seen).start(bus.bus.clone()).await.unwrap();
    node_suite(
        "tests/js-recovery/elsewhere.test.js",
        &format!("http://{}", proxy.addr),
        &[("SIO_DIRECT", &format!("http://{}", first.addr))],
    )
    .await;
    // Each recovered once, from the other.
    for gateway in [&first, &second] {
        let m = metrics(gateway.addr).await;
        let recovered = m.get("sio_gateway_recoveries_total{outcome=\"recovered\"}");
        assert_eq!(recovered, Some(1), "{}", m.0);
        assert_eq!(m.get("sio_gateway_recoverable_sockets"), Some(0));
    }
    running.shutdown().await;
}

/// A gateway killed with kill -9 while recovery is on: once the recovery
/// window after its death ends (and not before), each socket the workers
/// saw connect on it gets exactly one disconnect, "transport close",
/// published by one of the two survivors from its record in JetStream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_gateways_sockets_are_disconnected_once() {
    killed_gateways_sockets_leave(true).await;
}

/// The same without recovery: once the survivors declare the gateway dead
/// (three heartbeat intervals), each of its sockets gets exactly one
/// disconnect at the workers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_recovery_a_killed_gateways_sockets_are_disconnected_once() {
    killed_gateways_sockets_leave(false).await;
}

async fn killed_gateways_sockets_leave(recovery: bool) {
    let _turn = SOLO.read().await;
    let nats = NatsServer::start().unwrap();
    let addr = free_addr();
    let mut victim = match recovery {
        true => recovering_process(&nats, addr, &["--max-disconnection-duration", "3000"]),
        false => {
            let mut args = gateway_args(&nats.url(), addr);
            args.extend(["--heartbeat-interval".into(), "200".into()]);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            Process::start(env!("CARGO_BIN_EXE_gateway-process"), &args)
        }
    };
    ready(addr).await;
    let (b, c, seen, running) = watching(&nats, recovery).await;
    let mut clients = Vec::new();
    for _ in 0..50 {
        clients.push(Ws::joined(addr, "/").await);
    }
    // A socket on a survivor, which must not hear a thing.
    let (_alive, alive) = Ws::joined(b.addr, "/").await;
    // Its records are written as the sockets connect; give them a moment.
    tokio::time::sleep(Duration::from_millis(500)).await;
    victim.child.kill().unwrap();
    victim.child.wait().unwrap();
    if recovery {
        // Declared dead after three heartbeats; its clients may still come
        // back within the window.
        tokio::time::sleep(Duration::from_millis(2000)).await;
        assert_eq!(
            seen.lock().unwrap().left.len(),
            0,
            "disconnects before the window ended"
        );
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while seen.lock().unwrap().left.len() < clients.len() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of {} disconnects",
            seen.lock().unwrap().left.len(),
            clients.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Time for a second copy, if there were one.
    tokio::time::sleep(Duration::from_secs(1)).await;
    {
        let seen = seen.lock().unwrap();
        for (_, id) in &clients {
            assert_eq!(seen.left.get(id), Some(&1), "one disconnect for {id}");
            assert_eq!(seen.disconnects[id], "transport close");
        }
        assert_eq!(seen.left.len(), clients.len(), "only the dead gateway's");
        assert!(!seen.left.contains_key(&alive));
    }
    let reaped = |m: &Metrics| m.get("sio_gateway_sockets_reaped_total").unwrap_or(0);
    let (mb, mc) = (metrics(b.addr).await, metrics(c.addr).await);
    assert_eq!(reaped(&mb) + reaped(&mc), 50, "{}\n{}", mb.0, mc.0);
    running.shutdown().await;
}

/// Two in-process gateways on `nats` that watch others die (heartbeats
/// every 200 ms, a 3 s window with recovery, and pings rare enough that a
/// raw client, which does not answer them, stays), and the worker, with
/// what it saw.
async fn watching(
    nats: &NatsServer,
    recovery: bool,
) -> (
    TestGateway,
    TestGateway,
    Arc<Mutex<Seen>>,
    sio_worker::Running,
) {
    let mut config = test_config();
    config.connection_state_recovery = recovery;
    config.heartbeat_interval = 200;
    config.max_disconnection_duration = 3000;
    config.ping_interval = 25_000;
    let a = TestGateway::start(config.clone(), connect(nats).await).await;
    let b = TestGateway::start(config, connect(nats).await).await;
    let seen = Arc::new(Mutex::new(Seen::default()));
    let running = worker(seen.clone())
        .start(connect(nats).await)
        .await
        .unwrap();
    (a, b, seen, running)
}

/// A NATS restart is no gateway's death: with the server down for 2 s,
/// every gateway stops hearing the others, but declares none dead while
/// its own bus is away or just back, so no socket's record is reaped and
/// the workers hear of no disconnect (with recovery, also once the window
/// after the outage ended).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_restart_disconnects_nobody() {
    let _turn = SOLO.read().await;
    for recovery in [false, true] {
        let mut nats = NatsServer::start().unwrap();
        let (a, b, seen, running) = watching(&nats, recovery).await;
        let mut clients = Vec::new();
        for addr in [a.addr, b.addr].repeat(10) {
            clients.push(Ws::joined(addr, "/").await);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        nats.stop();
        tokio::time::sleep(Duration::from_secs(2)).await;
        nats.restart().unwrap();
        // Past the window after the outage, and a reap's publish.
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(seen.lock().unwrap().left.len(), 0, "recovery {recovery}");
        for gateway in [&a, &b] {
            let m = metrics(gateway.addr).await;
            assert_eq!(
                m.get("sio_gateway_sockets_reaped_total"),
                Some(0),
                "{}",
                m.0
            );
            assert_eq!(m.get("sio_gateway_sessions"), Some(10), "{}", m.0);
        }
        running.shutdown().await;
    }
}

/// Recovery across gateways needs JetStream: without it, a gateway asked
/// for recovery over NATS does not start, and says why.
#[tokio::test]
async fn recovery_without_jetstream_is_a_clear_start_up_error() {
    let _turn = SOLO.read().await;
    let nats = NatsServer::start_without_jetstream().unwrap();
    let mut config = test_config();
    config.connection_state_recovery = true;
    let error = Gateway::new(config, connect(&nats).await).await.err();
    let message = error.map(|e| e.to_string()).unwrap_or_default();
    assert!(
        message.contains("JetStream") && message.contains("-js"),
        "{message}"
    );
}

/// A rolling restart of three gateway processes behind a round-robin
/// proxy, each drained (SIGTERM) and started again in turn while a steady
/// stream of emits goes to the clients' room: every client gets every
/// emit once, in order, as the same socket, and the workers' connect
/// handler is not called again (`tests/js-recovery/rolling.test.js`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_loses_nothing() {
    let _alone = SOLO.write().await;
    let nats = NatsServer::start().unwrap();
    let (addrs, mut gateways) = recovering_processes(&nats, 3).await;
    let proxy = Proxy::start(addrs.clone()).await;
    let url = format!("http://{}", proxy.addr);
    let steady = Steady::start(&nats, &url, ("rolling", false), 20, 1000).await;
    for (i, addr) in addrs.iter().enumerate() {
        gateways[i].terminate();
        gateways[i] = recovering_process(&nats, *addr, &[]);
        ready(*addr).await;
    }
    steady.finish().await;
}

/// (b) Three gateway processes behind nginx (round robin, the committed
/// config), one killed with kill -9 while emits go on to the clients'
/// room: its clients come back through nginx to the others and are
/// recovered there from their records and the emits JetStream kept, each
/// once, missing nothing; the workers never hear that they left
/// (`tests/js-recovery/crash.test.js`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_gateways_clients_recover_elsewhere() {
    let _alone = SOLO.write().await;
    const CLIENTS: u32 = 12;
    let nats = NatsServer::start().unwrap();
    let (addrs, mut gateways) = recovering_processes(&nats, 3).await;
    let listen = free_addr();
    let config = nginx::config("nginx/nginx-round-robin.conf", listen, &addrs);
    let _nginx = Nginx::start(config, listen).await;
    let url = format!("http://{listen}");
    let steady = Steady::start(&nats, &url, ("crash", false), CLIENTS, 600).await;
    let mut held = Vec::new();
    for addr in &addrs {
        held.push(
            metrics(*addr)
                .await
                .get("sio_gateway_sessions")
                .unwrap_or(0),
        );
    }
    let total: u64 = held.iter().sum();
    assert_eq!(total, u64::from(CLIENTS), "{held:?}");
    let victim = (0..3)
        .filter(|&i| held[i] > 0 && held[i] < total)
        .max_by_key(|&i| held[i])
        .unwrap_or_else(|| panic!("nginx put every client on one gateway: {held:?}"));
    gateways[victim].child.kill().unwrap();
    gateways[victim].child.wait().unwrap();
    steady.finish().await;
    let mut recovered = 0;
    for (i, addr) in addrs.iter().enumerate().filter(|(i, _)| *i != victim) {
        let m = metrics(*addr).await;
        recovered += m
            .get("sio_gateway_recoveries_total{outcome=\"recovered\"}")
            .unwrap_or(0);
        assert_eq!(
            m.get("sio_gateway_sessions"),
            Some(0),
            "gateway {i}: {}",
            m.0
        );
    }
    assert_eq!(
        recovered, held[victim],
        "the killed gateway's clients, each once"
    );
}

/// A NATS crash under a steady emit load: nats-server hangs (SIGSTOP)
/// for 200 ms, is killed (kill -9) with what it was sent meanwhile
/// unread, and is started again on its JetStream store 3 s later, while
/// emits go on to the clients' room and to each client by socket id. The
/// emitter sends each emit again until the stream has stored it (the one
/// the server died with among them: a plain publish loses it); back on the bus,
/// each gateway delivers from JetStream what core NATS dropped while it
/// was away, before what comes next: every client gets every emit once,
/// in order, and never loses its connection
/// (`tests/js-recovery/outage.test.js`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_restart_loses_nothing() {
    let _alone = SOLO.write().await;
    let mut nats = NatsServer::start().unwrap();
    let (addrs, _gateways) = recovering_processes(&nats, 2).await;
    let proxy = Proxy::start(addrs.clone()).await;
    let url = format!("http://{}", proxy.addr);
    let steady = Steady::start(&nats, &url, ("outage", true), 10, 800).await;
    nats.freeze();
    tokio::time::sleep(Duration::from_millis(200)).await;
    nats.stop();
    tokio::time::sleep(Duration::from_secs(3)).await;
    nats.restart().unwrap();
    steady.finish().await;
    let mut replayed = 0;
    for addr in &addrs {
        let m = metrics(*addr).await;
        assert_eq!(m.get("sio_gateway_sessions"), Some(0), "{}", m.0);
        replayed += m.get("sio_gateway_emits_replayed_total").unwrap_or(0);
    }
    // Core NATS dropped some (so the test means something), JetStream had them.
    assert!(replayed > 0, "nothing was replayed");
}

/// Sockets handed over by a websocket upgrade stay recoverable: clients
/// poll gateways A and C through a round-robin proxy and open their
/// websockets on gateway B, which takes each session over. Under a steady
/// stream of emits to their room and to each by id, each client's
/// connection drops (recovered from where B parked it, then handed over
/// to B again), then B is killed with kill -9: every client is recovered
/// on A or C from its record and the emits JetStream kept, missing
/// nothing, and the workers never hear a disconnect
/// (`tests/js-recovery/handover.test.js`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handed_over_sockets_recover_after_their_gateway_dies() {
    let _alone = SOLO.write().await;
    const CLIENTS: u32 = 6;
    let nats = NatsServer::start().unwrap();
    let (addrs, mut gateways) = recovering_processes(&nats, 3).await;
    let (a, b, c) = (addrs[0], addrs[1], addrs[2]);
    let proxy = Proxy::start(vec![a, c]).await;
    let url = format!("http://{}", proxy.addr);
    let port = [("SIO_WS_PORT", b.port().to_string())];
    let shape = (CLIENTS, 1000);
    let steady = Steady::start_with(&nats, &url, ("handover", true), shape, &port).await;
    let gauge = async |addr, name: &str| metrics(addr).await.get(name).unwrap_or(0);
    let recovered = "sio_gateway_recoveries_total{outcome=\"recovered\"}";
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    // Every client dropped once and recovered from B, and on B again.
    loop {
        let back = gauge(a, recovered).await + gauge(c, recovered).await;
        let on_b = gauge(b, "sio_gateway_sessions").await;
        if back >= u64::from(CLIENTS) && on_b == u64::from(CLIENTS) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "recovered {back}, on B {on_b}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let taken = gauge(b, "sio_gateway_sessions_taken_over_total").await;
    assert!(
        taken >= u64::from(2 * CLIENTS),
        "B took {taken} sessions over"
    );
    gateways[1].child.kill().unwrap();
    gateways[1].child.wait().unwrap();
    steady.finish().await;
    let back = gauge(a, recovered).await + gauge(c, recovered).await;
    assert_eq!(back, u64::from(2 * CLIENTS), "each client twice");
    for addr in [a, c] {
        assert_eq!(gauge(addr, "sio_gateway_recoverable_sockets").await, 0);
    }
}

/// `n` gateway processes on `nats` with connection state recovery,
/// ready, and where they listen.
async fn recovering_processes(nats: &NatsServer, n: usize) -> (Vec<SocketAddr>, Vec<Process>) {
    let addrs: Vec<SocketAddr> = (0..n).map(|_| free_addr()).collect();
    let gateways = addrs
        .iter()
        .map(|a| recovering_process(nats, *a, &[]))
        .collect();
    for addr in &addrs {
        ready(*addr).await;
    }
    (addrs, gateways)
}

/// A gateway process on `nats` at `addr` with connection state recovery,
/// and `more` arguments.
fn recovering_process(nats: &NatsServer, addr: SocketAddr, more: &[&str]) -> Process {
    let mut args = gateway_args(&nats.url(), addr);
    let recovery = [
        "--connection-state-recovery",
        "--heartbeat-interval",
        "200",
        "--drain-timeout",
        "10000",
    ];
    args.extend(recovery.iter().chain(more).map(|a| (*a).to_owned()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Process::start(env!("CARGO_BIN_EXE_gateway-process"), &args)
}

/// Stock clients in room "r" (`tests/js-recovery/<suite>.test.js`) and a
/// steady stream of `count` emits to it, one every 10 ms (with `ids`, each
/// also to every client by socket id), under which the test takes
/// gateways away.
struct Steady {
    suite: tokio::task::JoinHandle<()>,
    emitter: tokio::task::JoinHandle<()>,
    running: sio_worker::Running,
}

impl Steady {
    /// Returns once the clients joined and the emits began.
    async fn start(
        nats: &NatsServer,
        url: &str,
        (suite, ids): (&str, bool),
        clients: u32,
        count: u32,
    ) -> Self {
        Self::start_with(nats, url, (suite, ids), (clients, count), &[]).await
    }

    /// [`Steady::start`], with more for the suite's environment.
    async fn start_with(
        nats: &NatsServer,
        url: &str,
        (suite, ids): (&str, bool),
        (clients, count): (u32, u32),
        more: &[(&'static str, String)],
    ) -> Self {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let bus = connect(nats).await;
        let running = worker(seen.clone()).start(bus.clone()).await.unwrap();
        let suite = tokio::spawn({
            let (url, file) = (url.to_owned(), format!("tests/js-recovery/{suite}.test.js"));
            let mut env = vec![
                ("SIO_COUNT", count.to_string()),
                ("SIO_CLIENTS", clients.to_string()),
            ];
            env.extend_from_slice(more);
            async move {
                let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
                node_suite(&file, &url, &env).await;
            }
        });
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while seen.lock().unwrap().joins < clients {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the clients never joined"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let sockets: Vec<String> = seen.lock().unwrap().connects.keys().cloned().collect();
        let emitter = tokio::spawn(async move {
            let emitter = sio_worker::Emitter::new(bus);
            for n in 0..count {
                emitter.to("r").emit("n", &("room", n)).await.unwrap();
                if let (true, Some(first)) = (ids, sockets.first()) {
                    let to = sockets
                        .iter()
                        .skip(1)
                        .fold(emitter.to(first), |o, s| o.to(s));
                    to.emit("n", &("id", n)).await.unwrap();
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        tokio::time::sleep(Duration::from_millis(500)).await;
        Self {
            suite,
            emitter,
            running,
        }
    }

    /// Waits for the emits and the clients' verdict.
    async fn finish(self) {
        self.emitter.await.unwrap();
        self.suite.await.unwrap();
        self.running.shutdown().await;
    }
}

/// Parked sockets are bounded: at most `--max-connections` wait at once;
/// one more leaves at once, its workers told, counted.
#[tokio::test]
async fn parked_sockets_are_bounded() {
    let _turn = SOLO.read().await;
    let bus = BusKind::Memory.start().await;
    let mut config = recovering();
    config.max_connections = 2;
    let gateway = TestGateway::start(config, bus.bus.clone()).await;
    let seen = Arc::new(Mutex::new(Seen::default()));
    let running = worker(seen.clone()).start(bus.bus.clone()).await.unwrap();
    let mut ids = Vec::new();
    for _ in 0..3 {
        // Connects, then loses its connection: parked if there is room.
        let (ws, id) = Ws::joined(gateway.addr, "/").await;
        drop(ws);
        ids.push(id);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while metrics(gateway.addr).await.get("sio_gateway_sessions") != Some(0) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the session never closed"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let m = metrics(gateway.addr).await;
    assert_eq!(m.get("sio_gateway_recoverable_sockets"), Some(2), "{}", m.0);
    assert_eq!(
        m.get("sio_gateway_drops_total{reason=\"recovery_full\"}"),
        Some(1)
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !seen.lock().unwrap().left.contains_key(&ids[2]) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the third never left"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.left.len(), 1, "the two parked ones wait");
        assert_eq!(seen.disconnects[&ids[2]], "transport close");
    }
    running.shutdown().await;
}
