//! Scenarios 2 and 6, a burst: one room, as many emits as fast as the
//! server goes, over websocket (burst) or long-polling (polling).

use std::time::{Duration, Instant};

use super::{Bench, Clients, Meter, Row, cpu_per_delivery, dropped, failures, latencies, latency};
use crate::client::{Control, Transport};
use crate::server::Target;

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
        let control = Control::connect(running.addrs[0]).await?;
        let expected = clients as u64 * u64::from(messages);
        let meter = Meter::start(&running);
        let started = Instant::now();
        control.fanout("r0", messages, "burst");
        let quiet = Duration::from_secs(3);
        let d = self
            .delivered(&running, connected, &meter, expected, quiet)
            .await;
        let lat = latencies(&d.reports);
        let scenario = match transport {
            Transport::Websocket => "burst",
            Transport::Polling => "polling",
        };
        let mut row = self.row(scenario, target, format!("{clients} clients × {messages}"));
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
        Ok(row)
    }
}
