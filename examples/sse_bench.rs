//! Server-sent events fan-out benchmark: N browser event streams (`GET /events`) spread over S
//! signed-in sessions, the delivery latency of every `transaction` event (receipt time minus the
//! transaction's `date`, set just before the write), and a check that every client received every
//! event.
//!
//! ```sh
//! cargo run --release --example sse_bench -- --base http://127.0.0.1:8000 \
//!     --clients 1000 --sessions 50 --events 5 --timeout-secs 60
//! ```
//!
//! The app must run with the generator on (e.g. `ROCKET_GENERATOR_INTERVAL_MS=1000`),
//! `ROCKET_SSE_MAX_PER_SESSION` ≥ clients / sessions and `ROCKET_SSE_MAX_STREAMS` ≥ clients, and
//! both processes need an open-files limit above the client count (`ulimit -n 20000`).
//!
//! Steps: S form logins (GET /login for the `redbank_csrf` cookie and the hidden `csrf` input, then
//! POST /login → 303 + session cookie); N streams opened with at most `--connect-concurrency`
//! handshakes in flight; once every stream has its 200 response headers (or has failed), the
//! barrier time T0 is taken. Only transactions dated after T0 count — they were published after
//! every stream had subscribed, so each connected client must receive all of them. The run ends
//! when every client has counted `--events` of them (or at the timeout). The expected set is the
//! first E transactions (by date) after T0 that any client saw; `missing` is the number of
//! (client, transaction) pairs in it not delivered, failed clients included.
//!
//! Defaults: 100 clients, 10 sessions, 5 events, 60 s, 64 handshakes in flight, one tokio worker
//! per core (≥ 2), bob / foobared. With `--app-pid PID` (same machine) it also reports the app's
//! VmRSS at start, after the logins, with every stream open and at its peak (sampled every 100 ms),
//! and the CPU seconds the app and this client used during the event phase.
//!
//! Output: one machine-readable line on stdout starting with `clients=`, then a human summary.
//! Exit status 0 when nothing is missing, 1 otherwise, 2 on a usage or setup error.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use reqwest::header::{COOKIE, HeaderMap, SET_COOKIE};
use reqwest::redirect::Policy;
use tokio::sync::{Semaphore, watch};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const USAGE: &str = "usage: sse_bench --base http://127.0.0.1:PORT [--clients N] [--sessions S] \
[--events E] [--timeout-secs T] [--connect-concurrency C] [--threads W] [--user bob] \
[--password foobared] [--app-pid PID] [--events-base http://127.0.0.1:STREAM_PORT] \
[--no-login true (streams without a session, for examples/sse_floor; --base not needed)]";

#[derive(Debug, Clone)]
struct Args {
    base: String,
    clients: usize,
    sessions: usize,
    events: usize,
    timeout_secs: u64,
    connect_concurrency: usize,
    threads: usize,
    user: String,
    password: String,
    /// The app's process id (same machine): its VmRSS and CPU time are sampled during the run.
    app_pid: Option<u32>,
    /// Where the streams are opened (`{events_base}/events`): the stream listener, or `base`.
    events_base: String,
    /// No sign-in, no cookie: for a server without sessions (`examples/sse_floor`).
    no_login: bool,
}

