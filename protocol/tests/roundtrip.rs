//! Property tests: decode(encode(x)) == x for every packet and envelope type.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::borrow::Cow;

use bytes::Bytes;
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use serde_json::Value;
use sio_protocol::envelope::{self, *};
use sio_protocol::id::{GatewayId, SocketId};
use sio_protocol::socketio::{self, Ack, Event, Kind, RESERVED_EVENTS};
use sio_protocol::{engineio, subject};

fn bytes() -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..64).prop_map(Bytes::from)
}

fn text() -> impl Strategy<Value = String> {
    // Any text but the polling record separator.
    "[^\x1e]{0,24}"
}

fn eio_packet() -> impl Strategy<Value = engineio::Packet<'static>> {
    use engineio::Packet as P;
    prop_oneof![
        text().prop_map(|s| P::Open(s.into())),
        Just(P::Close),
        text().prop_map(|s| P::Ping(s.into())),
        text().prop_map(|s| P::Pong(s.into())),
        text().prop_map(|s| P::Message(s.into())),
        vec(any::<u8>(), 0..64).prop_map(|b| P::Binary(b.into())),
        Just(P::Upgrade),
        Just(P::Noop),
    ]
}

fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Value::Array),
            vec((".{0,8}", inner), 0..6).prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

fn args() -> impl Strategy<Value = Vec<String>> {
    vec(json().prop_map(|v| v.to_string()), 0..4)
}

fn namespace() -> impl Strategy<Value = String> {
    prop_oneof![Just("/".to_owned()), "/[^,\x1e]{0,10}"]
}

fn event_name() -> impl Strategy<Value = String> {
    ".{0,16}".prop_filter("not reserved", |n| !RESERVED_EVENTS.contains(&n.as_str()))
}

fn attachments() -> impl Strategy<Value = Option<Vec<Bytes>>> {
    option::of(vec(bytes(), 0..4))
}

/// Placeholders for `n` attachments, as extra arguments.
fn placeholders(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!(r#"{{"_placeholder":true,"num":{i}}}"#))
        .collect()
}

fn sio_packet() -> impl Strategy<Value = socketio::Packet<'static>> {
    let connect = option::of(vec((".{0,8}", json()), 0..4)).prop_map(|o| {
        Kind::Connect(o.map(|kv| Value::Object(kv.into_iter().collect()).to_string().into()))
    });
    let event = (
        event_name(),
        args(),
        option::of(any::<u64>()),
        attachments(),
    )
        .prop_map(|(name, mut args, id, att)| {
            args.extend(placeholders(att.as_ref().map_or(0, Vec::len)));
            let mut e = Event::new(&name, args.iter().map(String::as_str));
            e.id = id;
            e.attachments = att;
            Kind::Event(e)
        });
    let ack = (args(), any::<u64>(), attachments()).prop_map(|(mut args, id, att)| {
        args.extend(placeholders(att.as_ref().map_or(0, Vec::len)));
        Kind::Ack(Ack {
            id,
            data: format!("[{}]", args.join(",")).into(),
            attachments: att,
        })
    });
    let error = prop_oneof![
        ".{0,12}".prop_map(|m| serde_json::json!({ "message": m }).to_string()),
        ".{0,12}".prop_map(|m| Value::from(m).to_string()),
    ]
    .prop_map(|d| Kind::ConnectError(d.into()));
    let kind = prop_oneof![connect, Just(Kind::Disconnect), event, ack, error];
    (namespace(), kind).prop_map(|(nsp, kind)| socketio::Packet::new(nsp, kind))
}

fn gateway() -> impl Strategy<Value = GatewayId> {
    any::<[u8; 8]>().prop_map(GatewayId::from_bytes)
}

fn socket_id() -> impl Strategy<Value = SocketId> {
    (gateway(), any::<[u8; 16]>()).prop_map(|(g, r)| SocketId::from_parts(g, r))
}

fn strings() -> impl Strategy<Value = Vec<String>> {
    vec(".{0,8}", 0..4)
}

