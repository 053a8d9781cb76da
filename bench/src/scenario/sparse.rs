//! Scenario 3, sparse fan-out: a steady trickle of emits to one room.

use std::time::Duration;

use super::{Bench, Clients, Meter, Row, cpu_per_delivery, dropped, failures, latencies, latency};
use crate::client::{Control, Transport};
use crate::server::Target;

impl Bench {
    /// Scenario 3, sparse fan-out: `rate` messages a second to one room.
    pub(crate) async fn sparse(&self, target: &Target, rate: u32) -> Result<Row, String> {
        let clients = self.sizes.fanout_clients;
        let running = self.launcher.start(target)?;
        let websocket = Transport::Websocket;
        let connected = Clients::listen(&running, clients, websocket, |_| "r0".into(), |i| i).await;
        let control = Control::connect(running.addrs[0]).await?;
        let total = (f64::from(rate) * self.sizes.seconds).round() as u64;
        let meter = Meter::start(&running);
        let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        for _ in 0..total {
            tick.tick().await;
            control.fanout("r0", 1, "sparse");
        }
        let expected = total * clients as u64;
        let quiet = Duration::from_secs(2);
        let d = self
            .delivered(&running, connected, &meter, expected, quiet)
            .await;
        let lat = latencies(&d.reports);
        let mut row = self.row("sparse", target, format!("{rate}/s × {clients} clients"));
        row.generator_bound = d.generator_bound;
        row.metrics = vec![
            cpu_per_delivery(d.server_cpu, d.received),
            dropped(expected, d.received),
            latency(&lat, 0.5),
            latency(&lat, 0.99),
        ];
        failures(&d.reports, &mut row.notes);
        Ok(row)
    }
}