fn parse_args() -> Result<Args, String> {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut a = Args {
        base: String::new(),
        clients: 100,
        sessions: 10,
        events: 5,
        timeout_secs: 60,
        connect_concurrency: 64,
        // One worker per core, at least two: the client shares the machine with the app (and
        // parsing is light), so more threads would only add contention.
        threads: cores.max(2),
        user: "bob".into(),
        password: "foobared".into(),
        app_pid: None,
        events_base: String::new(),
        no_login: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "-h" || flag == "--help" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        let value = it.next().ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        let num = |v: &str| v.parse::<usize>().map_err(|_| format!("{flag}: not a number: {v}"));
        match flag.as_str() {
            "--base" => a.base = value.trim_end_matches('/').to_owned(),
            "--clients" => a.clients = num(&value)?,
            "--sessions" => a.sessions = num(&value)?,
            "--events" => a.events = num(&value)?,
            "--timeout-secs" => a.timeout_secs = num(&value)? as u64,
            "--connect-concurrency" => a.connect_concurrency = num(&value)?,
            "--threads" => a.threads = num(&value)?,
            "--user" => a.user = value,
            "--password" => a.password = value,
            "--app-pid" => a.app_pid = Some(num(&value)? as u32),
            "--events-base" => a.events_base = value.trim_end_matches('/').to_owned(),
            "--no-login" => a.no_login = value == "true",
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    let streams_only = a.no_login && !a.events_base.is_empty();
    if a.base.is_empty() && !streams_only {
        return Err(format!("--base is required (or --no-login true with --events-base)\n{USAGE}"));
    }
    if a.clients == 0 || a.sessions == 0 || a.events == 0 || a.connect_concurrency == 0 {
        return Err("--clients, --sessions, --events and --connect-concurrency must be > 0".into());
    }
    if a.events_base.is_empty() {
        a.events_base = a.base.clone();
    }
    a.sessions = a.sessions.min(a.clients);
    a.threads = a.threads.max(1);
    Ok(a)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("sse_bench: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sse_bench: tokio runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(args)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("sse_bench: {e}");
            ExitCode::from(2)
        }
    }
}

// ---- time ---------------------------------------------------------------------------------------

/// Wall clock in milliseconds since the epoch, with microsecond resolution.
fn now_ms_f64() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_micros() as f64 / 1000.0)
}

// ---- the app process (optional, same machine) ---------------------------------------------------

/// VmRSS in KiB of `pid`, from /proc.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// User + system CPU time of `pid` ("self" for this process) in clock ticks (100 per second on
/// Linux), from /proc/<pid>/stat.
fn cpu_ticks(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the full line: 12 and 13 after "pid (comm) ".
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

const TICKS_PER_SEC: f64 = 100.0;

/// Peak VmRSS of the app, sampled every 100 ms by a background task.
struct RssMonitor {
    pid: u32,
    max_kib: Arc<AtomicI64>,
}

impl RssMonitor {
    fn start(pid: u32, mut stop: watch::Receiver<bool>) -> RssMonitor {
        let max_kib = Arc::new(AtomicI64::new(rss_kib(pid).map_or(0, |v| v as i64)));
        let max = max_kib.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.changed() => return,
                }
                match rss_kib(pid) {
                    Some(v) => {
                        max.fetch_max(v as i64, Ordering::Relaxed);
                    }
                    None => return,
                }
            }
        });
        RssMonitor { pid, max_kib }
    }

    fn now_kib(&self) -> i64 {
        rss_kib(self.pid).map_or(-1, |v| v as i64)
    }

    fn max_kib(&self) -> i64 {
        self.max_kib.load(Ordering::Relaxed).max(self.now_kib())
    }
}

// ---- login --------------------------------------------------------------------------------------

/// `name=value` pairs from the response's `Set-Cookie` headers.
fn set_cookies(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| {
            let pair = v.split(';').next()?;
            let (name, value) = pair.split_once('=')?;
            Some((name.trim().to_owned(), value.trim().to_owned()))
        })
        .collect()
}

fn find_cookie(cookies: &[(String, String)], name: &str) -> Option<String> {
    cookies.iter().find(|(n, v)| n == name && !v.is_empty()).map(|(_, v)| v.clone())
}

/// The `value` of `<input … name="csrf" value="…">` in the login page.
fn hidden_csrf(html: &str) -> Option<String> {
    let at = html.find("name=\"csrf\"")?;
    let rest = &html[at..];
    let start = rest.find("value=\"")? + "value=\"".len();
    let len = rest[start..].find('"')?;
    Some(rest[start..start + len].to_owned())
}

