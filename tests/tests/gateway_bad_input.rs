//! Bad input from a client: each case gets its documented outcome, nothing
//! panics, and a healthy session running alongside notices nothing.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::Arc;
use std::time::Duration;

use sio_bus::{Bus, MemoryBus};
use sio_protocol::envelope::{self, AckReply};
use sio_protocol::subject::Subjects;
use sio_tests::raw::{Polling, Response, Ws, engine, http};
use sio_tests::{TestGateway, test_config};
use tokio::io::AsyncWriteExt as _;
use tokio_tungstenite::tungstenite::Message;

const MAX: usize = 10_000;

fn code(n: u8, message: &str) -> String {
    format!(r#"{{"code":{n},"message":"{message}"}}"#)
}

struct World {
    gw: TestGateway,
    healthy: Ws,
    acks: u32,
}

impl World {
    async fn new() -> Self {
        let bus: Arc<dyn Bus> = Arc::new(MemoryBus::default());
        let mut events = bus
            .queue_subscribe(Subjects::default().all_events(), "w".into())
            .await
            .unwrap();
        let worker = bus.clone();
        tokio::spawn(async move {
            while let Some(m) = events.next().await {
                if let Some(reply) = m.reply {
                    let evs: envelope::Events<'_> = envelope::decode(&m.payload).unwrap();
                    let acks = evs.events.iter().map(|ev| {
                        ev.ack.then(|| AckReply {
                            data: "[true]".into(),
                            attachments: vec![],
                        })
                    });
                    worker
                        .publish(reply, sio_tests::raw::events_done(acks.collect()))
                        .await
                        .unwrap();
                }
            }
        });
        let config = sio_gateway::Config {
            max_http_buffer_size: MAX,
            ..test_config()
        };
        let gw = TestGateway::start(config, bus).await;
        let (healthy, _) = Ws::joined(gw.addr, "/").await;
        Self {
            gw,
            healthy,
            acks: 0,
        }
    }

    /// The healthy session still gets its ack, and new clients get in.
    async fn still_fine(&mut self, case: &str) {
        self.acks += 1;
        let id = self.acks;
        self.healthy.send(&format!(r#"42{id}["ping"]"#)).await;
        assert_eq!(
            self.healthy.text().await,
            format!("43{id}[true]"),
            "healthy session after {case}"
        );
        let fresh = http(
            self.gw.addr,
            "GET",
            &engine("EIO=4&transport=polling"),
            &[],
            b"",
        )
        .await;
        assert_eq!(fresh.status, 200, "handshake after {case}");
    }

    async fn polling(&self) -> Polling {
        let p = Polling::open(self.gw.addr).await;
        assert_eq!(p.post(b"40").await.status, 200);
        assert!(p.get().await.text().starts_with("40{"));
        p
    }
}

async fn is_closed(p: &Polling) -> bool {
    let r = p.get().await;
    r.status == 400 && r.text() == code(1, "Session ID unknown")
}

#[tokio::test]
async fn request_errors() {
    let mut w = World::new().await;
    let p = w.polling().await;
    let unknown_sid = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let cases: Vec<(&str, &str, String, u16, String)> = vec![
        (
            "no EIO",
            "GET",
            engine("transport=polling"),
            400,
            code(5, "Unsupported protocol version"),
        ),
        (
            "EIO=3",
            "GET",
            engine("EIO=3&transport=polling"),
            400,
            code(5, "Unsupported protocol version"),
        ),
        (
            "EIO=abc",
            "GET",
            engine("EIO=abc&transport=polling"),
            400,
            code(5, "Unsupported protocol version"),
        ),
        (
            "no transport",
            "GET",
            engine("EIO=4"),
            400,
            code(0, "Transport unknown"),
        ),
        (
            "unknown transport",
            "GET",
            engine("EIO=4&transport=flash"),
            400,
            code(0, "Transport unknown"),
        ),
        (
            "unknown sid",
            "GET",
            engine(&format!("EIO=4&transport=polling&sid={unknown_sid}")),
            400,
            code(1, "Session ID unknown"),
        ),
        (
            "malformed sid",
            "GET",
            engine("EIO=4&transport=polling&sid=abc"),
            400,
            code(1, "Session ID unknown"),
        ),
        (
            "empty sid",
            "POST",
            engine("EIO=4&transport=polling&sid="),
            400,
            code(1, "Session ID unknown"),
        ),
        (
            "POST handshake",
            "POST",
            engine("EIO=4&transport=polling"),
            400,
            code(2, "Bad handshake method"),
        ),
        (
            "PUT handshake",
            "PUT",
            engine("EIO=4&transport=polling"),
            400,
            code(2, "Bad handshake method"),
        ),
        (
            "websocket without upgrade",
            "GET",
            engine("EIO=4&transport=websocket"),
            400,
            code(3, "Bad request"),
        ),
        (
            "PUT on a session",
            "PUT",
            engine(&p.query()),
            400,
            code(3, "Bad request"),
        ),
        (
            "DELETE on a session",
            "DELETE",
            engine(&p.query()),
            400,
            code(3, "Bad request"),
        ),
        (
            "websocket GET without upgrade on a session",
            "GET",
            engine(&format!("EIO=4&transport=websocket&sid={}", p.sid)),
            400,
            code(3, "Bad request"),
        ),
    ];
    for (case, method, target, status, body) in cases {
        let r: Response = http(w.gw.addr, method, &target, &[], b"").await;
        assert_eq!((r.status, r.text()), (status, body), "{case}");
        if status == 400 {
            assert_eq!(r.header("content-type"), Some("application/json"), "{case}");
        }
        w.still_fine(case).await;
    }
    // None of those touched the session they named.
    assert_eq!(p.post(br#"42["x"]"#).await.status, 200);
}

#[tokio::test]
async fn bad_polling_bodies_close_only_their_session() {
    let mut w = World::new().await;
    let deep = format!(r#"42["x",{}1{}]"#, "[".repeat(500), "]".repeat(500));
    let oversized = format!(r#"42["x","{}"]"#, "a".repeat(MAX));
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("unknown Engine.IO type", b"7".to_vec(), 400),
        ("empty body", b"".to_vec(), 400),
        ("empty records", b"\x1e\x1e".to_vec(), 400),
        ("bad base64", b"b!!!".to_vec(), 400),
        ("non-UTF-8 body", b"4\xff\xfe".to_vec(), 400),
        ("oversized body", oversized.into_bytes(), 413),
        ("unknown Socket.IO type", b"49".to_vec(), 200),
        ("42{}", b"42{}".to_vec(), 200),
        ("4abc", b"4abc".to_vec(), 200),
        ("42abc[\"x\"]", br#"42abc["x"]"#.to_vec(), 200),
        ("reserved event name", br#"42["connect"]"#.to_vec(), 200),
        ("event without name", b"42[1]".to_vec(), 200),
        (
            "event for a namespace never joined",
            br#"42/chat,["x"]"#.to_vec(),
            200,
        ),
        (
            "ack id overflow",
            br#"4299999999999999999999["x"]"#.to_vec(),
            200,
        ),
        (
            "placeholder out of range",
            br#"451-["x",{"_placeholder":true,"num":3}]"#.to_vec(),
            200,
        ),
        ("too many attachments", br#"45999-["x"]"#.to_vec(), 200),
        (
            "attachment count without dash",
            br#"451["x"]"#.to_vec(),
            200,
        ),
        ("binary without header", b"bAQID".to_vec(), 200),
        (
            "text while attachments are due",
            b"451-[\"x\",{\"_placeholder\":true,\"num\":0}]\x1e42[\"y\"]".to_vec(),
            200,
        ),
        ("client ping", b"2".to_vec(), 200),
        ("connect with non-object auth", b"40[]".to_vec(), 200),
        ("connect with invalid JSON", b"40{".to_vec(), 200),
        ("disconnect with data", b"41{}".to_vec(), 200),
        ("deep nesting", deep.into_bytes(), 200),
    ];
    for (case, body, status) in cases {
        let p = w.polling().await;
        let r = p.post(&body).await;
        assert_eq!(r.status, status, "{case}: {}", r.text());
        assert!(is_closed(&p).await, "{case}: session still open");
        w.still_fine(case).await;
    }
}

#[tokio::test]
async fn polling_misuse() {
    let mut w = World::new().await;
    // Two GETs at once: the second is refused and the session closed.
    let p = w.polling().await;
    let first = {
        let p = p.clone();
        tokio::spawn(async move { p.get().await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let second = p.get().await;
    assert_eq!(
        (second.status, second.text()),
        (400, code(3, "Bad request"))
    );
    assert_eq!(
        first.await.unwrap().text(),
        "1",
        "the first GET gets the close"
    );
    assert!(is_closed(&p).await);
    w.still_fine("concurrent GETs").await;
    // Overlapping POSTs: one still sending its body when the next arrives.
    let p = w.polling().await;
    let mut slow = tokio::net::TcpStream::connect(w.gw.addr).await.unwrap();
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: x\r\nContent-Length: 20\r\nConnection: close\r\n\r\n42[\"a",
        engine(&p.query())
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let r = p.post(br#"42["b"]"#).await;
    assert_eq!((r.status, r.text()), (400, code(3, "Bad request")));
    assert!(is_closed(&p).await);
    drop(slow);
    w.still_fine("overlapping POSTs").await;
}

#[tokio::test]
async fn bad_websocket_frames_close_only_their_connection() {
    let mut w = World::new().await;
    let cases: Vec<(&str, Vec<Message>)> = vec![
        ("unknown Engine.IO type", vec![Message::text("9")]),
        ("unknown Socket.IO type", vec![Message::text("49")]),
        (
            "binary without header",
            vec![Message::binary(vec![1, 2, 3])],
        ),
        ("truncated binary header", vec![Message::text("451-")]),
        (
            "text while attachments are due",
            vec![
                Message::text(r#"451-["x",{"_placeholder":true,"num":0}]"#),
                Message::text(r#"42["y"]"#),
            ],
        ),
        (
            "attachment count mismatch",
            vec![Message::text(r#"451-["x",{"_placeholder":true,"num":1}]"#)],
        ),
        (
            "too many attachments",
            vec![Message::text(r#"451000-["x"]"#)],
        ),
        (
            "oversized frame",
            vec![Message::text(format!(r#"42["x","{}"]"#, "a".repeat(MAX)))],
        ),
        ("client ping", vec![Message::text("2")]),
        ("42{}", vec![Message::text("42{}")]),
        (
            "event for a namespace never joined",
            vec![Message::text(r#"42/chat,["x"]"#)],
        ),
        ("bad base64 in a text frame", vec![Message::text("b%%")]),
        ("empty text frame", vec![Message::text("")]),
    ];
    for (case, frames) in cases {
        let (mut ws, _) = Ws::joined(w.gw.addr, "/").await;
        for frame in frames {
            let _ = ws.send_message(frame).await;
        }
        ws.closed().await;
        w.still_fine(case).await;
    }
    // An unknown namespace is refused, not fatal.
    let (mut ws, _) = Ws::joined(w.gw.addr, "/").await;
    ws.send("40/nope,").await;
    assert_eq!(
        ws.text().await,
        r#"44/nope,{"message":"Invalid namespace"}"#
    );
    ws.send(r#"421["still here"]"#).await;
    assert_eq!(ws.text().await, "431[true]");
}
