//! TCP connections that never become useful cannot hold the gateway: a
//! connection with no request, a request whose headers trickle in, an
//! idle keep-alive connection, and connections past the cap are closed,
//! while websockets and polling clients are not cut.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::net::SocketAddr;
use std::time::Duration;

use sio_tests::raw::{Ws, http};
use sio_tests::{BusKind, TestGateway, test_config};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

async fn gateway(
    tune: impl FnOnce(&mut sio_gateway::Config),
) -> (TestGateway, sio_tests::harness::TestBus) {
    let bus = BusKind::Memory.start().await;
    let mut config = test_config();
    config.header_timeout = 500;
    config.idle_timeout = 1_500;
    tune(&mut config);
    (TestGateway::start(config, bus.bus.clone()).await, bus)
}

/// Reads until the gateway closes the connection; how long that took.
async fn closed_after(tcp: &mut TcpStream, within: Duration) -> Duration {
    let started = Instant::now();
    let mut buf = [0; 1024];
    loop {
        match tokio::time::timeout_at(started + within, tcp.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return started.elapsed(),
            Ok(Ok(_)) => {}
            Err(_) => panic!("still open after {within:?}"),
        }
    }
}

#[tokio::test]
async fn a_connection_without_a_request_is_closed() {
    let (gw, _bus) = gateway(|_| {}).await;
    let mut tcp = TcpStream::connect(gw.addr).await.unwrap();
    let took = closed_after(&mut tcp, Duration::from_secs(3)).await;
    assert!(took >= Duration::from_millis(400), "{took:?}");
}

#[tokio::test]
async fn headers_that_trickle_in_are_cut_at_the_header_timeout() {
    let (gw, _bus) = gateway(|_| {}).await;
    let mut tcp = TcpStream::connect(gw.addr).await.unwrap();
    let started = Instant::now();
    let request = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ";
    let mut closed = None;
    for byte in request.iter().cycle().take(60) {
        if tcp.write_all(&[*byte]).await.is_err() {
            closed = Some(started.elapsed());
            break;
        }
        let mut buf = [0; 64];
        if let Ok(Ok(0) | Err(_)) =
            tokio::time::timeout(Duration::from_millis(50), tcp.read(&mut buf)).await
        {
            closed = Some(started.elapsed());
            break;
        }
    }
    let took = closed.expect("still open after 3 s of trickling headers");
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_millis(1_500),
        "{took:?}"
    );
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let (gw, _bus) = gateway(|_| {}).await;
    let mut tcp = TcpStream::connect(gw.addr).await.unwrap();
    tcp.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0; 1024];
    let n = tcp.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{:?}", &buf[..n]);
    // Kept open past the header timeout: idle is not a slow request.
    let took = closed_after(&mut tcp, Duration::from_secs(4)).await;
    assert!(
        took >= Duration::from_millis(1_300) && took < Duration::from_millis(2_500),
        "{took:?}"
    );
}