/// Browser sign-in with the CSRF double-submit dance; returns the `Cookie` header value for the
/// new session (`redbank=<token>` or `__Host-redbank=<token>`).
async fn browser_login(
    http: &reqwest::Client,
    base: &str,
    user: &str,
    password: &str,
) -> Result<String, BoxError> {
    let page = http.get(format!("{base}/login")).send().await?;
    if page.status() != 200 {
        return Err(format!("GET /login: HTTP {}", page.status()).into());
    }
    let cookies = set_cookies(page.headers());
    let csrf_names = ["redbank_csrf", "__Host-redbank_csrf"];
    let (csrf_name, csrf_cookie) = cookies
        .iter()
        .find(|(n, _)| csrf_names.contains(&n.as_str()))
        .cloned()
        .ok_or("GET /login set no csrf cookie")?;
    let html = page.text().await?;
    let csrf = hidden_csrf(&html).unwrap_or_else(|| csrf_cookie.clone());
    let reply = http
        .post(format!("{base}/login"))
        .header(COOKIE, format!("{csrf_name}={csrf_cookie}"))
        .form(&[("username", user), ("password", password), ("csrf", csrf.as_str())])
        .send()
        .await?;
    if reply.status() != 303 {
        return Err(format!("POST /login: HTTP {} (expected 303)", reply.status()).into());
    }
    let cookies = set_cookies(reply.headers());
    for name in ["redbank", "__Host-redbank"] {
        if let Some(token) = find_cookie(&cookies, name) {
            return Ok(format!("{name}={token}"));
        }
    }
    Err("POST /login set no session cookie".into())
}

// ---- SSE parsing --------------------------------------------------------------------------------

#[path = "common/sse.rs"]
mod sse;
use sse::{SseParser, TxLite};

// ---- clients ------------------------------------------------------------------------------------

struct Shared {
    /// T0 in ms; i64::MAX until every client is connected or has failed.
    barrier_ms: AtomicI64,
    connected: AtomicUsize,
    failed: AtomicUsize,
    /// Clients that have counted `events` transactions after T0.
    done: AtomicUsize,
    /// Connected clients whose stream ended before the run did.
    ended: AtomicUsize,
    events: usize,
}

#[derive(Default)]
struct ClientOut {
    failure: Option<String>,
    connect_attempts: u32,
    connect_ms: f64,
    /// (transaction id, latency ms) of transactions dated after T0, in arrival order.
    counted: Vec<(u64, f64)>,
    before_barrier: usize,
    other_events: usize,
    unparsable: usize,
    heartbeats: usize,
    ended_early: bool,
}

/// How one attempt to open a stream ended.
enum Opened {
    /// 200: the socket, any body bytes read with the head, and whether the body is chunked.
    Stream(tokio::net::TcpStream, Vec<u8>, bool),
    /// 503 with its `Retry-After` seconds.
    Busy(u64),
    Refused(u16),
}

/// Opens `GET {path}` on `addr` over a plain socket — one task and one read per event on this
/// side, so the client spends as little of the shared CPU as it can (reqwest/hyper cost twice as
/// much per event) and the figures are the server's.
async fn open_stream(
    addr: &str,
    source: std::net::IpAddr,
    path: &str,
    cookie: &str,
) -> std::io::Result<Opened> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let target: std::net::SocketAddr = tokio::net::lookup_host(addr)
        .await?
        .find(|a| a.is_ipv4())
        .ok_or_else(|| std::io::Error::other("no IPv4 address"))?;
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(std::net::SocketAddr::new(source, 0))?;
    let mut tcp = socket.connect(target).await?;
    tcp.set_nodelay(true)?;
    let cookie = if cookie.is_empty() { String::new() } else { format!("Cookie: {cookie}\r\n") };
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{cookie}Accept: text/event-stream\r\n\
         Cache-Control: no-cache\r\n\r\n"
    );
    tcp.write_all(request.as_bytes()).await?;
    let mut buf: Vec<u8> = Vec::with_capacity(2048);
    let end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        if buf.len() > 64 * 1024 || tcp.read_buf(&mut buf).await? == 0 {
            return Err(std::io::Error::other("no complete response head"));
        }
    };
    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
    let code: u16 = head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let header = |name: &str| {
        head.lines().find_map(|l| l.strip_prefix(name).map(|v| v.trim_start_matches(':').trim()))
    };
    Ok(match code {
        200 => {
            let chunked = header("transfer-encoding").is_some_and(|v| v.contains("chunked"));
            Opened::Stream(tcp, buf.split_off(end), chunked)
        }
        503 => Opened::Busy(header("retry-after").and_then(|v| v.parse().ok()).unwrap_or(1)),
        other => Opened::Refused(other),
    })
}

