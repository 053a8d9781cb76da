//! `P.hb`: this gateway's presence, announced periodically, with the bus
//! connection's state tracked on the way; and the others' heard, to learn
//! which died. Over NATS, once a gateway is declared dead (with connection
//! state recovery, once the recovery window after its death ends: its
//! clients may be recovered elsewhere meanwhile, each claiming its
//! record), every survivor goes through its records ([`crate::records`]),
//! and for each the one that claims it first (a write that expects the
//! record's revision) publishes its disconnect: the workers hear once
//! that each of the dead gateway's sockets left.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use sio_protocol::envelope::{self, Disconnect, Presence};
use sio_protocol::id::GatewayId;
use tokio::time::Instant;

use crate::config::ms;
use crate::node::Node;
use crate::records::Records;

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

/// Without connection state recovery: opens the records once JetStream
/// answers (the bus may not be up yet), then [`watch`]es. Without
/// JetStream nothing is recorded: said once, as a dead gateway's sockets
/// then never leave at the workers.
pub(crate) async fn keep_records(node: Weak<Node>, heartbeats: sio_bus::Subscription) {
    loop {
        let Some(n) = node.upgrade() else { return };
        let errors = n.metrics.bus_errors.clone();
        match Records::open(&n.bus, &n.config, errors).await {
            Ok(Some(records)) => {
                let _ = n.records.set(records);
                break;
            }
            // The in-process bus: nothing outlives the process.
            Ok(None) => return,
            Err(error) if n.bus.state() == sio_bus::State::Connected => {
                tracing::warn!(
                    %error,
                    "no JetStream: the sockets of a gateway that dies will not be disconnected at the workers"
                );
                return;
            }
            Err(_) => {
                drop(n);
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        }
    }
    watch(node, heartbeats).await;
}

/// Watches the gateways' heartbeats: the records of one that died (and,
/// once, of those gone before this gateway started) are reaped, unless it
/// is heard again first. While this gateway's own bus is away or just
/// back, nobody can be heard: nobody is declared dead then.
pub(crate) async fn watch(node: Weak<Node>, mut heartbeats: sio_bus::Subscription) {
    let mut heard: HashMap<GatewayId, (Instant, Duration)> = HashMap::new();
    // Since when this gateway's bus has been up (and settled).
    let mut up = Instant::now();
    let mut swept = false;
    // Reaps to come: when, of which gateways, and whether a sweep.
    let mut due: std::collections::VecDeque<(Instant, Vec<GatewayId>, bool)> =
        std::collections::VecDeque::new();
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
        if n.unsettled() {
            up = Instant::now();
            for (last, _) in heard.values_mut() {
                *last = up;
            }
            continue;
        }
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
        // default's, in case others announce less often) with its bus up,
        // this gateway has heard every live one: records of any other are
        // a dead one's.
        let sweep = !swept && up.elapsed() >= own.max(SWEEP_FLOOR) * 3;
        if !dead.is_empty() || sweep {
            swept = true;
            // With recovery, its clients may come back elsewhere within
            // the window, recovered from these records: the rest leave
            // once it ends.
            let window = match n.config.connection_state_recovery {
                true => ms(n.config.max_disconnection_duration),
                false => Duration::ZERO,
            };
            due.push_back((Instant::now() + window, dead, sweep));
        }
        while due.front().is_some_and(|(at, ..)| *at <= Instant::now()) {
            let Some((_, dead, sweep)) = due.pop_front() else {
                break;
            };
            let dead: Vec<GatewayId> = dead
                .into_iter()
                .filter(|g| !heard.contains_key(g))
                .collect();
            let live = sweep.then(|| heard.keys().copied().chain([n.id]).collect());
            if !dead.is_empty() || live.is_some() {
                tokio::spawn(reap(n.clone(), dead, live));
            }
        }
    }
}

/// Publishes the disconnects of the sockets of the `dead` gateways (with
/// `all_but`, of every gateway not in it), each claimed first.
async fn reap(node: Arc<Node>, dead: Vec<GatewayId>, all_but: Option<Vec<GatewayId>>) {
    let Some(records) = node.records.get() else {
        return;
    };
    let prefixes: Vec<String> = dead.iter().map(|g| format!("{g}.")).collect();
    let keys = match records.kv.keys(String::new()).await {
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
        if disconnect(&node, records, key).await {
            reaped += 1;
        }
    }
    if reaped > 0 {
        tracing::info!(sockets = reaped, gateways = ?dead, "disconnected the sockets of gateways that died");
    }
}

/// Claims one record and publishes its disconnect; true if this gateway
/// did.
async fn disconnect(node: &Node, records: &Records, key: String) -> bool {
    let Ok(Some(entry)) = records.kv.get(key.clone()).await else {
        return false;
    };
    // Empty: claimed by another survivor, which publishes it.
    if entry.value.is_empty() {
        return false;
    }
    let claimed = records
        .kv
        .claim(key.clone(), Bytes::new(), entry.revision)
        .await;
    if !matches!(claimed, Ok(true)) {
        return false;
    }
    let Ok(record) = envelope::decode_owned::<Disconnect>(&entry.value) else {
        let _ = records.kv.delete(key).await;
        return false;
    };
    let subject = node.subjects.disconnect(&record.socket.ns);
    node.publish(subject, entry.value).await;
    node.metrics.sockets_reaped.inc();
    let _ = records.kv.delete(key).await;
    true
}
