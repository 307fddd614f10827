//! Confirmed transfers per second, for `scripts/bench`: N customers (created through the app's own
//! store code, each with a passkey — a software authenticator registered through the app's own
//! passkey functions — and a signed-in AAL2 mobile session) each send bob $50.00 —
//! `POST /api/v1/transfers` (confirmation required), `POST …/options` (the WebAuthn challenge
//! bound to that transfer) and `POST …/confirm` with the passkey's signature, as the customer's
//! app would — C at a time, over HTTP.
//!
//! ```sh
//! cargo run --release --example transfer_bench -- <redis_url> <key_prefix> <base_url> <count> <concurrency> [first]
//! ```
//!
//! The app's `public_origin` is `ROCKET_PUBLIC_ORIGIN` (default `http://localhost:8080`): the
//! passkeys sign for it. Ceremonies are limited per client address (60 a minute), so the
//! customers come from 127.1.0.x, 50 to an address. At the end the customers' accounts leave the
//! account list (the generator would otherwise write for each of them every interval). Prints
//! `count=… elapsed_ms=… per_sec=… p50_ms=… p99_ms=… failed=…` (latency: create + options +
//! confirm) on stdout.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use redbank::Config;
use redbank::auth::factors::passkey;
use redbank::auth::factors::passkey::RelyingParty;
use redbank::auth::model::{Assurance, SessionKind};
use redbank::clock::now_ms;
use redbank::redis::Db;
use serde_json::{Value, json};

const USAGE: &str =
    "usage: transfer_bench <redis_url> <key_prefix> <base_url> <count> <concurrency> [first]";
const PAYEE: &str = "1580783161"; // bob's

#[path = "common/exit.rs"]
mod exit;

#[tokio::main]
async fn main() -> ExitCode {
    exit::exit("transfer_bench", run().await)
}

#[path = "../tests/all/common/passkey.rs"]
mod device;

#[path = "common/customers.rs"]
mod customers;

/// Customers per client address (ceremonies are limited per address and minute).
const PER_ADDRESS: usize = 50;

/// A bench customer: session token, passkey, and the client (address) it sends from.
struct Customer {
    token: String,
    device: tokio::sync::Mutex<device::Device>,
    http: reqwest::Client,
}

fn address(n: usize) -> std::net::IpAddr {
    let k = n / PER_ADDRESS;
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 1, (k / 250) as u8, (k % 250 + 1) as u8))
}

async fn customer(
    db: &Db,
    config: &Config,
    rp: &RelyingParty,
    http: reqwest::Client,
    n: usize,
) -> Result<Customer, String> {
    let user = customers::user("bench", '7', n);
    customers::open(db, &user).await?;
    let (username, holder) = (&user.username, &user.display_name);
    let e = |e: redbank::Error| e.to_string();
    // The passkey, registered through the app's own functions (the e-mailed code a first factor
    // needs over the API is the routes' rule, not the bench's subject).
    let mut device = device::Device::new(&config.web.public_origin);
    // Registered "from" an address of its own: the HTTP addresses' ceremony budget is the run's.
    let ip = format!("10.{}.{}.{}", (n >> 16) & 255, (n >> 8) & 255, n & 255);
    let options = passkey::start_registration(db, rp, username, holder, "bench", &ip);
    let answer = device.register(&options.await.map_err(e)?);
    let new = passkey::verify_registration(db, rp, username, &answer).await.map_err(e)?;
    passkey::store_registration(db, username, new).await.map_err(e)?;
    let assurance = Assurance::passkey(now_ms());
    let ip = address(n).to_string();
    let token = customers::sign_in(db, config, &user, SessionKind::Mobile, &ip, assurance).await?;
    Ok(Customer { token, device: device.into(), http })
}

