//! Live events only where they are watched, for `scripts/bench`: N customers (created through the
//! app's own store code, each with one mobile session) each watch their own account over one
//! event stream — the first half on app instance A, the second half on instance B, which share one
//! Redis — while the generator writes a transaction for every account, again and again. After
//! all streams are open it counts, for a window of W seconds, what each instance heard from Redis
//! (`events_fanned_out_total` on its metrics port) against what was published
//! (`generator_transactions_total` of both), and what reached the streams: every transaction
//! the window wrote to a watched account (its stream, read back with `XRANGE`) must arrive once on
//! that account's stream, with latency = receipt − the transaction's date.
//!
//! ```sh
//! cargo run --release --example watch_bench -- <redis_url> <key_prefix> <customers> <window_secs> \
//!     <events_a> <metrics_a> <events_b> <metrics_b>
//! ```
//!
//! `events_*` is where an instance serves `/events` (its stream listener), `metrics_*` its
//! metrics listener (`http://127.0.0.1:PORT`). The instances must allow N streams from one
//! address (`sse_max_per_address`). At the end the customers leave the account list again, so the
//! generator stops writing for them. Prints `customers=… published=… heard_a=… heard_b=…
//! expected=… delivered=… missing=… duplicates=… p50_ms=… p99_ms=… max_ms=…` on stdout.

use std::collections::HashSet;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use redbank::Config;
use redbank::auth::model::{Assurance, SessionKind};
use redbank::clock::now_ms;
use redbank::redis::Db;

#[path = "common/customers.rs"]
mod customers;
#[path = "common/sse.rs"]
mod sse;

const USAGE: &str = "usage: watch_bench <redis_url> <key_prefix> <customers> <window_secs> \
<events_a> <metrics_a> <events_b> <metrics_b>";

/// Customers made, and streams opened, at a time.
const CONCURRENCY: usize = 64;
/// Client addresses the streams come from (127.3.0.1, …), round robin: the stream listener lets
/// 16 connections from one address be in their handshake at once, and here 8 are at most.
const ADDRESSES: usize = 8;

#[path = "common/exit.rs"]
mod exit;

#[tokio::main]
async fn main() -> ExitCode {
    exit::exit("watch_bench", run().await)
}

/// One transaction event as a stream delivered it: the account's customer, its stream id (the
/// SSE `id`), the transaction's id and date, and when it arrived (ms).
struct Received {
    customer: usize,
    id: String,
    tx: u64,
    date: i64,
    at: i64,
}

/// A counter from an instance's metrics listener.
async fn counter(http: &reqwest::Client, metrics: &str, name: &str) -> Result<u64, String> {
    let text = http
        .get(format!("{metrics}/metrics"))
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|e| format!("{metrics}/metrics: {e}"))?
        .text()
        .await
        .map_err(|e| e.to_string())?;
    text.lines()
        .filter(|line| line.split([' ', '{']).next() == Some(name))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .reduce(|a, b| a + b)
        .ok_or_else(|| format!("{metrics}/metrics has no {name}"))
}

/// Opens customer `n`'s stream and records its transaction events until the task is dropped.
/// Reports once, on `opened`, whether the stream answered 200.
async fn watch(
    http: reqwest::Client,
    url: String,
    token: String,
    n: usize,
    log: Arc<Mutex<Vec<Received>>>,
    opened: tokio::sync::mpsc::UnboundedSender<Result<(), String>>,
) {
    let res = match http.get(&url).bearer_auth(&token).send().await {
        Ok(res) if res.status() == 200 => res,
        Ok(res) => {
            let _ = opened.send(Err(format!("{url}: {}", res.status())));
            return;
        }
        Err(e) => {
            let _ = opened.send(Err(format!("{url}: {e:?}")));
            return;
        }
    };
    let _ = opened.send(Ok(()));
    let mut body = res.bytes_stream();
    let mut parser = sse::SseParser::default();
    while let Some(Ok(chunk)) = body.next().await {
        let at = now_ms();
        parser.feed(&chunk, &mut |event, data, id| {
            if event != "transaction" {
                return;
            }
            if let Ok(tx) = serde_json::from_str::<sse::TxLite>(data) {
                let seen =
                    Received { customer: n, id: id.to_owned(), tx: tx.id, date: tx.date, at };
                log.lock().unwrap_or_else(|e| e.into_inner()).push(seen);
            }
        });
    }
}

/// Stream ids (`<ms>-<seq>`) of `account`'s entries written from `from_ms` to `to_ms`.
async fn written(db: &Db, account: &str, from_ms: i64, to_ms: i64) -> Result<Vec<String>, String> {
    let key = db.keys.stream(account);
    // Each entry is [id, [field, value, …]]: only the id is read.
    let entries: Vec<Vec<redis::Value>> = db
        .run(async |c| redis::cmd("XRANGE").arg(&key).arg(from_ms).arg(to_ms).query_async(c).await)
        .await
        .map_err(|e| e.to_string())?;
    entries
        .iter()
        .map(|entry| match entry.first() {
            Some(redis::Value::Data(id)) => Ok(String::from_utf8_lossy(id).into_owned()),
            other => Err(format!("XRANGE {key}: an entry without an id ({other:?})")),
        })
        .collect()
}

fn stream_ms(id: &str) -> i64 {
    id.split('-').next().and_then(|ms| ms.parse().ok()).unwrap_or(0)
}

async fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, prefix, count, window, events_a, metrics_a, events_b, metrics_b] = args.as_slice()
    else {
        return Err(USAGE.into());
    };
    let count: usize = count.parse().map_err(|_| USAGE.to_string())?;
    let window: u64 = window.parse().map_err(|_| USAGE.to_string())?;
    // Sessions outlive the run whatever the app's idle timeout (the streams never touch them).
    let mut config = Config { key_prefix: prefix.clone(), ..Config::default() };
    config.session.idle_secs = 3600;
    let db = Db::connect(url, prefix, Duration::from_secs(5)).map_err(|e| e.to_string())?;

    let users: Vec<_> = (0..count).map(|n| customers::user("watch", '8', n)).collect();
    let tokens: Vec<String> = futures::stream::iter(&users)
        .map(|user| {
            let (db, config) = (&db, &config);
            async move {
                customers::open(db, user).await?;
                let assurance = Assurance::password(now_ms());
                customers::sign_in(db, config, user, SessionKind::Mobile, "127.0.0.1", assurance)
                    .await
            }
        })
        .buffered(CONCURRENCY)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    eprintln!("watch_bench: {count} customers signed in");

    let clients = (0..ADDRESSES)
        .map(|k| {
            reqwest::Client::builder()
                .local_address(std::net::IpAddr::V4(std::net::Ipv4Addr::new(
                    127,
                    3,
                    0,
                    k as u8 + 1,
                )))
                .pool_max_idle_per_host(0)
                .build()
                .map_err(|e| e.to_string())
        })
        .collect::<Result<Vec<_>, String>>()?;
    let http = &clients[0];
    let log = Arc::new(Mutex::new(Vec::new()));
    let (opened_tx, mut opened) = tokio::sync::mpsc::unbounded_channel();
    let mut streams = Vec::with_capacity(count);
    for (n, token) in tokens.into_iter().enumerate() {
        let base = if n < count / 2 { events_a } else { events_b };
        let task = watch(
            clients[n % ADDRESSES].clone(),
            format!("{base}/events"),
            token,
            n,
            log.clone(),
            opened_tx.clone(),
        );
        streams.push(tokio::spawn(task));
        // At most CONCURRENCY connections being opened at once.
        if n + 1 >= CONCURRENCY {
            match opened.recv().await {
                Some(Ok(())) => {}
                Some(Err(e)) => return Err(format!("a stream was refused: {e}")),
                None => return Err("the streams' reports ended".into()),
            }
        }
    }
    for _ in 0..count.min(CONCURRENCY - 1) {
        match opened.recv().await {
            Some(Ok(())) => {}
            Some(Err(e)) => return Err(format!("a stream was refused: {e}")),
            None => return Err("the streams' reports ended".into()),
        }
    }
    eprintln!("watch_bench: {count} streams open; counting for {window} s");

    // The window: from when every stream is open (and, after a second, subscribed) to W s later.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let heard =
        async |metrics: &str| counter(http, metrics, "redbank_events_fanned_out_total").await;
    let made =
        async |metrics: &str| counter(http, metrics, "redbank_generator_transactions_total").await;
    let from = now_ms();
    let before = (heard(metrics_a).await?, heard(metrics_b).await?);
    let made_before = made(metrics_a).await? + made(metrics_b).await?;
    tokio::time::sleep(Duration::from_secs(window)).await;
    let after = (heard(metrics_a).await?, heard(metrics_b).await?);
    let made_after = made(metrics_a).await? + made(metrics_b).await?;
    let to = now_ms();
    // What was written in the window has a few seconds to arrive.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for stream in &streams {
        stream.abort();
    }

    let mut expected = HashSet::new();
    for user in &users {
        for id in written(&db, &user.account, from, to).await? {
            expected.insert((user.account.clone(), id));
        }
    }
    let received = std::mem::take(&mut *log.lock().unwrap_or_else(|e| e.into_inner()));
    let mut delivered = HashSet::new();
    let mut seen = HashSet::new();
    let mut duplicates = 0usize;
    let mut latencies = Vec::new();
    for r in &received {
        let ms = stream_ms(&r.id);
        if ms < from || ms > to {
            continue;
        }
        // The same transaction twice on one stream, whatever its event id.
        if !seen.insert((r.customer, r.tx)) {
            duplicates += 1;
            continue;
        }
        delivered.insert((users[r.customer].account.clone(), r.id.clone()));
        latencies.push(r.at - r.date);
    }
    let missing = expected.difference(&delivered).count();
    let delivered = expected.intersection(&delivered).count();
    latencies.sort_unstable();
    let at = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };

    // The customers leave the account list: the generator stops writing for them.
    let numbers: Vec<&str> = users.iter().map(|u| u.account.as_str()).collect();
    let accounts = db.keys.accounts();
    db.run(async |c| {
        redis::cmd("SREM").arg(&accounts).arg(&numbers).query_async::<_, i64>(c).await
    })
    .await
    .map_err(|e| e.to_string())?;

    println!(
        "customers={count} window_ms={} published={} heard_a={} heard_b={} expected={} \
         delivered={} missing={missing} duplicates={duplicates} p50_ms={} p99_ms={} max_ms={}",
        to - from,
        made_after - made_before,
        after.0 - before.0,
        after.1 - before.1,
        expected.len(),
        delivered,
        at(0.5),
        at(0.99),
        latencies.last().copied().unwrap_or(0),
    );
    Ok(())
}
