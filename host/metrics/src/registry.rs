//! The registry: every metric's name, help text, type and labels, in one
//! place. [`crate::record`] is the only writer; [`encode`] the only reader.
//!
//! Names follow the Prometheus conventions: `mailgate_` first, a
//! counter registered as `x` is exposed as `x_total`, durations are
//! `_seconds`, sizes `_bytes`. docs/monitoring.md lists each one; a test
//! below checks that the two agree.

use std::sync::atomic::AtomicU64;
use std::sync::OnceLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// A family of histograms that all share one bucket layout.
pub(crate) type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// `listener`, `protocol`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct SessionLabels {
    pub protocol: &'static str,
    pub listener: &'static str,
}

/// `listener`, `limit`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RefusedLabels {
    pub listener: &'static str,
    pub limit: &'static str,
}

/// `protocol`, `result`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ProtocolResult {
    pub protocol: &'static str,
    pub result: &'static str,
}

/// `listener`, `outcome`, `reason`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct MessageLabels {
    pub listener: &'static str,
    pub outcome: &'static str,
    pub reason: &'static str,
}

/// One label of a fixed set of values.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct Disposition {
    pub disposition: &'static str,
}

/// `state`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct StateLabel {
    pub state: &'static str,
}

/// `result`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ResultLabel {
    pub result: &'static str,
}

/// `kind`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct KindLabel {
    pub kind: &'static str,
}

/// `protocol`, `mechanism`, `result`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct AuthLabels {
    pub protocol: &'static str,
    pub mechanism: &'static str,
    pub result: &'static str,
}

/// `plugin`, `hook`, `result`. The plugin is its file name in the
/// plugin directory (the administrator's choice, so a bounded set).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct PluginLabels {
    pub plugin: String,
    pub hook: &'static str,
    pub result: &'static str,
}

/// `plugin`, `hook`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct PluginHook {
    pub plugin: String,
    pub hook: &'static str,
}

/// `version`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct VersionLabel {
    pub version: &'static str,
}

/// Every metric mailgate exposes.
pub(crate) struct Metrics {
    registry: Registry,
    pub build_info: Family<VersionLabel, Gauge>,
    pub ready: Gauge,
    pub sessions_active: Family<SessionLabels, Gauge>,
    pub sessions: Family<SessionLabels, Counter>,
    pub connections_refused: Family<RefusedLabels, Counter>,
    pub tls_handshakes: Family<ProtocolResult, Counter>,
    pub smtp_messages: Family<MessageLabels, Counter>,
    pub recipients: Family<Disposition, Counter>,
    pub delivery_latency: Histogram,
    pub queue_messages: Family<StateLabel, Gauge>,
    pub queue_oldest_age: Gauge<f64, AtomicU64>,
    pub relay_attempts: Family<ResultLabel, Counter>,
    pub dsn_sent: Family<KindLabel, Counter>,
    pub auth_attempts: Family<AuthLabels, Counter>,
    pub plugin_calls: Family<PluginLabels, Counter>,
    pub plugin_duration: HistogramFamily<PluginHook>,
    pub store_commit_duration: Histogram,
    pub store_commit_batch: Histogram,
    pub store_commit_failures: Counter,
    pub received_bytes: Family<SessionLabels, Counter>,
    pub sent_bytes: Family<SessionLabels, Counter>,
}

/// Latency buckets from 100 µs to about 52 s (doubling).
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 20))
}

/// The metrics, registered on first use.
pub(crate) fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

