//! The NATS bus, over async-nats. The client reconnects with backoff on
//! its own; [`Bus::state`] reports the connection so gateways can say
//! "not ready" meanwhile.

use std::path::PathBuf;
use std::time::Duration;

use async_nats::{ConnectOptions, ServerAddr};
use bytes::Bytes;
use futures_util::future::BoxFuture;

use std::sync::Arc;

use crate::{
    Bus, Error, Keep, Kv, KvConfig, KvEntry, Operation, Replay, State, Stream, StreamConfig,
    Subscription,
};

/// The pause before each reconnect attempt grows by this much…
const RECONNECT_STEP: Duration = Duration::from_millis(250);
/// …up to this.
const RECONNECT_MAX: Duration = Duration::from_secs(2);

/// How to reach and authenticate to NATS.
#[derive(Debug, Clone, Default)]
pub struct NatsOptions {
    /// Server URLs (`nats://host:4222`, `tls://…`); the client picks one
    /// and fails over to the others.
    pub urls: Vec<String>,
    /// Connection name shown by the server's monitoring.
    pub name: Option<String>,
    pub token: Option<String>,
    pub user: Option<String>,
    pub password: Option<String>,
    /// An nkey seed (`SU…`).
    pub nkey: Option<String>,
    /// A `.creds` file (JWT + nkey seed).
    pub credentials: Option<PathBuf>,
    /// Require TLS even for `nats://` URLs.
    pub tls: bool,
    /// Extra root certificates (PEM) to trust.
    pub tls_ca: Option<PathBuf>,
    /// Client certificate and key (PEM) for mutual TLS.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
}

/// A bus over a NATS connection. Clones share the connection.
#[derive(Debug, Clone)]
pub struct NatsBus {
    client: async_nats::Client,
    /// For [`Bus::publish_kept`], whose answers wait [`KEPT_ATTEMPT`].
    jetstream: async_nats::jetstream::Context,
    kept: Arc<Kept>,
}

/// Whether the stream [`Bus::publish_kept`] was last asked about exists,
/// and until when that answer holds.
#[derive(Debug, Default)]
struct Kept(std::sync::Mutex<Option<(String, bool, tokio::time::Instant)>>);

impl Kept {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(String, bool, tokio::time::Instant)>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// How long one stored publish may wait for the stream's answer before
/// it is sent again.
const KEPT_ATTEMPT: Duration = Duration::from_secs(2);
/// The pause before a stored publish that failed is sent again.
const KEPT_RETRY: Duration = Duration::from_millis(100);
/// How long an answer to whether a stream exists holds.
const KEPT_RECHECK: Duration = Duration::from_secs(5);

impl NatsBus {
    /// Starts connecting. Returns at once even if no server is reachable
    /// yet: the client keeps retrying with backoff and [`Bus::state`] says
    /// when it is up.
    pub async fn connect(options: &NatsOptions) -> Result<Self, Error> {
        let addrs = options
            .urls
            .iter()
            .map(|u| {
                u.parse::<ServerAddr>().map_err(|source| Error::Url {
                    url: u.clone(),
                    source,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if addrs.is_empty() {
            return Err(Error::NoUrl);
        }
        // Back within 2 s of a restarted server: gateways trust a "no
        // responders" only once workers had the time to come back too.
        let mut opts = ConnectOptions::new()
            .retry_on_initial_connect()
            .reconnect_delay_callback(|attempts| {
                let steps = u32::try_from(attempts.saturating_sub(1)).unwrap_or(u32::MAX);
                RECONNECT_STEP.saturating_mul(steps).min(RECONNECT_MAX)
            });
        if let Some(name) = &options.name {
            opts = opts.name(name);
        }
        if let Some(token) = &options.token {
            opts = opts.token(token.clone());
        }
        if let (Some(user), Some(password)) = (&options.user, &options.password) {
            opts = opts.user_and_password(user.clone(), password.clone());
        }
        if let Some(seed) = &options.nkey {
            opts = opts.nkey(seed.clone());
        }
        if let Some(path) = &options.credentials {
            opts = opts
                .credentials_file(path)
                .await
                .map_err(|source| Error::Credentials {
                    path: path.clone(),
                    source,
                })?;
        }
        if options.tls {
            opts = opts.require_tls(true);
        }
        if let Some(ca) = &options.tls_ca {
            opts = opts.add_root_certificates(ca.clone());
        }
        if let (Some(cert), Some(key)) = (&options.tls_cert, &options.tls_key) {
            opts = opts.add_client_certificate(cert.clone(), key.clone());
        }
        let client = opts
            .connect(addrs)
            .await
            .map_err(nats(Operation::Connect))?;
        let mut jetstream = async_nats::jetstream::new(client.clone());
        jetstream.set_timeout(KEPT_ATTEMPT);
        Ok(Self {
            client,
            jetstream,
            kept: Arc::default(),
        })
    }

    /// The underlying client, for what the trait does not cover.
    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }
}

/// Wraps an error of the NATS client, for `map_err`.
fn nats<E>(operation: Operation) -> impl FnOnce(E) -> Error
where
    E: std::error::Error + Send + Sync + 'static,
{
    move |source| Error::Nats {
        operation,
        source: Box::new(source),
    }
}

impl Bus for NatsBus {
    fn key_value(&self, config: KvConfig) -> BoxFuture<'_, Result<Arc<dyn Kv>, Error>> {
        Box::pin(self.open_kv(config))
    }

    fn stream(&self, config: StreamConfig) -> BoxFuture<'_, Result<Arc<dyn Stream>, Error>> {
        Box::pin(self.open_stream(config))
    }

    fn publish(&self, subject: String, payload: Bytes) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(async move {
            self.client
                .publish(subject, payload)
                .await
                .map_err(nats(Operation::Publish))
        })
    }

