//! Scenario 6, one socket's stream: a client sends `count` events
//! (`tick`, or `tick_free`, which the sio-nats worker opts out of order)
//! as fast as the server echoes them back to it as `m`, with at most
//! `window` on their way; events per second, server CPU per event, and
//! how many came back out of order.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use super::{Bench, Clients, Meter, Row, failures, latencies, latency, source};
use crate::client::{Role, Spec, Transport};
use crate::server::Target;

/// Events on their way at once: below the gateway's `--event-queue`.
const WINDOW: u64 = 256;

impl Bench {
    pub(crate) async fn stream(&self, target: &Target, event: &'static str) -> Result<Row, String> {
        let count = self.sizes.stream_events;
        let running = self.launcher.start(target)?;
        let counter = Arc::new(AtomicU64::new(0));
        let spec = Spec {
            server: running.addrs[0],
            source: source(0),
            transport: Transport::Websocket,
            room: None,
            role: Role::Stream {
                event,
                count,
                window: WINDOW,
            },
            counter,
            then: None,
        };
        let meter = Meter::start(&running);
        let started = Instant::now();
        let clients = Clients::connect([spec], 1).await;
        let last = clients.wait_for(count, Duration::from_secs(5)).await;
        let (_, server_cpu, _, bound) = meter.stop(&running, self.threads);
        let received = clients.received();
        let reports = clients.finish().await;
        let seconds = last
            .saturating_duration_since(started)
            .as_secs_f64()
            .max(1e-6);
        let reordered: u64 = reports.iter().map(|r| r.reordered).sum();
        let lat = latencies(&reports);
        let mut row = self.row(
            "stream",
            target,
            format!("{event}, {count} events, {WINDOW} on their way"),
        );
        row.generator_bound = bound;
        row.metrics = vec![
            ("events_per_s".into(), received as f64 / seconds),
            (
                "cpu_us_per_event".into(),
                server_cpu * 1e6 / received.max(1) as f64,
            ),
            latency(&lat, 0.5),
            latency(&lat, 0.99),
            ("reordered".into(), reordered as f64),
            ("lost".into(), count.saturating_sub(received) as f64),
        ];
        failures(&reports, &mut row.notes);
        Ok(row)
    }
}
