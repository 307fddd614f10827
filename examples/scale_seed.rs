//! A big bank for `scripts/bench`'s scale rows: customers `from..to`, each with an account, T
//! transactions (the generator's own write path, `Generator::one`) and S signed-in sessions —
//! all through the app's own store code, many customers at a time (the pool's connections carry
//! them pipelined), without argon2 (a session is what a sign-in leaves, not the hashing).
//!
//! ```sh
//! cargo run --release --example scale_seed -- <redis_url> <key_prefix> <from> <to> <sessions> <transactions>
//! ```
//!
//! The customers are not in the generator's account list (`accounts`), so a running generator
//! leaves them alone; their sessions live an hour whatever the app's idle timeout. Prints
//! `customers=… sessions=… transactions=… elapsed_ms=…` on stdout.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use redbank::Config;
use redbank::auth::model::{Assurance, SessionKind};
use redbank::bank::generator::{Generator, vendors};
use redbank::bank::store;
use redbank::clock::now_ms;
use redbank::redis::Db;

#[path = "common/customers.rs"]
mod customers;

const USAGE: &str =
    "usage: scale_seed <redis_url> <key_prefix> <from> <to> <sessions> <transactions>";

/// Customers seeded at a time.
const CONCURRENCY: usize = 128;

#[path = "common/exit.rs"]
mod exit;

#[tokio::main]
async fn main() -> ExitCode {
    exit::exit("scale_seed", run().await)
}

/// Customer `n`: account, transactions, sessions (half of them browsers, from two addresses of
/// the customer's own — home and phone — as a bank's customers sign in).
async fn seed(
    db: &Db,
    config: &Config,
    generator: &Generator,
    n: usize,
    sessions: usize,
    transactions: usize,
) -> Result<(), String> {
    let user = customers::user("scale", '9', n);
    customers::open(db, &user).await?;
    let account = store::get_account(db, &user.account)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("account {} vanished", user.account))?;
    for _ in 0..transactions {
        generator.one(&account).await.map_err(|e| format!("{}: {e}", user.account))?;
    }
    for s in 0..sessions {
        let kind = if s % 2 == 0 { SessionKind::Browser } else { SessionKind::Mobile };
        let ip = format!("10.{}.{}.{}", (n >> 8) & 255, n & 255, 1 + 2 * (n >> 16) + s % 2);
        customers::sign_in(db, config, &user, kind, &ip, Assurance::password(now_ms())).await?;
    }
    Ok(())
}

async fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, prefix, from, to, sessions, transactions] = args.as_slice() else {
        return Err(USAGE.into());
    };
    let num = |s: &str| s.parse::<usize>().map_err(|_| USAGE.to_string());
    let (from, to, sessions, transactions) =
        (num(from)?, num(to)?, num(sessions)?, num(transactions)?);
    let mut config = Config { key_prefix: prefix.clone(), ..Config::default() };
    config.session.idle_secs = 3600;
    config.session.max_per_user = config.session.max_per_user.max(sessions);
    let db = Db::connect(url, prefix, Duration::from_secs(10)).map_err(|e| e.to_string())?;
    let vendors = vendors().map_err(|e| e.to_string())?;
    let generator =
        Generator::new(db.clone(), config.clone(), Arc::new(vendors)).map_err(|e| e.to_string())?;

    let started = Instant::now();
    let results: Vec<Result<(), String>> = futures::stream::iter(from..to)
        .map(|n| seed(&db, &config, &generator, n, sessions, transactions))
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    if let Some(e) = results.into_iter().find_map(Result::err) {
        return Err(e);
    }
    // Out of the generator's list (ensure_account put them there).
    let numbers: Vec<String> =
        (from..to).map(|n| customers::user("scale", '9', n).account).collect();
    let accounts = db.keys.accounts();
    for chunk in numbers.chunks(10_000) {
        db.run(async |c| {
            redis::cmd("SREM").arg(&accounts).arg(chunk).query_async::<_, i64>(c).await
        })
        .await
        .map_err(|e| e.to_string())?;
    }
    let customers = to.saturating_sub(from);
    println!(
        "customers={customers} sessions={} transactions={} elapsed_ms={}",
        customers * sessions,
        customers * transactions,
        started.elapsed().as_millis()
    );
    Ok(())
}