/// Undoes `Transfer-Encoding: chunked` (Rocket's streams; the stream listener's are
/// close-delimited and pass through untouched).
#[derive(Default)]
struct Dechunk {
    /// Hex digits of the size line being read.
    size_line: Vec<u8>,
    /// Payload bytes left in the current chunk.
    left: usize,
    /// CR LF bytes left after the current chunk.
    crlf: usize,
}

impl Dechunk {
    /// Feeds raw body bytes; passes payload slices to `out`. `false` at the last (empty) chunk.
    fn feed(&mut self, mut bytes: &[u8], out: &mut impl FnMut(&[u8])) -> bool {
        while !bytes.is_empty() {
            if self.left > 0 {
                let n = self.left.min(bytes.len());
                out(&bytes[..n]);
                self.left -= n;
                bytes = &bytes[n..];
                if self.left == 0 {
                    self.crlf = 2;
                }
            } else if self.crlf > 0 {
                let n = self.crlf.min(bytes.len());
                self.crlf -= n;
                bytes = &bytes[n..];
            } else {
                let Some(nl) = bytes.iter().position(|&b| b == b'\n') else {
                    self.size_line.extend_from_slice(bytes);
                    return true;
                };
                self.size_line.extend_from_slice(&bytes[..nl]);
                bytes = &bytes[nl + 1..];
                let text = String::from_utf8_lossy(&self.size_line).into_owned();
                self.size_line.clear();
                let hex = text.trim().split(';').next().unwrap_or_default();
                match usize::from_str_radix(hex, 16) {
                    Ok(0) | Err(_) => return false,
                    Ok(n) => self.left = n,
                }
            }
        }
        true
    }
}

/// The loopback address client `i` connects from: 8 clients per address, as a population of
/// households and offices would (the stream listener lets at most 16 handshakes of one address
/// wait at once, so a whole bench from 127.0.0.1, or `--connect-concurrency` neighbours from one
/// address, would be refused as one abusive client).
fn client_address(i: usize) -> std::net::IpAddr {
    let n = i / 8;
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 1, (n / 250) as u8, (n % 250 + 1) as u8))
}

