//! The bus contract: the in-process bus and NATS (a real nats-server per
//! test) must behave the same for everything gateways and workers rely on.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use sio_bus::{Bus, Error, MemoryBus, State, Subscription};
use sio_tests::NatsServer;

const WAIT: Duration = Duration::from_secs(5);

async fn next(sub: &mut Subscription) -> sio_bus::Message {
    tokio::time::timeout(WAIT, sub.next())
        .await
        .expect("no message in time")
        .expect("subscription closed")
}

/// True if nothing arrives within a short while.
async fn silent(sub: &mut Subscription) -> bool {
    tokio::time::timeout(Duration::from_millis(200), sub.next())
        .await
        .is_err()
}

async fn nats(server: &NatsServer) -> Arc<dyn Bus> {
    sio_tests::harness::connect(server).await
}

/// Runs one contract check on both buses.
macro_rules! contract {
    ($name:ident, $check:ident) => {
        mod $name {
            use super::*;

            #[tokio::test]
            async fn memory() {
                $check(Arc::new(MemoryBus::default())).await;
            }

            #[tokio::test]
            async fn nats() {
                let server = NatsServer::start().expect("nats-server");
                $check(super::nats(&server).await).await;
            }
        }
    };
}

async fn publish_subscribe(bus: Arc<dyn Bus>) {
    let mut a = bus.subscribe("sio.room./.a".into()).await.unwrap();
    let mut all = bus.subscribe("sio.room.*.*".into()).await.unwrap();
    let mut tail = bus.subscribe("sio.>".into()).await.unwrap();
    bus.flush().await.unwrap();
    bus.publish("sio.room./.a".into(), Bytes::from_static(b"one"))
        .await
        .unwrap();
    bus.publish("sio.room./.b".into(), Bytes::from_static(b"two"))
        .await
        .unwrap();
    let m = next(&mut a).await;
    assert_eq!(
        (m.subject.as_str(), &m.payload[..], m.reply),
        ("sio.room./.a", &b"one"[..], None)
    );
    assert!(silent(&mut a).await, "a got b's message");
    assert_eq!(&next(&mut all).await.payload[..], b"one");
    assert_eq!(&next(&mut all).await.payload[..], b"two");
    assert_eq!(&next(&mut tail).await.payload[..], b"one");
    assert_eq!(&next(&mut tail).await.payload[..], b"two");
}
contract!(publish_subscribe_wildcards, publish_subscribe);

async fn unsubscribe_on_drop(bus: Arc<dyn Bus>) {
    let sub = bus.subscribe("sio.room./.gone".into()).await.unwrap();
    bus.flush().await.unwrap();
    drop(sub);
    bus.flush().await.unwrap();
    let err = bus
        .request(
            "sio.room./.gone".into(),
            Bytes::new(),
            Duration::from_secs(2),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::NoResponders(s) if s == "sio.room./.gone"),
        "{err:?}"
    );
}
contract!(unsubscribe_on_drop_leaves_no_listener, unsubscribe_on_drop);

async fn queue_groups(bus: Arc<dyn Bus>) {
    let mut w1 = bus
        .queue_subscribe("sio.ev.*.*".into(), "workers".into())
        .await
        .unwrap();
    let mut w2 = bus
        .queue_subscribe("sio.ev.*.*".into(), "workers".into())
        .await
        .unwrap();
    let mut watcher = bus.subscribe("sio.ev.*.*".into()).await.unwrap();
    bus.flush().await.unwrap();
    let n = 200;
    for i in 0..n {
        bus.publish("sio.ev./.chat".into(), Bytes::from(format!("{i}")))
            .await
            .unwrap();
    }
    for _ in 0..n {
        next(&mut watcher).await;
    }
    let (mut c1, mut c2) = (0, 0);
    while c1 + c2 < n {
        tokio::select! {
            Some(_) = w1.next() => c1 += 1,
            Some(_) = w2.next() => c2 += 1,
            () = tokio::time::sleep(WAIT) => panic!("only {} of {n} delivered", c1 + c2),
        }
    }
    assert!(
        silent(&mut w1).await && silent(&mut w2).await,
        "a message was delivered twice"
    );
    assert!(c1 > 0 && c2 > 0, "one member got everything: {c1} / {c2}");
}
contract!(queue_group_delivers_each_message_once, queue_groups);

async fn request_reply(bus: Arc<dyn Bus>) {
    let mut server = bus
        .queue_subscribe("sio.conn./".into(), "workers".into())
        .await
        .unwrap();
    bus.flush().await.unwrap();
    let responder = {
        let bus = bus.clone();
        tokio::spawn(async move {
            let m = next(&mut server).await;
            let reply = m.reply.expect("a reply subject");
            let mut answer = b"re:".to_vec();
            answer.extend_from_slice(&m.payload);
            bus.publish(reply, answer.into()).await.unwrap();
        })
    };
    let answer = bus
        .request("sio.conn./".into(), Bytes::from_static(b"hello"), WAIT)
        .await
        .unwrap();
    assert_eq!(&answer[..], b"re:hello");
    responder.await.unwrap();
}
contract!(request_gets_the_reply, request_reply);

async fn no_responders(bus: Arc<dyn Bus>) {
    let started = tokio::time::Instant::now();
    let err = bus
        .request(
            "sio.conn./nobody".into(),
            Bytes::new(),
            Duration::from_secs(3),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::NoResponders(s) if s == "sio.conn./nobody"),
        "{err:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "waited for the timeout"
    );
}
contract!(request_without_listener_fails_at_once, no_responders);