fn handshake() -> impl Strategy<Value = Handshake> {
    (
        vec((".{0,8}", ".{0,8}"), 0..4),
        vec((".{0,8}", ".{0,8}"), 0..4),
        ".{0,16}",
        any::<u64>(),
        ".{0,16}",
        any::<bool>(),
        option::of(".{0,16}"),
    )
        .prop_map(
            |(headers, query, address, issued, url, secure, auth)| Handshake {
                headers,
                query,
                address,
                issued,
                url,
                secure,
                auth,
            },
        )
}

fn socket() -> impl Strategy<Value = SocketContext> {
    (
        socket_id(),
        ".{0,8}",
        handshake(),
        option::of(".{0,8}"),
        strings(),
        any::<bool>(),
    )
        .prop_map(
            |(id, ns, handshake, data, rooms, recovered)| SocketContext {
                id,
                ns,
                handshake,
                data,
                rooms,
                recovered,
            },
        )
}

fn encoded() -> impl Strategy<Value = EncodedPacket> {
    (bytes(), vec(bytes(), 0..3)).prop_map(|(message, attachments)| EncodedPacket {
        message,
        attachments,
    })
}

fn ack_reply() -> impl Strategy<Value = AckReply> {
    (".{0,16}", vec(bytes(), 0..3)).prop_map(|(data, attachments)| AckReply { data, attachments })
}

fn selector() -> impl Strategy<Value = Selector> {
    (".{0,8}", strings(), strings()).prop_map(|(ns, rooms, except)| Selector { ns, rooms, except })
}

fn reason() -> impl Strategy<Value = DisconnectReason> {
    use DisconnectReason as R;
    prop_oneof![
        Just(R::ClientNamespaceDisconnect),
        Just(R::ServerNamespaceDisconnect),
        Just(R::TransportClose),
        Just(R::TransportError),
        Just(R::PingTimeout),
        Just(R::ParseError),
        Just(R::ForcedClose),
        Just(R::ServerShuttingDown),
    ]
}

fn command() -> impl Strategy<Value = Command> {
    prop_oneof![
        (socket_id(), any::<u128>(), any::<bool>(), encoded()).prop_map(
            |(socket, id, volatile, packet)| Command::Socket {
                socket,
                action: SocketCommand::Emit {
                    id: EmitId(id),
                    volatile,
                    packet,
                },
            }
        ),
        (socket_id(), ".{0,8}", vec(bytes(), 0..2), any::<u64>()).prop_map(
            |(socket, data, attachments, timeout_ms)| Command::Socket {
                socket,
                action: SocketCommand::EmitWithAck {
                    data,
                    attachments,
                    timeout_ms
                }
            }
        ),
        (socket_id(), strings()).prop_map(|(socket, rooms)| Command::Socket {
            socket,
            action: SocketCommand::Join { rooms }
        }),
        (socket_id(), strings()).prop_map(|(socket, rooms)| Command::Socket {
            socket,
            action: SocketCommand::Leave { rooms }
        }),
        (socket_id(), any::<bool>()).prop_map(|(socket, close)| Command::Socket {
            socket,
            action: SocketCommand::Disconnect { close }
        }),
        (socket_id(), option::of(".{0,8}")).prop_map(|(socket, data)| Command::Socket {
            socket,
            action: SocketCommand::SetData { data }
        }),
        (
            any::<u128>(),
            ".{0,8}",
            strings(),
            strings(),
            any::<bool>(),
            encoded()
        )
            .prop_map(
                |(id, ns, rooms, except, volatile, packet)| Command::Broadcast(Emit {
                    id: EmitId(id),
                    ns,
                    rooms,
                    except,
                    volatile,
                    packet
                })
            ),
    ]
}

fn command_reply() -> impl Strategy<Value = CommandReply> {
    prop_oneof![
        Just(CommandReply::Done),
        Just(CommandReply::UnknownSocket),
        Just(CommandReply::AckTimeout),
        ack_reply().prop_map(CommandReply::Ack),
    ]
}

