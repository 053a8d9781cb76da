//! Codec benchmarks: the hot paths of a gateway.
//!
//! `cargo bench -p sio-protocol --bench codec`

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::borrow::Cow;
use std::hint::black_box;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sio_protocol::engineio::{self, payload};
use sio_protocol::envelope::{self, Handshake, SocketContext};
use sio_protocol::id::{GatewayId, SocketId};
use sio_protocol::socketio::{Decoder, Kind, Packet};

const EVENT: &str =
    r#"42["chat message",{"user":"alice","text":"hello there, how are you?","ts":1700000000000}]"#;

fn event(c: &mut Criterion) {
    let mut g = c.benchmark_group("event");
    g.throughput(Throughput::Elements(1));
    g.bench_function("decode", |b| {
        b.iter(|| {
            let engineio::Packet::Message(text) =
                engineio::Packet::decode(black_box(EVENT)).unwrap()
            else {
                unreachable!()
            };
            let (packet, _) = Packet::decode_header(&text, 64).unwrap();
            let Kind::Event(e) = &packet.kind else {
                unreachable!()
            };
            black_box((e.name().len(), e.data().len()));
        });
    });
    // What a decoder that builds a JSON tree would pay on top of the
    // header parse, for comparison with the raw form above.
    g.bench_function("decode_tree", |b| {
        b.iter(|| {
            let engineio::Packet::Message(text) =
                engineio::Packet::decode(black_box(EVENT)).unwrap()
            else {
                unreachable!()
            };
            let json = text.get(1..).unwrap();
            let value: serde_json::Value = serde_json::from_str(json).unwrap();
            black_box(value);
        });
    });
    let (packet, _) = Packet::decode_header(&EVENT[1..], 64).unwrap();
    let packet = packet.into_owned();
    g.bench_function("encode", |b| {
        let mut out = String::with_capacity(128);
        b.iter(|| {
            out.clear();
            out.push('4');
            black_box(&packet).encode(&mut out);
            black_box(out.len());
        });
    });
    g.finish();
}

fn binary(c: &mut Criterion) {
    let header = r#"51-["upload",{"name":"a.bin","data":{"_placeholder":true,"num":0}}]"#;
    let attachment = Bytes::from(vec![7u8; 1024]);
    let mut g = c.benchmark_group("binary_event");
    g.throughput(Throughput::Elements(1));
    g.bench_function("decode", |b| {
        let mut decoder = Decoder::default();
        b.iter(|| {
            assert!(decoder.decode_text(black_box(header)).unwrap().is_none());
            let packet = decoder.decode_binary(attachment.clone()).unwrap().unwrap();
            black_box(packet.attachments().len());
        });
    });
    g.finish();
}

fn polling(c: &mut Criterion) {
    let packets: Vec<_> = (0..100)
        .map(|i| {
            engineio::Packet::Message(Cow::Owned(format!(
                r#"2["tick",{{"n":{i},"v":"some value"}}]"#
            )))
        })
        .collect();
    let frames: Vec<engineio::Frame> = packets.iter().map(engineio::Frame::packet).collect();
    let mut body = String::new();
    payload::encode(&frames, &mut body);
    let mut g = c.benchmark_group("polling_payload_100");
    g.throughput(Throughput::Elements(100));
    g.bench_function("decode", |b| {
        b.iter(|| {
            black_box(
                payload::decode(black_box(body.as_bytes()), 4096)
                    .unwrap()
                    .len(),
            )
        });
    });
    g.bench_function("encode", |b| {
        let mut out = String::with_capacity(body.len());
        b.iter(|| {
            out.clear();
            payload::encode(black_box(&frames), &mut out);
            black_box(out.len());
        });
    });
    g.finish();
}

fn envelopes(c: &mut Criterion) {
    let headers = [
        ("host", "example.com"),
        ("user-agent", "Mozilla/5.0 (X11; Linux x86_64)"),
        ("accept", "*/*"),
        ("origin", "https://example.com"),
        ("cookie", "io=abc; session=def"),
    ];
    let event = envelope::Events {
        socket: SocketContext {
            id: SocketId::from_parts(GatewayId::from_bytes([1; 8]), [2; 16]),
            ns: "/".into(),
            handshake: Handshake {
                headers: headers
                    .iter()
                    .map(|(k, v)| ((*k).into(), (*v).into()))
                    .collect(),
                query: vec![
                    ("EIO".into(), "4".into()),
                    ("transport".into(), "websocket".into()),
                ],
                address: "203.0.113.7".into(),
                issued: 1_700_000_000_000,
                url: "/socket.io/?EIO=4&transport=websocket".into(),
                secure: true,
                auth: Some(r#"{"token":"abc"}"#.into()),
            },
            data: Some(r#"{"user":"alice"}"#.into()),
            rooms: vec!["lobby".into()],
            recovered: false,
        },
        events: vec![envelope::Event {
            event: "chat message".into(),
            data: EVENT[2..].into(),
            attachments: Vec::new(),
            ack: false,
        }],
        delivery: envelope::Delivery {
            holder: None,
            attempt: 1,
            lease_ms: 5000,
        },
    };
    let bytes = envelope::encode(&event).unwrap();
    let mut g = c.benchmark_group("event_envelope");
    g.throughput(Throughput::Elements(1));
    g.bench_function("encode", |b| {
        b.iter(|| black_box(envelope::encode(black_box(&event)).unwrap().len()))
    });
    // Per client event, what the gateway once did (decode the session's
    // stored handshake, rebuild the socket context, encode it all) against
    // what it does now (splice the context kept encoded).
    let stored = envelope::encode(&event.socket.handshake).unwrap();
    g.bench_function("per_event_rebuilt", |b| {
        b.iter(|| {
            let mut handshake: Handshake = envelope::decode_owned(black_box(&stored)).unwrap();
            handshake.auth.clone_from(&event.socket.handshake.auth);
            let item = event.events.first().unwrap();
            let rebuilt = envelope::Events {
                socket: SocketContext {
                    id: event.socket.id,
                    ns: event.socket.ns.clone(),
                    handshake,
                    data: event.socket.data.clone(),
                    rooms: event.socket.rooms.clone(),
                    recovered: false,
                },
                events: vec![envelope::Event {
                    event: Cow::Borrowed(&item.event),
                    data: Cow::Borrowed(&item.data),
                    attachments: Vec::new(),
                    ack: item.ack,
                }],
                delivery: event.delivery,
            };
            black_box(envelope::encode(&rebuilt).unwrap().len())
        })
    });
    let spliced = envelope::EncodedContext::new(
        event.socket.id,
        &event.socket.ns,
        envelope::EncodedHandshake::new(&event.socket.handshake).unwrap(),
        &envelope::SocketState {
            auth: event.socket.handshake.auth.clone(),
            data: event.socket.data.clone(),
            rooms: event.socket.rooms.clone(),
            recovered: event.socket.recovered,
        },
    )
    .unwrap();
    assert_eq!(
        spliced.events(&event.events, event.delivery).unwrap(),
        bytes
    );
    g.bench_function("per_event_spliced", |b| {
        b.iter(|| {
            black_box(
                spliced
                    .events(black_box(&event.events), event.delivery)
                    .unwrap()
                    .len(),
            )
        })
    });
    g.bench_function("decode", |b| {
        b.iter(|| {
            black_box(
                envelope::decode::<envelope::Events<'_>>(black_box(&bytes))
                    .unwrap()
                    .events
                    .first()
                    .unwrap()
                    .data
                    .len(),
            )
        });
    });
    g.finish();
}

criterion_group!(benches, event, binary, polling, envelopes);
criterion_main!(benches);
