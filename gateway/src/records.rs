//! This gateway's sockets as the workers know them, kept in JetStream KV
//! over NATS ([`Records`]): bucket `<prefix>_sockets`, key
//! `<gateway>.<pid>` (`<gateway>.<socket id>` without connection state
//! recovery), value the socket's `P.disc` envelope (reason transport
//! close), written as the socket changes (connect, rooms, data) and
//! removed when it leaves. When a gateway dies, the survivors disconnect
//! its sockets at the workers, each once ([`crate::presence`]): at once,
//! or with recovery once the window ends, its clients having had the
//! window to come back elsewhere with their pids and be recovered from
//! these records and the stream of emits ([`crate::history`]).
//!
//! With recovery ([`Durable`]), a second bucket, `<prefix>_parked`, says
//! which gateway keeps a parked socket, or one that came to it live (a
//! hand-over, a recovery), by pid (each value lives the recovery window
//! and a minute): a client that comes back to a gateway that knows
//! nothing of its pid (its socket moved through gateways that have since
//! restarted) is recovered from there.

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

/// The writers (see [`LANES`]); clones share them.
#[derive(Debug, Clone)]
struct Lanes {
    lanes: Vec<mpsc::Sender<Write>>,
    hasher: RandomState,
}

impl Lanes {
    fn start(errors: prometheus_client::metrics::counter::Counter) -> Self {
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
        Self {
            lanes,
            hasher: RandomState::new(),
        }
    }

    fn send(&self, kv: &Arc<dyn Kv>, key: String, value: Option<Bytes>) -> bool {
        let lane = self.hasher.hash_one(&key) as usize % LANES;
        self.lanes
            .get(lane)
            .is_some_and(|lane| lane.try_send(Write::Key(kv.clone(), key, value)).is_ok())
    }
}

/// The sockets' records (see the module's doc).
#[derive(Debug)]
pub(crate) struct Records {
    pub(crate) kv: Arc<dyn Kv>,
    lanes: Lanes,
}

/// Why the records cannot be kept.
#[derive(Debug, thiserror::Error)]
#[error(
    "connection state recovery over NATS keeps its state in JetStream, which {0}; run nats-server with JetStream (-js, or a jetstream block in its config)"
)]
pub struct NoJetStream(String);

impl Records {
    /// The records' bucket, made if missing; `None` on the in-process bus
    /// (nothing outlives the process, and nothing needs to).
    pub(crate) async fn open(
        bus: &Arc<dyn Bus>,
        config: &Config,
        errors: prometheus_client::metrics::counter::Counter,
    ) -> Result<Option<Self>, NoJetStream> {
        let sockets = KvConfig {
            bucket: format!("{}_sockets", config.prefix.replace('.', "_")),
            replicas: config.jetstream_replicas,
            max_age: None,
        };
        let Some(kv) = bucket(bus, sockets).await? else {
            return Ok(None);
        };
        Ok(Some(Self {
            kv,
            lanes: Lanes::start(errors),
        }))
    }

    /// Resolves once every write queued so far is made (at most 2 s): a
    /// gateway about to exit leaves no record behind that a survivor
    /// would disconnect a second time.
    pub(crate) async fn flush(&self) {
        let mut done = Vec::with_capacity(LANES);
        for lane in &self.lanes.lanes {
            let (tx, rx) = tokio::sync::oneshot::channel();
            if lane.send(Write::Flush(tx)).await.is_ok() {
                done.push(rx);
            }
        }
        let all = futures_util::future::join_all(done);
        let _ = tokio::time::timeout(Duration::from_secs(2), all).await;
    }

    /// Writes the record of `socket` as it is now; false if it had to be
    /// dropped.
    pub(crate) fn keep(&self, gateway: GatewayId, socket: &Socket) -> bool {
        match socket.disconnect(DisconnectReason::TransportClose) {
            Ok(record) => self
                .lanes
                .send(&self.kv, of(gateway, socket), Some(record.into())),
            Err(_) => false,
        }
    }

    /// Removes the record of `socket`.
    pub(crate) fn forget(&self, gateway: GatewayId, socket: &Socket) -> bool {
        self.lanes.send(&self.kv, of(gateway, socket), None)
    }
}

/// What connection state recovery over NATS keeps besides the records.
#[derive(Debug)]
pub(crate) struct Durable {
    parked: Arc<dyn Kv>,
    /// Every emit, for the window (stream `<prefix>_emits`).
    pub(crate) emits: Arc<dyn Stream>,
    lanes: Lanes,
}

impl Durable {
    /// The parked sockets' bucket and the emits' stream, made if missing,
    /// beside `records` (with connection state recovery); `None` on the
    /// in-process bus.
    pub(crate) async fn open(
        bus: &Arc<dyn Bus>,
        config: &Config,
        records: &Records,
    ) -> Result<Option<Self>, NoJetStream> {
        let prefix = config.prefix.replace('.', "_");
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
        Ok(Some(Self {
            parked,
            emits,
            lanes: records.lanes.clone(),
        }))
    }

    /// Notes that this gateway keeps the socket `pid` names (parked here,
    /// or come here live from another); false if it had to be dropped.
    pub(crate) fn parked(&self, gateway: GatewayId, pid: Pid) -> bool {
        let value = Bytes::copy_from_slice(gateway.as_bytes());
        self.lanes.send(&self.parked, pid.to_string(), Some(value))
    }

    /// The gateway that keeps the parked socket `pid` names, if noted.
    pub(crate) async fn keeper(&self, pid: Pid) -> Option<GatewayId> {
        let got = tokio::time::timeout(Duration::from_secs(1), self.parked.get(pid.to_string()));
        let entry = got.await.ok()?.ok()??;
        let bytes: [u8; 8] = entry.value.as_ref().try_into().ok()?;
        Some(GatewayId::from_bytes(bytes))
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

/// The key of `socket`'s record on `gateway`: by its pid if it has one
/// (its client may come back with it), else by its id.
fn of(gateway: GatewayId, socket: &Socket) -> String {
    match socket.pid {
        Some(pid) => key(gateway, pid),
        None => format!("{gateway}.{}", socket.id),
    }
}
