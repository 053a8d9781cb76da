//! `P.hb`: this gateway's presence, announced periodically, with the bus
//! connection's state tracked on the way; and the others' heard, to learn
//! which died. With connection state recovery over NATS, once the
//! recovery window after its death ends (its clients may be recovered
//! elsewhere meanwhile, each claiming its record), every survivor goes
//! through a dead gateway's records ([`crate::records`]), and for each the
//! one that claims it first (a write that expects the record's revision)
//! publishes its disconnect: the workers hear once that each of the dead
//! gateway's sockets left.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use sio_protocol::envelope::{self, Disconnect, Presence};
use sio_protocol::id::GatewayId;
use tokio::time::Instant;

use crate::config::ms;
use crate::node::Node;
use crate::records::Durable;

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

/// The least heartbeat interval assumed of gateways not heard yet.
const SWEEP_FLOOR: Duration = Duration::from_secs(5);

/// Watches the gateways' heartbeats: the records of one that died (and,
/// once, of those gone before this gateway started) are reaped.
pub(crate) async fn watch(node: Weak<Node>, mut heartbeats: sio_bus::Subscription) {
    let mut heard: HashMap<GatewayId, (Instant, Duration)> = HashMap::new();
    let started = Instant::now();
    let mut swept = false;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            message = heartbeats.next() => {
                let Some(message) = message else { return };
                if let Ok(presence) = envelope::decode_owned::<Presence>(&message.payload) {
                    let every = Duration::from_millis(presence.interval_ms.max(100));
                    heard.insert(presence.gateway, (Instant::now(), every));
                }
            }
            _ = tick.tick() => {}
        }
        let Some(n) = node.upgrade() else { return };
        let own = ms(n.config.heartbeat_interval.max(100));
        let dead: Vec<GatewayId> = heard
            .iter()
            .filter(|(gateway, (last, every))| **gateway != n.id && last.elapsed() >= *every * 3)
            .map(|(gateway, _)| *gateway)
            .collect();
        for gateway in &dead {
            heard.remove(gateway);
        }
        // Three intervals after it started (its own, and at least the
        // default's, in case others announce less often), this gateway
        // has heard every live one: records of any other are a dead one's.
        let sweep = !swept && started.elapsed() >= own.max(SWEEP_FLOOR) * 3;
        if dead.is_empty() && !sweep {
            continue;
        }
        swept = true;
        let live: Vec<GatewayId> = heard.keys().copied().chain([n.id]).collect();
        // Its clients may come back elsewhere within the window, recovered
        // from these records: the rest leave once it ends.
        let window = ms(n.config.max_disconnection_duration);
        let weak = node.clone();
        tokio::spawn(async move {
            tokio::time::sleep(window).await;
            if let Some(n) = weak.upgrade() {
                reap(n, dead, sweep.then_some(live)).await;
            }
        });
    }
}

/// Publishes the disconnects of the sockets of the `dead` gateways (with
/// `all_but`, of every gateway not in it), each claimed first.
async fn reap(node: Arc<Node>, dead: Vec<GatewayId>, all_but: Option<Vec<GatewayId>>) {
    let Some(durable) = node.durable.get() else {
        return;
    };
    let prefixes: Vec<String> = dead.iter().map(|g| format!("{g}.")).collect();
    let keys = match durable.kv.keys(String::new()).await {
        Ok(keys) => keys,
        Err(error) => {
            tracing::warn!(%error, "cannot list the sockets' records");
            return;
        }
    };
    let theirs = |key: &String| {
        let gateway = key
            .split_once('.')
            .and_then(|(g, _)| g.parse::<GatewayId>().ok());
        match (&all_but, gateway) {
            (_, None) => false,
            (Some(live), Some(g)) => !live.contains(&g),
            (None, Some(_)) => prefixes.iter().any(|p| key.starts_with(p)),
        }
    };
    let mut reaped = 0u64;
    for key in keys.into_iter().filter(theirs) {
        if disconnect(&node, durable, key).await {
            reaped += 1;
        }
    }
    if reaped > 0 {
        tracing::info!(sockets = reaped, gateways = ?dead, "disconnected the sockets of gateways that died");
    }
}

/// Claims one record and publishes its disconnect; true if this gateway
/// did.
async fn disconnect(node: &Node, durable: &Durable, key: String) -> bool {
    let Ok(Some(entry)) = durable.kv.get(key.clone()).await else {
        return false;
    };
    // Empty: claimed by another survivor, which publishes it.
    if entry.value.is_empty() {
        return false;
    }
    let claimed = durable
        .kv
        .claim(key.clone(), Bytes::new(), entry.revision)
        .await;
    if !matches!(claimed, Ok(true)) {
        return false;
    }
    let Ok(record) = envelope::decode_owned::<Disconnect>(&entry.value) else {
        let _ = durable.kv.delete(key).await;
        return false;
    };
    let subject = node.subjects.disconnect(&record.socket.ns);
    node.publish(subject, entry.value).await;
    node.metrics.sockets_reaped.inc();
    let _ = durable.kv.delete(key).await;
    true
}
