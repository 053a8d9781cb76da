//! The gateway at the wire: raw Engine.IO / Socket.IO clients on one side,
//! a worker speaking bus envelopes on the other, on both buses.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use sio_bus::{Bus, Subscription};
use sio_gateway::Config;
use sio_protocol::envelope::{
    self, AckReply, Command, CommandReply, ConnectReply, ConnectRequest, Disconnect,
    DisconnectReason, Emit, EmitId, EncodedPacket, SocketCommand,
};
use sio_protocol::id::SocketId;
use sio_protocol::subject::Subjects;
use sio_tests::harness::TestBus;
use sio_tests::raw::{Polling, WAIT, Ws, http};
use sio_tests::{BusKind, TestGateway, on_both_buses, test_config};

struct Setup {
    bus: TestBus,
    gw: TestGateway,
    /// The workers' own connection to the bus.
    worker: Arc<dyn Bus>,
}

async fn setup(kind: BusKind, config: Config) -> Setup {
    let bus = kind.start().await;
    let worker = match &bus.server {
        Some(server) => sio_tests::harness::connect(server).await,
        None => bus.bus.clone(),
    };
    let gw = TestGateway::start(config, bus.bus.clone()).await;
    Setup { bus, gw, worker }
}

async fn next(sub: &mut Subscription) -> sio_bus::Message {
    tokio::time::timeout(WAIT, sub.next())
        .await
        .expect("a bus message in time")
        .expect("subscription open")
}

fn subjects() -> Subjects {
    Subjects::default()
}

/// Sends a command to the gateway owning `socket` and returns its reply.
async fn command(worker: &Arc<dyn Bus>, socket: &str, command: Command) -> CommandReply {
    let id: SocketId = socket.parse().unwrap();
    let reply = worker
        .request(
            subjects().gateway(id.gateway()),
            envelope::encode(&command).unwrap().into(),
            WAIT,
        )
        .await
        .unwrap();
    envelope::decode_owned(&reply).unwrap()
}

fn packet(text: &str, attachments: Vec<Bytes>) -> EncodedPacket {
    EncodedPacket::from_text(text, attachments)
}

on_both_buses!(
    polling_session,
    websocket_session,
    upgrade_to_websocket,
    heartbeat_and_ping_timeout,
    events_reach_workers_raw_and_acks_come_back,
    binary_both_ways,
    rooms_and_exactly_once,
    emit_with_ack_to_a_client,
    disconnects_reach_workers,
    authorized_namespaces,
    readiness_and_metrics,
);

