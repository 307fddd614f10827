//! Accounts and transactions in Redis: the accounts, the balance, and the one atomic write of a
//! transaction (a Lua script). With [`history`](super::history) and [`search`](super::search), the
//! only modules that touch the account keys.
//!
//! Per account, everything shares the hash tag `{acct:<number>}`: balance (integer cents), stream
//! (one entry per transaction, carrying its document: live replay), the newest-100 list (the
//! recent list), the balance series at three resolutions (the chart), biggest-spenders sorted set,
//! and the transaction JSON documents (indexed by RediSearch, expiring after the retention).

use redis::{Script, Value};

use super::model::{Account, OPENING_BALANCE, Transaction};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::money::Cents;
use crate::redis::doc::to_json;
use crate::redis::lua::Call;
use crate::redis::{Db, value_text};

// ---- accounts ---------------------------------------------------------------------------------

/// Creates the account (document, membership, opening balance) unless it exists; an existing
/// balance is never reset.
pub async fn ensure_account(db: &Db, account: &Account) -> Result<()> {
    let keys = &db.keys;
    let doc = to_json(account)?;
    db.query::<()>(
        redis::pipe()
            .cmd("JSON.SET")
            .arg(keys.account(&account.number))
            .arg("$")
            .arg(&doc)
            .arg("NX")
            .ignore()
            .cmd("SET")
            .arg(keys.balance(&account.number))
            .arg(OPENING_BALANCE.0)
            .arg("NX")
            .ignore()
            .sadd(keys.accounts(), &account.number)
            .ignore(),
    )
    .await
}

/// Opens `account` with `opening` in it, for a customer who opened it themselves (listed for
/// transfer recovery, not for the generator); false when the number is taken.
pub async fn open_account(db: &Db, account: &Account, opening: Cents) -> Result<bool> {
    let keys = &db.keys;
    let doc = to_json(account)?;
    let key = keys.account(&account.number);
    let created: Option<String> =
        db.query(redis::cmd("JSON.SET").arg(&key).arg("$").arg(&doc).arg("NX")).await?;
    if created.is_none() {
        return Ok(false);
    }
    let balance = keys.balance(&account.number);
    db.query::<()>(
        redis::pipe()
            .cmd("SET")
            .arg(&balance)
            .arg(opening.0)
            .arg("NX")
            .ignore()
            .sadd(keys.accounts_opened(), &account.number)
            .ignore(),
    )
    .await?;
    Ok(true)
}

pub async fn get_account(db: &Db, number: &str) -> Result<Option<Account>> {
    let key = db.keys.account(number);
    let raw: Option<String> = db.query(redis::cmd("JSON.GET").arg(&key)).await?;
    raw.map(|raw| parse_account(number, &raw)).transpose()
}

/// The accounts of `numbers` that exist, in that order, read in one round trip: a pipeline of one
/// `JSON.GET` each (not one `JSON.MGET`), since each account lives on its own cluster slot.
pub async fn get_accounts(db: &Db, numbers: &[String]) -> Result<Vec<Account>> {
    let mut pipe = redis::pipe();
    for number in numbers {
        pipe.cmd("JSON.GET").arg(db.keys.account(number));
    }
    let raws: Vec<Option<String>> = db.query(&pipe).await?;
    let found = numbers.iter().zip(raws).filter_map(|(n, raw)| raw.map(|raw| (n, raw)));
    found.map(|(number, raw)| parse_account(number, &raw)).collect()
}

fn parse_account(number: &str, raw: &str) -> Result<Account> {
    serde_json::from_str(raw).map_err(|e| Error::Internal(format!("account {number}: {e}")))
}

/// Every account: the configured ones and those customers opened.
pub async fn all_account_numbers(db: &Db) -> Result<Vec<String>> {
    let (configured, opened) = (db.keys.accounts(), db.keys.accounts_opened());
    let mut numbers: Vec<String> =
        db.query(redis::cmd("SUNION").arg(&configured).arg(&opened)).await?;
    numbers.sort();
    Ok(numbers)
}

/// How often each app instance says which accounts it streams ([`note_watched`]); an account
/// not said again within three of these is no longer watched.
pub const WATCH_REFRESH: std::time::Duration = std::time::Duration::from_secs(2);

/// Notes that `numbers` are streamed by this instance now (for the generator, in demo mode).
pub async fn note_watched(db: &Db, numbers: &[String], now: i64) -> Result<()> {
    if numbers.is_empty() {
        return Ok(());
    }
    let key = db.keys.watched();
    db.run(async |c| {
        let mut cmd = redis::cmd("ZADD");
        cmd.arg(&key);
        for number in numbers {
            cmd.arg(now).arg(number);
        }
        cmd.query_async::<_, ()>(c).await
    })
    .await
}