#[tokio::test]
async fn connections_past_the_cap_are_closed_at_once_and_counted() {
    let (gw, _bus) = gateway(|c| {
        c.max_tcp_connections = 3;
        c.header_timeout = 5_000;
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(TcpStream::connect(gw.addr).await.unwrap());
    }
    // The gateway counts a connection once it has accepted it.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut over = TcpStream::connect(gw.addr).await.unwrap();
    let took = closed_after(&mut over, Duration::from_secs(1)).await;
    assert!(
        took < Duration::from_millis(500),
        "refused at once: {took:?}"
    );
    held.pop();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let metrics = sio_tests::raw::metrics(gw.addr).await;
    assert_eq!(
        metrics.get(r#"sio_gateway_accept_errors_total{reason="over_cap"}"#),
        Some(1)
    );
    assert_eq!(
        metrics.get(r#"sio_gateway_tcp_connections{listener="clients"}"#),
        Some(3),
        "two held and this one"
    );
}

#[tokio::test]
async fn the_operations_listener_answers_when_clients_took_every_connection() {
    let ops = SocketAddr::from(([127, 0, 0, 1], sio_tests::process::free_port().unwrap()));
    let (gw, _bus) = gateway(|c| {
        c.max_tcp_connections = 2;
        c.header_timeout = 5_000;
        c.ops_listen = Some(ops);
    })
    .await;
    let _held = [
        TcpStream::connect(gw.addr).await.unwrap(),
        TcpStream::connect(gw.addr).await.unwrap(),
    ];
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut over = TcpStream::connect(gw.addr).await.unwrap();
    closed_after(&mut over, Duration::from_secs(1)).await;
    let health = http(ops, "GET", "/health", &[], b"").await;
    assert_eq!((health.status, health.text().as_str()), (200, "ok"));
    let metrics = sio_tests::raw::metrics(ops).await;
    assert_eq!(
        metrics.get(r#"sio_gateway_accept_errors_total{reason="over_cap"}"#),
        Some(1)
    );
    assert_eq!(
        metrics.get(r#"sio_gateway_tcp_connections{listener="clients"}"#),
        Some(2)
    );
    let engine = http(ops, "GET", "/socket.io/?EIO=4&transport=polling", &[], b"").await;
    assert_eq!(engine.status, 404, "operations only");
}

#[tokio::test]
async fn websockets_outlive_the_idle_timeout() {
    let (gw, _bus) = gateway(|_| {}).await;
    let (mut ws, _) = Ws::joined(gw.addr, "/").await;
    // `Ws` answers pings; nothing else travels meanwhile.
    assert!(ws.quiet(Duration::from_millis(2_500)).await, "only pings");
    ws.send("40/chat,").await;
    assert!(ws.text().await.starts_with("40/chat,"), "still served");
}

#[tokio::test]
async fn an_idle_timeout_within_a_long_poll_is_refused() {
    let mut config = test_config();
    config.idle_timeout = config.ping_interval + config.ping_timeout;
    assert!(config.validate().is_err());
    config.idle_timeout += 1;
    assert!(config.validate().is_ok());
}

/// A gateway process started with 400 descriptors: clients get 144
/// connections (the rest of the limit stays in reserve), every further one
/// is closed at once, counted and logged, while a healthy client keeps
/// being served, the operations listener answers, and the gateway takes
/// connections again once the flood closes.
#[tokio::test]
async fn at_the_descriptor_limit_operations_still_answer() {
    let (addr, ops) = (
        sio_tests::process::free_addr(),
        sio_tests::process::free_addr(),
    );
    let (addr_s, ops_s) = (addr.to_string(), ops.to_string());
    let gateway = env!("CARGO_BIN_EXE_gateway-process");
    // Its log on stdout, where the harness reads lines.
    let process = sio_tests::process::Process::start(
        "sh",
        &[
            "-c",
            r#"exec prlimit --nofile=400:400 "$@" 2>&1"#,
            "sh",
            gateway,
            "--listen",
            &addr_s,
            "--ops-listen",
            &ops_s,
            "--log-format",
            "json",
        ],
    );
    process.expect("client connections capped below the descriptor limit");
    sio_tests::process::ready(ops).await;
    let (mut healthy, _) = Ws::joined(addr, "/").await;
    let flood = |n: usize| async move {
        let mut opened = Vec::new();
        for _ in 0..n {
            opened.push(TcpStream::connect(addr).await.unwrap());
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (mut held, mut refused) = (Vec::new(), 0);
        for mut tcp in opened {
            let mut buf = [0; 1];
            // A held connection stays silent; one over the cap was closed.
            match tokio::time::timeout(Duration::from_millis(5), tcp.read(&mut buf)).await {
                Err(_) => held.push(tcp),
                Ok(_) => refused += 1,
            }
        }
        (held, refused)
    };
    let (held, refused) = flood(200).await;
    assert_eq!(
        (held.len(), refused),
        (143, 57),
        "the healthy client holds one"
    );
    let warning = process.expect("connections refused");
    assert!(warning.contains("over_cap"), "{warning}");
    let metrics = sio_tests::raw::metrics(ops).await;
    assert_eq!(
        metrics.get(r#"sio_gateway_accept_errors_total{reason="over_cap"}"#),
        Some(57)
    );
    assert_eq!(http(ops, "GET", "/health", &[], b"").await.status, 200);
    // The healthy client was served throughout and still is.
    healthy.send("41").await;
    healthy.send("40").await;
    assert!(healthy.text().await.starts_with("40{\"sid\""), "served");
    // The flood leaves: every connection is to be had again.
    drop(held);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (held, refused) = flood(143).await;
    assert_eq!((held.len(), refused), (143, 0), "recovered");
    drop(held);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = http(addr, "GET", "/socket.io/?EIO=4&transport=polling", &[], b"").await;
    assert_eq!(r.status, 200, "a new session");
}

#[tokio::test]
async fn a_request_body_that_trickles_in_is_cut_at_the_idle_timeout() {
    let (gw, _bus) = gateway(|_| {}).await;
    let p = sio_tests::raw::Polling::open(gw.addr).await;
    let mut tcp = TcpStream::connect(gw.addr).await.unwrap();
    let head = format!(
        "POST /socket.io/?{} HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 1000\r\n\r\n40",
        p.query()
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    let took = closed_after(&mut tcp, Duration::from_secs(4)).await;
    assert!(
        took >= Duration::from_millis(1_300) && took < Duration::from_millis(2_500),
        "{took:?}"
    );
}

/// A connection from `source` (a loopback address) to `to`.
async fn connect_from(source: [u8; 4], to: SocketAddr) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((source, 0))).unwrap();
    socket.connect(to).await.unwrap()
}

/// Whether the gateway closed `tcp` (within a moment) or holds it.
async fn refused(tcp: &mut TcpStream) -> bool {
    let mut buf = [0; 1];
    tokio::time::timeout(Duration::from_millis(300), tcp.read(&mut buf))
        .await
        .is_ok()
}

#[tokio::test]
async fn one_address_may_hold_and_open_only_so_many_connections() {
    let (gw, _bus) = gateway(|c| {
        c.max_connections_per_address = 2;
        c.connections_per_second_per_address = 3;
        c.header_timeout = 5_000;
    })
    .await;
    let mut a = vec![
        connect_from([127, 0, 0, 2], gw.addr).await,
        connect_from([127, 0, 0, 2], gw.addr).await,
    ];
    let mut third = connect_from([127, 0, 0, 2], gw.addr).await;
    assert!(
        refused(&mut third).await,
        "a third at once from one address"
    );
    let mut other = connect_from([127, 0, 0, 3], gw.addr).await;
    assert!(!refused(&mut other).await, "another address is served");
    for tcp in &mut a {
        assert!(!refused(tcp).await, "the first two are held");
    }
    a.pop();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut again = connect_from([127, 0, 0, 2], gw.addr).await;
    assert!(!refused(&mut again).await, "one closed, one more may open");
    let metrics = sio_tests::raw::metrics(gw.addr).await;
    assert_eq!(
        metrics.get(r#"sio_gateway_accept_errors_total{reason="address_concurrent"}"#),
        Some(1)
    );
}

#[tokio::test]
async fn one_address_may_open_only_so_many_connections_per_second() {
    let (gw, _bus) = gateway(|c| {
        c.connections_per_second_per_address = 3;
        c.header_timeout = 5_000;
    })
    .await;
    let started = Instant::now();
    let mut opened = Vec::new();
    for _ in 0..7 {
        opened.push(connect_from([127, 0, 0, 4], gw.addr).await);
    }
    assert!(started.elapsed() < Duration::from_secs(1));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut held = 0;
    for tcp in &mut opened {
        if !refused(tcp).await {
            held += 1;
        }
    }
    // Seven within a second span at most two of the counting seconds.
    assert!((3..=6).contains(&held), "{held} held");
    let metrics = sio_tests::raw::metrics(gw.addr).await;
    assert_eq!(
        metrics.get(r#"sio_gateway_accept_errors_total{reason="address_rate"}"#),
        Some(7 - held)
    );
}

#[tokio::test]
async fn behind_a_trusted_proxy_sessions_count_per_reported_address() {
    let (gw, _bus) = gateway(|c| {
        c.trust_proxy = true;
        c.max_connections_per_address = 1;
    })
    .await;
    let open = |from: &'static str| {
        let addr = gw.addr;
        async move {
            http(
                addr,
                "GET",
                "/socket.io/?EIO=4&transport=polling",
                &[("X-Forwarded-For", from)],
                b"",
            )
            .await
        }
    };
    let first = open("203.0.113.9").await;
    assert_eq!(first.status, 200);
    assert_eq!(
        open("203.0.113.9").await.status,
        503,
        "one session per address"
    );
    assert_eq!(open("203.0.113.10").await.status, 200, "another address");
    // The first session ends: its address may open another.
    let sid = first.text();
    let sid = sid
        .split("\"sid\":\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    let close = http(
        gw.addr,
        "POST",
        &format!("/socket.io/?EIO=4&transport=polling&sid={sid}"),
        &[("X-Forwarded-For", "203.0.113.9")],
        b"1",
    )
    .await;
    assert_eq!(close.status, 200);
    assert_eq!(open("203.0.113.9").await.status, 200);
}

/// A websocket frame that never completes holds the connection no longer
/// than the heartbeat allows: the pong cannot arrive behind it.
#[tokio::test]
async fn a_websocket_frame_in_progress_is_bounded_by_the_heartbeat() {
    let (gw, _bus) = gateway(|_| {}).await;
    let mut tcp = TcpStream::connect(gw.addr).await.unwrap();
    tcp.write_all(
        b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\n\
          Upgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .await
    .unwrap();
    let mut buf = [0; 512];
    let n = tcp.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 101"), "{:?}", &buf[..n]);
    // A masked text frame announcing 1,000 bytes, and 10 of them.
    tcp.write_all(&[0x81, 0xfe, 0x03, 0xe8, 1, 2, 3, 4])
        .await
        .unwrap();
    tcp.write_all(&[b'x'; 10]).await.unwrap();
    let took = closed_after(&mut tcp, Duration::from_secs(4)).await;
    // pingInterval 300 + pingTimeout 200, and the close's last second.
    assert!(took < Duration::from_millis(2_000), "{took:?}");
    assert!(took >= Duration::from_millis(400), "{took:?}");
}
