//! The bench application on sio-nats, written with `sio-worker` like any
//! application: the same behaviour as the peers in `bench/peers/`.
//!
//! - on connect: join `all`, and the room named in the auth `{"room": …}`;
//! - `echo` with ack: answered with the same arguments;
//! - `fanout [room, count, stamp, pad]`: `count` emits of
//!   `m [stamp, i, pad]` to `room`, then the ack `[count]` if asked;
//! - `tick [stamp, i]`: `m [stamp, i]` back to the sender; `tick_free`
//!   the same, opted out of per-socket order.

use serde::Deserialize;
use sio_worker::{ConnectError, RawArgs, Socket, Worker};

#[derive(Deserialize)]
struct Auth {
    room: Option<String>,
}

/// The bench worker.
pub(crate) fn worker() -> Worker {
    let mut worker = Worker::new();
    worker
        .of("/")
        .on_connect(|socket: Socket| async move {
            let room = socket
                .auth::<Auth>()
                .and_then(Result::ok)
                .and_then(|a| a.room);
            let rooms: Vec<String> = std::iter::once("all".to_owned()).chain(room).collect();
            socket
                .join(rooms)
                .await
                .map_err(|e| ConnectError::new(e.to_string()))
        })
        .on_raw("echo", |socket: Socket, args: RawArgs| async move {
            socket.ack_raw(&args).await
        })
        .on_raw("tick", |socket: Socket, args: RawArgs| async move {
            socket.emit_raw("m", &args).await
        })
        .on_raw("tick_free", |socket: Socket, args: RawArgs| async move {
            socket.emit_raw("m", &args).await
        })
        .unordered(["tick_free"])
        .on(
            "fanout",
            |socket: Socket, (room, count, stamp, pad): (String, u32, u64, String)| async move {
                let to = socket.of("/").to(room);
                for i in 0..count {
                    to.emit("m", &(stamp, i, &pad)).await?;
                }
                if socket.wants_ack() {
                    socket.ack(&(count,)).await?;
                }
                Ok::<(), sio_worker::Error>(())
            },
        );
    worker
}

/// `sio-bench worker <nats-url>`: serves the bench application until
/// SIGTERM or SIGINT.
pub(crate) async fn serve(url: &str) -> Result<(), String> {
    let options = sio_bus::NatsOptions {
        urls: url.split(',').map(str::to_owned).collect(),
        name: Some("sio-bench-worker".into()),
        ..sio_bus::NatsOptions::default()
    };
    let bus = sio_bus::NatsBus::connect(&options)
        .await
        .map_err(|e| e.to_string())?;
    let running = worker()
        .start(std::sync::Arc::new(bus))
        .await
        .map_err(|e| e.to_string())?;
    println!("listening on nats");
    sio_gateway::shutdown_signal().await;
    running.shutdown().await;
    Ok(())
}