async fn sse_client(
    addr: Arc<str>,
    path: Arc<str>,
    cookie: Arc<str>,
    source: std::net::IpAddr,
    shared: Arc<Shared>,
    handshakes: Arc<Semaphore>,
    mut stop: watch::Receiver<bool>,
) -> ClientOut {
    use tokio::io::AsyncReadExt;
    let mut out = ClientOut::default();
    let fail = |out: &mut ClientOut, why: String| {
        out.failure = Some(why);
        shared.failed.fetch_add(1, Ordering::AcqRel);
    };
    // At most `connect_concurrency` handshakes in flight: a 10k-connection burst would overflow
    // the listen backlog and turn into SYN retries measured as seconds of "latency".
    let (mut tcp, first, chunked) = {
        let permit = tokio::select! {
            p = handshakes.acquire() => p,
            _ = stop.changed() => {
                fail(&mut out, "stopped before connecting".into());
                return out;
            }
        };
        let Ok(_permit) = permit else {
            fail(&mut out, "semaphore closed".into());
            return out;
        };
        let started = Instant::now();
        let opened = loop {
            out.connect_attempts += 1;
            let attempt = tokio::select! {
                r = tokio::time::timeout(Duration::from_secs(10), open_stream(&addr, source, &path, &cookie)) => r,
                _ = stop.changed() => {
                    fail(&mut out, "timed out connecting".into());
                    return out;
                }
            };
            match attempt {
                Ok(Ok(Opened::Stream(tcp, first, chunked))) => break (tcp, first, chunked),
                // 503 = the app is shedding load; retry after Retry-After like the dashboard's
                // live.js does (a browser's bare EventSource would give up).
                Ok(Ok(Opened::Busy(wait))) if out.connect_attempts < 10 => {
                    tokio::time::sleep(Duration::from_secs(wait)).await;
                }
                Ok(Ok(Opened::Busy(_))) => {
                    fail(&mut out, "HTTP 503".into());
                    return out;
                }
                Ok(Ok(Opened::Refused(code))) => {
                    fail(&mut out, format!("HTTP {code}"));
                    return out;
                }
                // Transport errors (refused, reset) get two more tries, like a browser would.
                Ok(Err(_)) | Err(_) if out.connect_attempts < 3 => {
                    tokio::time::sleep(Duration::from_millis(
                        250 * u64::from(out.connect_attempts),
                    ))
                    .await;
                }
                Ok(Err(_)) => {
                    fail(&mut out, "connect error".into());
                    return out;
                }
                Err(_) => {
                    fail(&mut out, "timeout".into());
                    return out;
                }
            }
        };
        out.connect_ms = started.elapsed().as_secs_f64() * 1000.0;
        opened
    };
    shared.connected.fetch_add(1, Ordering::AcqRel);

    let mut parser = SseParser::default();
    let mut dechunk = chunked.then(Dechunk::default);
    let mut seen_done = false;
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut pending = first;
    loop {
        if pending.is_empty() {
            buf.clear();
            let read = tokio::select! {
                r = tcp.read_buf(&mut buf) => r,
                _ = stop.changed() => break,
            };
            if !matches!(read, Ok(n) if n > 0) {
                out.ended_early = true;
                shared.ended.fetch_add(1, Ordering::AcqRel);
                break;
            }
            std::mem::swap(&mut pending, &mut buf);
        }
        let mut on_event = |event: &str, data: &str, _id: &str| {
            if event != "transaction" {
                out.other_events += 1;
                return;
            }
            let received = now_ms_f64();
            let Ok(tx) = serde_json::from_str::<TxLite>(data) else {
                out.unparsable += 1;
                return;
            };
            if tx.date < shared.barrier_ms.load(Ordering::Acquire) {
                out.before_barrier += 1;
                return;
            }
            // Bounded: a few more than asked for, enough to see duplicates and reordering.
            if out.counted.len() < shared.events + 16 {
                out.counted.push((tx.id, received - tx.date as f64));
            }
            let distinct = out.counted.iter().map(|(id, _)| id).collect::<HashSet<_>>().len();
            if !seen_done && distinct >= shared.events {
                seen_done = true;
                shared.done.fetch_add(1, Ordering::AcqRel);
            }
        };
        let more = match dechunk.as_mut() {
            Some(d) => d.feed(&pending, &mut |payload| parser.feed(payload, &mut on_event)),
            None => {
                parser.feed(&pending, &mut on_event);
                true
            }
        };
        pending.clear();
        if !more {
            out.ended_early = true;
            shared.ended.fetch_add(1, Ordering::AcqRel);
            break;
        }
    }
    out.heartbeats = parser.comments;
    out
}

// ---- statistics ---------------------------------------------------------------------------------

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn fmt_ms(v: f64) -> String {
    if v.is_nan() { "nan".into() } else { format!("{v:.1}") }
}

