//! Scenarios 2 and 6, a burst: one room, as many emits as fast as the
//! server goes, over websocket (burst) or long-polling (polling).

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use super::{
    Bench, Clients, Meter, Row, cpu_per_delivery, dropped, failures, latencies, latency, listeners,
};
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
        let counter = Arc::new(AtomicU64::new(0));
        let specs = listeners(
            &running,
            clients,
            transport,
            |_| "r0".into(),
            |i| i,
            &counter,
        );
        let connected = Clients::connect(specs, 256).await;
        let control = Control::connect(running.addrs[0]).await?;
        let expected = clients as u64 * u64::from(messages);
        let meter = Meter::start(&running);
        let started = Instant::now();
        control.fanout("r0", messages, "burst");
        let last = connected.wait_for(expected, Duration::from_secs(3)).await;
        let (_, server_cpu, front_cpu, bound) = meter.stop(&running, self.threads);
        let received = connected.received();
        let reports = connected.finish().await;
        let seconds = last
            .saturating_duration_since(started)
            .as_secs_f64()
            .max(1e-6);
        let lat = latencies(&reports);
        let scenario = match transport {
            Transport::Websocket => "burst",
            Transport::Polling => "polling",
        };
        let mut row = self.row(scenario, target, format!("{clients} clients × {messages}"));
        row.generator_bound = bound;
        row.metrics = vec![
            ("deliveries_per_s".into(), received as f64 / seconds),
            (
                "per_front_core_s".into(),
                received as f64 / front_cpu.max(0.01),
            ),
            cpu_per_delivery(server_cpu, received),
            dropped(expected, received),
            latency(&lat, 0.5),
            latency(&lat, 0.99),
        ];
        failures(&reports, &mut row.notes);
        Ok(row)
    }
}
