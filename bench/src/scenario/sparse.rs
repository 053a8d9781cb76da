//! Scenario 3, sparse fan-out: a steady trickle of emits to one room.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use super::{
    Bench, Clients, Meter, Row, cpu_per_delivery, dropped, failures, latencies, latency, listeners,
};
use crate::client::{Control, Transport};
use crate::server::Target;

impl Bench {
    /// Scenario 3, sparse fan-out: `rate` messages a second to one room.
    pub(crate) async fn sparse(&self, target: &Target, rate: u32) -> Result<Row, String> {
        let clients = self.sizes.fanout_clients;
        let running = self.launcher.start(target)?;
        let counter = Arc::new(AtomicU64::new(0));
        let specs = listeners(
            &running,
            clients,
            Transport::Websocket,
            |_| "r0".into(),
            |i| i,
            &counter,
        );
        let connected = Clients::connect(specs, 256).await;
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
        connected.wait_for(expected, Duration::from_secs(2)).await;
        let (_, server_cpu, _, bound) = meter.stop(&running, self.threads);
        let received = connected.received();
        let reports = connected.finish().await;
        let lat = latencies(&reports);
        let mut row = self.row("sparse", target, format!("{rate}/s × {clients} clients"));
        row.generator_bound = bound;
        row.metrics = vec![
            cpu_per_delivery(server_cpu, received),
            dropped(expected, received),
            latency(&lat, 0.5),
            latency(&lat, 0.99),
        ];
        failures(&reports, &mut row.notes);
        Ok(row)
    }
}