async fn polling_session(kind: BusKind) {
    let s = setup(kind, test_config()).await;
    let p = Polling::open(s.gw.addr).await;
    assert_eq!(p.open["upgrades"], serde_json::json!(["websocket"]));
    assert_eq!(p.open["pingInterval"], 300);
    assert_eq!(p.open["pingTimeout"], 200);
    assert_eq!(p.open["maxPayload"], 1_000_000);
    assert_eq!(p.sid.len(), 32);
    let r = p.post(b"40").await;
    assert_eq!((r.status, r.text().as_str()), (200, "ok"));
    let r = p.get().await;
    assert_eq!(r.header("content-type"), Some("text/plain; charset=UTF-8"));
    let text = r.text();
    let sid = text
        .strip_prefix("40{\"sid\":\"")
        .and_then(|t| t.strip_suffix("\"}"))
        .expect("connect reply");
    assert_eq!(sid.len(), 32);
    // Two packets in one POST, and the unknown namespace answer.
    assert_eq!(p.post(b"40/chat,\x1e40/nope,").await.status, 200);
    let text = p.get().await.text();
    let records: Vec<&str> = text.split('\x1e').collect();
    assert_eq!(records.len(), 2, "{text}");
    assert!(records[0].starts_with("40/chat,{\"sid\":\""), "{text}");
    assert_eq!(records[1], r#"44/nope,{"message":"Invalid namespace"}"#);
    // The client closes.
    assert_eq!(p.post(b"1").await.status, 200);
    let r = p.get().await;
    assert_eq!(
        (r.status, r.text()),
        (
            400,
            r#"{"code":1,"message":"Session ID unknown"}"#.to_owned()
        )
    );
}

async fn websocket_session(kind: BusKind) {
    let s = setup(kind, test_config()).await;
    let (mut ws, open) = Ws::open(s.gw.addr).await;
    assert_eq!(open["upgrades"], serde_json::json!([]));
    ws.send("40/chat,").await;
    let reply = ws.text().await;
    assert!(
        reply.starts_with("40/chat,{\"sid\":\"") && reply.ends_with("\"}"),
        "{reply}"
    );
    ws.send("40/nope,").await;
    assert_eq!(
        ws.text().await,
        r#"44/nope,{"message":"Invalid namespace"}"#
    );
}

async fn upgrade_to_websocket(kind: BusKind) {
    let s = setup(kind, test_config()).await;
    let addr = s.gw.addr;
    let p = Polling::open(addr).await;
    p.post(b"40").await;
    assert!(p.get().await.text().starts_with("40{"));
    let pending = {
        let p = p.clone();
        tokio::spawn(async move { p.get().await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut ws = Ws::connect(addr, &format!("EIO=4&transport=websocket&sid={}", p.sid)).await;
    ws.send("2probe").await;
    assert_eq!(ws.text().await, "3probe");
    let released = pending.await.unwrap();
    assert_eq!(
        (released.status, released.text().as_str()),
        (200, "6"),
        "noop releases the GET"
    );
    ws.send("5").await;
    // The session now lives on the websocket.
    ws.send(r#"42["after upgrade"]"#).await;
    let r = p.get().await;
    assert_eq!(
        (r.status, r.text()),
        (400, r#"{"code":3,"message":"Bad request"}"#.to_owned())
    );
    let mut second = Ws::connect(addr, &format!("EIO=4&transport=websocket&sid={}", p.sid)).await;
    assert!(
        second.next().await.is_none(),
        "a second websocket is closed"
    );
    ws.send("41").await;
    ws.send("40").await;
    assert!(
        ws.text().await.starts_with("40{"),
        "the upgraded session still works"
    );
}

async fn heartbeat_and_ping_timeout(kind: BusKind) {
    let s = setup(kind, test_config()).await;
    // A client that answers pings (`Ws` does) outlives many intervals.
    let (mut ws, _) = Ws::joined(s.gw.addr, "/").await;
    assert!(
        ws.quiet(Duration::from_millis(1200)).await,
        "only pings in the meantime"
    );
    ws.send("40/chat,").await;
    assert!(ws.text().await.starts_with("40/chat,"), "still served");
    // One that never answers gets a ping after pingInterval and is closed
    // pingTimeout later.
    let (mut silent, open) = Ws::open(s.gw.addr).await;
    let sid = open["sid"].as_str().unwrap().to_owned();
    silent.send("40").await;
    let started = tokio::time::Instant::now();
    let mut frames = Vec::new();
    while let Some(frame) = silent.raw().await {
        frames.push(frame.into_text().unwrap().as_str().to_owned());
    }
    let took = started.elapsed();
    assert_eq!(frames.len(), 2, "{frames:?}");
    assert!(frames[0].starts_with("40{"));
    assert_eq!(frames[1], "2");
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_secs(3),
        "{took:?}"
    );
    let r = http(
        s.gw.addr,
        "GET",
        &format!("/socket.io/?EIO=4&transport=polling&sid={sid}"),
        &[],
        b"",
    )
    .await;
    assert_eq!(r.text(), r#"{"code":1,"message":"Session ID unknown"}"#);
}

/// What a worker received: event name, raw data, attachments.
type Seen = (String, String, Vec<Bytes>);

/// Events received by [`ack_worker`].
struct SeenEvents(tokio::sync::mpsc::UnboundedReceiver<Seen>);

impl SeenEvents {
    async fn next(&mut self) -> Seen {
        tokio::time::timeout(WAIT, self.0.recv())
            .await
            .expect("an event in time")
            .expect("worker running")
    }
}

/// A worker that says every event is done, answering those with ack with
/// `["ok"]` (and the event's attachments), and reports what it received.
async fn ack_worker(worker: &Arc<dyn Bus>) -> SeenEvents {
    let mut events = worker
        .queue_subscribe(subjects().all_events(), "workers".into())
        .await
        .unwrap();
    worker.flush().await.unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let worker = worker.clone();
    tokio::spawn(async move {
        while let Some(m) = events.next().await {
            let evs: envelope::Events<'_> = envelope::decode(&m.payload).unwrap();
            let mut acks = Vec::new();
            for ev in &evs.events {
                let _ = tx.send((
                    ev.event.to_string(),
                    ev.data.to_string(),
                    ev.attachments.clone(),
                ));
                acks.push(ev.ack.then(|| AckReply {
                    data: r#"["ok"]"#.into(),
                    attachments: ev.attachments.clone(),
                }));
            }
            if let Some(reply) = m.reply {
                worker
                    .publish(reply, sio_tests::raw::events_done(acks))
                    .await
                    .unwrap();
            }
        }
    });
    SeenEvents(rx)
}

async fn events_reach_workers_raw_and_acks_come_back(kind: BusKind) {
    let s = setup(kind, test_config()).await;
    let mut seen = ack_worker(&s.worker).await;
    let (mut ws, _) = Ws::joined(s.gw.addr, "/").await;
    let data = r#"["chat msg",{"z":1,"a":1.0,"n":[1e3,-0]},"\u00e9"]"#;
    ws.send(&format!("4217{data}")).await;
    let (name, got, _) = seen.next().await;
    assert_eq!(name, "chat msg");
    assert_eq!(got, data, "arguments reach the worker byte for byte");
    assert_eq!(ws.text().await, r#"4317["ok"]"#);
    // Without an ack id: handed over all the same, and nothing comes back.
    ws.send(r#"42["fire",1]"#).await;
    let (name, got, _) = seen.next().await;
    assert_eq!((name.as_str(), got.as_str()), ("fire", r#"["fire",1]"#));
    assert!(ws.quiet(Duration::from_millis(200)).await);
    // Over polling too, in a custom namespace.
    let p = Polling::open(s.gw.addr).await;
    p.post(b"40/chat,").await;
    assert!(p.get().await.text().starts_with("40/chat,"));
    p.post(br#"42/chat,5["poll",true]"#).await;
    assert_eq!(p.get().await.text(), r#"43/chat,5["ok"]"#);
}

async fn binary_both_ways(kind: BusKind) {
    let s = setup(kind, test_config()).await;
    let mut seen = ack_worker(&s.worker).await;
    let (mut ws, socket) = Ws::joined(s.gw.addr, "/").await;
    ws.send(r#"451-3["up",{"file":{"_placeholder":true,"num":0}}]"#)
        .await;
    ws.send_binary(&[1, 2, 3]).await;
    let (name, data, attachments) = seen.next().await;
    assert_eq!(name, "up");
    assert_eq!(data, r#"["up",{"file":{"_placeholder":true,"num":0}}]"#);
    assert_eq!(attachments, [Bytes::from_static(&[1, 2, 3])]);
    // The ack carries the attachment back: a BINARY_ACK and a binary frame.
    assert_eq!(ws.text().await, r#"461-3["ok"]"#);
    assert_eq!(ws.binary().await, Bytes::from_static(&[1, 2, 3]));
    // A worker's binary emit to the socket.
    let reply = command(
        &s.worker,
        &socket,
        Command::Socket {
            socket: socket.parse().unwrap(),
            action: SocketCommand::Emit {
                id: EmitId(7),
                volatile: false,
                packet: packet(
                    r#"51-["file",{"_placeholder":true,"num":0}]"#,
                    vec![Bytes::from_static(b"abc")],
                ),
            },
        },
    )
    .await;
    assert_eq!(reply, CommandReply::Done);
    assert_eq!(
        ws.text().await,
        r#"451-["file",{"_placeholder":true,"num":0}]"#
    );
    assert_eq!(ws.binary().await, Bytes::from_static(b"abc"));
    // Over polling, binary travels as base64.
    let p = Polling::open(s.gw.addr).await;
    p.post(b"40").await;
    let text = p.get().await.text();
    let polling_socket = text
        .strip_prefix("40{\"sid\":\"")
        .unwrap()
        .trim_end_matches("\"}")
        .to_owned();
    let reply = command(
        &s.worker,
        &polling_socket,
        Command::Socket {
            socket: polling_socket.parse().unwrap(),
            action: SocketCommand::Emit {
                id: EmitId(7),
                volatile: false,
                packet: packet(
                    r#"51-["file",{"_placeholder":true,"num":0}]"#,
                    vec![Bytes::from_static(&[0xff, 0, 1])],
                ),
            },
        },
    )
    .await;
    assert_eq!(reply, CommandReply::Done);
    assert_eq!(
        p.get().await.text(),
        "451-[\"file\",{\"_placeholder\":true,\"num\":0}]\x1eb/wAB"
    );
    p.post(b"451-[\"up\",{\"_placeholder\":true,\"num\":0}]\x1ebAQID")
        .await;
    let (_, _, attachments) = seen.next().await;
    assert_eq!(attachments, [Bytes::from_static(&[1, 2, 3])]);
}

async fn publish_emit(worker: &Arc<dyn Bus>, rooms: &[&str], except: &[&str], text: &str) {
    let emit = Emit {
        id: EmitId::random().unwrap(),
        ns: "/".into(),
        rooms: rooms.iter().map(|r| (*r).to_owned()).collect(),
        except: except.iter().map(|r| (*r).to_owned()).collect(),
        volatile: false,
        packet: packet(text, vec![]),
    };
    let bytes: Bytes = envelope::encode(&emit).unwrap().into();
    if rooms.is_empty() {
        worker
            .publish(subjects().namespace("/"), bytes.clone())
            .await
            .unwrap();
    }
    for room in rooms {
        worker
            .publish(subjects().room("/", room), bytes.clone())
            .await
            .unwrap();
    }
}

async fn rooms_and_exactly_once(kind: BusKind) {
    let s = setup(kind, test_config()).await;
    let (mut a, a_id) = Ws::joined(s.gw.addr, "/").await;
    let (mut b, b_id) = Ws::joined(s.gw.addr, "/").await;
    let join = |id: &String, rooms: &[&str]| Command::Socket {
        socket: id.parse().unwrap(),
        action: SocketCommand::Join {
            rooms: rooms.iter().map(|r| (*r).to_owned()).collect(),
        },
    };
    assert_eq!(
        command(&s.worker, &a_id, join(&a_id, &["r1", "r2"])).await,
        CommandReply::Done
    );
    assert_eq!(
        command(&s.worker, &b_id, join(&b_id, &["r2"])).await,
        CommandReply::Done
    );
    publish_emit(&s.worker, &["r1"], &[], r#"2["only a"]"#).await;
    assert_eq!(a.text().await, r#"42["only a"]"#);
    assert!(b.quiet(Duration::from_millis(200)).await, "b is not in r1");
    // In both target rooms, published on both subjects: delivered once.
    publish_emit(&s.worker, &["r1", "r2"], &[], r#"2["both"]"#).await;
    assert_eq!(a.text().await, r#"42["both"]"#);
    assert_eq!(b.text().await, r#"42["both"]"#);
    assert!(
        a.quiet(Duration::from_millis(200)).await,
        "a got the emit twice"
    );
    // Except a room, and except one socket (its own room).
    publish_emit(&s.worker, &["r2"], &["r1"], r#"2["not r1"]"#).await;
    assert_eq!(b.text().await, r#"42["not r1"]"#);
    publish_emit(&s.worker, &[], &[&b_id], r#"2["all but b"]"#).await;
    assert_eq!(a.text().await, r#"42["all but b"]"#);
    assert!(a.quiet(Duration::from_millis(200)).await && b.quiet(Duration::from_millis(1)).await);
    // Leaving stops delivery.
    let leave = Command::Socket {
        socket: a_id.parse().unwrap(),
        action: SocketCommand::Leave {
            rooms: vec!["r1".into()],
        },
    };
    assert_eq!(command(&s.worker, &a_id, leave).await, CommandReply::Done);
    publish_emit(&s.worker, &["r1"], &[], r#"2["gone"]"#).await;
    assert!(a.quiet(Duration::from_millis(300)).await, "a left r1");
    // A socket id the gateway does not know.
    let unknown = SocketId::from_parts(a_id.parse::<SocketId>().unwrap().gateway(), [9; 16]);
    let reply = command(
        &s.worker,
        &a_id,
        Command::Socket {
            socket: unknown,
            action: SocketCommand::SetData { data: None },
        },
    )
    .await;
    assert_eq!(reply, CommandReply::UnknownSocket);
}

async fn emit_with_ack_to_a_client(kind: BusKind) {
    let s = setup(kind, test_config()).await;
    let (mut ws, id) = Ws::joined(s.gw.addr, "/").await;
    let ask = {
        let worker = s.worker.clone();
        let id = id.clone();
        tokio::spawn(async move {
            command(
                &worker,
                &id,
                Command::Socket {
                    socket: id.parse().unwrap(),
                    action: SocketCommand::EmitWithAck {
                        data: r#"["question",1]"#.into(),
                        attachments: vec![],
                        timeout_ms: 2000,
                    },
                },
            )
            .await
        })
    };
    let text = ws.text().await;
    let rest = text.strip_prefix("42").unwrap();
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    assert_eq!(&rest[digits.len()..], r#"["question",1]"#);
    ws.send(&format!("43{digits}[\"answer\"]")).await;
    let reply = ask.await.unwrap();
    assert_eq!(
        reply,
        CommandReply::Ack(AckReply {
            data: r#"["answer"]"#.into(),
            attachments: vec![]
        })
    );
    // A client that does not answer: a timeout.
    let reply = command(
        &s.worker,
        &id,
        Command::Socket {
            socket: id.parse().unwrap(),
            action: SocketCommand::EmitWithAck {
                data: r#"["ignored"]"#.into(),
                attachments: vec![],
                timeout_ms: 100,
            },
        },
    )
    .await;
    assert_eq!(reply, CommandReply::AckTimeout);
}

async fn disconnects_reach_workers(kind: BusKind) {
    let s = setup(kind, test_config()).await;
    let mut disc = s
        .worker
        .subscribe(subjects().all_disconnects())
        .await
        .unwrap();
    s.worker.flush().await.unwrap();
    let (mut ws, id) = Ws::joined(s.gw.addr, "/").await;
    ws.send("40/chat,").await;
    assert!(ws.text().await.starts_with("40/chat,"));
    // The client leaves one namespace; the session stays.
    ws.send("41/chat,").await;
    let d: Disconnect = envelope::decode_owned(&next(&mut disc).await.payload).unwrap();
    assert_eq!(
        (d.socket.ns.as_str(), d.reason),
        ("/chat", DisconnectReason::ClientNamespaceDisconnect)
    );
    // The server disconnects the other.
    let reply = command(
        &s.worker,
        &id,
        Command::Socket {
            socket: id.parse().unwrap(),
            action: SocketCommand::Disconnect { close: false },
        },
    )
    .await;
    assert_eq!(reply, CommandReply::Done);
    assert_eq!(ws.text().await, "41");
    let d: Disconnect = envelope::decode_owned(&next(&mut disc).await.payload).unwrap();
    assert_eq!(
        (d.socket.id.to_string(), d.reason),
        (id, DisconnectReason::ServerNamespaceDisconnect)
    );
    // Still connected at the Engine.IO level: join again, then close.
    ws.send("40").await;
    assert!(ws.text().await.starts_with("40{"));
    drop(ws);
    let d: Disconnect = envelope::decode_owned(&next(&mut disc).await.payload).unwrap();
    assert_eq!(d.reason, DisconnectReason::TransportClose);
}

async fn authorized_namespaces(kind: BusKind) {
    let mut config = test_config();
    config.namespaces.push("/auth".into());
    config.authorize = vec!["/auth".into()];
    let s = setup(kind, config).await;
    let mut conn = s
        .worker
        .queue_subscribe(subjects().connect("/auth"), "workers".into())
        .await
        .unwrap();
    s.worker.flush().await.unwrap();
    let worker = s.worker.clone();
    tokio::spawn(async move {
        while let Some(m) = conn.next().await {
            let req: ConnectRequest = envelope::decode_owned(&m.payload).unwrap();
            let reply = match req.socket.handshake.auth.as_deref() {
                Some(r#"{"token":"good"}"#) => {
                    // What the handler emits comes after the CONNECT reply.
                    let hello = Command::Socket {
                        socket: req.socket.id,
                        action: SocketCommand::Emit {
                            id: EmitId(7),
                            volatile: false,
                            packet: packet(r#"2/auth,["welcome"]"#, vec![]),
                        },
                    };
                    let subject = subjects().gateway(req.socket.id.gateway());
                    worker
                        .request(subject, envelope::encode(&hello).unwrap().into(), WAIT)
                        .await
                        .unwrap();
                    ConnectReply::Accept {
                        data: Some(r#"{"user":1}"#.into()),
                        rooms: vec!["vip".into()],
                    }
                }
                _ => ConnectReply::Reject {
                    data: r#"{"message":"not authorized","data":{"code":7}}"#.into(),
                },
            };
            worker
                .publish(m.reply.unwrap(), envelope::encode(&reply).unwrap().into())
                .await
                .unwrap();
        }
    });
    let (mut ws, _) = Ws::open(s.gw.addr).await;
    ws.send(r#"40/auth,{"token":"bad"}"#).await;
    assert_eq!(
        ws.text().await,
        r#"44/auth,{"message":"not authorized","data":{"code":7}}"#
    );
    ws.send(r#"40/auth,{"token":"good"}"#).await;
    assert!(
        ws.text().await.starts_with("40/auth,{\"sid\":"),
        "the reply comes first"
    );
    assert_eq!(ws.text().await, r#"42/auth,["welcome"]"#);
}

async fn readiness_and_metrics(kind: BusKind) {
    let mut s = setup(kind, test_config()).await;
    let r = http(s.gw.addr, "GET", "/health", &[], b"").await;
    assert_eq!((r.status, r.text().as_str()), (200, "ok"));
    assert_eq!(http(s.gw.addr, "GET", "/ready", &[], b"").await.status, 200);
    let (_ws, _) = Ws::joined(s.gw.addr, "/").await;
    let metrics = http(s.gw.addr, "GET", "/metrics", &[], b"").await.text();
    assert!(metrics.contains("sio_gateway_sessions 1"), "{metrics}");
    assert!(
        metrics.contains(r#"sio_gateway_sockets{namespace="/"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"sio_gateway_connections{transport="websocket"} 1"#),
        "{metrics}"
    );
    if let Some(server) = s.bus.server.as_mut() {
        server.stop();
        let deadline = tokio::time::Instant::now() + WAIT;
        while http(s.gw.addr, "GET", "/ready", &[], b"").await.status != 503 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "still ready without NATS"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Clients stay connected meanwhile.
        assert_eq!(
            http(s.gw.addr, "GET", "/health", &[], b"").await.status,
            200
        );
        server.restart().unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        while http(s.gw.addr, "GET", "/ready", &[], b"").await.status != 200 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "not ready again after NATS came back"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test]
async fn connect_timeout_closes_idle_sessions() {
    let mut config = test_config();
    config.connect_timeout = 300;
    let s = setup(BusKind::Memory, config).await;
    let (mut ws, _) = Ws::open(s.gw.addr).await;
    let started = tokio::time::Instant::now();
    while ws.next().await.is_some() {}
    assert!(started.elapsed() >= Duration::from_millis(250));
}

#[tokio::test]
async fn drain_closes_every_session() {
    let mut s = setup(BusKind::Memory, test_config()).await;
    let (mut ws, _) = Ws::joined(s.gw.addr, "/").await;
    let p = Polling::open(s.gw.addr).await;
    p.post(b"40").await;
    p.get().await;
    let pending = {
        let p = p.clone();
        tokio::spawn(async move { p.get().await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    s.gw.shut_down();
    assert!(ws.next().await.is_none(), "websocket closed");
    let r = pending.await.unwrap();
    assert_eq!(r.text(), "1", "the pending GET gets the close packet");
    let r = http(
        s.gw.addr,
        "GET",
        "/socket.io/?EIO=4&transport=polling",
        &[],
        b"",
    )
    .await;
    assert_ne!(r.status, 200, "no new sessions while draining");
}