// ---- the run ------------------------------------------------------------------------------------

async fn run(args: Args) -> Result<bool, BoxError> {
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.timeout_secs);
    let http = reqwest::Client::builder()
        .redirect(Policy::none())
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(10))
        .pool_idle_timeout(Duration::from_secs(5))
        .build()?;

    let (monitor_stop, monitor_rx) = watch::channel(false);
    let monitor = args.app_pid.map(|pid| RssMonitor::start(pid, monitor_rx));
    let rss_start = monitor.as_ref().map_or(-1, RssMonitor::now_kib);

    // 1. Sessions (argon2 on the server: a few at a time is as fast as it gets).
    let sessions = if args.no_login { 0 } else { args.sessions };
    let logins: Vec<Result<String, BoxError>> = futures::stream::iter(0..sessions)
        .map(|_| browser_login(&http, &args.base, &args.user, &args.password))
        .buffer_unordered(4)
        .collect()
        .await;
    let mut cookies: Vec<Arc<str>> = Vec::with_capacity(args.sessions);
    for login in logins {
        cookies.push(Arc::from(login.map_err(|e| format!("login failed: {e}"))?.as_str()));
    }
    if cookies.is_empty() {
        cookies.push(Arc::from(""));
    }
    let login_secs = started.elapsed().as_secs_f64();
    eprintln!("sse_bench: {} sessions signed in in {login_secs:.1}s", cookies.len());
    let rss_logged_in = monitor.as_ref().map_or(-1, RssMonitor::now_kib);

    // 2. Streams.
    let shared = Arc::new(Shared {
        barrier_ms: AtomicI64::new(i64::MAX),
        connected: AtomicUsize::new(0),
        failed: AtomicUsize::new(0),
        done: AtomicUsize::new(0),
        ended: AtomicUsize::new(0),
        events: args.events,
    });
    let events = args.events_base.strip_prefix("http://").ok_or("--events-base must be http://")?;
    let (addr, prefix) = match events.split_once('/') {
        Some((addr, prefix)) => (addr, format!("/{prefix}")),
        None => (events, String::new()),
    };
    let addr: Arc<str> = Arc::from(addr);
    let path: Arc<str> = Arc::from(format!("{prefix}/events").as_str());
    let handshakes = Arc::new(Semaphore::new(args.connect_concurrency));
    let (stop_tx, stop_rx) = watch::channel(false);
    let connect_started = Instant::now();
    let tasks: Vec<_> = (0..args.clients)
        .map(|i| {
            tokio::spawn(sse_client(
                addr.clone(),
                path.clone(),
                cookies[i % cookies.len()].clone(),
                client_address(i),
                shared.clone(),
                handshakes.clone(),
                stop_rx.clone(),
            ))
        })
        .collect();

    let mut last_report = Instant::now();
    let mut timed_out = false;
    loop {
        let connected = shared.connected.load(Ordering::Acquire);
        let failed = shared.failed.load(Ordering::Acquire);
        if connected + failed >= args.clients {
            break;
        }
        if Instant::now() >= deadline {
            timed_out = true;
            break;
        }
        if last_report.elapsed() >= Duration::from_secs(2) {
            eprintln!("sse_bench: {connected}/{} connected, {failed} failed", args.clients);
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let connect_secs = connect_started.elapsed().as_secs_f64();
    // T0: strictly after the current millisecond, so every counted transaction was dated (and
    // therefore published) after the last stream subscribed.
    let barrier = now_ms_f64().floor() as i64 + 1;
    shared.barrier_ms.store(barrier, Ordering::Release);
    let connected = shared.connected.load(Ordering::Acquire);
    let rss_connected = monitor.as_ref().map_or(-1, RssMonitor::now_kib);
    let app_pid = args.app_pid.map(|p| p.to_string());
    let cpu_at = |pid: Option<&str>| pid.and_then(cpu_ticks).map_or(-1, |t| t as i64);
    let (app_cpu0, own_cpu0) = (cpu_at(app_pid.as_deref()), cpu_at(Some("self")));
    eprintln!(
        "sse_bench: {connected}/{} streams open in {connect_secs:.1}s ({} failed); waiting for {} \
         transaction events each",
        args.clients,
        shared.failed.load(Ordering::Acquire),
        args.events
    );

    // 3. Events.
    let wait_started = Instant::now();
    while !timed_out {
        let done = shared.done.load(Ordering::Acquire);
        let ended = shared.ended.load(Ordering::Acquire);
        if done + ended >= shared.connected.load(Ordering::Acquire) {
            break;
        }
        if Instant::now() >= deadline {
            timed_out = true;
            break;
        }
        if last_report.elapsed() >= Duration::from_secs(2) {
            eprintln!("sse_bench: {done}/{connected} clients have all their events");
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let wait_secs = wait_started.elapsed().as_secs_f64();
    let rss_max = monitor.as_ref().map_or(-1, RssMonitor::max_kib);
    // CPU seconds used during the event phase, by the app and by this client.
    let cpu_secs = |before: i64, after: i64| {
        if before < 0 || after < 0 { f64::NAN } else { (after - before) as f64 / TICKS_PER_SEC }
    };
    let app_cpu = cpu_secs(app_cpu0, cpu_at(app_pid.as_deref()));
    let own_cpu = cpu_secs(own_cpu0, cpu_at(Some("self")));
    let _ = monitor_stop.send(true);
    let _ = stop_tx.send(true);
    let mut outs = Vec::with_capacity(tasks.len());
    for task in tasks {
        outs.push(task.await?);
    }

    // 4. Verdict: the expected set is the first E transactions after T0 (by date) that anyone saw.
    let mut seen: HashMap<u64, f64> = HashMap::new();
    for out in &outs {
        for (id, latency) in &out.counted {
            seen.entry(*id).or_insert(*latency);
        }
    }
    // Sort by id: ids are `date_ms * 1000 + random`, so id order is date order.
    let mut ids: Vec<u64> = seen.keys().copied().collect();
    ids.sort_unstable();
    ids.truncate(args.events);
    let expected: HashSet<u64> = ids.iter().copied().collect();

    let mut latencies: Vec<f64> = Vec::with_capacity(args.clients * args.events);
    let mut received = 0usize;
    let mut duplicates = 0usize;
    let mut failures: BTreeMap<String, usize> = BTreeMap::new();
    let (mut before, mut other, mut unparsable, mut heartbeats, mut ended, mut retried) =
        (0, 0, 0, 0, 0, 0);
    let mut connect_ms: Vec<f64> = Vec::with_capacity(outs.len());
    for out in &outs {
        if let Some(why) = &out.failure {
            *failures.entry(why.clone()).or_default() += 1;
        } else {
            connect_ms.push(out.connect_ms);
        }
        let mut got: HashSet<u64> = HashSet::new();
        for (id, latency) in &out.counted {
            if !expected.contains(id) {
                continue;
            }
            if got.insert(*id) {
                latencies.push(*latency);
            } else {
                duplicates += 1;
            }
        }
        received += got.len();
        before += out.before_barrier;
        other += out.other_events;
        unparsable += out.unparsable;
        heartbeats += out.heartbeats;
        ended += usize::from(out.ended_early);
        retried += usize::from(out.connect_attempts > 1);
    }
    latencies.sort_by(f64::total_cmp);
    connect_ms.sort_by(f64::total_cmp);
    let events_expected = args.clients * args.events;
    let missing = events_expected - received.min(events_expected);
    let failed = outs.iter().filter(|o| o.failure.is_some()).count();
    let (p50, p99, max) = (
        percentile(&latencies, 50.0),
        percentile(&latencies, 99.0),
        latencies.last().copied().unwrap_or(f64::NAN),
    );

    println!(
        "clients={} connected={connected} failed={failed} sessions={} \
         events_expected={events_expected} events_received={received} missing={missing} \
         duplicates={duplicates} disconnects={ended} distinct_tx={} p50_ms={} p99_ms={} \
         max_ms={} connect_secs={connect_secs:.2} \
         wait_secs={wait_secs:.2} timed_out={timed_out} failures={} rss_start_kib={rss_start} \
         rss_logged_in_kib={rss_logged_in} rss_connected_kib={rss_connected} rss_max_kib={rss_max} \
         app_cpu_secs={app_cpu:.2} client_cpu_secs={own_cpu:.2}",
        args.clients,
        cookies.len(),
        ids.len(),
        fmt_ms(p50),
        fmt_ms(p99),
        fmt_ms(max),
        if failures.is_empty() {
            "none".to_owned()
        } else {
            failures
                .iter()
                .map(|(why, n)| format!("{}:{n}", why.replace(' ', "_")))
                .collect::<Vec<_>>()
                .join(",")
        },
    );
    println!("--- sse_bench summary");
    println!(
        "  {} clients over {} sessions ({} handshakes at a time, {} worker threads)",
        args.clients,
        cookies.len(),
        args.connect_concurrency,
        args.threads
    );
    println!(
        "  connected {connected}, failed {failed}{}; all settled in {connect_secs:.2}s \
         (handshake p50 {} ms, p99 {} ms); {retried} needed a retry",
        if failures.is_empty() { String::new() } else { format!(" {failures:?}") },
        fmt_ms(percentile(&connect_ms, 50.0)),
        fmt_ms(percentile(&connect_ms, 99.0)),
    );
    println!(
        "  transaction events after T0: {received}/{events_expected} delivered ({missing} missing, \
         {duplicates} duplicates) for {} distinct transactions, in {wait_secs:.2}s{}",
        ids.len(),
        if timed_out { " — TIMED OUT" } else { "" }
    );
    println!(
        "  latency (receipt − tx.date): p50 {} ms, p99 {} ms, max {} ms over {} deliveries",
        fmt_ms(p50),
        fmt_ms(p99),
        fmt_ms(max),
        latencies.len()
    );
    println!(
        "  also: {before} transaction events before T0, {other} balance/spenders events, \
         {heartbeats} comments, {unparsable} unparsable, {ended} streams ended early"
    );
    if monitor.is_some() {
        let mib = |kib: i64| kib as f64 / 1024.0;
        println!(
            "  app RSS: {:.0} MiB at start, {:.0} MiB after the logins, {:.0} MiB with all streams \
             open, {:.0} MiB max",
            mib(rss_start),
            mib(rss_logged_in),
            mib(rss_connected),
            mib(rss_max)
        );
        println!(
            "  CPU during the event phase ({wait_secs:.1}s): app {app_cpu:.2}s, this client \
             {own_cpu:.2}s"
        );
    }
    Ok(missing == 0 && failed == 0 && !timed_out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dechunk_handles_any_split() {
        let wire = b"5\r\nhello\r\nb;ext=1\r\n world, and\r\n0\r\n\r\n";
        for split in 0..wire.len() {
            let mut d = Dechunk::default();
            let mut got = Vec::new();
            let more = d.feed(&wire[..split], &mut |p| got.extend_from_slice(p));
            let last = more && d.feed(&wire[split..], &mut |p| got.extend_from_slice(p));
            assert_eq!(got, b"hello world, and", "split at {split}");
            assert!(!last, "the empty chunk ends the body (split at {split})");
        }
    }

    #[test]
    fn csrf_input_is_found() {
        let html = r#"<form><input type="hidden" name="csrf" value="abc_DEF-1"></form>"#;
        assert_eq!(hidden_csrf(html).as_deref(), Some("abc_DEF-1"));
    }
}
