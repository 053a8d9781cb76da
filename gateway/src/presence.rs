//! `P.hb`: this gateway's presence, announced periodically, with the bus
//! connection's state tracked on the way.

use std::sync::Weak;

use sio_protocol::envelope::{self, Presence};

use crate::config::ms;
use crate::node::Node;

/// This gateway's presence, as announced on `P.hb`.
pub(crate) fn presence(node: &Node, address: &str) -> Presence {
    Presence {
        gateway: node.id,
        address: address.to_owned(),
        sockets: u64::try_from(node.registry.socket_count()).unwrap_or(u64::MAX),
        version: env!("CARGO_PKG_VERSION").into(),
        interval_ms: node.config.heartbeat_interval,
        ready: !node.is_draining(),
    }
}

/// Announces this gateway on `P.hb` until it is dropped.
pub(crate) async fn announce(node: Weak<Node>, address: String) {
    loop {
        let Some(n) = node.upgrade() else { return };
        let connected = n.bus.state() == sio_bus::State::Connected;
        n.metrics.bus_connected.set(i64::from(connected));
        if let Ok(bytes) = envelope::encode(&presence(&n, &address)) {
            if connected {
                n.publish(n.subjects.heartbeat(), bytes.into()).await;
            }
        }
        let interval = ms(n.config.heartbeat_interval.max(100));
        drop(n);
        tokio::time::sleep(interval).await;
    }
}
