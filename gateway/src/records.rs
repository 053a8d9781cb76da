//! This gateway's sockets as the workers know them, kept in JetStream KV
//! while connection state recovery is on over NATS: bucket
//! `<prefix>_sockets`, key `<gateway>.<pid>`, value the socket's `P.disc`
//! envelope (reason transport close), written as the socket changes
//! (connect, rooms, data) and removed when it leaves. When a gateway dies,
//! its clients come back elsewhere with their pids and are recovered from
//! these records and the stream of emits ([`crate::history`]); the
//! survivors disconnect the rest at the workers once the recovery window
//! ends, each once ([`crate::presence`]).
//!
//! A second bucket, `<prefix>_parked`, says which gateway keeps a parked
//! socket, or one that came to it live (a hand-over, a recovery), by pid
//! (each value lives the recovery window and a minute):
//! a client that comes back to a gateway that knows nothing of its pid
//! (its socket moved through gateways that have since restarted) is
//! recovered from there.

use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use sio_bus::{Bus, Kv, KvConfig, Stream, StreamConfig};
use sio_protocol::envelope::DisconnectReason;
use sio_protocol::id::{GatewayId, Pid};
use sio_protocol::subject::Subjects;
use tokio::sync::mpsc;

use crate::config::{Config, ms};
use crate::socket::Socket;

/// Writers, each in the order it is given records: a key always goes to
/// the same one, so its writes land in order.
const LANES: usize = 16;
/// Records waiting per writer; past it, the newest is dropped (counted).
const QUEUE: usize = 4096;

/// What a lane does: write to a bucket (a value, or `None`: delete the
/// key), or say when everything before is written.
enum Write {
    Key(Arc<dyn Kv>, String, Option<Bytes>),
    Flush(tokio::sync::oneshot::Sender<()>),
}

impl std::fmt::Debug for Write {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Key(_, key, value) => write!(f, "Key({key}, {})", value.is_some()),
            Self::Flush(_) => f.write_str("Flush"),
        }
    }
}

#[derive(Debug)]
pub(crate) struct Durable {
    pub(crate) kv: Arc<dyn Kv>,
    parked: Arc<dyn Kv>,
    /// Every emit, for the window (stream `<prefix>_emits`).
    pub(crate) emits: Arc<dyn Stream>,
    lanes: Vec<mpsc::Sender<Write>>,
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
        let subjects = Subjects::new(&config.prefix).map_err(|e| NoJetStream(e.to_string()))?;
        let emits = StreamConfig {
            name: subjects.emits_stream(),
            subjects: subjects.emits(),
            replicas: config.jetstream_replicas,
            max_age: ms(config.max_disconnection_duration) + Duration::from_secs(10),
            max_bytes: config.jetstream_max_bytes,
        };
        let opened = tokio::time::timeout(Duration::from_secs(10), bus.stream(emits)).await;
        let emits = match opened {
            Ok(Ok(stream)) => stream,
            Ok(Err(error)) => return Err(NoJetStream(format!("failed: {error}"))),
            Err(_) => return Err(NoJetStream("did not answer in 10 s".into())),
        };
        let lanes = (0..LANES)
            .map(|_| {
                let (tx, mut rx) = mpsc::channel::<Write>(QUEUE);
                let errors = errors.clone();
                tokio::spawn(async move {
                    while let Some(write) = rx.recv().await {
                        let (kv, key, value) = match write {
                            Write::Key(kv, key, value) => (kv, key, value),
                            Write::Flush(done) => {
                                let _ = done.send(());
                                continue;
                            }
                        };
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
            emits,
            lanes,
            hasher: RandomState::new(),
        }))
    }

    fn send(&self, kv: &Arc<dyn Kv>, key: String, value: Option<Bytes>) -> bool {
        let lane = self.hasher.hash_one(&key) as usize % LANES;
        self.lanes
            .get(lane)
            .is_some_and(|lane| lane.try_send(Write::Key(kv.clone(), key, value)).is_ok())
    }

    /// Resolves once every write queued so far is made (at most 2 s): a
    /// gateway about to exit leaves no record behind that a survivor
    /// would disconnect a second time.
    pub(crate) async fn flush(&self) {
        let mut done = Vec::with_capacity(LANES);
        for lane in &self.lanes {
            let (tx, rx) = tokio::sync::oneshot::channel();
            if lane.send(Write::Flush(tx)).await.is_ok() {
                done.push(rx);
            }
        }
        let all = futures_util::future::join_all(done);
        let _ = tokio::time::timeout(Duration::from_secs(2), all).await;
    }

    /// Notes that this gateway keeps the socket `pid` names (parked here,
    /// or come here live from another); false if it had to be dropped.
    pub(crate) fn parked(&self, gateway: GatewayId, pid: Pid) -> bool {
        let value = Bytes::copy_from_slice(gateway.as_bytes());
        self.send(&self.parked, pid.to_string(), Some(value))
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
        let Some(key) = socket.pid.map(|pid| key(gateway, pid)) else {
            return true;
        };
        match socket.disconnect(DisconnectReason::TransportClose) {
            Ok(record) => self.send(&self.kv, key, Some(record.into())),
            Err(_) => false,
        }
    }

    /// Removes the record of `socket`.
    pub(crate) fn forget(&self, gateway: GatewayId, socket: &Socket) -> bool {
        match socket.pid {
            Some(pid) => self.send(&self.kv, key(gateway, pid), None),
            None => true,
        }
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

/// The key of the record of the socket `pid` names on `gateway`.
pub(crate) fn key(gateway: GatewayId, pid: Pid) -> String {
    format!("{gateway}.{pid}")
}