    fn publish_kept(
        &self,
        subject: String,
        payload: Bytes,
        keep: Keep,
    ) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(self.store(subject, payload, keep))
    }

    fn publish_with_reply(
        &self,
        subject: String,
        reply: String,
        payload: Bytes,
    ) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(async move {
            self.client
                .publish_with_reply(subject, reply, payload)
                .await
                .map_err(nats(Operation::Publish))
        })
    }

    fn subscribe(&self, subject: String) -> BoxFuture<'_, Result<Subscription, Error>> {
        Box::pin(async move {
            let sub = self
                .client
                .subscribe(subject)
                .await
                .map_err(nats(Operation::Subscribe))?;
            Ok(Subscription::nats(sub))
        })
    }

    fn queue_subscribe(
        &self,
        subject: String,
        group: String,
    ) -> BoxFuture<'_, Result<Subscription, Error>> {
        Box::pin(async move {
            let sub = self
                .client
                .queue_subscribe(subject, group)
                .await
                .map_err(nats(Operation::Subscribe))?;
            Ok(Subscription::nats(sub))
        })
    }

    fn request(
        &self,
        subject: String,
        payload: Bytes,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<Bytes, Error>> {
        use async_nats::RequestErrorKind as Kind;
        Box::pin(async move {
            let request = async_nats::Request::new()
                .payload(payload)
                .timeout(Some(timeout));
            match self.client.send_request(subject.clone(), request).await {
                Ok(m) => Ok(m.payload),
                Err(e) => Err(match e.kind() {
                    Kind::NoResponders => Error::NoResponders(subject),
                    Kind::TimedOut => Error::Timeout(timeout),
                    Kind::Other => nats(Operation::Request)(e),
                }),
            }
        })
    }

    fn new_inbox(&self) -> String {
        self.client.new_inbox()
    }

    /// A round trip through the server: the client's own flush only
    /// empties its write buffer, so a subscription could still be unknown
    /// to the server (and to other connections) when it returns. The
    /// server handles one connection's commands in order, so once a
    /// message to our own inbox comes back, everything before it is in.
    fn flush(&self) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(async move {
            let inbox = self.client.new_inbox();
            let mut echo = self.subscribe(inbox.clone()).await?;
            self.client
                .publish(inbox, Bytes::new())
                .await
                .map_err(nats(Operation::Publish))?;
            self.client.flush().await.map_err(nats(Operation::Flush))?;
            echo.next_within(Duration::from_secs(10)).await.map(drop)
        })
    }

    fn state(&self) -> State {
        match self.client.connection_state() {
            async_nats::connection::State::Connected => State::Connected,
            _ => State::Disconnected,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    fn options(urls: &[&str]) -> NatsOptions {
        NatsOptions {
            urls: urls.iter().map(|u| (*u).to_owned()).collect(),
            ..NatsOptions::default()
        }
    }

    #[tokio::test]
    async fn a_bad_url_keeps_the_parse_error_as_source() {
        let result = NatsBus::connect(&options(&["nats://[::1"])).await;
        let Err(error @ Error::Url { .. }) = result else {
            panic!("not a URL error: {result:?}");
        };
        let source = error.source().map(ToString::to_string);
        assert!(source.is_some(), "{error:?}");
        assert!(error.to_string().starts_with("NATS URL \"nats://[::1\": "));
    }

    #[tokio::test]
    async fn missing_credentials_keep_the_io_error_as_source() {
        let mut options = options(&["nats://127.0.0.1:1"]);
        options.credentials = Some("/nonexistent/sio.creds".into());
        let result = NatsBus::connect(&options).await;
        let Err(Error::Credentials { path, source }) = result else {
            panic!("not a credentials error: {result:?}");
        };
        assert_eq!(path, PathBuf::from("/nonexistent/sio.creds"));
        // async-nats reports the failed read as an error of its own.
        assert!(source.to_string().contains("sio.creds"), "{source}");
    }

    #[tokio::test]
    async fn no_url_is_an_error() {
        let result = NatsBus::connect(&options(&[])).await;
        assert!(matches!(result, Err(Error::NoUrl)), "{result:?}");
    }
}

/// A JetStream key-value bucket.
#[derive(Debug)]
struct NatsKv(async_nats::jetstream::kv::Store);

fn kv_error<E: std::fmt::Display>(e: E) -> Error {
    Error::Nats {
        operation: Operation::KeyValue,
        source: e.to_string().into(),
    }
}

impl NatsBus {
    async fn open_kv(&self, config: KvConfig) -> Result<Arc<dyn Kv>, Error> {
        use async_nats::jetstream::kv;
        let js = async_nats::jetstream::new(self.client.clone());
        if let Ok(store) = js.get_key_value(config.bucket.clone()).await {
            return Ok(Arc::new(NatsKv(store)));
        }
        let bucket = kv::Config {
            bucket: config.bucket,
            history: 1,
            num_replicas: config.replicas,
            max_age: config.max_age.unwrap_or_default(),
            ..Default::default()
        };
        match js.create_key_value(bucket).await {
            Ok(store) => Ok(Arc::new(NatsKv(store))),
            Err(e) => Err(Error::NoJetStream(e.to_string())),
        }
    }
}

impl Kv for NatsKv {
    fn put(&self, key: String, value: Bytes) -> BoxFuture<'_, Result<u64, Error>> {
        Box::pin(async move { self.0.put(key, value).await.map_err(kv_error) })
    }

    fn delete(&self, key: String) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(async move { self.0.delete(key).await.map_err(kv_error) })
    }

    fn get(&self, key: String) -> BoxFuture<'_, Result<Option<KvEntry>, Error>> {
        Box::pin(async move {
            use async_nats::jetstream::kv::Operation as Op;
            let entry = self.0.entry(key).await.map_err(kv_error)?;
            Ok(entry.filter(|e| e.operation == Op::Put).map(|e| KvEntry {
                value: e.value,
                revision: e.revision,
            }))
        })
    }

    fn claim(
        &self,
        key: String,
        value: Bytes,
        revision: u64,
    ) -> BoxFuture<'_, Result<bool, Error>> {
        Box::pin(async move {
            use async_nats::jetstream::kv::UpdateErrorKind;
            match self.0.update(key, value, revision).await {
                Ok(_) => Ok(true),
                Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => Ok(false),
                Err(e) => Err(kv_error(e)),
            }
        })
    }

    fn keys(&self, prefix: String) -> BoxFuture<'_, Result<Vec<String>, Error>> {
        Box::pin(async move {
            use futures_util::TryStreamExt as _;
            let keys = self.0.keys().await.map_err(kv_error)?;
            let keys: Vec<String> = keys.try_collect().await.map_err(kv_error)?;
            Ok(keys
                .into_iter()
                .filter(|k| k.starts_with(&prefix))
                .collect())
        })
    }
}

