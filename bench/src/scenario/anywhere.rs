//! Scenarios 8 and 9, sessions without sticky balancing, on two gateways:
//! polling clients doing ack round trips with every request after the
//! handshake sent to the gateway that does not own the session (forwarded
//! over NATS) or to its owner; and clients that join over polling on one
//! gateway and upgrade on the other (the session handed over) or on the
//! same one, timed, then a websocket fan-out to them.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use super::{Acked, Bench, Clients, Row, failures, latencies, latency, percentile, source};
use crate::client::{Role, Spec, Transport};
use crate::server::{Running, Target};

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
        let [owner, other] = [running.addrs[0], running.addrs[1]];
        let polling = transport == Transport::Polling;
        let clients = match polling {
            true => self.sizes.ack_clients,
            false => self.sizes.fanout_clients,
        };
        let counter = Arc::new(AtomicU64::new(0));
        let specs = (0..clients).map(|i| Spec {
            server: owner,
            source: source(i),
            transport,
            room: Some("r0".into()),
            role: match polling {
                true => Role::Ack { interval: None },
                false => Role::Listen,
            },
            counter: counter.clone(),
            then: elsewhere.then_some(other),
        });
        // Upgrades a few at a time: their time is the hand-over's, not a
        // queue's.
        let connected = Clients::connect(specs, if polling { 256 } else { 8 }).await;
        let how = match (polling, elsewhere) {
            (true, true) => "requests via the other gateway",
            (true, false) => "requests to the owner",
            (false, true) => "upgraded on the other gateway",
            (false, false) => "upgraded on the owner",
        };
        if polling {
            return Ok(self.round_trips(&target, &running, connected, how).await);
        }
        let messages = self.sizes.burst_messages;
        let params = format!("{clients} clients × {messages}, {how}");
        let (mut row, delivered) = self
            .fan_out(
                &target,
                &running,
                connected,
                ("handed_over", params),
                messages,
            )
            .await?;
        let mut upgrades: Vec<u32> = delivered
            .reports
            .iter()
            .filter_map(|r| r.upgrade_us)
            .map(|us| u32::try_from(us).unwrap_or(u32::MAX))
            .collect();
        upgrades.sort_unstable();
        for p in [0.5, 0.99] {
            let name = format!("upgrade_p{:.0}_ms", p * 100.0);
            row.metrics.push((name, percentile(&upgrades, p) / 1000.0));
        }
        Ok(row)
    }

    /// Polling acks for `seconds`: their rate, latency and the server CPU
    /// per polling request.
    async fn round_trips(
        &self,
        target: &Target,
        running: &Running,
        connected: Clients,
        how: &str,
    ) -> Row {
        let clients = connected.handles.len();
        let Acked {
            acks,
            wall,
            server_cpu,
            generator_bound,
            reports,
        } = self.acked(running, connected).await;
        let lat = latencies(&reports);
        let requests: u64 = reports.iter().map(|r| r.requests).sum();
        let mut row = self.row("forwarded", target, format!("{clients} clients, {how}"));
        row.generator_bound = generator_bound;
        row.metrics = vec![
            ("acks_per_s".into(), acks as f64 / wall),
            latency(&lat, 0.5),
            latency(&lat, 0.99),
            // Two requests an ack (its POST, the GET it comes back in),
            // counted from the moment the meter started.
            (
                "cpu_us_per_request".into(),
                server_cpu * 1e6 / (2 * acks).max(1) as f64,
            ),
            ("requests".into(), requests as f64),
        ];
        failures(&reports, &mut row.notes);
        row
    }
}
