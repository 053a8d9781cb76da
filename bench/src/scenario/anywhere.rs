//! Scenarios 8 and 9, sessions without sticky balancing, on two gateways:
//! the polling fan-out with every request after the handshake sent to the
//! gateway that does not own the session (forwarded over NATS) or to its
//! owner; and clients that join over polling on one gateway and upgrade
//! on the other (the session handed over) or on the same one, timed, then
//! a websocket fan-out to them.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use super::{Bench, Clients, Row, percentile, source};
use crate::client::{Role, Spec, Transport};
use crate::server::Target;

impl Bench {
    /// `transport` is polling (scenario 8) or upgrade (9); `elsewhere`
    /// sends what follows the handshake to the other gateway.
    pub(crate) async fn anywhere(
        &self,
        transport: Transport,
        elsewhere: bool,
    ) -> Result<Row, String> {
        let target = Target::SioNats { gateways: 2 };
        let running = self.launcher.start(&target)?;
        let (clients, messages, scenario) = match transport {
            Transport::Polling => (
                self.sizes.polling_clients,
                self.sizes.polling_messages,
                "forwarded",
            ),
            _ => (
                self.sizes.fanout_clients,
                self.sizes.burst_messages,
                "handed_over",
            ),
        };
        let [owner, other] = [running.addrs[0], running.addrs[1]];
        let counter = Arc::new(AtomicU64::new(0));
        let specs = (0..clients).map(|i| Spec {
            server: owner,
            source: source(i),
            transport,
            room: Some("r0".into()),
            role: Role::Listen,
            counter: counter.clone(),
            then: elsewhere.then_some(other),
        });
        let connected = Clients::connect(specs, 256).await;
        let how = match (transport, elsewhere) {
            (Transport::Polling, true) => "requests via the other gateway",
            (Transport::Polling, false) => "requests to the owner",
            (_, true) => "upgraded on the other gateway",
            (_, false) => "upgraded on the owner",
        };
        let params = format!("{clients} clients × {messages}, {how}");
        let (mut row, delivered) = self
            .fan_out(&target, &running, connected, (scenario, params), messages)
            .await?;
        let reports = &delivered.reports;
        match transport {
            Transport::Polling => {
                let requests: u64 = reports.iter().map(|r| r.requests).sum();
                row.metrics.push((
                    "cpu_us_per_request".into(),
                    delivered.server_cpu * 1e6 / requests.max(1) as f64,
                ));
            }
            _ => {
                let mut upgrades: Vec<u32> = reports
                    .iter()
                    .filter_map(|r| r.upgrade_us)
                    .map(|us| u32::try_from(us).unwrap_or(u32::MAX))
                    .collect();
                upgrades.sort_unstable();
                for p in [0.5, 0.99] {
                    let name = format!("upgrade_p{:.0}_ms", p * 100.0);
                    row.metrics.push((name, percentile(&upgrades, p) / 1000.0));
                }
            }
        }
        Ok(row)
    }
}