/// A JetStream stream.
#[derive(Debug)]
struct NatsStream(async_nats::jetstream::stream::Stream);

impl NatsBus {
    /// [`Bus::publish_kept`]: a JetStream publish with the id as its
    /// `Nats-Msg-Id`, sent again until the stream says it has it. Only to
    /// a stream known to exist: without one, the subject's subscribers
    /// would take the publish and nobody would answer it.
    async fn store(&self, subject: String, payload: Bytes, keep: Keep) -> Result<(), Error> {
        use async_nats::jetstream::message::PublishMessage;
        if !self.keeps(&keep.stream).await {
            return self.publish(subject, payload).await;
        }
        let deadline = tokio::time::Instant::now() + keep.within;
        loop {
            let publish = PublishMessage::build()
                .payload(payload.clone())
                .message_id(&keep.id);
            let stored = match self.jetstream.send_publish(subject.clone(), publish).await {
                Ok(ack) => ack.await.map(drop),
                Err(e) => Err(e),
            };
            match stored {
                Ok(()) => return Ok(()),
                Err(e) if tokio::time::Instant::now() + KEPT_RETRY >= deadline => {
                    return Err(nats(Operation::Publish)(e));
                }
                // Away, or back and not serving the stream yet.
                Err(_) => tokio::time::sleep(KEPT_RETRY).await,
            }
        }
    }

