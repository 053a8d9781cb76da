//! Sessions without sticky balancing: a polling request for a session of
//! another gateway is served by its owner over the bus, with the owner's
//! status and body; a websocket upgrade that reaches another gateway takes
//! the session over; a session whose gateway is gone is unknown at once.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::Duration;

use sio_protocol::envelope::{self, Command, CommandReply};
use sio_protocol::id::{GatewayId, Sid};
use sio_protocol::subject::Subjects;
use sio_tests::raw::{Polling, Ws, engine, http, metrics, packet};
use sio_tests::{BusKind, TestGateway, on_both_buses, test_config};
use sio_worker::{Emitter, Socket, Worker};

on_both_buses!(
    polling_reaches_the_owner_from_any_gateway,
    an_upgrade_on_another_gateway_takes_the_session,
    forged_hand_overs_are_refused,
    a_session_taken_over_counts_where_it_lives
);

async fn polling_reaches_the_owner_from_any_gateway(kind: BusKind) {
    let bus = kind.start().await;
    let a = TestGateway::start(test_config(), bus.bus.clone()).await;
    let b = TestGateway::start(test_config(), bus.bus.clone()).await;
    let mut worker = Worker::new();
    worker
        .of("/")
        .on("hi", |socket: Socket, (n,): (u32,)| async move {
            socket.ack(&(n + 1,)).await
        });
    let _running = worker.start(bus.bus.clone()).await.unwrap();
    // Opened on A; every request after goes to B, or to A, in turn.
    let on_a = Polling::open(a.addr).await;
    let on_b = Polling {
        addr: b.addr,
        ..on_a.clone()
    };
    assert_eq!(on_b.post(b"40").await.text(), "ok");
    let connected = on_b.get().await;
    assert_eq!(connected.status, 200);
    assert!(
        connected.text().starts_with("40{\"sid\":\""),
        "{}",
        connected.text()
    );
    assert_eq!(
        connected.header("content-type"),
        Some("text/plain; charset=UTF-8")
    );
    for (n, (send, read)) in [(&on_b, &on_a), (&on_a, &on_b), (&on_b, &on_b)]
        .into_iter()
        .enumerate()
    {
        let id = n + 1;
        assert_eq!(
            send.post(format!("42{id}[\"hi\",{n}]").as_bytes())
                .await
                .text(),
            "ok"
        );
        assert_eq!(read.get().await.text(), format!("43{id}[{}]", n + 1));
    }
    // Two GETs at once are the protocol error they are on one gateway.
    let pending = tokio::spawn({
        let on_a = on_a.clone();
        async move { on_a.get().await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let second = on_b.get().await;
    assert_eq!(second.status, 400, "{}", second.text());
    let _ = pending.await;
    let (a_m, b_m) = (metrics(a.addr).await, metrics(b.addr).await);
    assert!(b_m.get("sio_gateway_polls_forwarded_total").unwrap() >= 4);
    assert!(a_m.get("sio_gateway_polls_served_total").unwrap() >= 4);
    assert_eq!(
        a_m.get("sio_gateway_polls_forwarded_total"),
        Some(0),
        "A serves its own directly"
    );
    // A body over maxHttpBufferSize is refused where it lands.
    let fresh = Polling::open(a.addr).await;
    let big = vec![b'x'; 1_000_001];
    let r = Polling {
        addr: b.addr,
        ..fresh.clone()
    }
    .post(&big)
    .await;
    assert_eq!(r.status, 413);
    // An upgrade request that is no websocket handshake is refused where
    // it lands; the client goes on polling.
    let query = format!("EIO=4&transport=websocket&sid={}", fresh.sid);
    let r = http(b.addr, "GET", &engine(&query), &[], b"").await;
    assert_eq!(r.text(), r#"{"code":3,"message":"Bad request"}"#);
    assert_eq!(fresh.get().await.status, 200, "still served on its owner");
    // A sid of a gateway that is not there: unknown, at once.
    let nobody = Sid::random(GatewayId::random().unwrap()).unwrap();
    let started = tokio::time::Instant::now();
    let query = format!("EIO=4&transport=polling&sid={nobody}");
    let r = http(b.addr, "GET", &engine(&query), &[], b"").await;
    assert_eq!(r.text(), r#"{"code":1,"message":"Session ID unknown"}"#);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "no timeout waited"
    );
}

/// Emits to the room streamed while the session moves.
const STREAMED: u32 = 300;

/// A session opened and joined over polling on A upgrades on B: B takes
/// it over while emits to its room stream in and a handler on A waits for
/// the client's answer. The client gets every emit once, in order (the
/// ones before the switch over polling, the rest over the websocket); its
/// answer reaches the handler, whose ack arrives before that of the event
/// sent next; its events, acks, socket-id emits (through A, which forwards
/// them) and room emits are served at B, and A holds nothing of it; once
/// A is gone, the handlers still reach the socket.
async fn an_upgrade_on_another_gateway_takes_the_session(kind: BusKind) {
    let bus = kind.start().await;
    let a = TestGateway::start(test_config(), bus.bus.clone()).await;
    let b = TestGateway::start(test_config(), bus.bus.clone()).await;
    let mut worker = Worker::new();
    worker
        .of("/")
        .on_connect(|socket: Socket| async move {
            socket.join(["r"]).await.unwrap();
            socket.set_data(&("kept",)).await.unwrap();
            socket.emit("ready", &()).await.unwrap();
            Ok(())
        })
        .on("hi", |socket: Socket, (n,): (u32,)| async move {
            socket.ack(&(n + 1,)).await
        })
        .on("whisper", |socket: Socket, ()| async move {
            let data: (String,) = socket.data().unwrap().unwrap();
            socket.emit("whispered", &data).await
        })
        .on("ask", |socket: Socket, ()| async move {
            let timeout = Duration::from_secs(10);
            let (answer,): (String,) = socket.emit_with_ack("question", &(), timeout).await?;
            // A join made on A after the switch: forwarded, and kept.
            socket.join(["late"]).await?;
            socket.ack(&(answer,)).await
        });
    let _running = worker.start(bus.bus.clone()).await.unwrap();
    let on_a = Polling::open(a.addr).await;
    assert_eq!(on_a.post(b"40").await.text(), "ok");
    let mut got = String::new();
    while !got.contains("42[\"ready\"]") {
        got.push_str(&on_a.get().await.text());
    }
    // Emits to its room stream in from now on.
    let io = Emitter::new(bus.bus.clone());
    let streaming = tokio::spawn(async move {
        for n in 0..STREAMED {
            io.of("/").to("r").emit("n", &(n,)).await.unwrap();
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        io
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    // A handler that waits for the client's answer across the switch.
    assert_eq!(on_a.post(br#"427["ask"]"#).await.text(), "ok");
    let query = format!("EIO=4&transport=websocket&sid={}", on_a.sid);
    let mut ws = Ws::connect(b.addr, &query).await;
    ws.send("2probe").await;
    assert_eq!(ws.text().await, "3probe");
    // The client pauses polling: its pending GET ends with a noop.
    let mut polled = String::new();
    loop {
        let r = on_a.get().await;
        assert_eq!(r.status, 200, "{}", r.text());
        polled.push_str(&r.text());
        polled.push('\x1e');
        if r.text().split('\x1e').any(|p| p == "6") {
            break;
        }
    }
    ws.send("5").await;
    // The next event waits for the one still handled on A.
    ws.send(r#"421["hi",1]"#).await;
    let mut seen: Vec<u32> = polled.split('\x1e').filter_map(number).collect();
    let mut asked = polled.split('\x1e').any(|p| p == r#"420["question"]"#);
    if asked {
        ws.send(r#"430["fine"]"#).await;
    }
    let mut acks = Vec::new();
    while seen.last() != Some(&(STREAMED - 1)) || acks.len() < 2 {
        let text = ws.text().await;
        match text.as_str() {
            "6" => {}
            r#"420["question"]"# if !asked => {
                asked = true;
                ws.send(r#"430["fine"]"#).await;
            }
            r#"437["fine"]"# | "431[2]" => acks.push(text),
            _ => seen.push(number(&text).unwrap_or_else(|| panic!("not an emit: {text}"))),
        }
    }
    assert_eq!(acks, [r#"437["fine"]"#, "431[2]"], "in the order sent");
    let io = streaming.await.unwrap();
    io.of("/").to("late").emit("late", &()).await.unwrap();
    assert_eq!(
        ws.text().await,
        r#"42["late"]"#,
        "the join made on A holds at B"
    );
    assert_eq!(
        seen,
        (0..STREAMED).collect::<Vec<_>>(),
        "each once, in order"
    );
    assert!(
        !polled.contains("42[\"n\",299]"),
        "the switch came before the stream ended"
    );
    // Polling is over for this session wherever it lands.
    assert_eq!(on_a.get().await.status, 400);
    // Served at B now: events and acks, socket-id emits, room emits.
    ws.send(r#"422["hi",2]"#).await;
    assert_eq!(ws.text().await, "432[3]");
    ws.send(r#"42["whisper"]"#).await;
    assert_eq!(ws.text().await, r#"42["whispered","kept"]"#);
    let (a_m, b_m) = (metrics(a.addr).await, metrics(b.addr).await);
    assert_eq!(a_m.get("sio_gateway_sessions_handed_over_total"), Some(1));
    assert_eq!(b_m.get("sio_gateway_sessions_taken_over_total"), Some(1));
    assert_eq!(
        a_m.get("sio_gateway_sessions"),
        Some(0),
        "nothing left on A"
    );
    assert_eq!(b_m.get("sio_gateway_sessions"), Some(1));
    io.of("/").to("r").emit("n", &(STREAMED,)).await.unwrap();
    assert_eq!(ws.text().await, format!(r#"42["n",{STREAMED}]"#));
    assert!(ws.quiet(Duration::from_millis(200)).await, "once");
    // The first gateway goes away: its handlers' commands (sent to the
    // gateway that holds the socket) and its rooms still reach it.
    drop(a);
    ws.send(r#"42["whisper"]"#).await;
    assert_eq!(ws.text().await, r#"42["whispered","kept"]"#);
    ws.send(r#"423["hi",3]"#).await;
    assert_eq!(ws.text().await, "433[4]");
    io.of("/")
        .to("r")
        .emit("n", &(STREAMED + 1,))
        .await
        .unwrap();
    assert_eq!(ws.text().await, format!(r#"42["n",{}]"#, STREAMED + 1));
    // Commands by socket id from anywhere (here an emitter's
    // `to(socket id)`) reach it again once B knows A is gone (its
    // heartbeats stopped) and serves A's subject for it.
    let id = got
        .split("40{\"sid\":\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_owned();
    let mut reached = false;
    for _ in 0..50 {
        io.of("/").to(id.clone()).emit("by_id", &()).await.unwrap();
        if ws.text_within(Duration::from_millis(200)).await.is_some() {
            reached = true;
            break;
        }
    }
    assert!(reached, "never reached by id");
    // Late copies of the retries, if any, go by first.
    while ws.text_within(Duration::from_millis(300)).await.is_some() {}
    io.of("/").to(id).emit("by_id_once", &()).await.unwrap();
    let mut once = 0;
    while let Some(text) = ws.text_within(Duration::from_millis(300)).await {
        once += usize::from(text == r#"42["by_id_once"]"#);
    }
    assert_eq!(once, 1);
}

/// The number of a `42["n",N]` packet.
fn number(packet: &str) -> Option<u32> {
    packet
        .strip_prefix(r#"42["n","#)?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// Hand-over steps for sessions the gateway does not own, or not in the
/// step they claim, get `UnknownSocket`, and the session they name goes
/// on unharmed; an upgrade for a sid whose gateway is gone is refused at
/// once.
async fn forged_hand_overs_are_refused(kind: BusKind) {
    let bus = kind.start().await;
    let a = TestGateway::start(test_config(), bus.bus.clone()).await;
    let b = TestGateway::start(test_config(), bus.bus.clone()).await;
    let owner = a.gateway.id();
    let ask = |command: Command| {
        let bus = bus.bus.clone();
        async move {
            let subject = Subjects::default().gateway(owner);
            let reply = bus
                .request(
                    subject,
                    envelope::encode(&command).unwrap().into(),
                    Duration::from_secs(15),
                )
                .await
                .unwrap();
            envelope::decode_owned::<CommandReply>(&reply).unwrap()
        }
    };
    let live = Polling::open(a.addr).await;
    let sid: Sid = live.sid.parse().unwrap();
    let stranger = Sid::random(a.gateway.id()).unwrap();
    let to = b.gateway.id();
    for command in [
        Command::Probe { sid: stranger },
        Command::HandOver { sid: stranger, to },
        Command::Release { sid: stranger },
        // A live session that nobody probed, or that is not moving.
        Command::HandOver { sid, to },
        Command::Release { sid },
    ] {
        assert_eq!(
            ask(command.clone()).await,
            CommandReply::UnknownSocket,
            "{command:?}"
        );
    }
    assert_eq!(ask(Command::Unprobe { sid }).await, CommandReply::Done);
    assert_eq!(live.post(b"40").await.text(), "ok", "still polling");
    assert!(live.get().await.text().starts_with("40{"));
    // A sid of a gateway that is not there: unknown, at once.
    let nobody = Sid::random(GatewayId::random().unwrap()).unwrap();
    let started = tokio::time::Instant::now();
    let query = format!("EIO=4&transport=websocket&sid={nobody}");
    let url = sio_tests::raw::packet::ws_url(b.addr, &query);
    match tokio_tungstenite::connect_async(url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 400);
        }
        other => panic!("upgraded: {other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "no timeout waited"
    );
}

/// Behind a trusted proxy with one session per client address: a session
/// taken over counts against its address on the gateway that holds it,
/// and no longer on the one that opened it.
async fn a_session_taken_over_counts_where_it_lives(kind: BusKind) {
    use futures_util::{SinkExt as _, StreamExt as _};
    use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest as _};

    let bus = kind.start().await;
    let config = || sio_gateway::Config {
        trust_proxy: true,
        max_connections_per_address: 1,
        ..test_config()
    };
    let a = TestGateway::start(config(), bus.bus.clone()).await;
    let b = TestGateway::start(config(), bus.bus.clone()).await;
    const FROM: (&str, &str) = ("X-Forwarded-For", "203.0.113.9");
    let open =
        |addr| async move { http(addr, "GET", &engine(packet::POLLING), &[FROM], b"").await };
    let first = open(a.addr).await;
    assert_eq!(first.status, 200);
    let sid = packet::sid(&packet::open(&first.text()).unwrap())
        .unwrap()
        .to_owned();
    assert_eq!(
        open(a.addr).await.status,
        503,
        "one session per address on A"
    );
    let url = packet::ws_url(b.addr, &format!("EIO=4&transport=websocket&sid={sid}"));
    let mut request = url.into_client_request().unwrap();
    request
        .headers_mut()
        .insert(FROM.0, FROM.1.parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    ws.send(Message::text("2probe")).await.unwrap();
    let answer = ws.next().await.unwrap().unwrap();
    assert_eq!(answer.to_text().unwrap(), "3probe");
    ws.send(Message::text("5")).await.unwrap();
    // The hand-over is done once B pings the session.
    let ping = tokio::time::timeout(Duration::from_secs(5), ws.next()).await;
    assert_eq!(ping.unwrap().unwrap().unwrap().to_text().unwrap(), "2");
    assert_eq!(open(b.addr).await.status, 503, "counted on B now");
    assert_eq!(open(a.addr).await.status, 200, "and no longer on A");
}
