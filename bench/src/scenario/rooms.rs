//! Scenario 5, many gateways: rooms spread over gateways, and the emits
//! that reach gateways with no member of their room.

use std::time::{Duration, Instant};

use super::{Bench, Clients, Meter, Row, cpu_per_delivery, dropped, failures};
use crate::client::{Control, Transport};
use crate::server::{Target, emits_received};

impl Bench {
    /// Scenario 5, many gateways: clients spread evenly over rooms, each room's
    /// members on one gateway; every room gets `room_messages` emits.
    /// Counts the emits gateways received for rooms they have no member of.
    pub(crate) async fn rooms(&self, target: &Target) -> Result<Row, String> {
        let (clients, rooms, messages) = (
            self.sizes.fanout_clients,
            self.sizes.rooms,
            self.sizes.room_messages,
        );
        let running = self.launcher.start(target)?;
        let connected = Clients::listen(
            &running,
            clients,
            Transport::Websocket,
            |i| format!("r{}", i % rooms),
            |i| i % rooms,
        )
        .await;
        let control = Control::connect(running.addrs[0]).await?;
        let is_sio = matches!(target, Target::SioNats { .. });
        let received_before: u64 = match is_sio {
            true => emits_received(&running.addrs).await?,
            false => 0,
        };
        let expected = clients as u64 * u64::from(messages);
        let meter = Meter::start(&running);
        let started = Instant::now();
        for room in 0..rooms {
            control.fanout(&format!("r{room}"), messages, "rooms");
        }
        let quiet = Duration::from_secs(3);
        let d = self
            .delivered(&running, connected, &meter, expected, quiet)
            .await;
        let mut row = self.row(
            "rooms",
            target,
            format!("{clients} clients, {rooms} rooms × {messages}"),
        );
        row.generator_bound = d.generator_bound;
        row.metrics = vec![
            d.per_s(started),
            cpu_per_delivery(d.server_cpu, d.received),
            dropped(expected, d.received),
        ];
        if is_sio {
            let after = emits_received(&running.addrs).await?;
            // Each room lives on one gateway: every emit should reach
            // exactly one.
            let emits = rooms as u64 * u64::from(messages);
            row.metrics.push((
                "emits_to_non_members".into(),
                (after - received_before).saturating_sub(emits) as f64,
            ));
        }
        failures(&d.reports, &mut row.notes);
        Ok(row)
    }
}
