//! Creates transactions for one account through the app's real write path (`Generator::one`: read
//! the balance, then the atomic Lua script that writes the document, the stream entry and the
//! spenders and publishes the event) — test data for `scripts/bench`.
//!
//! ```sh
//! cargo run --release --example load_transactions -- <redis_url> <key_prefix> <account> <count>
//! cargo run --release --example load_transactions -- redis://127.0.0.1:6379 redbank: 1580783161 100
//! ```
//!
//! The account must exist (the app creates the demo accounts when it starts). Prints
//! `count=… elapsed_ms=… per_sec=… conflicts=…` on stdout.
//!
//! Sequential on purpose: the write script refuses a transaction whose expected balance moved
//! (`CONFLICT`), so concurrent writers on one account would fail; a conflict (e.g. the app's own
//! generator wrote meanwhile) is retried with a fresh balance. Consecutive transactions are also
//! kept at least one millisecond apart, so their dates (and the balance chart's points) differ.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use redbank::Config;
use redbank::bank::generator::{Generator, vendors};
use redbank::bank::store;
use redbank::clock::now_ms;
use redbank::redis::Db;

const USAGE: &str = "usage: load_transactions <redis_url> <key_prefix> <account> <count>";

/// Conflicts tolerated in a row before giving up (something else keeps writing to the account).
const MAX_CONFLICTS_IN_A_ROW: u32 = 50;

#[path = "common/exit.rs"]
mod exit;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    exit::exit("load_transactions", run().await)
}

async fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, prefix, number, count] = args.as_slice() else {
        return Err(USAGE.into());
    };
    let count: u64 = count.parse().map_err(|_| format!("count must be a number\n{USAGE}"))?;
    let config = Config { key_prefix: prefix.clone(), ..Config::default() };
    config.validate()?;
    let db = Db::connect(url, prefix, Duration::from_secs(5)).map_err(|e| e.to_string())?;
    let account = store::get_account(&db, number)
        .await
        .map_err(|e| format!("reading account {number}: {e}"))?
        .ok_or_else(|| {
            format!(
                "account {number} not found under prefix {prefix:?} (start the app once with this \
                 key_prefix so it creates the demo accounts)"
            )
        })?;
    let vendors = vendors().map_err(|e| e.to_string())?;
    let generator =
        Generator::new(db.clone(), config, Arc::new(vendors)).map_err(|e| e.to_string())?;

    let started = Instant::now();
    let mut done = 0u64;
    let mut conflicts = 0u64;
    let mut in_a_row = 0u32;
    let mut last_ms = 0i64;
    while done < count {
        // At most one transaction per millisecond (see the module docs); the wait is < 1 ms.
        while now_ms() <= last_ms {
            tokio::task::yield_now().await;
        }
        match generator.one(&account).await {
            Ok((tx, _)) => {
                last_ms = tx.date;
                done += 1;
                in_a_row = 0;
            }
            Err(e) if e.to_string().contains("CONFLICT") && in_a_row < MAX_CONFLICTS_IN_A_ROW => {
                conflicts += 1;
                in_a_row += 1;
            }
            Err(e) => return Err(format!("after {done} transactions: {e}")),
        }
    }
    let elapsed = started.elapsed();
    let per_sec = done as f64 / elapsed.as_secs_f64().max(1e-9);
    println!(
        "count={done} elapsed_ms={} per_sec={per_sec:.0} conflicts={conflicts}",
        elapsed.as_millis()
    );
    Ok(())
}
