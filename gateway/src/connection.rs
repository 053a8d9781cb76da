//! Accepted TCP connections: counted, capped, and bounded in time until
//! they are useful, so that idle or slow clients cannot hold the gateway's
//! descriptors.
//!
//! Each connection has one deadline, set by where it stands: a request's
//! headers must arrive within `--header-timeout` of the connection opening
//! (or of the first byte after an idle spell); a request being served and
//! a keep-alive connection between requests get `--idle-timeout`, which is
//! longer than pingInterval + pingTimeout so that polling clients are
//! never cut between requests; a websocket is bounded by its heartbeat
//! instead. Past its deadline the connection is dropped. Over
//! `--max-tcp-connections` a new connection is closed at once, and failed
//! accepts (the descriptor limit) are counted and logged, rate-limited.

use std::future::poll_fn;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::metrics::gauge::Gauge;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;
use tower::ServiceExt as _;

use crate::address::Slot;
use crate::metrics::ListenerLabel;
use crate::node::Node;

/// Where a connection stands.
const HEADERS: u8 = 0;
const IDLE: u8 = 1;
const SERVING: u8 = 2;
const UPGRADED: u8 = 3;

/// Linux's "too many open files", for the process and for the system.
const EMFILE: i32 = 24;
const ENFILE: i32 = 23;

/// One connection's phase and deadline (milliseconds of the gateway's
/// clock; 0 for none).
#[derive(Debug)]
struct Watch {
    phase: AtomicU8,
    deadline: AtomicU64,
}

impl Watch {
    fn set(&self, phase: u8, deadline: u64) {
        self.phase.store(phase, Ordering::Relaxed);
        self.deadline.store(deadline, Ordering::Relaxed);
    }
}

/// The connection's stream: notices the first byte of a request after an
/// idle spell, and keeps the connection counted for as long as it lives
/// (a websocket keeps it after the HTTP part is done).
#[derive(Debug)]
struct Watched {
    tcp: TcpStream,
    watch: Arc<Watch>,
    node: Arc<Node>,
    open: Gauge,
    /// Counted for its client address, if the listener counts them.
    _address: Option<Slot>,
}

impl Drop for Watched {
    fn drop(&mut self) {
        self.open.dec();
    }
}

/// A listener's name (its metrics label) and its connection cap.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Listener {
    pub(crate) name: &'static str,
    pub(crate) cap: usize,
    /// Whether connections count against the per-address limits.
    pub(crate) per_address: bool,
}

/// Descriptors kept free of client connections: the operations
/// listener's connections, the bus, the listeners, log files.
const RESERVE: u64 = 256;

/// Connections the operations listener takes at most.
pub(crate) const OPS: Listener = Listener {
    name: "ops",
    cap: 64,
    per_address: false,
};

