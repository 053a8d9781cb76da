//! This gateway's sockets as the workers know them, kept in JetStream KV
//! while connection state recovery is on over NATS: bucket
//! `<prefix>_sockets`, key `<gateway>.<socket>`, value the socket's
//! `P.disc` envelope (reason transport close), written as the socket
//! changes (connect, rooms, data) and removed when it leaves. When a
//! gateway dies (its heartbeats stop, or it was gone before this one
//! started), every surviving gateway goes through its records, and for
//! each the one that claims it first (a write that expects the record's
//! revision) publishes its disconnect: the workers hear once that each of
//! the dead gateway's sockets left.
//!
//! A second bucket, `<prefix>_parked`, says which gateway keeps a parked
//! socket, by pid (each value lives the recovery window and a minute):
//! a client that comes back to a gateway that knows nothing of its pid
//! (its socket moved through gateways that have since restarted) is
//! recovered from there.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use sio_bus::{Bus, Kv, KvConfig};
use sio_protocol::envelope::{self, Disconnect, DisconnectReason, Presence};
use sio_protocol::id::{GatewayId, Pid, SocketId};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::config::{Config, ms};
use crate::node::Node;
use crate::socket::Socket;

/// Writers, each in the order it is given records: a key always goes to
/// the same one, so its writes land in order.
const LANES: usize = 16;
/// Records waiting per writer; past it, the newest is dropped (counted).
const QUEUE: usize = 4096;

#[derive(Debug)]
pub(crate) struct Durable {
    kv: Arc<dyn Kv>,
    parked: Arc<dyn Kv>,
    lanes: Vec<mpsc::Sender<(String, Option<Bytes>)>>,
    hasher: RandomState,
}

/// Why the records cannot be kept.
#[derive(Debug, thiserror::Error)]
#[error(
    "connection state recovery over NATS keeps its state in JetStream, which {0}; run nats-server with JetStream (-js, or a jetstream block in its config)"
)]
pub struct NoJetStream(String);

impl Durable {
    /// The records' bucket, made if missing; `None` unless connection
    /// state recovery is on over NATS (the in-process bus has no durable
    /// layer, and needs none).
    pub(crate) async fn open(
        bus: &Arc<dyn Bus>,
        config: &Config,
        errors: prometheus_client::metrics::counter::Counter,
    ) -> Result<Option<Self>, NoJetStream> {
        if !config.connection_state_recovery {
            return Ok(None);
        }
        let prefix = config.prefix.replace('.', "_");
        let sockets = KvConfig {
            bucket: format!("{prefix}_sockets"),
            replicas: config.jetstream_replicas,
            max_age: None,
        };
        let Some(kv) = bucket(bus, sockets).await? else {
            return Ok(None);
        };
        let parked = KvConfig {
            bucket: format!("{prefix}_parked"),
            replicas: config.jetstream_replicas,
            max_age: Some(ms(config.max_disconnection_duration) + Duration::from_secs(60)),
        };
        let Some(parked) = bucket(bus, parked).await? else {
            return Ok(None);
        };
        let lanes = (0..LANES)
            .map(|_| {
                let (tx, mut rx) = mpsc::channel::<(String, Option<Bytes>)>(QUEUE);
                let (kv, errors) = (kv.clone(), errors.clone());
                tokio::spawn(async move {
                    while let Some((key, value)) = rx.recv().await {
                        let written = match value {
                            Some(value) => kv.put(key, value).await.map(|_| ()),
                            None => kv.delete(key).await,
                        };
                        if let Err(error) = written {
                            tracing::warn!(%error, "cannot write a socket's record");
                            errors.inc();
                        }
                    }
                });
                tx
            })
            .collect();
        Ok(Some(Self {
            kv,
            parked,
            lanes,
            hasher: RandomState::new(),
        }))
    }

    fn send(&self, key: String, value: Option<Bytes>) -> bool {
        let lane = self.hasher.hash_one(&key) as usize % LANES;
        self.lanes
            .get(lane)
            .is_some_and(|lane| lane.try_send((key, value)).is_ok())
    }

    /// This gateway keeps the parked socket `pid` names.
    pub(crate) fn parked(&self, gateway: GatewayId, pid: Pid) {
        let parked = self.parked.clone();
        let value = Bytes::copy_from_slice(gateway.as_bytes());
        tokio::spawn(async move {
            if let Err(error) = parked.put(pid.to_string(), value).await {
                tracing::warn!(%error, "cannot note a parked socket");
            }
        });
    }

    /// The gateway that keeps the parked socket `pid` names, if noted.
    pub(crate) async fn keeper(&self, pid: Pid) -> Option<GatewayId> {
        let got = tokio::time::timeout(Duration::from_secs(1), self.parked.get(pid.to_string()));
        let entry = got.await.ok()?.ok()??;
        let bytes: [u8; 8] = entry.value.as_ref().try_into().ok()?;
        Some(GatewayId::from_bytes(bytes))
    }

    /// Writes the record of `socket` as it is now; false if it had to be
    /// dropped.
    pub(crate) fn keep(&self, gateway: GatewayId, socket: &Socket) -> bool {
        match socket.disconnect(DisconnectReason::TransportClose) {
            Ok(record) => self.send(key(gateway, &socket.id), Some(record.into())),
            Err(_) => false,
        }
    }

    /// Removes the record of socket `id`.
    pub(crate) fn forget(&self, gateway: GatewayId, id: &SocketId) -> bool {
        self.send(key(gateway, id), None)
    }
}

/// Opens a bucket; `None` on the in-process bus.
async fn bucket(bus: &Arc<dyn Bus>, config: KvConfig) -> Result<Option<Arc<dyn Kv>>, NoJetStream> {
    let opened = tokio::time::timeout(Duration::from_secs(10), bus.key_value(config)).await;
    match opened {
        Ok(Ok(kv)) => Ok(Some(kv)),
        // Embedded: nothing outlives the process anyway.
        Ok(Err(sio_bus::Error::NotDurable)) => Ok(None),
        Ok(Err(error)) => Err(NoJetStream(format!("failed: {error}"))),
        Err(_) => Err(NoJetStream("did not answer in 10 s".into())),
    }
}

fn key(gateway: GatewayId, socket: &SocketId) -> String {
    format!("{gateway}.{socket}")
}

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
        // Three of its own intervals after it started, this gateway has
        // heard every live one: records of any other are a dead one's.
        let sweep = !swept && started.elapsed() >= own * 3;
        if dead.is_empty() && !sweep {
            continue;
        }
        swept = true;
        let live: Vec<GatewayId> = heard.keys().copied().chain([n.id]).collect();
        tokio::spawn(reap(n, dead, sweep.then_some(live)));
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
