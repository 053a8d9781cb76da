//! Scenarios 2 and 6, a burst: one room, as many emits as fast as the
//! server goes, over websocket (burst) or long-polling (polling).

use std::time::{Duration, Instant};

use super::{
    Bench, Clients, Delivered, Meter, Row, cpu_per_delivery, dropped, failures, latencies, latency,
};
use crate::client::{Control, Transport};
use crate::server::{Running, Target};

impl Bench {
    /// Scenarios 2 and 6, a burst: `messages` emits to one room of `clients`, as fast
    /// as the server goes.
    pub(crate) async fn burst(
        &self,
        target: &Target,
        transport: Transport,
        clients: usize,
        messages: u32,
    ) -> Result<Row, String> {
        let running = self.launcher.start(target)?;
        let connected = Clients::listen(&running, clients, transport, |_| "r0".into(), |i| i).await;
        let scenario = match transport {
            Transport::Websocket | Transport::Upgrade => "burst",
            Transport::Polling => "polling",
        };
        let params = format!("{clients} clients × {messages}");
        let (row, _) = self
            .fan_out(target, &running, connected, (scenario, params), messages)
            .await?;
        Ok(row)
    }

    /// `messages` emits to room `r0`, which every one of the `connected`
    /// clients is in, as fast as the server goes: the row of what it cost,
    /// and what the clients saw.
    pub(super) async fn fan_out(
        &self,
        target: &Target,
        running: &Running,
        connected: Clients,
        (scenario, params): (&'static str, String),
        messages: u32,
    ) -> Result<(Row, Delivered), String> {
        let control = Control::connect(running.addrs[0]).await?;
        let expected = connected.handles.len() as u64 * u64::from(messages);
        let meter = Meter::start(running);
        let started = Instant::now();
        control.fanout("r0", messages, "burst");
        let quiet = Duration::from_secs(3);
        let d = self
            .delivered(running, connected, &meter, expected, quiet)
            .await;
        let lat = latencies(&d.reports);
        let mut row = self.row(scenario, target, params);
        row.generator_bound = d.generator_bound;
        row.metrics = vec![
            d.per_s(started),
            (
                "per_front_core_s".into(),
                d.received as f64 / d.front_cpu.max(0.01),
            ),
            cpu_per_delivery(d.server_cpu, d.received),
            dropped(expected, d.received),
            latency(&lat, 0.5),
            latency(&lat, 0.99),
        ];
        failures(&d.reports, &mut row.notes);
        Ok((row, d))
    }
}
