//! The process's Prometheus metrics (the `prometheus` crate's registry and text exposition).
//!
//! Counters and histograms are updated where things happen — a request fairing, the sign-in
//! path, the event streams, the pub/sub bridge, the generator, every Redis round trip (through
//! `Db`) — and are plain atomics, so a request pays a few nanoseconds for them. They are served on
//! their own port by `web::metrics`.

use std::time::Duration;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Every metric of one process.
pub struct Metrics {
    registry: Registry,
    pub http_requests: IntCounterVec,
    pub http_seconds: HistogramVec,
    pub logins: IntCounterVec,
    pub sessions_active: IntGaugeVec,
    pub streams_open: IntGaugeVec,
    pub events_fanned_out: IntCounter,
    pub slow_clients_dropped: IntCounter,
    pub bridge_reconnects: IntCounter,
    pub generator_transactions: IntCounter,
    pub redis_seconds: Histogram,
    pub redis_errors: IntCounter,
}

/// Latency buckets (seconds) for requests and Redis round trips: 0.1 ms to 2.5 s.
const BUCKETS: &[f64] =
    &[0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let registry =
            Registry::new_custom(Some("redbank".into()), None).unwrap_or_else(|_| Registry::new());
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels)
                .unwrap_or_else(|e| unreachable!("metric {name}: {e}"));
            let _ = registry.register(Box::new(c.clone()));
            c
        };
        let counter = |name: &str, help: &str| {
            let c =
                IntCounter::new(name, help).unwrap_or_else(|e| unreachable!("metric {name}: {e}"));
            let _ = registry.register(Box::new(c.clone()));
            c
        };
        let gauge_vec = |name: &str, help: &str, labels: &[&str]| {
            let g = IntGaugeVec::new(Opts::new(name, help), labels)
                .unwrap_or_else(|e| unreachable!("metric {name}: {e}"));
            let _ = registry.register(Box::new(g.clone()));
            g
        };
        let http_seconds = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "Time to answer, by route template",
            )
            .buckets(BUCKETS.to_vec()),
            &["method", "route"],
        )
        .unwrap_or_else(|e| unreachable!("http histogram: {e}"));
        let _ = registry.register(Box::new(http_seconds.clone()));
        let redis_seconds = Histogram::with_opts(
            HistogramOpts::new("redis_command_duration_seconds", "One Redis round trip (Db::run)")
                .buckets(BUCKETS.to_vec()),
        )
        .unwrap_or_else(|e| unreachable!("redis histogram: {e}"));
        let _ = registry.register(Box::new(redis_seconds.clone()));
        Metrics {
            http_requests: counter_vec(
                "http_requests_total",
                "Requests answered, by method, route template and status",
                &["method", "route", "status"],
            ),
            http_seconds,
            logins: counter_vec(
                "logins_total",
                "Sign-in attempts by outcome: ok, bad_password, throttled, second_factor (a \
                 correct password now waiting for its second factor), bad_code",
                &["outcome"],
            ),
            sessions_active: gauge_vec(
                "sessions_active",
                "Live sessions by kind, sampled from the session index at scrape time",
                &["kind"],
            ),
            streams_open: gauge_vec(
                "event_streams_open",
                "Open /events streams by transport (rocket, listener)",
                &["transport"],
            ),
            events_fanned_out: counter(
                "events_fanned_out_total",
                "Events the pub/sub bridge handed to this process's streams",
            ),
            slow_clients_dropped: counter(
                "slow_clients_dropped_total",
                "Streams ended because the client fell behind its queue",
            ),
            bridge_reconnects: counter(
                "bridge_reconnects_total",
                "Times the pub/sub bridge subscribed again after losing Redis",
            ),
            generator_transactions: counter(
                "generator_transactions_total",
                "Transactions the generator wrote from this process",
            ),
            redis_seconds,
            redis_errors: counter(
                "redis_errors_total",
                "Redis round trips that failed or timed out",
            ),
            registry,
        }
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }

    /// A Redis round trip of `took`; `failed` when it errored or timed out.
    pub fn redis(&self, took: Duration, failed: bool) {
        self.redis_seconds.observe(took.as_secs_f64());
        if failed {
            self.redis_errors.inc();
        }
    }
}

/// An open stream, counted while it lives.
pub struct OpenStream(IntGauge);

impl OpenStream {
    pub fn new(metrics: &Metrics, transport: &str) -> Self {
        let gauge = metrics.streams_open.with_label_values(&[transport]);
        gauge.inc();
        OpenStream(gauge)
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.dec();
    }
}
