//! Prometheus metrics (the `prometheus` crate's text exposition) on their own port,
//! `metrics_port` (off by default; bound to `address`), never on the public one.
//!
//! Counters and histograms are updated where things happen — a request fairing, the sign-in
//! path, the event streams, the pub/sub bridge, the generator, every Redis round trip (through
//! [`Db`]) — and are plain atomics, so a request pays a few nanoseconds for them. Active sessions
//! are sampled from Redis (the session index) when Prometheus scrapes, not counted.

use std::time::{Duration, Instant};

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use rocket::fairing::{Fairing, Info, Kind};
use rocket::{Data, Orbit, Request, Response, Rocket, Shutdown};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::config::Config;
use crate::redis::Db;

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

/// Counts every answered request by method, route template (never the raw path: one series per
/// route, whatever the ids in it) and status, and times it.
pub struct RequestMetrics;

#[derive(Clone, Copy)]
struct Started(Option<Instant>);

#[rocket::async_trait]
impl Fairing for RequestMetrics {
    fn info(&self) -> Info {
        Info { name: "Request metrics", kind: Kind::Request | Kind::Response }
    }

    async fn on_request(&self, req: &mut Request<'_>, _: &mut Data<'_>) {
        req.local_cache(|| Started(Some(Instant::now())));
    }

    async fn on_response<'r>(&self, req: &'r Request<'_>, res: &mut Response<'r>) {
        let Some(db) = req.rocket().state::<Db>() else { return };
        let route =
            req.route().map_or_else(|| "unmatched".to_owned(), |r| r.uri.origin.path().to_string());
        let method = req.method().as_str();
        let status = res.status().code.to_string();
        let metrics = &db.metrics;
        metrics.http_requests.with_label_values(&[method, &route, &status]).inc();
        if let Started(Some(at)) = req.local_cache(|| Started(None)) {
            metrics
                .http_seconds
                .with_label_values(&[method, &route])
                .observe(at.elapsed().as_secs_f64());
        }
    }
}

/// Samples the live sessions per kind from the session index (two `FT.SEARCH … LIMIT 0 0`).
pub async fn sample_sessions(db: &Db) {
    for kind in ["browser", "mobile"] {
        let index = db.keys.session_index();
        let reply: crate::Result<Vec<redis::Value>> = db
            .run(async |c| {
                redis::cmd("FT.SEARCH")
                    .arg(&index)
                    .arg(format!("@kind:{{{kind}}}"))
                    .arg("LIMIT")
                    .arg(0)
                    .arg(0)
                    .query_async(c)
                    .await
            })
            .await;
        if let Ok(reply) = reply {
            let total = crate::redis::search_hits(&reply).0;
            db.metrics.sessions_active.with_label_values(&[kind]).set(total as i64);
        }
    }
}

/// Connections the metrics server serves at once; more are closed at once (a scraper makes one
/// at a time: this bounds what a stray client can hold, docs/SECURITY.md G.38).
pub const MAX_CONNECTIONS: usize = 16;
/// How long a connection may take to send its request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest request head read.
const MAX_HEAD: usize = 8 * 1024;

/// Serves `GET /metrics` until shutdown: each request head read until `httparse` says it is
/// complete (a head split across TCP segments is one request), within [`HEAD_TIMEOUT`] and
/// [`MAX_HEAD`]; at most [`MAX_CONNECTIONS`] at once; an accept error (file descriptors out, say)
/// backs off instead of spinning.
pub async fn serve(listener: TcpListener, db: Db, mut shutdown: Shutdown) {
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let mut backoff = Duration::from_millis(10);
    loop {
        let accepted = tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => accepted,
        };
        let socket = match accepted {
            Ok((socket, _)) => {
                backoff = Duration::from_millis(10);
                socket
            }
            Err(e) => {
                rocket::warn!("metrics: accept failed ({e}); pausing {backoff:?}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        // Full: closed at once, holding nothing.
        let Ok(permit) = slots.clone().try_acquire_owned() else { continue };
        let db = db.clone();
        tokio::spawn(async move {
            answer(socket, &db).await;
            drop(permit);
        });
    }
}

/// What the request head asks for, once complete: `Some(path)` for a GET, `None` for a head that
/// is not HTTP (or another method).
async fn read_head(socket: &mut tokio::net::TcpStream) -> Result<Option<String>, &'static str> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = socket.read(&mut chunk).await.map_err(|_| "read")?;
        if n == 0 {
            return Err("closed");
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf) {
            Ok(httparse::Status::Complete(_)) => {
                return Ok((req.method == Some("GET")).then(|| req.path.unwrap_or("").to_owned()));
            }
            Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => {}
            _ => return Ok(None),
        }
    }
}

async fn answer(mut socket: tokio::net::TcpStream, db: &Db) {
    let head = tokio::time::timeout(HEAD_TIMEOUT, read_head(&mut socket)).await;
    let Ok(Ok(head)) = head else { return };
    let (status, body) = match head.as_deref() {
        Some("/metrics") => {
            sample_sessions(db).await;
            ("200 OK", db.metrics.render())
        }
        Some(_) => ("404 Not Found", "GET /metrics\n".to_owned()),
        None => ("400 Bad Request", "GET /metrics\n".to_owned()),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = socket.write_all(response.as_bytes()).await;
    let _ = socket.shutdown().await;
}

/// Binds `metrics_port` on `address` at liftoff and serves it (nothing when the port is 0).
pub async fn start(rocket: &Rocket<Orbit>) {
    let (Some(config), Some(db)) = (rocket.state::<Config>(), rocket.state::<Db>()) else { return };
    let address = rocket.config().address;
    match TcpListener::bind((address, config.web.metrics_port)).await {
        Ok(listener) => {
            rocket::info!("metrics: GET /metrics on http://{address}:{}", config.web.metrics_port);
            tokio::spawn(serve(listener, db.clone(), rocket.shutdown()));
        }
        Err(e) => {
            rocket::error!("metrics: cannot listen on {address}:{}: {e}", config.web.metrics_port)
        }
    }
}

/// The metrics stage: with a `metrics_port`, the request fairing and the port (without one,
/// nobody reads per-request series, so none are kept).
pub fn stage() -> rocket::fairing::AdHoc {
    rocket::fairing::AdHoc::on_ignite("Metrics", |rocket| async {
        if rocket.state::<Config>().is_none_or(|c| c.web.metrics_port == 0) {
            return rocket;
        }
        rocket
            .attach(RequestMetrics)
            .attach(rocket::fairing::AdHoc::on_liftoff("Metrics port", |rocket| {
                Box::pin(start(rocket))
            }))
    })
}
