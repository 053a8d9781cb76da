//! The worker SDK end to end: raw Engine.IO / Socket.IO clients, a real
//! gateway, handlers written with `sio-worker`, on both buses.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use sio_bus::Bus;
use sio_gateway::Config;
use sio_tests::harness::TestBus;
use sio_tests::raw::Ws;
use sio_tests::{BusKind, TestGateway, on_both_buses, test_config};
use sio_worker::{ConnectError, DisconnectReason, Emitter, Socket, Worker};
use tokio::sync::mpsc;

struct Setup {
    _bus: TestBus,
    gw: TestGateway,
    /// A fresh connection for each worker or emitter.
    connect: Box<dyn Fn() -> futures_util::future::BoxFuture<'static, Arc<dyn Bus>> + Send + Sync>,
}

async fn setup(kind: BusKind, config: Config) -> Setup {
    let bus = kind.start().await;
    let gw = TestGateway::start(config, bus.bus.clone()).await;
    let connect: Box<
        dyn Fn() -> futures_util::future::BoxFuture<'static, Arc<dyn Bus>> + Send + Sync,
    > = match &bus.server {
        Some(server) => {
            let url = server.url();
            Box::new(move || {
                let url = url.clone();
                Box::pin(async move {
                    let bus = sio_bus::NatsBus::connect(&sio_bus::NatsOptions {
                        urls: vec![url],
                        ..Default::default()
                    })
                    .await
                    .unwrap();
                    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
                    while bus.state() != sio_bus::State::Connected
                        && tokio::time::Instant::now() < deadline
                    {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    Arc::new(bus) as Arc<dyn Bus>
                })
            })
        }
        None => {
            let shared = bus.bus.clone();
            Box::new(move || {
                let shared = shared.clone();
                Box::pin(async move { shared })
            })
        }
    };
    Setup {
        _bus: bus,
        gw,
        connect,
    }
}

/// Starts `worker` on its own connection; it serves once this returns.
async fn start(s: &Setup, worker: Worker) -> sio_worker::Running {
    worker.start((s.connect)().await).await.unwrap()
}

on_both_buses!(
    typed_events_and_acks,
    rooms_and_broadcasts,
    connect_handlers,
    auth_without_payload_is_an_empty_object,
    disconnects_and_failures,
    emitter_and_queue_group,
    leases_late_acks_and_opting_out
);

/// A handler that runs for several leases keeps its event (renewed, not
/// handed over); an ack made after the handler returned still arrives; a
/// failed handler's client is told; an event opted out of order runs
/// beside the socket's others.
async fn leases_late_acks_and_opting_out(kind: BusKind) {
    let config = Config {
        event_lease: 300,
        ..test_config()
    };
    let s = setup(kind, config).await;
    let runs = Arc::new(AtomicUsize::new(0));
    let quick = Arc::new(AtomicUsize::new(0));
    let (release_tx, release) = tokio::sync::watch::channel(false);
    let mut worker = Worker::new();
    let counted = runs.clone();
    worker
        .of("/")
        .on("long", move |socket: Socket, ()| {
            let counted = counted.clone();
            async move {
                counted.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(1_000)).await;
                socket.ack(&(socket.attempt(),)).await
            }
        })
        .on("later", |socket: Socket, ()| async move {
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(100)).await;
                socket.ack(&("late",)).await.unwrap();
            });
        })
        .on("fail", |_: Socket, ()| async move { Err::<(), _>("no") })
        .on("quick", {
            let counted = quick.clone();
            move |socket: Socket, ()| {
                let counted = counted.clone();
                async move {
                    counted.fetch_add(1, Ordering::Relaxed);
                    assert_eq!(socket.attempt(), 1);
                    tokio::time::sleep(Duration::from_millis(60)).await;
                }
            }
        })
        .on("wait", move |socket: Socket, ()| {
            let mut release = release.clone();
            async move {
                let _ = release.wait_for(|r| *r).await;
                socket.ack(&("waited",)).await
            }
        })
        .on("free", move |socket: Socket, (release,): (bool,)| {
            let release_tx = release_tx.clone();
            async move {
                release_tx.send_replace(release);
                socket.ack(&("free",)).await
            }
        })
        .unordered(["free"]);
    let _running = start(&s, worker).await;
    let (mut ws, _) = Ws::joined(s.gw.addr, "/").await;
    ws.send(r#"421["long"]"#).await;
    assert_eq!(ws.text().await, "431[1]", "the first attempt, renewed");
    assert_eq!(runs.load(Ordering::Relaxed), 1, "handled once");
    ws.send(r#"422["later"]"#).await;
    assert_eq!(ws.text().await, r#"432["late"]"#);
    // Quick handlers that together outlast the lease: renewed, not
    // handed over again (each runs once, attempt 1).
    for _ in 0..10 {
        ws.send(r#"42["quick"]"#).await;
    }
    ws.send(r#"423["fail"]"#).await;
    assert_eq!(
        ws.text().await,
        r#"433[{"code":"handler_failed","error":"the handler failed"}]"#
    );
    assert_eq!(quick.load(Ordering::Relaxed), 10, "each quick one once");
    // "free" is learned as unordered from its first answer …
    ws.send(r#"424["free",false]"#).await;
    assert_eq!(ws.text().await, r#"434["free"]"#);
    // … so it runs while "wait" (ordered) still waits, and releases it.
    ws.send(r#"425["wait"]"#).await;
    ws.send(r#"426["free",true]"#).await;
    assert_eq!(ws.text().await, r#"436["free"]"#);
    assert_eq!(ws.text().await, r#"435["waited"]"#);
}

async fn typed_events_and_acks(kind: BusKind) {
    let s = setup(kind, test_config()).await;
    let mut worker = Worker::new();
    worker
        .of("/")
        .on("add", |socket: Socket, (a, b): (i64, i64)| async move {
            socket.ack(&(a + b,)).await
        })
        .on(
            "upload",
            |socket: Socket, (name, body): (String, Bytes)| async move {
                socket
                    .ack(&(name, body.len(), Bytes::from_static(b"ok")))
                    .await
            },
        )
        .on("ask", |socket: Socket, ()| async move {
            let (answer,): (String,) = socket
                .emit_with_ack("question", &("why?",), Duration::from_secs(2))
                .await?;
            socket.emit("answer", &(answer,)).await
        });
    let _stop = start(&s, worker).await;
    let (mut ws, _) = Ws::joined(s.gw.addr, "/").await;
    ws.send(r#"421["add",2,40]"#).await;
    assert_eq!(ws.text().await, "431[42]");
    ws.send(r#"451-2["upload","f.bin",{"_placeholder":true,"num":0}]"#)
        .await;
    ws.send_binary(&[0; 10]).await;
    assert_eq!(
        ws.text().await,
        r#"461-2["f.bin",10,{"_placeholder":true,"num":0}]"#
    );
    assert_eq!(ws.binary().await, Bytes::from_static(b"ok"));
    ws.send(r#"42["ask"]"#).await;
    let question = ws.text().await;
    let id: String = question[2..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    assert_eq!(&question[2 + id.len()..], r#"["question","why?"]"#);
    ws.send(&format!(r#"43{id}["because"]"#)).await;
    assert_eq!(ws.text().await, r#"42["answer","because"]"#);
    // Arguments of the wrong type: the handler is not run, the client is
    // told, the worker goes on.
    ws.send(r#"423["add","two",2]"#).await;
    ws.send(r#"424["add",1,1]"#).await;
    assert_eq!(
        ws.text().await,
        r#"433[{"code":"handler_failed","error":"the handler failed"}]"#
    );
    assert_eq!(ws.text().await, "434[2]");
}

async fn rooms_and_broadcasts(kind: BusKind) {
    let s = setup(kind, test_config()).await;
    let mut worker = Worker::new();
    worker
        .of("/")
        .on("join", |socket: Socket, (room,): (String,)| async move {
            socket.join([room]).await?;
            socket.ack(&()).await
        })
        .on(
            "say",
            |socket: Socket, (room, text): (String, String)| async move {
                socket.to(room).emit("said", &(text,)).await
            },
        )
        .on("shout", |socket: Socket, (text,): (String,)| async move {
            socket.broadcast().emit("shouted", &(text,)).await
        });
    let _stop = start(&s, worker).await;
    let (mut a, _) = Ws::joined(s.gw.addr, "/").await;
    let (mut b, _) = Ws::joined(s.gw.addr, "/").await;
    let (mut c, _) = Ws::joined(s.gw.addr, "/").await;
    for ws in [&mut a, &mut b] {
        ws.send(r#"421["join","room1"]"#).await;
        assert_eq!(ws.text().await, "431[]");
    }
    a.send(r#"42["say","room1","hi"]"#).await;
    assert_eq!(b.text().await, r#"42["said","hi"]"#);
    assert!(
        a.quiet(Duration::from_millis(200)).await,
        "the sender is left out"
    );
    assert!(c.quiet(Duration::from_millis(1)).await, "c is not in room1");
    c.send(r#"42["shout","all"]"#).await;
    assert_eq!(a.text().await, r#"42["shouted","all"]"#);
    assert_eq!(b.text().await, r#"42["shouted","all"]"#);
    assert!(c.quiet(Duration::from_millis(200)).await);
}

async fn connect_handlers(kind: BusKind) {
    let config = Config {
        authorize: vec!["/".into()],
        ..test_config()
    };
    let s = setup(kind, config).await;
    let mut worker = Worker::new();
    worker
        .of("/")
        .on_connect(|socket: Socket| async move {
            #[derive(serde::Deserialize)]
            struct Auth {
                token: String,
            }
            let auth = socket.auth::<Auth>().and_then(Result::ok);
            match auth {
                Some(Auth { token }) if token == "secret" => {
                    socket
                        .set_data(&serde_json::json!({ "user": "ada" }))
                        .await
                        .ok();
                    socket.join(["members"]).await.ok();
                    socket.emit("welcome", &("ada",)).await.ok();
                    Ok(())
                }
                _ => Err(ConnectError::new("not authorized")
                    .with_data(serde_json::json!({ "retry": false }))),
            }
        })
        .on("whoami", |socket: Socket, ()| async move {
            let data: serde_json::Value = socket.data().unwrap().unwrap();
            socket.ack(&(data, socket.rooms())).await
        });
    let _stop = start(&s, worker).await;
    let (mut ws, _) = Ws::open(s.gw.addr).await;
    ws.send(r#"40{"token":"nope"}"#).await;
    assert_eq!(
        ws.text().await,
        r#"44{"message":"not authorized","data":{"retry":false}}"#
    );
    ws.send(r#"40{"token":"secret"}"#).await;
    assert!(ws.text().await.starts_with("40{\"sid\":"), "CONNECT first");
    assert_eq!(
        ws.text().await,
        r#"42["welcome","ada"]"#,
        "then what the handler emitted"
    );
    ws.send(r#"421["whoami"]"#).await;
    assert_eq!(ws.text().await, r#"431[{"user":"ada"},["members"]]"#);
}

/// socket.io gives `handshake.auth = {}` to a client whose CONNECT has no
/// payload; the gateway sends no auth then, and the worker shows `{}`.
async fn auth_without_payload_is_an_empty_object(kind: BusKind) {
    let config = Config {
        authorize: vec!["/".into()],
        ..test_config()
    };
    let s = setup(kind, config).await;
    let mut worker = Worker::new();
    worker
        .of("/")
        // Written the obvious way: the auth object, whatever it holds.
        .on_connect(|socket: Socket| async move {
            let auth: serde_json::Value = socket
                .auth()
                .and_then(Result::ok)
                .ok_or_else(|| ConnectError::new("no auth"))?;
            socket.set_data(&auth).await.ok();
            Ok(())
        })
        .on("auth", |socket: Socket, ()| async move {
            let seen: Option<serde_json::Value> = socket.auth().and_then(Result::ok);
            let at_connect: Option<serde_json::Value> = socket.data().and_then(Result::ok);
            let handshake = socket.handshake().auth.clone();
            socket.ack(&(seen, at_connect, handshake)).await
        });
    let _stop = start(&s, worker).await;

    let (mut ws, _) = Ws::open(s.gw.addr).await;
    ws.send("40").await;
    let reply = ws.text().await;
    assert!(reply.starts_with("40{\"sid\":"), "accepted: {reply}");
    ws.send(r#"421["auth"]"#).await;
    assert_eq!(ws.text().await, r#"431[{},{},"{}"]"#);

    let (mut ws, _) = Ws::open(s.gw.addr).await;
    ws.send(r#"40{"token":"t"}"#).await;
    let reply = ws.text().await;
    assert!(reply.starts_with("40{\"sid\":"), "accepted: {reply}");
    ws.send(r#"421["auth"]"#).await;
    assert_eq!(
        ws.text().await,
        r#"431[{"token":"t"},{"token":"t"},"{\"token\":\"t\"}"]"#
    );
}

async fn disconnects_and_failures(kind: BusKind) {
    let s = setup(kind, test_config()).await;
    let (tx, mut reasons) = mpsc::unbounded_channel();
    let mut worker = Worker::new();
    worker
        .of("/")
        .on("boom", |_: Socket, (bug,): (bool,)| async move {
            assert!(!bug, "handler bug");
        })
        .on(
            "fail",
            |_: Socket, ()| async move { Err::<(), _>("bad luck") },
        )
        .on("bye", |socket: Socket, ()| async move {
            socket.disconnect(false).await
        })
        .on("ping", |socket: Socket, ()| async move {
            socket.ack(&("pong",)).await
        })
        .on_disconnect(move |socket: Socket, reason: DisconnectReason| {
            let tx = tx.clone();
            async move {
                let _ = tx.send((socket.id().to_string(), reason));
            }
        });
    let _stop = start(&s, worker).await;
    let (mut ws, id) = Ws::joined(s.gw.addr, "/").await;
    ws.send(r#"42["boom",true]"#).await;
    ws.send(r#"42["fail"]"#).await;
    ws.send(r#"421["ping"]"#).await;
    assert_eq!(ws.text().await, r#"431["pong"]"#, "the worker survived");
    ws.send(r#"42["bye"]"#).await;
    assert_eq!(ws.text().await, "41");
    let (who, reason) = tokio::time::timeout(Duration::from_secs(5), reasons.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (who, reason),
        (id, DisconnectReason::ServerNamespaceDisconnect)
    );
}

async fn emitter_and_queue_group(kind: BusKind) {
    let s = setup(kind, test_config()).await;
    let counts: Vec<Arc<AtomicUsize>> = (0..2).map(|_| Arc::new(AtomicUsize::new(0))).collect();
    let mut stops = Vec::new();
    for count in &counts {
        let mut worker = Worker::new();
        let count = count.clone();
        worker
            .of("/")
            .on("work", move |socket: Socket, (n,): (u32,)| {
                let count = count.clone();
                async move {
                    count.fetch_add(1, Ordering::Relaxed);
                    socket.ack(&(n,)).await
                }
            });
        stops.push(start(&s, worker).await);
    }
    let (mut ws, _) = Ws::joined(s.gw.addr, "/").await;
    for n in 0..40 {
        ws.send(&format!(r#"42{n}["work",{n}]"#)).await;
        assert_eq!(ws.text().await, format!("43{n}[{n}]"));
    }
    let (a, b) = (
        counts[0].load(Ordering::Relaxed),
        counts[1].load(Ordering::Relaxed),
    );
    assert_eq!(a + b, 40, "each event handled once");
    if kind == BusKind::Nats {
        assert!(
            a > 0 && b > 0,
            "both workers of the queue group served: {a} / {b}"
        );
    }
    // An emitter on its own connection reaches the client through the room
    // of its socket id and the whole namespace.
    let emitter = Emitter::new((s.connect)().await);
    emitter.emit("news", &("all",)).await.unwrap();
    assert_eq!(ws.text().await, r#"42["news","all"]"#);
}

#[tokio::test]
async fn shutdown_waits_for_running_handlers_then_stops_taking_events() {
    let s = setup(BusKind::Memory, test_config()).await;
    let (started_tx, mut started) = mpsc::unbounded_channel();
    let finished = Arc::new(AtomicUsize::new(0));
    let mut worker = Worker::new();
    let done = finished.clone();
    worker.of("/").on("slow", move |socket: Socket, ()| {
        let (started_tx, done) = (started_tx.clone(), done.clone());
        async move {
            let _ = started_tx.send(());
            tokio::time::sleep(Duration::from_millis(300)).await;
            done.fetch_add(1, Ordering::Relaxed);
            socket.ack(&()).await
        }
    });
    let running = start(&s, worker).await;
    let (mut ws, _) = Ws::joined(s.gw.addr, "/").await;
    ws.send(r#"421["slow"]"#).await;
    started.recv().await.unwrap();
    running.shutdown().await;
    assert_eq!(
        finished.load(Ordering::Relaxed),
        1,
        "the running handler finished first"
    );
    assert_eq!(ws.text().await, "431[]");
    ws.send(r#"422["slow"]"#).await;
    assert_eq!(
        ws.text().await,
        r#"432[{"code":"no_worker","error":"no worker answered"}]"#,
        "no worker takes events any more, and the client hears it at once"
    );
}

#[tokio::test]
async fn fetch_sockets_from_a_handler_on_the_in_process_bus() {
    let s = setup(BusKind::Memory, test_config()).await;
    let mut worker = Worker::new();
    worker.of("/").on("count", |socket: Socket, ()| async move {
        let all = socket.of("/").fetch_sockets().await?;
        socket.ack(&(all.len(),)).await
    });
    let _running = start(&s, worker).await;
    let (mut a, _) = Ws::joined(s.gw.addr, "/").await;
    let (_b, _) = Ws::joined(s.gw.addr, "/").await;
    a.send(r#"421["count"]"#).await;
    assert_eq!(a.text().await, "431[2]");
}