impl Metrics {
    fn new() -> Metrics {
        let m = Metrics {
            registry: Registry::default(),
            build_info: Family::default(),
            ready: Gauge::default(),
            sessions_active: Family::default(),
            sessions: Family::default(),
            connections_refused: Family::default(),
            tls_handshakes: Family::default(),
            smtp_messages: Family::default(),
            recipients: Family::default(),
            delivery_latency: latency_histogram(),
            queue_messages: Family::default(),
            queue_oldest_age: Gauge::default(),
            relay_attempts: Family::default(),
            dsn_sent: Family::default(),
            auth_attempts: Family::default(),
            plugin_calls: Family::default(),
            plugin_duration: Family::new_with_constructor(latency_histogram),
            store_commit_duration: latency_histogram(),
            // 1 to 256 jobs per commit (the writer's MAX_BATCH).
            store_commit_batch: Histogram::new(exponential_buckets(1.0, 2.0, 9)),
            store_commit_failures: Counter::default(),
            received_bytes: Family::default(),
            sent_bytes: Family::default(),
        };
        m.build_info
            .get_or_create(&VersionLabel {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        m.register_all()
    }

    fn register_all(mut self) -> Metrics {
        let r = &mut self.registry;
        r.register(
            "mailgate_build_info",
            "Always 1; the version label says which mailgate runs",
            self.build_info.clone(),
        );
        r.register(
            "mailgate_ready",
            "1 when the server is ready (what /healthz/ready says), checked at each scrape",
            self.ready.clone(),
        );
        r.register(
            "mailgate_sessions_active",
            "Sessions open now, by protocol and listener",
            self.sessions_active.clone(),
        );
        r.register(
            "mailgate_sessions",
            "Sessions started, by protocol and listener",
            self.sessions.clone(),
        );
        r.register(
            "mailgate_connections_refused",
            "Connections refused by max_connections or max_connections_per_ip",
            self.connections_refused.clone(),
        );
        r.register(
            "mailgate_tls_handshakes",
            "TLS handshakes on the server side (STARTTLS, STLS and implicit TLS), by result",
            self.tls_handshakes.clone(),
        );
        r.register(
            "mailgate_smtp_messages",
            "Messages at the end of DATA or BDAT, by listener and outcome",
            self.smtp_messages.clone(),
        );
        r.register(
            "mailgate_recipients",
            "Recipients of accepted messages: delivered locally, queued for the relay, or bounced",
            self.recipients.clone(),
        );
        r.register(
            "mailgate_delivery_latency_seconds",
            "From the end of DATA to the message being durable in the store",
            self.delivery_latency.clone(),
        );
        r.register(
            "mailgate_queue_messages",
            "Messages in the outbound queue, by state (read from the store at each scrape)",
            self.queue_messages.clone(),
        );
        r.register(
            "mailgate_queue_oldest_age_seconds",
            "Age of the oldest message in the outbound queue (0 when it is empty)",
            self.queue_oldest_age.clone(),
        );
        r.register(
            "mailgate_relay_attempts",
            "Delivery attempts of the relay, one per recipient per attempt, by result",
            self.relay_attempts.clone(),
        );
        r.register(
            "mailgate_dsn_sent",
            "Delivery status notifications generated, by kind",
            self.dsn_sent.clone(),
        );
        r.register(
            "mailgate_auth_attempts",
            "Logins and SASL authentications, by protocol, mechanism and result",
            self.auth_attempts.clone(),
        );
        r.register(
            "mailgate_plugin_calls",
            "Policy plugin hook calls, by plugin, hook and result",
            self.plugin_calls.clone(),
        );
        r.register(
            "mailgate_plugin_call_duration_seconds",
            "Time of one plugin hook call, instantiation included",
            self.plugin_duration.clone(),
        );
        r.register(
            "mailgate_store_commit_duration_seconds",
            "Time of one group commit of the store's writer",
            self.store_commit_duration.clone(),
        );
        r.register(
            "mailgate_store_commit_batch_size",
            "Write jobs sharing one group commit",
            self.store_commit_batch.clone(),
        );
        r.register(
            "mailgate_store_commit_failures",
            "Group commits that failed (every job in the batch got the error)",
            self.store_commit_failures.clone(),
        );
        r.register(
            "mailgate_received_bytes",
            "Message bytes received from clients (DATA, BDAT, APPEND), by protocol and listener",
            self.received_bytes.clone(),
        );
        r.register(
            "mailgate_sent_bytes",
            "Message bytes sent to clients and peers (RETR, FETCH, relay), by protocol and listener",
            self.sent_bytes.clone(),
        );
        self
    }
}

/// The whole registry in the Prometheus text format (version 0.0.4).
pub fn encode() -> String {
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &metrics().registry);
    out
}

/// The `Content-Type` of [`encode`]'s output.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;