async fn send(base: &str, c: &Customer, n: usize) -> Result<Duration, String> {
    let http = &c.http;
    let started = Instant::now();
    let body = json!({"to_account": PAYEE, "amount": 50, "reference": format!("bench {n}")});
    let res = http
        .post(format!("{base}/api/v1/transfers"))
        .bearer_auth(&c.token)
        .header("Idempotency-Key", format!("bench-{n}-{}", now_ms()))
        .json(&body)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = res.status();
    let created: Value = res.json().await.map_err(|e| e.to_string())?;
    if status != 201 || created["status"] != "confirmation_required" {
        return Err(format!("create: {status} {created}"));
    }
    let id = created["id"].as_str().unwrap_or_default();
    let res = http
        .post(format!("{base}/api/v1/transfers/{id}/options"))
        .bearer_auth(&c.token)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = res.status();
    let options: Value = res.json().await.map_err(|e| e.to_string())?;
    if status != 200 {
        return Err(format!("options: {status} {options}"));
    }
    let assertion = c.device.lock().await.sign(&options);
    let res = http
        .post(format!("{base}/api/v1/transfers/{id}/confirm"))
        .bearer_auth(&c.token)
        .json(&assertion)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = res.status();
    let done: Value = res.json().await.map_err(|e| e.to_string())?;
    if status != 200 || done["status"] != "completed" {
        return Err(format!("confirm: {status} {done}"));
    }
    Ok(started.elapsed())
}

async fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (url, prefix, base, count, concurrency, first) = match args.as_slice() {
        [url, prefix, base, count, concurrency] => (url, prefix, base, count, concurrency, "0"),
        [url, prefix, base, count, concurrency, first] => {
            (url, prefix, base, count, concurrency, first.as_str())
        }
        _ => return Err(USAGE.into()),
    };
    // Customers `first..first + count`: a second run in the same minute takes new ones, from new
    // addresses (each address may start 60 ceremonies a minute).
    let first: usize = first.parse().map_err(|_| USAGE.to_string())?;
    let count: usize = count.parse().map_err(|_| USAGE.to_string())?;
    let concurrency: usize = concurrency.parse().map_err(|_| USAGE.to_string())?;
    let mut config = Config { key_prefix: prefix.clone(), ..Config::default() };
    if let Ok(origin) = std::env::var("ROCKET_PUBLIC_ORIGIN") {
        config.web.public_origin = origin;
    }
    let rp = RelyingParty::new(&config)?;
    let db = Db::connect(url, prefix, Duration::from_secs(5)).map_err(|e| e.to_string())?;
    let k0 = first / PER_ADDRESS;
    let clients = (k0..(first + count).div_ceil(PER_ADDRESS))
        .map(|k| {
            reqwest::Client::builder()
                .local_address(address(k * PER_ADDRESS))
                .pool_max_idle_per_host(concurrency)
                .build()
                .map_err(|e| e.to_string())
        })
        .collect::<Result<Vec<_>, String>>()?;
    let mut customers = Vec::with_capacity(count);
    for n in first..first + count {
        let http = clients[n / PER_ADDRESS - k0].clone();
        customers.push(Arc::new(customer(&db, &config, &rp, http, n).await?));
    }
    let started = Instant::now();
    let results: Vec<Result<Duration, String>> =
        futures::stream::iter(customers.iter().enumerate())
            .map(|(n, c)| {
                let (base, c) = (base.clone(), c.clone());
                async move { send(&base, &c, n).await }
            })
            .buffer_unordered(concurrency)
            .collect()
            .await;
    let elapsed = started.elapsed();
    let mut latencies: Vec<Duration> =
        results.iter().filter_map(|r| r.as_ref().ok().copied()).collect();
    let failed: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    if let Some(first) = failed.first() {
        eprintln!("transfer_bench: {} failed, first: {first}", failed.len());
    }
    latencies.sort();
    let at = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    // The customers are the bench's own: out of the account list again, so the app's generator
    // (one transaction per account per interval) does not go on writing for them in later rows.
    let numbers: Vec<String> =
        (first..first + count).map(|n| customers::user("bench", '7', n).account).collect();
    let accounts = db.keys.accounts();
    db.run(async |c| {
        redis::cmd("SREM").arg(&accounts).arg(&numbers).query_async::<_, i64>(c).await
    })
    .await
    .map_err(|e| e.to_string())?;
    let done = latencies.len();
    println!(
        "count={done} elapsed_ms={} per_sec={:.0} p50_ms={:.1} p99_ms={:.1} failed={}",
        elapsed.as_millis(),
        done as f64 / elapsed.as_secs_f64().max(1e-9),
        at(0.5),
        at(0.99),
        failed.len()
    );
    Ok(())
}
