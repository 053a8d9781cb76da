//! The ordering load's worker: `join` puts a socket in a room, `seq`
//! emits each numbered event to the sender's room (the sender included)
//! after a short pseudo-random pause, so that events handled out of order
//! or at once would overtake each other. Each emit and ack carries the
//! delivery attempt, so a client can tell a redelivery from a duplicate.
//! Driven by `tests/js/order-clients.js`.

use std::time::Duration;

use sio_worker::{Socket, Worker};

/// The pause before handling event `n` of `sender`: 0 to `max_ms`, and
/// `long_ms` for every 50th, so that a worker killed at any moment holds
/// some events.
fn pause(sender: &str, n: u64, (max_ms, long_ms): (u64, u64)) -> Duration {
    if n % 50 == 25 && long_ms > 0 {
        return Duration::from_millis(long_ms);
    }
    if max_ms == 0 {
        return Duration::ZERO;
    }
    let seed = sender.bytes().fold(n.wrapping_mul(0x9E37_79B9), |h, b| {
        h.rotate_left(5) ^ u64::from(b)
    });
    Duration::from_millis(seed.wrapping_mul(0x2545_F491_4F6C_DD1D) % (max_ms + 1))
}

/// The worker, pausing up to `max_ms` per event and `long_ms` on every
/// 50th.
pub fn worker(max_ms: u64, long_ms: u64) -> Worker {
    let mut worker = Worker::new();
    worker
        .of("/")
        .on("join", |socket: Socket, (room,): (String,)| async move {
            socket.join([room]).await?;
            socket.ack(&(true,)).await
        })
        .on(
            "seq",
            move |socket: Socket, (room, sender, n): (String, String, u64)| async move {
                let pause = pause(&sender, n, (max_ms, long_ms));
                if long_ms > 0 && pause >= Duration::from_millis(long_ms) {
                    // The kill test kills a worker right after this line.
                    println!("order-worker: holding");
                }
                tokio::time::sleep(pause).await;
                let attempt = socket.attempt();
                let to_room = socket.of("/").to(room);
                to_room.emit("seq", &(&sender, n, attempt)).await?;
                socket.ack(&([n, u64::from(attempt)],)).await
            },
        );
    worker
}

/// `order-worker <nats-url> [<max pause ms> [<long pause ms>]]`: the
/// worker against NATS until SIGTERM; says how many messages it handled.
pub async fn main() -> std::process::ExitCode {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "nats://127.0.0.1:4222".into());
    let max_ms = args.next().and_then(|a| a.parse().ok()).unwrap_or(0);
    let long_ms = args.next().and_then(|a| a.parse().ok()).unwrap_or(0);
    let options = sio_bus::NatsOptions {
        urls: vec![url],
        name: Some("order-worker".into()),
        ..sio_bus::NatsOptions::default()
    };
    let bus = match sio_bus::NatsBus::connect(&options).await {
        Ok(bus) => std::sync::Arc::new(bus),
        Err(e) => {
            eprintln!("order-worker: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let running = match worker(max_ms, long_ms).start(bus).await {
        Ok(running) => running,
        Err(e) => {
            eprintln!("order-worker: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    println!("order-worker: serving");
    sio_gateway::shutdown_signal().await;
    println!("order-worker: handled {}", running.handled());
    running.shutdown().await;
    std::process::ExitCode::SUCCESS
}