    /// Whether `stream` exists, as last heard (asked again every few
    /// seconds, by one caller at a time; a question the server cannot
    /// answer now keeps the last answer). Per emit: no allocation unless
    /// it asks.
    async fn keeps(&self, stream: &str) -> bool {
        use async_nats::jetstream::context::{GetStreamErrorKind, RequestErrorKind};
        let now = tokio::time::Instant::now();
        let known = match self.kept.lock().as_mut() {
            Some((name, exists, until)) if name == stream && now < *until => return *exists,
            // This caller asks again; the others go on with the last
            // answer meanwhile.
            Some((name, exists, until)) if name == stream => {
                *until = now + KEPT_RECHECK;
                Some(*exists)
            }
            _ => None,
        };
        let heard = match self.jetstream.get_stream(stream).await {
            Ok(_) => Some(true),
            Err(e) => match e.kind() {
                GetStreamErrorKind::JetStream(_) => Some(false),
                GetStreamErrorKind::Request => {
                    let source = std::error::Error::source(&e);
                    let request = source.and_then(|s| {
                        s.downcast_ref::<async_nats::jetstream::context::RequestError>()
                    });
                    // No JetStream at all.
                    request
                        .filter(|r| r.kind() == RequestErrorKind::NoResponders)
                        .map(|_| false)
                }
                _ => Some(false),
            },
        };
        let exists = heard.or(known).unwrap_or(false);
        *self.kept.lock() = Some((stream.to_owned(), exists, now + KEPT_RECHECK));
        exists
    }

    async fn open_stream(&self, config: StreamConfig) -> Result<Arc<dyn Stream>, Error> {
        use async_nats::jetstream::stream;
        let js = async_nats::jetstream::new(self.client.clone());
        let name = config.name.clone();
        // Updated when it exists: a changed window or bound applies.
        let made = js
            .create_or_update_stream(stream::Config {
                name: config.name,
                subjects: config.subjects,
                num_replicas: config.replicas,
                max_age: config.max_age,
                max_bytes: i64::try_from(config.max_bytes).unwrap_or(i64::MAX),
                discard: stream::DiscardPolicy::Old,
                storage: stream::StorageType::File,
                // A publish with a reply subject is answered once stored
                // (`Bus::publish_kept`); no request is sent on these
                // subjects.
                no_ack: false,
                ..Default::default()
            })
            .await;
        let made = match made {
            Ok(_) => js.get_stream(name).await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match made {
            Ok(stream) => Ok(Arc::new(NatsStream(stream))),
            Err(e) => Err(Error::NoJetStream(e.to_string())),
        }
    }
}

fn stream_error<E: std::fmt::Display>(e: E) -> Error {
    Error::Nats {
        operation: Operation::Stream,
        source: e.to_string().into(),
    }
}

impl Stream for NatsStream {
    fn replay(
        &self,
        subjects: Vec<String>,
        since: std::time::SystemTime,
    ) -> BoxFuture<'_, Result<Replay, Error>> {
        Box::pin(async move {
            use async_nats::jetstream::consumer::{DeliverPolicy, pull::OrderedConfig};
            use futures_util::StreamExt as _;
            let nanos = since
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i128::try_from(d.as_nanos()).unwrap_or(i128::MAX));
            let start_time =
                time::OffsetDateTime::from_unix_timestamp_nanos(nanos).map_err(stream_error)?;
            let consumer = self
                .0
                .create_consumer(OrderedConfig {
                    filter_subjects: subjects,
                    deliver_policy: DeliverPolicy::ByStartTime { start_time },
                    ..Default::default()
                })
                .await
                .map_err(stream_error)?;
            let messages = consumer.messages().await.map_err(stream_error)?;
            let replay = messages.map(|m| {
                m.map(|m| crate::Message {
                    subject: m.subject.to_string(),
                    reply: None,
                    payload: m.payload.clone(),
                    no_responders: false,
                })
                .map_err(stream_error)
            });
            Ok(replay.boxed())
        })
    }
}
