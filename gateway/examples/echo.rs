//! A gateway on the in-process bus with a tiny echo worker written against
//! the raw bus envelopes: every event is emitted back to its sender as
//! `echo`, an event with an ack is answered with its own arguments, and
//! the gateway is told each one is done.
//! Used to try the gateway with a stock client and to measure it.
//!
//! ```text
//! cargo run --release -p sio-gateway --example echo     # http://127.0.0.1:3999
//! ```
//! Environment: `LISTEN` (address), `WS_READ` / `WS_WRITE` (websocket
//! buffer sizes), `FAST_PING` (300 ms ping interval), `EXIT_AFTER`
//! (seconds, for profilers).

use std::sync::Arc;
use std::time::Duration;

use sio_bus::{Bus, MemoryBus};
use sio_gateway::{Config, Gateway};
use sio_protocol::envelope::{self, AckReply, Command, EmitId, EncodedPacket, SocketCommand};

fn env<T: std::str::FromStr>(name: &str) -> Option<T> {
    std::env::var(name).ok()?.parse().ok()
}

/// Echoes every event back to its socket; answers acks with the arguments.
async fn echo_worker(bus: Arc<dyn Bus>) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let mut events = bus
        .queue_subscribe("sio.ev.*.*".into(), "echo".into())
        .await?;
    while let Some(message) = events.next().await {
        let events: envelope::Events<'_> = envelope::decode(&message.payload)?;
        let socket = &events.socket;
        let mut outcomes = Vec::new();
        for event in &events.events {
            let args = event.data.split_once(',').map_or("]", |(_, rest)| rest);
            outcomes.push(envelope::Outcome {
                ack: event.ack.then(|| AckReply {
                    data: format!("[{args}"),
                    attachments: event.attachments.clone(),
                }),
                failed: false,
            });
            let nsp = match socket.ns.as_str() {
                "/" => String::new(),
                ns => format!("{ns},"),
            };
            let binary = !event.attachments.is_empty();
            let text = match binary {
                true => format!("5{}-{nsp}[\"echo\",{args}", event.attachments.len()),
                false => format!("2{nsp}[\"echo\",{args}"),
            };
            let command = Command::Socket {
                socket: socket.id,
                action: SocketCommand::Emit {
                    id: EmitId::random()?,
                    volatile: false,
                    packet: EncodedPacket::from_text(&text, event.attachments.clone()),
                },
            };
            let subject = format!("sio.to.{}", socket.id.gateway());
            bus.publish(subject, envelope::encode(&command)?.into())
                .await?;
        }
        if let Some(reply) = message.reply {
            // Done: the gateway hands this socket's next events over.
            let done = envelope::EventReply::Done {
                first: 0,
                outcomes,
                unordered: false,
            };
            bus.publish(reply, envelope::encode(&done)?.into()).await?;
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut config = Config {
        listen: env("LISTEN").unwrap_or_else(|| ([127, 0, 0, 1], 3999).into()),
        ..Config::default()
    };
    config.namespaces.push("/chat".into());
    config.ws_read_buffer = env("WS_READ").unwrap_or(config.ws_read_buffer);
    config.ws_write_buffer = env("WS_WRITE").unwrap_or(config.ws_write_buffer);
    if std::env::var_os("FAST_PING").is_some() {
        config.ping_interval = 300;
        config.ping_timeout = 200;
    }
    if let Some(secs) = env::<u64>("EXIT_AFTER") {
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(secs)).await;
            std::process::exit(0);
        });
    }
    let bus: Arc<dyn Bus> = Arc::new(MemoryBus::default());
    let worker = tokio::spawn(echo_worker(bus.clone()));
    let gateway = Gateway::new(config.clone(), bus).await?;
    let listener = sio_gateway::bind(config.listen, config.backlog)?;
    println!("echo gateway on http://{}", listener.local_addr()?);
    tokio::select! {
        served = gateway.serve(listener, std::future::pending()) => served?,
        worker = worker => worker?.map_err(|e| e.to_string())?,
    }
    Ok(())
}
