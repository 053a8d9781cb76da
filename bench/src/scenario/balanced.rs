//! Scenario 10, through a load balancer: three servers behind nginx,
//! sticky (hashed by client address) or round robin, and clients that
//! join over polling and upgrade, as the stock client does by default;
//! then a burst to the room they are all in. Without stickiness, sio-nats
//! forwards polling requests and hands sessions over; servers that need
//! stickiness fail their clients, counted.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use super::{Bench, Clients, Row, source};
use crate::client::{Role, Spec, Transport};
use crate::server::Target;

impl Bench {
    pub(crate) async fn balanced(&self, target: &Target, sticky: bool) -> Result<Row, String> {
        let mut running = self.launcher.start(target)?;
        let servers = running.addrs.clone();
        self.launcher.balance(&mut running, sticky)?;
        let (clients, messages) = (self.sizes.fanout_clients, self.sizes.burst_messages);
        let counter = Arc::new(AtomicU64::new(0));
        let specs = (0..clients).map(|i| Spec {
            server: running.addrs[0],
            source: source(i),
            transport: Transport::Upgrade,
            room: Some("r0".into()),
            role: Role::Listen,
            counter: counter.clone(),
            then: None,
        });
        let connected = Clients::connect(specs, 256).await;
        // How the balancer spread the sessions (sio-nats says on /metrics).
        let mut held = Vec::new();
        if matches!(target, Target::SioNats { .. }) {
            for server in servers {
                let metrics = sio_tests::raw::metrics(server).await;
                held.push(metrics.get("sio_gateway_sessions").unwrap_or(0));
            }
        }
        let how = if sticky { "sticky" } else { "round robin" };
        let params = format!("{clients} clients × {messages}, nginx {how}");
        let (mut row, delivered) = self
            .fan_out(target, &running, connected, ("balanced", params), messages)
            .await?;
        let failed = delivered
            .reports
            .iter()
            .filter(|r| r.error.is_some())
            .count();
        row.metrics.push(("failed_clients".into(), failed as f64));
        if let Some(most) = held.iter().max() {
            let share = *most as f64 / held.iter().sum::<u64>().max(1) as f64;
            row.metrics.push(("busiest_gateway_share".into(), share));
        }
        Ok(row)
    }
}