/// Up to `max` accounts streamed by some instance within three [`WATCH_REFRESH`] periods,
/// most recently noted first; older entries are dropped on the way.
pub async fn watched_accounts(db: &Db, now: i64, max: usize) -> Result<Vec<String>> {
    let key = db.keys.watched();
    let since = now - 3 * WATCH_REFRESH.as_millis() as i64;
    db.run(async |c| {
        let (numbers,): (Vec<String>,) = redis::pipe()
            .cmd("ZREMRANGEBYSCORE")
            .arg(&key)
            .arg("-inf")
            .arg(format!("({since}"))
            .ignore()
            .cmd("ZRANGE")
            .arg(&key)
            .arg("+inf")
            .arg(since)
            .arg("BYSCORE")
            .arg("REV")
            .arg("LIMIT")
            .arg(0)
            .arg(max)
            .query_async(c)
            .await?;
        Ok(numbers)
    })
    .await
}

/// The configured accounts (the generator's work list).
pub async fn account_numbers(db: &Db) -> Result<Vec<String>> {
    let key = db.keys.accounts();
    let mut numbers: Vec<String> = db.query(redis::cmd("SMEMBERS").arg(&key)).await?;
    numbers.sort();
    Ok(numbers)
}

pub async fn balance(db: &Db, number: &str) -> Result<Cents> {
    let key = db.keys.balance(number);
    let cents: Option<i64> = db.query(redis::cmd("GET").arg(&key)).await?;
    Ok(cents.map_or(OPENING_BALANCE, Cents))
}

// ---- the atomic write -------------------------------------------------------------------------

/// One transaction, atomically: check the balance is what the caller computed from, move it, write
/// the JSON document (with expiry), append it to the stream (trimmed by time; the entry carries the
/// document too, so the live replay reads one stream range and nothing else) and to the front of
/// the newest-100 list (`<stream id> <document>`: the recent list in one plain read), record the
/// closing balance of its second, minute and five minutes (the balance chart's three
/// resolutions, each trimmed to what its window needs), count the spending, and announce it on the
/// account's channel with the new top-5 spenders. Fails (changing nothing) if the balance moved
/// meanwhile, would go below zero, or the transaction id is taken.
///
/// The body leaves the new balance, stream id and announcement in `new`, `sid` and `msg`; scripts
/// that do more in the same atomic step (a transfer's debit and credit) wrap it
/// ([`RecordScript`]) and return `{new, sid, msg}`. KEYS[1..=8] and ARGV[1..=16] are its own; a
/// wrapper's start at 9 and 17. With an empty channel (ARGV[9]) nothing is published: the caller
/// announces it once a replica has it ([`record_with`]), and the announcement names the entry
/// before it (`prev`), so a stream that did not see that one reads the gap from the stream.
pub const RECORD_BODY: &str = include_str!("lua/record_body.lua");

/// A script around [`RECORD_BODY`]: `before` runs first (it may return early), `after` last (it
/// must return). Built once per process.
pub struct RecordScript(Script);

impl RecordScript {
    pub fn new(before: &str, after: &str) -> Self {
        RecordScript(Script::new(&format!("{before}\n{RECORD_BODY}\n{after}")))
    }
}

static RECORD: std::sync::LazyLock<RecordScript> =
    std::sync::LazyLock::new(|| RecordScript::new("", "return {new, sid, msg}"));

/// What [`record`] wrote: the new balance and the stream entry id (also the SSE event id).
#[derive(Debug, Clone)]
pub struct Recorded {
    pub balance: Cents,
    pub stream_id: String,
}

/// Writes `tx` (whose `balance_after` must be `expected + amount`) atomically; see [`RECORD_BODY`].
pub async fn record(
    db: &Db,
    config: &Config,
    expected: Cents,
    tx: &Transaction,
) -> Result<Recorded> {
    let reply: Vec<Value> = record_with(db, config, &RECORD, expected, tx, &[], &[]).await?;
    recorded(&reply)
}

/// The new balance and stream id of a `{new, sid}` reply.
pub fn recorded(reply: &[Value]) -> Result<Recorded> {
    match reply {
        [Value::Int(balance), sid, ..] => match value_text(sid) {
            Some(stream_id) => Ok(Recorded { balance: Cents(*balance), stream_id }),
            None => Err(Error::Internal("record: no stream id".into())),
        },
        _ => Err(Error::Internal(format!("record: unexpected reply {reply:?}"))),
    }
}

