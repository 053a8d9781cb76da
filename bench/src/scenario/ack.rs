//! Scenario 4, ack round trips: clients emitting `echo` with ack.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use super::{Acked, Bench, Clients, Row, failures, latencies, latency, source};
use crate::client::{Role, Spec, Transport};
use crate::server::Target;

impl Bench {
    /// Scenario 4, ack round trips: `clients` emitting `echo` with ack, one in
    /// flight each (`per_client` = None) or at a fixed rate each.
    pub(crate) async fn ack(
        &self,
        target: &Target,
        per_client: Option<u32>,
    ) -> Result<Row, String> {
        let clients = self.sizes.ack_clients;
        let running = self.launcher.start(target)?;
        let counter = Arc::new(AtomicU64::new(0));
        let interval = per_client.map(|r| Duration::from_secs_f64(1.0 / f64::from(r)));
        let specs = (0..clients).map(|i| Spec {
            server: running.addrs[i % running.addrs.len()],
            source: source(i),
            transport: Transport::Websocket,
            room: None,
            role: Role::Ack { interval },
            counter: counter.clone(),
            then: None,
        });
        let connected = Clients::connect(specs, 256).await;
        let Acked {
            acks,
            wall,
            server_cpu,
            generator_bound,
            reports,
        } = self.acked(&running, connected).await;
        let lat = latencies(&reports);
        let params = match per_client {
            None => format!("{clients} clients, unpaced"),
            Some(r) => format!("{clients} clients × {r}/s"),
        };
        let mut row = self.row("ack", target, params);
        row.generator_bound = generator_bound;
        row.metrics = vec![
            ("acks_per_s".into(), acks as f64 / wall),
            latency(&lat, 0.5),
            latency(&lat, 0.99),
            (
                "cpu_us_per_ack".into(),
                server_cpu * 1e6 / acks.max(1) as f64,
            ),
        ];
        failures(&reports, &mut row.notes);
        Ok(row)
    }
}