fn control() -> impl Strategy<Value = ControlRequest> {
    prop_oneof![
        Just(ControlRequest::Presence),
        selector().prop_map(ControlRequest::FetchSockets),
        (selector(), strings())
            .prop_map(|(selector, rooms)| ControlRequest::SocketsJoin { selector, rooms }),
        (selector(), strings())
            .prop_map(|(selector, rooms)| ControlRequest::SocketsLeave { selector, rooms }),
        (selector(), any::<bool>())
            .prop_map(|(selector, close)| ControlRequest::DisconnectSockets { selector, close }),
        (selector(), ".{0,8}", vec(bytes(), 0..2), any::<u64>()).prop_map(
            |(selector, data, attachments, timeout_ms)| ControlRequest::BroadcastWithAck {
                selector,
                data,
                attachments,
                timeout_ms
            }
        ),
    ]
}

fn control_reply() -> impl Strategy<Value = ControlReply> {
    let body = prop_oneof![
        (
            gateway(),
            ".{0,8}",
            any::<u64>(),
            ".{0,8}",
            any::<u64>(),
            any::<bool>()
        )
            .prop_map(|(gateway, address, sockets, version, interval_ms, ready)| {
                ControlResult::Presence(Presence {
                    gateway,
                    address,
                    sockets,
                    version,
                    interval_ms,
                    ready,
                })
            }),
        vec(socket(), 0..3).prop_map(ControlResult::Sockets),
        any::<u64>().prop_map(|sockets| ControlResult::Done { sockets }),
        (vec(ack_reply(), 0..3), any::<u64>())
            .prop_map(|(acks, expected)| ControlResult::Acks { acks, expected }),
    ];
    (gateway(), body).prop_map(|(gateway, body)| ControlReply { gateway, body })
}

fn assert_roundtrip<T>(value: &T)
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let bytes = envelope::encode(value).unwrap();
    assert_eq!(&envelope::decode_owned::<T>(&bytes).unwrap(), value);
}

