//! The metrics port: `GET /metrics` (Prometheus text) on `metrics_port` (off by default; bound to
//! `address`), never on the public one, served by hyper's HTTP/1.1 server; and the request
//! fairing that counts and times every answered request. Active sessions are sampled from the
//! session index when Prometheus scrapes, not counted.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use rocket::fairing::{AdHoc, Fairing, Info, Kind};
use rocket::futures::future::BoxFuture;
use rocket::{Data, Request, Shutdown};
use tokio::net::TcpListener;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::redis::Db;
use crate::stage;

/// Counts every answered request by method, route template (never the raw path: one series per
/// route, whatever the ids in it) and status, and times it.
pub struct RequestMetrics(Arc<Metrics>);

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

    async fn on_response<'r>(&self, req: &'r Request<'_>, res: &mut rocket::Response<'r>) {
        let route =
            req.route().map_or_else(|| "unmatched".to_owned(), |r| r.uri.origin.path().to_string());
        let method = req.method().as_str();
        let status = res.status().code.to_string();
        self.0.http_requests.with_label_values(&[method, &route, &status]).inc();
        if let Started(Some(at)) = req.local_cache(|| Started(None)) {
            self.0
                .http_seconds
                .with_label_values(&[method, &route])
                .observe(at.elapsed().as_secs_f64());
        }
    }
}

/// What the port refreshes before it answers a scrape: gauges sampled from Redis when asked
/// rather than counted (the live sessions, from `auth`). `lib.rs` hands it to [`stage()`], so
/// this web piece names no feature.
pub type Sample = for<'a> fn(&'a Db) -> BoxFuture<'a, ()>;

/// Connections the metrics server serves at once; more are closed at once (a scraper makes one
/// at a time: this bounds what a stray client can hold, docs/SECURITY.md G.38).
pub const MAX_CONNECTIONS: usize = 16;
/// How long a connection may take to send its request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// The most a connection may buffer (its request head).
const MAX_HEAD: usize = 8 * 1024;

/// Serves `GET /metrics` until shutdown, one request per connection, through hyper (a head
/// split across TCP segments is one request); at most [`MAX_CONNECTIONS`] at once, each given
/// [`HEAD_TIMEOUT`] and [`MAX_HEAD`] for its head; an accept error (file descriptors out, say)
/// backs off instead of spinning.
pub async fn serve(listener: TcpListener, db: Db, sample: Sample, mut shutdown: Shutdown) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
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
            let service = service_fn(move |req| {
                let db = db.clone();
                async move {
                    Ok::<_, Infallible>(answer(&db, sample, req.method(), req.uri().path()).await)
                }
            });
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEAD_TIMEOUT)
                .max_buf_size(MAX_HEAD)
                .keep_alive(false)
                .serve_connection(TokioIo::new(socket), service);
            // A failed or timed-out connection only ends itself.
            let _ = tokio::time::timeout(HEAD_TIMEOUT * 2, connection).await;
            drop(permit);
        });
    }
}

async fn answer(db: &Db, sample: Sample, method: &Method, path: &str) -> Response<Full<Bytes>> {
    let (status, body) = match (method, path) {
        (&Method::GET, "/metrics") => {
            sample(db).await;
            (StatusCode::OK, db.metrics.render())
        }
        (&Method::GET, _) => (StatusCode::NOT_FOUND, "GET /metrics\n".to_owned()),
        _ => (StatusCode::METHOD_NOT_ALLOWED, "GET /metrics\n".to_owned()),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

/// The metrics stage: with a `metrics_port`, the request fairing and the port, which runs
/// `sample` before each scrape (without a port, nobody reads per-request series, so none are
/// kept).
pub fn stage(sample: Sample) -> AdHoc {
    stage::with_both("Metrics", move |rocket, db: Db, config: Config| async move {
        let port = config.web.metrics_port;
        if port == 0 {
            return Ok(rocket);
        }
        Ok(rocket.attach(RequestMetrics(db.metrics.clone())).attach(AdHoc::on_liftoff(
            "Metrics port",
            move |rocket| {
                Box::pin(async move {
                    let address = rocket.config().address;
                    match TcpListener::bind((address, port)).await {
                        Ok(listener) => {
                            rocket::info!("metrics: GET /metrics on http://{address}:{port}");
                            tokio::spawn(serve(listener, db, sample, rocket.shutdown()));
                        }
                        Err(e) => rocket::error!("metrics: cannot listen on {address}:{port}: {e}"),
                    }
                })
            },
        )))
    })
}
