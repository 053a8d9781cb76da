//! Which gateways are alive, so that a cluster operation waits for exactly
//! their answers instead of a fixed time.
//!
//! Started on first use: a `Presence` request on `P.ctl` learns the
//! gateways up now, then heartbeats on `P.hb` keep the list current. A
//! gateway silent for two of its intervals is dropped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use sio_bus::Bus;
use sio_protocol::envelope::{self, ControlReply, ControlRequest, ControlResult};
use sio_protocol::id::GatewayId;
use sio_protocol::subject::Subjects;
use tokio::sync::OnceCell;
use tokio::time::Instant;

use crate::Error;

/// How long the first look waits for gateways to say they are there.
const FIRST_LOOK: Duration = Duration::from_millis(250);

#[derive(Debug, Default)]
pub(crate) struct Presence {
    started: OnceCell<()>,
    gateways: Mutex<HashMap<GatewayId, (Instant, Duration)>>,
}

impl Presence {
    fn saw(&self, hb: &envelope::Presence) {
        let interval = Duration::from_millis(hb.interval_ms.max(1));
        let mut gateways = self.gateways.lock().unwrap_or_else(|e| e.into_inner());
        gateways.insert(hb.gateway, (Instant::now(), interval));
    }

    /// The number of gateways alive now.
    pub(crate) async fn live(
        self: &Arc<Self>,
        bus: &Arc<dyn Bus>,
        subjects: &Subjects,
    ) -> Result<usize, Error> {
        self.started
            .get_or_try_init(|| self.start(bus, subjects))
            .await?;
        let now = Instant::now();
        let mut gateways = self.gateways.lock().unwrap_or_else(|e| e.into_inner());
        gateways.retain(|_, (seen, interval)| now.duration_since(*seen) <= *interval * 2);
        Ok(gateways.len())
    }

    async fn start(self: &Arc<Self>, bus: &Arc<dyn Bus>, subjects: &Subjects) -> Result<(), Error> {
        let mut heartbeats = bus.subscribe(subjects.heartbeat()).await?;
        let weak: Weak<Self> = Arc::downgrade(self);
        tokio::spawn(async move {
            while let Some(message) = heartbeats.next().await {
                let Some(presence) = weak.upgrade() else {
                    return;
                };
                if let Ok(hb) = envelope::decode_owned::<envelope::Presence>(&message.payload) {
                    presence.saw(&hb);
                }
            }
        });
        let request: Bytes = envelope::encode(&ControlRequest::Presence)?.into();
        let answers = bus
            .gather(subjects.control(), request, usize::MAX, FIRST_LOOK)
            .await?;
        for answer in answers {
            if let Ok(ControlReply {
                body: ControlResult::Presence(hb),
                ..
            }) = envelope::decode_owned(&answer)
            {
                self.saw(&hb);
            }
        }
        Ok(())
    }
}
