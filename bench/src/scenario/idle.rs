//! Scenario 1, idle connections: what each costs the server in memory,
//! and how fast they connect.

use std::time::Duration;

use super::{Bench, Clients, Meter, Row, failures, percentile};
use crate::client::Transport;
use crate::server::Target;

impl Bench {
    /// Scenario 1, idle connections: server RSS per connection, connect rate and
    /// latency.
    pub(crate) async fn idle(
        &self,
        target: &Target,
        transport: Transport,
        n: usize,
    ) -> Result<Row, String> {
        let running = self.launcher.start(target)?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let before = running.front_rss();
        let meter = Meter::start(&running);
        let clients = Clients::listen(&running, n, transport, |_| "idle".into(), |i| i).await;
        let (_, _, _, bound) = meter.stop(&running, self.threads);
        let connect_seconds = clients.connect_seconds;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let after = running.front_rss();
        let reports = clients.finish().await;
        let mut connects: Vec<u32> = reports
            .iter()
            .filter_map(|r| r.connect_us)
            .map(|us| u32::try_from(us).unwrap_or(u32::MAX))
            .collect();
        connects.sort_unstable();
        let mut row = self.row("idle", target, format!("{n} {transport:?}"));
        row.generator_bound = bound;
        let ok = connects.len();
        row.metrics = vec![
            ("connected".into(), ok as f64),
            (
                "rss_per_conn_kib".into(),
                after.saturating_sub(before) as f64 / ok.max(1) as f64,
            ),
            ("connects_per_s".into(), ok as f64 / connect_seconds),
            ("connect_p50_ms".into(), percentile(&connects, 0.5) / 1000.0),
            (
                "connect_p99_ms".into(),
                percentile(&connects, 0.99) / 1000.0,
            ),
        ];
        failures(&reports, &mut row.notes);
        Ok(row)
    }
}