/// Runs `script` (a [`RecordScript`]) for `tx` with the wrapper's own keys and arguments after
/// the body's.
pub async fn record_with(
    db: &Db,
    config: &Config,
    script: &RecordScript,
    expected: Cents,
    tx: &Transaction,
    extra_keys: &[String],
    extra_args: &[String],
) -> Result<Vec<Value>> {
    let keys = &db.keys;
    let acct = &tx.account_id;
    let doc = to_json(tx)?;
    let retention_secs = config.bank.transaction_retention_days * 86_400;
    let min_id = tx.date - config.bank.stream_retention_hours as i64 * 3_600_000;
    // With replicas to wait for, the script does not announce the transaction: it is announced
    // here once one has it.
    let replicas = config.redis.replicas_to_ack();
    let channel = if replicas > 0 { String::new() } else { keys.events(acct) };
    let generation = db.generation();
    let mut call = Call::new(&script.0);
    call.key(keys.balance(acct))
        .key(keys.stream(acct))
        .key(keys.spenders(acct))
        .key(keys.transaction(acct, tx.id))
        .key(keys.balance_series(acct, SERIES[0].name))
        .key(keys.balance_series(acct, SERIES[1].name))
        .key(keys.balance_series(acct, SERIES[2].name))
        .key(keys.recent(acct));
    for key in extra_keys {
        call.key(key);
    }
    call.arg(OPENING_BALANCE.0)
        .arg(expected.0)
        .arg(tx.amount.0)
        .arg(&doc)
        .arg(retention_secs)
        .arg(min_id.max(0))
        .arg(tx.date)
        .arg(&tx.from_account_name)
        .arg(&channel)
        .arg(acct)
        .arg(&SERIES.map(|r| r.width_ms)[..])
        .arg(&SERIES.map(|r| r.window_ms)[..]);
    for arg in extra_args {
        call.arg(arg);
    }
    // Acknowledged (returned) only once it is on disk.
    let reply: Vec<Value> = db.run_durable(&call).await?;
    if replicas > 0 {
        if let Some(msg) = reply.get(2).and_then(value_text) {
            announce_when_replicated(db, config, generation, &keys.events(acct), &msg).await;
        }
    }
    Ok(reply)
}

/// Publishes a transaction's announcement once `min_replicas_ack` replicas have it. When none
/// confirms in time it is not announced (a failover now could still lose it): it stays in the
/// account's stream, and the next announcement on the account (whose `prev` then is not what a
/// stream saw last) makes every stream read the gap from the stream — by then it is replicated
/// too, being older. Pending, never announced and then lost. The write has happened whatever
/// goes wrong here: nothing is returned but logged.
async fn announce_when_replicated(db: &Db, config: &Config, since: u64, channel: &str, msg: &str) {
    if !db.replicated(config, since).await {
        rocket::warn!("a transaction was not confirmed by a replica in time: not announced live");
        return;
    }
    if let Err(e) = db.query::<i64>(redis::cmd("SPUBLISH").arg(channel).arg(msg)).await {
        rocket::warn!("a replicated transaction could not be announced: {e}");
    }
}

/// A new transaction id at `date_ms`: time-ordered, below 2^53 (JSON readers keep it exact), and
/// never one that exists — the low three digits count this process's transactions (so one
/// process's ids in one millisecond are distinct and in order), and the write script refuses a
/// taken id (`DUPLICATE`), which its caller draws again: the rare clash of two processes writing
/// one account in one millisecond. Drawn here rather than from a counter in Redis: that was a
/// write, and so an fsync, before every transaction.
pub fn next_transaction_id(date_ms: i64) -> u64 {
    static DRAWN: std::sync::LazyLock<std::sync::atomic::AtomicU64> =
        std::sync::LazyLock::new(|| {
            std::sync::atomic::AtomicU64::new(rand::random::<u64>() % 1000)
        });
    let n = DRAWN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    date_ms.max(0) as u64 * 1000 + n % 1000
}

/// One resolution of the balance chart: its sorted set, bucket width, and the longest window it
/// serves (it keeps that much). Each window reads the finest one that covers it, so a window
/// costs at most a few hundred points however many transactions it holds.
#[derive(Debug, Clone, Copy)]
pub struct Series {
    pub name: &'static str,
    pub width_ms: i64,
    pub window_ms: i64,
}

/// Finest first: 5 minutes by second (≤ 300 points), an hour by minute (≤ 60), a day by five
/// minutes (≤ 288).
pub const SERIES: [Series; 3] = [
    Series { name: "seconds", width_ms: 1_000, window_ms: 5 * 60_000 },
    Series { name: "minutes", width_ms: 60_000, window_ms: 3_600_000 },
    Series { name: "five-minutes", width_ms: 300_000, window_ms: 86_400_000 },
];