/// A message sent with a reply subject to nobody: the reply subject hears
/// so at once; one somebody takes hears nothing of the kind.
async fn no_responders_on_the_reply_subject(bus: Arc<dyn Bus>) {
    let inbox = bus.new_inbox();
    let mut replies = bus.subscribe(format!("{inbox}.*")).await.unwrap();
    let mut taker = bus
        .queue_subscribe("sio.ev./.taken".into(), "w".into())
        .await
        .unwrap();
    bus.flush().await.unwrap();
    bus.publish_with_reply("sio.ev./.nobody".into(), format!("{inbox}.1"), Bytes::new())
        .await
        .unwrap();
    let told = next(&mut replies).await;
    assert!(told.no_responders, "{told:?}");
    assert_eq!(told.subject, format!("{inbox}.1"));
    assert!(told.payload.is_empty());
    bus.publish_with_reply(
        "sio.ev./.taken".into(),
        format!("{inbox}.2"),
        Bytes::from_static(b"x"),
    )
    .await
    .unwrap();
    let m = next(&mut taker).await;
    assert!(!m.no_responders);
    assert_eq!(m.reply.as_deref(), Some(format!("{inbox}.2").as_str()));
    assert!(silent(&mut replies).await, "nothing for a message taken");
}
contract!(
    publish_to_nobody_tells_the_reply_subject,
    no_responders_on_the_reply_subject
);

async fn timeout(bus: Arc<dyn Bus>) {
    let _silent = bus.subscribe("sio.conn./slow".into()).await.unwrap();
    bus.flush().await.unwrap();
    let t = Duration::from_millis(100);
    let err = bus
        .request("sio.conn./slow".into(), Bytes::new(), t)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Timeout(d) if d == t), "{err:?}");
}
contract!(request_times_out, timeout);

async fn gather(bus: Arc<dyn Bus>) {
    let mut responders = Vec::new();
    for i in 0..3u8 {
        let mut sub = bus.subscribe("sio.ctl".into()).await.unwrap();
        let bus = bus.clone();
        responders.push(tokio::spawn(async move {
            let m = next(&mut sub).await;
            bus.publish(m.reply.unwrap(), Bytes::from(vec![i]))
                .await
                .unwrap();
        }));
    }
    bus.flush().await.unwrap();
    let mut answers = bus
        .gather("sio.ctl".into(), Bytes::new(), 3, WAIT)
        .await
        .unwrap();
    answers.sort();
    assert_eq!(
        answers,
        [
            Bytes::from(vec![0]),
            Bytes::from(vec![1]),
            Bytes::from(vec![2])
        ]
    );
    // Asking for more than will come returns what came, at the timeout.
    let t = Duration::from_millis(200);
    let mut late = bus.subscribe("sio.ctl".into()).await.unwrap();
    let echo = {
        let bus = bus.clone();
        tokio::spawn(async move {
            let m = next(&mut late).await;
            bus.publish(m.reply.unwrap(), Bytes::from_static(b"x"))
                .await
                .unwrap();
        })
    };
    bus.flush().await.unwrap();
    let started = tokio::time::Instant::now();
    let partial = bus
        .gather("sio.ctl".into(), Bytes::new(), 2, t)
        .await
        .unwrap();
    assert_eq!(partial, [Bytes::from_static(b"x")]);
    assert!(started.elapsed() >= t);
    echo.await.unwrap();
}
contract!(gather_collects_every_answer, gather);

#[tokio::test]
async fn memory_bus_drops_for_slow_subscribers_instead_of_growing() {
    let bus = MemoryBus::new(4);
    let mut slow = bus.subscribe("a".into()).await.unwrap();
    for i in 0..10u8 {
        bus.publish("a".into(), Bytes::from(vec![i])).await.unwrap();
    }
    assert_eq!(bus.dropped(), 6);
    for i in 0..4u8 {
        assert_eq!(next(&mut slow).await.payload, Bytes::from(vec![i]));
    }
}

#[tokio::test]
async fn invalid_subjects_are_rejected() {
    let bus: Arc<dyn Bus> = Arc::new(MemoryBus::default());
    for bad in ["", "a..b", "a b", "a.>.b"] {
        assert!(
            matches!(
                bus.subscribe(bad.into()).await,
                Err(Error::InvalidSubject(_))
            ),
            "{bad:?}"
        );
    }
    assert!(matches!(
        bus.publish("a.*".into(), Bytes::new()).await,
        Err(Error::InvalidSubject(_))
    ));
}

#[tokio::test]
async fn nats_bus_reports_the_connection_and_recovers() {
    let mut server = NatsServer::start().expect("nats-server");
    let bus = nats(&server).await;
    let mut sub = bus.subscribe("sio.hb".into()).await.unwrap();
    server.stop();
    let deadline = tokio::time::Instant::now() + WAIT;
    while bus.state() == State::Connected {
        assert!(
            tokio::time::Instant::now() < deadline,
            "disconnect not noticed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.restart().expect("restart");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while bus.state() != State::Connected {
        assert!(tokio::time::Instant::now() < deadline, "no reconnect");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Subscriptions survive the reconnect.
    bus.flush().await.unwrap();
    bus.publish("sio.hb".into(), Bytes::from_static(b"back"))
        .await
        .unwrap();
    assert_eq!(&next(&mut sub).await.payload[..], b"back");
}
