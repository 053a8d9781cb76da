//! Engine.IO behaviour the reference server has and clients rely on, where
//! the gateway once differed: the heartbeat acts at its deadlines (a ping
//! at pingInterval, the close at pingTimeout after it), and a client's own
//! close over polling releases its pending GET with a noop.

use std::time::Duration;

use sio_tests::raw::Polling;
use sio_tests::{BusKind, TestGateway, test_config};
use tokio::time::Instant;

/// How late a deadline may be seen by the client on a busy machine; the
/// gateway's own slack is a millisecond or two.
const SLACK: Duration = Duration::from_millis(80);

fn within(took: Duration, at: Duration) -> bool {
    took + Duration::from_millis(20) >= at && took < at + SLACK
}

#[tokio::test]
async fn ping_and_ping_timeout_happen_at_their_deadlines() {
    let bus = BusKind::Memory.start().await;
    let mut config = test_config();
    // Long enough that a coarse sweep (one tenth of the shorter one) would
    // miss the slack most of the time.
    config.ping_interval = 3_000;
    config.ping_timeout = 3_000;
    let gw = TestGateway::start(config, bus.bus.clone()).await;
    // Sessions open at any time, not in step with the gateway's start: a
    // periodic sweep begun at the start would act half a period late here.
    tokio::time::sleep(Duration::from_millis(150)).await;
    let opened = Instant::now();
    let p = Polling::open(gw.addr).await;
    assert_eq!(p.post(b"40").await.status, 200);
    assert!(p.get().await.text().starts_with("40{"), "the connect reply");
    let r = p.get().await;
    let took = opened.elapsed();
    assert_eq!((r.status, r.text().as_str()), (200, "2"), "the ping");
    assert!(within(took, Duration::from_secs(3)), "ping after {took:?}");
    // No pong: the next GET is answered with the close at the deadline.
    let r = p.get().await;
    let took = opened.elapsed();
    assert_eq!((r.status, r.text().as_str()), (200, "1"), "the close");
    assert!(
        within(took, Duration::from_secs(6)),
        "closed after {took:?}"
    );
    let r = p.get().await;
    assert_eq!(r.status, 400, "the session is gone: {}", r.text());
}

#[tokio::test]
async fn a_client_close_answers_the_pending_get_with_a_noop() {
    let bus = BusKind::Memory.start().await;
    let gw = TestGateway::start(test_config(), bus.bus.clone()).await;
    let p = Polling::open(gw.addr).await;
    assert_eq!(p.post(b"40").await.status, 200);
    assert!(p.get().await.text().starts_with("40{"), "the connect reply");
    let pending = {
        let p = p.clone();
        tokio::spawn(async move { p.get().await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!pending.is_finished(), "the GET waits for packets");
    assert_eq!(p.post(b"1").await.status, 200);
    let r = tokio::time::timeout(Duration::from_secs(2), pending)
        .await
        .expect("the pending GET is released")
        .expect("GET task");
    assert_eq!((r.status, r.text().as_str()), (200, "6"));
    assert_eq!(p.get().await.status, 400, "the session is gone");
}