/// The client listener, its cap kept [`RESERVE`] below the descriptor
/// limit so that the operations endpoints and the bus still get
/// descriptors when clients have taken all they may.
pub(crate) fn clients(config: &crate::config::Config) -> Listener {
    let max_tcp_connections = config.max_tcp_connections;
    let limit = rlimit::getrlimit(rlimit::Resource::NOFILE)
        .map(|(soft, _)| usize::try_from(soft.saturating_sub(RESERVE)).unwrap_or(usize::MAX))
        .unwrap_or(usize::MAX);
    let cap = max_tcp_connections.min(limit);
    if cap < max_tcp_connections {
        tracing::info!(
            cap,
            "client connections capped below the descriptor limit (--max-tcp-connections {max_tcp_connections})"
        );
    }
    Listener {
        name: "clients",
        cap,
        // Behind a trusted proxy every peer is the proxy: the handshake
        // counts the address it reports instead.
        per_address: !config.trust_proxy && !config.per_address().off(),
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let read = Pin::new(&mut this.tcp).poll_read(cx, buf);
        if buf.filled().len() > before && this.watch.phase.load(Ordering::Relaxed) == IDLE {
            let header_timeout = this.node.config.header_timeout;
            this.watch
                .set(HEADERS, this.node.now().saturating_add(header_timeout));
        }
        read
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}

/// Accepts connections until `shutdown` resolves, then asks every
/// connection to finish its request and close.
pub(crate) async fn accept(
    node: &Arc<Node>,
    (listener, kind): (TcpListener, Listener),
    app: Router,
    shutdown: impl Future<Output = ()>,
) -> watch::Sender<bool> {
    let open = node
        .metrics
        .tcp_connections
        .get_or_create(&ListenerLabel {
            listener: kind.name,
        })
        .clone();
    let (stop, stopped) = watch::channel(false);
    let mut shutdown = pin!(shutdown);
    let mut warned: Option<Instant> = None;
    // Counted always, logged at most once a second.
    let mut refuse = |reason: &'static str, error: &dyn std::fmt::Display| {
        node.metrics.accept_error(reason);
        if warned.is_none_or(|at| at.elapsed() >= Duration::from_secs(1)) {
            warned = Some(Instant::now());
            tracing::warn!(
                listener = kind.name,
                reason,
                %error,
                "connections refused (sio_gateway_accept_errors counts them)"
            );
        }
    };
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => return stop,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((tcp, peer)) => {
                if open.get() >= i64::try_from(kind.cap).unwrap_or(i64::MAX) {
                    refuse("over_cap", &format_args!("{} connections open", kind.cap));
                    drop(tcp);
                    continue;
                }
                let address = match kind.per_address {
                    false => None,
                    true => match node.addresses.take(peer.ip(), node.config.per_address()) {
                        Ok(slot) => Some(slot),
                        Err(refusal) => {
                            refuse(refusal.metric(), &peer.ip());
                            drop(tcp);
                            continue;
                        }
                    },
                };
                no_delay(&tcp);
                open.inc();
                let tcp = Watched {
                    tcp,
                    watch: Arc::new(Watch {
                        phase: AtomicU8::new(HEADERS),
                        deadline: AtomicU64::new(
                            node.now().saturating_add(node.config.header_timeout),
                        ),
                    }),
                    node: node.clone(),
                    open: open.clone(),
                    _address: address,
                };
                tokio::spawn(serve(node.clone(), app.clone(), tcp, peer, stopped.clone()));
            }
            Err(error) => {
                let descriptors = matches!(error.raw_os_error(), Some(EMFILE | ENFILE));
                refuse(if descriptors { "descriptors" } else { "other" }, &error);
                if descriptors {
                    // Nothing frees a descriptor faster than closing
                    // connections, which the deadlines do.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }
}

/// Accepted connections send at once: frames are written whole and
/// flushed once per batch, so Nagle's algorithm would only hold a small
/// reply back until the client's delayed ACK (measured: the ack round trip
/// at 100/s per client had its median at the 10 ms period).
fn no_delay(tcp: &TcpStream) {
    if let Err(error) = tcp.set_nodelay(true) {
        tracing::debug!(%error, "TCP_NODELAY");
    }
}

/// Serves one connection until it closes, its deadline passes, or the
/// gateway stops.
async fn serve(
    node: Arc<Node>,
    app: Router,
    tcp: Watched,
    peer: SocketAddr,
    mut stop: watch::Receiver<bool>,
) {
    // Nothing is allocated for a connection until its first byte: hyper
    // takes an 8 KiB read buffer at once, which an idle flood would
    // multiply (measured: 11.5 KiB per idle connection without this wait,
    // 1.4 KiB with it).
    let first = node.epoch + Duration::from_millis(tcp.watch.deadline.load(Ordering::Relaxed));
    // A peek, not `readable()`: a new socket reports itself readable
    // before anything arrived.
    let mut byte = [0; 1];
    let arrived = tokio::select! {
        peeked = tokio::time::timeout_at(first, tcp.tcp.peek(&mut byte)) => {
            matches!(peeked, Ok(Ok(n)) if n > 0)
        }
        // A stopping gateway does not wait for requests not yet begun.
        _ = stop.wait_for(|stop| *stop) => false,
    };
    if !arrived {
        return;
    }
    // Boxed, so the waiting task is only as large as the wait.
    Box::pin(http(node, app, tcp, peer, stop)).await;
}

/// Serves HTTP on a connection whose first request has begun.
async fn http(
    node: Arc<Node>,
    app: Router,
    tcp: Watched,
    peer: SocketAddr,
    mut stop: watch::Receiver<bool>,
) {
    let watch = tcp.watch.clone();
    let io = TokioIo::new(tcp);
    let service = {
        let (node, watch) = (node.clone(), watch.clone());
        hyper::service::service_fn(move |mut request: Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            let idle = node.config.idle_timeout;
            watch.set(SERVING, node.now().saturating_add(idle));
            let (node, watch, app) = (node.clone(), watch.clone(), app.clone());
            async move {
                let response = app.oneshot(request).await;
                match &response {
                    Ok(r) if r.status() == StatusCode::SWITCHING_PROTOCOLS => {
                        watch.set(UPGRADED, 0)
                    }
                    _ => watch.set(IDLE, node.now().saturating_add(idle)),
                }
                response
            }
        })
    };
    // Set explicitly: hyper's own header bound as a second line behind the
    // deadline above (hyper's counts idle keep-alive time too, so it gets
    // the idle bound), and a read buffer for request heads only (bodies
    // stream; 64 KiB, not hyper's 400 KB).
    let mut connection = pin!(
        hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(Duration::from_millis(node.config.idle_timeout))
            .max_buf_size(64 * 1024)
            .keep_alive(true)
            .serve_connection(io, service)
            .with_upgrades()
    );
    let mut timer = pin!(tokio::time::sleep(Duration::ZERO));
    let mut armed = 0;
    let mut stopped = pin!(async move {
        let _ = stop.wait_for(|stop| *stop).await;
    });
    let mut stopping = false;
    // Polled by hand so that a deadline moved while the connection ran
    // (a request's first byte, a response sent) is re-armed at once.
    poll_fn(|cx| {
        if !stopping && stopped.as_mut().poll(cx).is_ready() {
            stopping = true;
            connection.as_mut().graceful_shutdown();
        }
        if connection.as_mut().poll(cx).is_ready() {
            return Poll::Ready(());
        }
        let deadline = watch.deadline.load(Ordering::Relaxed);
        if deadline == 0 {
            return Poll::Pending;
        }
        if deadline != armed {
            armed = deadline;
            timer
                .as_mut()
                .reset(node.epoch + Duration::from_millis(deadline));
        }
        timer.as_mut().poll(cx)
    })
    .await;
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_waiting_connection_is_a_small_task() {
        // What an idle connection holds: the waiting future (its task), not
        // the HTTP connection's state, which is boxed behind the wait.
        let size = size_of_waiting_future();
        assert!(size < 1024, "{size} bytes");
    }

    fn size_of_waiting_future() -> usize {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
                .await
                .unwrap();
            let addr = listener.local_addr().unwrap();
            let (client, accepted) =
                tokio::join!(tokio::net::TcpStream::connect(addr), listener.accept());
            let _client = client.unwrap();
            let (tcp, peer) = accepted.unwrap();
            let node = std::sync::Arc::new(crate::node::Node::new(
                crate::Config::default(),
                std::sync::Arc::new(sio_bus::MemoryBus::default()),
                sio_protocol::id::GatewayId::random().unwrap(),
                sio_protocol::subject::Subjects::default(),
            ));
            let watched = super::Watched {
                tcp,
                watch: std::sync::Arc::new(super::Watch {
                    phase: super::AtomicU8::new(super::HEADERS),
                    deadline: super::AtomicU64::new(0),
                }),
                node: node.clone(),
                open: Default::default(),
                _address: None,
            };
            let (_stop, stopped) = tokio::sync::watch::channel(false);
            let future = super::serve(node, axum::Router::new(), watched, peer, stopped);
            std::mem::size_of_val(&future)
        })
    }

    #[tokio::test]
    async fn accepted_connections_disable_nagle() -> std::io::Result<()> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let (_client, accepted) =
            tokio::join!(tokio::net::TcpStream::connect(addr), listener.accept());
        let (tcp, _) = accepted?;
        assert!(!tcp.nodelay()?, "the kernel default is Nagle on");
        super::no_delay(&tcp);
        assert!(tcp.nodelay()?);
        Ok(())
    }
}