proptest! {
    #[test]
    fn engineio_packet(p in eio_packet()) {
        let text = p.to_text();
        prop_assert_eq!(engineio::Packet::decode(&text), Ok(p.clone()));
        let frame: engineio::Frame = engineio::Frame::packet(&p);
        prop_assert_eq!(frame.decode(), Ok(p));
    }

    #[test]
    fn engineio_payload(packets in vec(eio_packet(), 1..20)) {
        let mut body = String::new();
        let frames: Vec<engineio::Frame> = packets.iter().map(engineio::Frame::packet).collect();
        engineio::payload::encode(&frames, &mut body);
        prop_assert_eq!(engineio::payload::decode(body.as_bytes(), 20), Ok(packets));
    }

    #[test]
    fn socketio_packet(p in sio_packet()) {
        let text = p.to_text();
        let mut decoder = socketio::Decoder::default();
        let mut decoded = decoder.decode_text(&text).unwrap().map(socketio::Packet::into_owned);
        for a in p.attachments() {
            prop_assert!(decoded.is_none());
            decoded = decoder.decode_binary(a.clone()).unwrap();
        }
        prop_assert_eq!(decoded, Some(p));
    }

    #[test]
    fn subject_tokens(name in any::<String>()) {
        let mut token = String::new();
        subject::escape(&name, &mut token);
        prop_assert!(!token.is_empty() && !token.contains(['.', '*', '>', ' ', '\t']));
        prop_assert_eq!(subject::unescape(&token), Ok(name));
    }

    #[test]
    fn envelopes(
        socket in socket(),
        reason in reason(),
        (event, data) in (".{0,8}", ".{0,16}"),
        attachments in vec(bytes(), 0..3),
        accept in (option::of(".{0,8}"), strings()),
        reject in ".{0,8}",
        ack in ack_reply(),
        emit in (any::<u128>(), ".{0,8}", strings(), strings(), any::<bool>(), encoded()),
        command in command(),
        command_reply in command_reply(),
        control in control(),
        control_reply in control_reply(),
        hb in (gateway(), ".{0,8}", any::<u64>(), ".{0,8}", any::<u64>(), any::<bool>()),
        delivery in (any::<u32>(), any::<u32>()),
    ) {
        let ev = envelope::Events { socket: socket.clone(), events: vec![envelope::Event { event: Cow::Owned(event), data: Cow::Owned(data), attachments, ack: hb.5 }], delivery: envelope::Delivery { attempt: delivery.0, lease_ms: delivery.1, holder: None } };
        assert_roundtrip(&envelope::EventReply::Working);
        assert_roundtrip(&envelope::EventReply::Done { first: delivery.0, outcomes: vec![Outcome { ack: Some(AckReply { data: reject.clone(), attachments: Vec::new() }), failed: hb.5 }, Outcome::default()], unordered: !hb.5 });
        assert_roundtrip(&envelope::EventReply::Ack { index: delivery.1, ack: AckReply { data: reject.clone(), attachments: Vec::new() } });
        let bytes = envelope::encode(&ev).unwrap();
        prop_assert_eq!(envelope::decode::<envelope::Events<'_>>(&bytes).unwrap(), ev);
        assert_roundtrip(&ConnectRequest { socket: socket.clone() });
        assert_roundtrip(&ConnectReply::Accept { data: accept.0, rooms: accept.1 });
        assert_roundtrip(&ConnectReply::Reject { data: reject });
        assert_roundtrip(&ack);
        assert_roundtrip(&Disconnect { socket, reason });
        let (id, ns, rooms, except, volatile, packet) = emit;
        assert_roundtrip(&Emit { id: EmitId(id), ns, rooms, except, volatile, packet });
        assert_roundtrip(&command);
        assert_roundtrip(&command_reply);
        assert_roundtrip(&control);
        assert_roundtrip(&control_reply);
        let (gateway, address, sockets, version, interval_ms, ready) = hb;
        assert_roundtrip(&Presence { gateway, address, sockets, version, interval_ms, ready });
    }
}

fn spliced(ctx: &SocketContext) -> envelope::EncodedContext {
    let state = envelope::SocketState {
        auth: ctx.handshake.auth.clone(),
        data: ctx.data.clone(),
        rooms: ctx.rooms.clone(),
        recovered: ctx.recovered,
    };
    let handshake = envelope::EncodedHandshake::new(&ctx.handshake).unwrap();
    envelope::EncodedContext::new(ctx.id, &ctx.ns, handshake, &state).unwrap()
}

proptest! {
    /// The spliced envelopes are byte for byte what encoding the whole
    /// envelope writes, so workers cannot tell them apart.
    #[test]
    fn spliced_context(
        ctx in socket(),
        name in ".{0,8}",
        data in ".{0,16}",
        attachments in vec(vec(any::<u8>(), 0..8).prop_map(Bytes::from), 0..3),
        attempt in any::<u32>(),
        lease_ms in any::<u32>(),
    ) {
        let spliced = spliced(&ctx);
        prop_assert_eq!(spliced.decode().unwrap(), ctx.clone());
        let events = envelope::Events {
            socket: ctx.clone(),
            events: vec![envelope::Event {
                event: name.as_str().into(),
                data: data.as_str().into(),
                attachments: attachments.clone(),
                ack: attempt % 2 == 0,
            }; usize::try_from(attempt % 3).unwrap()],
            delivery: envelope::Delivery { attempt, lease_ms, holder: None },
        };
        prop_assert_eq!(
            spliced.events(&events.events, events.delivery).unwrap(),
            envelope::encode(&events).unwrap()
        );
        let disconnect = envelope::Disconnect {
            socket: ctx.clone(),
            reason: envelope::DisconnectReason::PingTimeout,
        };
        prop_assert_eq!(
            spliced.disconnect(envelope::DisconnectReason::PingTimeout).unwrap(),
            envelope::encode(&disconnect).unwrap()
        );
        prop_assert_eq!(
            spliced.connect_request().unwrap(),
            envelope::encode(&envelope::ConnectRequest { socket: ctx }).unwrap()
        );
    }
}
