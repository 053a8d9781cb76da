//! Prometheus metrics, served on `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct TransportLabel {
    pub(crate) transport: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct NamespaceLabel {
    pub(crate) namespace: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ListenerLabel {
    pub(crate) listener: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ReasonLabel {
    pub(crate) reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct OutcomeLabel {
    pub(crate) outcome: &'static str,
}

#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    pub(crate) connections: Family<TransportLabel, Gauge>,
    pub(crate) sessions: Gauge,
    pub(crate) sockets: Family<NamespaceLabel, Gauge>,
    pub(crate) packets_in: Counter,
    pub(crate) packets_out: Counter,
    pub(crate) emits_delivered: Counter,
    pub(crate) emits_received: Counter,
    pub(crate) emits_replayed: Counter,
    pub(crate) drops: Family<ReasonLabel, Counter>,
    pub(crate) bus_connected: Gauge,
    pub(crate) bus_errors: Counter,
    pub(crate) ack_rtt: Histogram,
    pub(crate) events: Family<OutcomeLabel, Counter>,
    pub(crate) redeliveries: Counter,
    pub(crate) polls_forwarded: Counter,
    pub(crate) polls_served: Counter,
    pub(crate) sessions_taken: Counter,
    pub(crate) sessions_given: Counter,
    pub(crate) recoveries: Family<OutcomeLabel, Counter>,
    pub(crate) sockets_reaped: Counter,
    pub(crate) recoverable: Gauge,
    pub(crate) recovery_bytes: Gauge,
    pub(crate) tcp_connections: Family<ListenerLabel, Gauge>,
    pub(crate) accept_errors: Family<ReasonLabel, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("sio_gateway");
        let m = Self {
            connections: Family::default(),
            sessions: Gauge::default(),
            sockets: Family::default(),
            packets_in: Counter::default(),
            packets_out: Counter::default(),
            emits_delivered: Counter::default(),
            emits_received: Counter::default(),
            emits_replayed: Counter::default(),
            drops: Family::default(),
            bus_connected: Gauge::default(),
            bus_errors: Counter::default(),
            ack_rtt: Histogram::new([
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0,
            ]),
            events: Family::default(),
            redeliveries: Counter::default(),
            polls_forwarded: Counter::default(),
            polls_served: Counter::default(),
            sessions_taken: Counter::default(),
            sessions_given: Counter::default(),
            recoveries: Family::default(),
            sockets_reaped: Counter::default(),
            recoverable: Gauge::default(),
            recovery_bytes: Gauge::default(),
            tcp_connections: Family::default(),
            accept_errors: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "connections",
            "Client connections by transport",
            m.connections.clone(),
        );
        registry.register("sessions", "Engine.IO sessions", m.sessions.clone());
        registry.register(
            "recoveries",
            "Connects asking to recover a socket, by outcome: recovered, unknown (no such socket here), expired, behind (its offset no longer kept), unrecoverable (kept packets past a bound)",
            m.recoveries.clone(),
        );
        registry.register(
            "sockets_reaped",
            "Disconnects this gateway published for the sockets of gateways that died",
            m.sockets_reaped.clone(),
        );
        registry.register(
            "recoverable_sockets",
            "Sockets whose transport was lost, kept for their client to recover",
            m.recoverable.clone(),
        );
        registry.register(
            "recovery_bytes",
            "Bytes of packets kept for sockets to recover (each packet once)",
            m.recovery_bytes.clone(),
        );
        registry.register(
            "sockets",
            "Socket.IO sockets by namespace",
            m.sockets.clone(),
        );
        registry.register(
            "packets_in",
            "Socket.IO packets received from clients",
            m.packets_in.clone(),
        );
        registry.register(
            "packets_out",
            "Socket.IO packets queued to clients",
            m.packets_out.clone(),
        );
        registry.register(
            "emits_delivered",
            "Emits from the bus delivered to local sockets",
            m.emits_delivered.clone(),
        );
        registry.register(
            "emits_received",
            "Room and namespace emits received from the bus (interest-based: only for rooms with local members)",
            m.emits_received.clone(),
        );
        registry.register(
            "emits_replayed",
            "Emits read back from JetStream after the bus was away, that had not reached this gateway",
            m.emits_replayed.clone(),
        );
        registry.register(
            "drops",
            "Packets or requests dropped, by reason",
            m.drops.clone(),
        );
        registry.register(
            "bus_connected",
            "1 while the bus is connected",
            m.bus_connected.clone(),
        );
        registry.register("bus_errors", "Failed bus operations", m.bus_errors.clone());
        registry.register(
            "tcp_connections",
            "Open TCP connections by listener (clients, ops), websockets included",
            m.tcp_connections.clone(),
        );
        registry.register(
            "accept_errors",
            "Connections not taken: over_cap (--max-tcp-connections), descriptors (the limit), other",
            m.accept_errors.clone(),
        );
        registry.register(
            "ack_round_trip_seconds",
            "Time from a client event with ack to the worker's answer",
            m.ack_rtt.clone(),
        );
        registry.register(
            "events",
            "Client events by outcome: handled, unordered (published, not waited on), or why not handled (the error ack's code)",
            m.events.clone(),
        );
        registry.register(
            "event_redeliveries",
            "Client events handed to another worker after the one holding them went silent past --event-lease",
            m.redeliveries.clone(),
        );
        registry.register(
            "polls_forwarded",
            "Polling requests for another gateway's session, forwarded to it over the bus",
            m.polls_forwarded.clone(),
        );
        registry.register(
            "polls_served",
            "Polling requests forwarded by another gateway and served here for its client",
            m.polls_served.clone(),
        );
        registry.register(
            "sessions_taken_over",
            "Sessions of another gateway whose websocket upgrade reached this one, handed over to it",
            m.sessions_taken.clone(),
        );
        registry.register(
            "sessions_handed_over",
            "Sessions of this gateway handed over to the gateway that holds their websocket",
            m.sessions_given.clone(),
        );
        Self { registry, ..m }
    }
}

impl Metrics {
    pub(crate) fn drop(&self, reason: &'static str) {
        self.drops.get_or_create(&ReasonLabel { reason }).inc();
    }

    pub(crate) fn event(&self, outcome: &'static str) {
        self.events.get_or_create(&OutcomeLabel { outcome }).inc();
    }

    pub(crate) fn accept_error(&self, reason: &'static str) {
        self.accept_errors
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    pub(crate) fn connection(&self, transport: &'static str, delta: i64) {
        self.connections
            .get_or_create(&TransportLabel { transport })
            .inc_by(delta);
    }

    /// A socket joined a namespace known as `label` (see
    /// `client::namespace_label`: a configured name or pattern, so the
    /// label set is bounded).
    pub(crate) fn socket_joined(&self, label: Option<&str>) {
        self.sockets
            .get_or_create(&NamespaceLabel {
                namespace: label.unwrap_or_default().to_owned(),
            })
            .inc();
    }

    pub(crate) fn socket_left(&self, label: Option<&str>) {
        self.sockets
            .get_or_create(&NamespaceLabel {
                namespace: label.unwrap_or_default().to_owned(),
            })
            .dec();
    }

    /// The text exposition format.
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
