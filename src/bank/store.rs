//! Accounts and transactions in Redis: the one atomic write (a Lua script), and every read the
//! pages and API need. The only module that touches the account keys.
//!
//! Per account, everything shares the hash tag `{acct:<number>}`: balance (integer cents), stream
//! (one entry per transaction, carrying its document: live replay), the newest-100 list (the
//! recent list), the balance series at three resolutions (the chart), biggest-spenders sorted set,
//! and the transaction JSON documents (indexed by RediSearch, expiring after the retention).

use redis::{Script, Value};

use super::model::{Account, BalancePoint, OPENING_BALANCE, Spenders, Transaction};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::money::Cents;
use crate::redis::{
    Db, create_json_index, is_missing_index, parse_stored, search_hits, value_text,
};

/// Page size of the transactions page and the search API.
pub const PAGE_SIZE: usize = 20;
/// Deepest page served (bounds the work one request can ask for).
pub const MAX_PAGE: usize = 500;
/// Longest accepted search term.
pub const MAX_TERM_CHARS: usize = 100;

// ---- schema -----------------------------------------------------------------------------------

/// Creates the transaction index if it is missing.
pub async fn ensure_index(db: &Db) -> Result<()> {
    #[rustfmt::skip]
    let schema = [
        "$.description", "AS", "description", "TEXT",
        "$.fromAccountName", "AS", "fromAccountName", "TEXT",
        "$.transactionType", "AS", "transactionType", "TEXT",
        "$.accountId", "AS", "accountId", "TAG",
        "$.amount", "AS", "amount", "NUMERIC", "SORTABLE",
        "$.date", "AS", "date", "NUMERIC", "SORTABLE",
    ];
    let (name, prefix) = (db.keys.transaction_index(), db.keys.transaction_prefix());
    create_json_index(db, &name, &prefix, &schema).await
}

/// Creates the account (document, membership, opening balance) unless it exists; an existing
/// balance is never reset.
pub async fn ensure_account(db: &Db, account: &Account) -> Result<()> {
    let keys = &db.keys;
    let doc = serde_json::to_string(account).map_err(|e| Error::Internal(e.to_string()))?;
    db.run(async |c| {
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
            .ignore()
            .query_async::<_, ()>(c)
            .await
    })
    .await
}

pub async fn get_account(db: &Db, number: &str) -> Result<Option<Account>> {
    let key = db.keys.account(number);
    let raw: Option<String> =
        db.run(async |c| redis::cmd("JSON.GET").arg(&key).query_async(c).await).await?;
    raw.map(|raw| {
        serde_json::from_str(&raw).map_err(|e| Error::Internal(format!("account {number}: {e}")))
    })
    .transpose()
}

pub async fn account_numbers(db: &Db) -> Result<Vec<String>> {
    let key = db.keys.accounts();
    let mut numbers: Vec<String> =
        db.run(async |c| redis::cmd("SMEMBERS").arg(&key).query_async(c).await).await?;
    numbers.sort();
    Ok(numbers)
}

pub async fn balance(db: &Db, number: &str) -> Result<Cents> {
    let key = db.keys.balance(number);
    let cents: Option<i64> =
        db.run(async |c| redis::cmd("GET").arg(&key).query_async(c).await).await?;
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
    let doc = serde_json::to_string(tx).map_err(|e| Error::Internal(e.to_string()))?;
    let retention_secs = config.bank.transaction_retention_days * 86_400;
    let min_id = tx.date - config.bank.stream_retention_hours as i64 * 3_600_000;
    // With replicas to wait for, the script does not announce the transaction: it is announced
    // here once one has it.
    let replicas = config.redis.replicas_to_ack();
    let channel = if replicas > 0 { String::new() } else { keys.events(acct) };
    let generation = db.generation();
    let reply: Vec<Value> = db
        .run(async |c| {
            let mut call = script.0.key(keys.balance(acct));
            call.key(keys.stream(acct))
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
            call.invoke_async(c).await
        })
        .await?;
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
    let publish = db
        .run(async |c| redis::cmd("PUBLISH").arg(channel).arg(msg).query_async::<_, i64>(c).await);
    if let Err(e) = publish.await {
        rocket::warn!("a replicated transaction could not be announced: {e}");
    }
}

/// A new transaction id for `account` at `date_ms`: time-ordered, below 2^53 (JSON readers keep
/// it exact), and distinct from every other writer's — the low three digits come from the
/// account's own counter, so two writers in one millisecond never draw the same id.
pub async fn next_transaction_id(db: &Db, account: &str, date_ms: i64) -> Result<u64> {
    let key = db.keys.transaction_sequence(account);
    let n: u64 = db.run(async |c| redis::cmd("INCR").arg(&key).query_async(c).await).await?;
    Ok(date_ms.max(0) as u64 * 1000 + n % 1000)
}

// ---- reads ------------------------------------------------------------------------------------

/// One stream entry: its id, the transaction it records and that transaction's document.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub stream_id: String,
    pub tx_id: u64,
    /// The document as written; entries written before the stream carried it have none.
    pub doc: Option<String>,
}

/// XRANGE / XREVRANGE reply → entries (malformed entries are skipped, never a panic). Takes the
/// reply by value: the documents move out of it instead of being copied.
fn parse_entries(reply: Vec<Value>) -> Vec<Entry> {
    reply.into_iter().filter_map(parse_entry).collect()
}

/// One stream entry (`[id, [field, value, …]]`), or None when malformed.
fn parse_entry(item: Value) -> Option<Entry> {
    let Value::Bulk(parts) = item else { return None };
    let mut parts = parts.into_iter();
    let stream_id = into_text(parts.next()?)?;
    let Value::Bulk(fields) = parts.next()? else { return None };
    let mut entry = Entry { stream_id, tx_id: 0, doc: None };
    let mut fields = fields.into_iter();
    while let (Some(k), Some(v)) = (fields.next(), fields.next()) {
        match &k {
            Value::Data(name) if name == b"doc" => entry.doc = Some(into_text(v)?),
            // Entries written before the stream carried the document name it by id.
            Value::Data(name) if name == b"tx" => entry.tx_id = into_text(v)?.parse().ok()?,
            _ => {}
        }
    }
    Some(entry)
}

/// A bulk string reply as text, without copying it.
fn into_text(v: Value) -> Option<String> {
    match v {
        Value::Data(bytes) => String::from_utf8(bytes).ok(),
        _ => None,
    }
}

/// One item of the recent list (`<stream id> <document>`) as the stream entry it copies.
fn recent_item(item: Value) -> Option<Entry> {
    let text = into_text(item)?;
    let (stream_id, doc) = text.split_once(' ')?;
    Some(Entry { stream_id: stream_id.to_owned(), tx_id: 0, doc: Some(doc.to_owned()) })
}

/// Id of the last item of an XRANGE / XREVRANGE reply, parsed or not.
fn last_id(reply: &[Value]) -> Option<String> {
    match reply.last()? {
        Value::Bulk(parts) => parts.first().and_then(value_text),
        _ => None,
    }
}

fn range_cmd(key: &str, command: &str, from: &str, to: &str, count: usize) -> redis::Cmd {
    let mut cmd = redis::cmd(command);
    cmd.arg(key).arg(from).arg(to).arg("COUNT").arg(count);
    cmd
}

/// One page of the account stream after an id (exclusive), oldest first.
#[derive(Debug)]
pub struct StreamPage {
    /// The entries that parse (an entry that does not is skipped, never ends the reading).
    pub entries: Vec<Entry>,
    /// The id of the last entry read, parsed or not: where the next page starts.
    pub last_id: Option<String>,
    /// Fewer entries than asked for came back: nothing more to read for now.
    pub last_page: bool,
}

/// The newest `limit` entries, newest first: XREVRANGE … COUNT — cost independent of history.
pub async fn recent_entries(db: &Db, number: &str, limit: usize) -> Result<Vec<Entry>> {
    let cmd = range_cmd(&db.keys.stream(number), "XREVRANGE", "+", "-", limit);
    let reply: Vec<Value> = db.run(async |c| cmd.query_async(c).await).await?;
    Ok(parse_entries(reply))
}

/// Entries strictly after `after_id`, oldest first, at most `limit` (live replay).
pub async fn entries_after(
    db: &Db,
    number: &str,
    after_id: &str,
    limit: usize,
) -> Result<StreamPage> {
    let cmd = range_cmd(&db.keys.stream(number), "XRANGE", &format!("({after_id}"), "+", limit);
    let reply: Vec<Value> = db.run(async |c| cmd.query_async(c).await).await?;
    let (last_id, last_page) = (last_id(&reply), reply.len() < limit);
    Ok(StreamPage { entries: parse_entries(reply), last_id, last_page })
}

/// The transactions `entries` record, in the same order, with their stream ids: from the entries
/// themselves, and for entries older than that (no document in the entry) from their JSON
/// documents in one JSON.MGET. A document that does not parse is logged and left out, and so is
/// one dated before `oldest` (its document has expired; the stream of an idle account is trimmed
/// only by its next transaction, so its entries can outlive their documents).
pub async fn transactions_for(
    db: &Db,
    number: &str,
    entries: Vec<Entry>,
    oldest: i64,
) -> Result<Vec<(String, Transaction)>> {
    let older: Vec<String> = entries
        .iter()
        .filter(|e| e.doc.is_none())
        .map(|e| db.keys.transaction(number, e.tx_id))
        .collect();
    let mut fetched = match older.is_empty() {
        true => Vec::new(),
        false => {
            let docs: Vec<Option<String>> = db
                .run(async |c| redis::cmd("JSON.MGET").arg(&older).arg("$").query_async(c).await)
                .await?;
            docs.into_iter().zip(&older).collect()
        }
    }
    .into_iter();
    let stream = db.keys.stream(number);
    Ok(entries
        .into_iter()
        .filter_map(|entry| {
            let tx = match &entry.doc {
                Some(doc) => parse_stored(format_args!("{stream} entry {}", entry.stream_id), doc)?,
                None => {
                    // `$` paths answer with a one-element array (an expired document: none).
                    let (doc, key) = fetched.next()?;
                    parse_stored::<Vec<Transaction>>(key, &doc?)?.pop()?
                }
            };
            (tx.date >= oldest).then_some((entry.stream_id, tx))
        })
        .collect())
}

/// What the dashboard shows of an account, read in one round trip ([`recent_view`]).
#[derive(Debug)]
pub struct RecentView {
    /// The newest transactions, newest first (expired documents left out).
    pub recent: Vec<Transaction>,
    /// The newest stream id (the live stream resumes after it), when there is one.
    pub newest_id: Option<String>,
    pub account: Option<Account>,
    pub balance: Cents,
}

/// The newest `limit` transactions dated `oldest` or later (and, with `with_account`, the account
/// and its balance): one pipelined round trip of plain reads, whatever the history — the
/// newest-100 list's items carry the documents, so there is nothing to look up per transaction.
pub async fn recent_view(
    db: &Db,
    number: &str,
    limit: usize,
    oldest: i64,
    with_account: bool,
) -> Result<RecentView> {
    let keys = &db.keys;
    let mut pipe = redis::pipe();
    pipe.cmd("LRANGE").arg(keys.recent(number)).arg(0).arg(limit.saturating_sub(1));
    if with_account {
        pipe.cmd("JSON.GET").arg(keys.account(number)).cmd("GET").arg(keys.balance(number));
    }
    let mut reply: Vec<Value> = db.run(async |c| pipe.query_async(c).await).await?;
    let (balance, account) = match reply.len() {
        3 => (reply.pop(), reply.pop()),
        _ => (None, None),
    };
    let Some(Value::Bulk(items)) = reply.pop() else {
        return Err(Error::Internal("recent: unexpected reply".into()));
    };
    let entries = if items.len() >= limit {
        items.into_iter().filter_map(recent_item).collect()
    } else {
        // Fewer than asked for: a young account, or one whose list began with an upgrade (or
        // expired while it was idle) — the stream has them all.
        recent_entries(db, number, limit).await?
    };
    let found = transactions_for(db, number, entries, oldest).await?;
    // The newest entry that reads as a transaction: a corrupt list item's "id" could be anything,
    // and the page hands it to the live stream as its resume point.
    let newest_id = found.first().map(|(id, _)| id.clone());
    let recent = found.into_iter().map(|(_, tx)| tx).collect();
    let account = match account.and_then(into_text) {
        Some(json) => Some(
            serde_json::from_str(&json)
                .map_err(|e| Error::Internal(format!("account {number}: {e}")))?,
        ),
        None => None,
    };
    let balance =
        balance.and_then(into_text).and_then(|b| b.parse().ok()).map_or(OPENING_BALANCE, Cents);
    Ok(RecentView { recent, newest_id, account, balance })
}

/// The newest `limit` transactions dated `oldest` or later, newest first (one round trip).
pub async fn recent(db: &Db, number: &str, limit: usize, oldest: i64) -> Result<Vec<Transaction>> {
    Ok(recent_view(db, number, limit, oldest, false).await?.recent)
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

/// Balance over the last `window_ms`, oldest first, at most `max_points`: the closing balance of
/// every second, minute or five minutes of the window that saw a transaction ([`SERIES`]),
/// ending with the newest transaction — one sorted-set read.
pub async fn balance_history(
    db: &Db,
    number: &str,
    now: i64,
    window_ms: i64,
    max_points: usize,
) -> Result<Vec<BalancePoint>> {
    let start = (now - window_ms).max(0);
    let series = SERIES.iter().find(|s| window_ms <= s.window_ms).unwrap_or(&SERIES[2]);
    let key = db.keys.balance_series(number, series.name);
    // The bucket holding `start` begins before it, and its closing point may be inside.
    let members: Vec<String> = db
        .run(async |c| {
            redis::cmd("ZRANGEBYSCORE")
                .arg(&key)
                .arg(start - series.width_ms)
                .arg("+inf")
                .query_async(c)
                .await
        })
        .await?;
    let points = members
        .iter()
        .filter_map(|member| {
            // `<ts>:<cents>`; members written by earlier versions add `:<count>`.
            let mut parts = member.split(':');
            let (ts, cents) = (parts.next()?, parts.next()?);
            Some(BalancePoint { x: ts.parse().ok()?, y: Cents(cents.parse().ok()?) })
        })
        .filter(|p| p.x >= start)
        .collect();
    Ok(thin(points, max_points))
}

/// At most `max_points` points, evenly spaced by index, always keeping the newest.
pub fn thin(points: Vec<BalancePoint>, max_points: usize) -> Vec<BalancePoint> {
    if points.len() <= max_points || max_points == 0 {
        return points;
    }
    let n = points.len();
    (0..max_points).map(|i| points[(i + 1) * n / max_points - 1]).collect()
}

/// Top 5 vendors by amount spent, descending.
pub async fn spenders(db: &Db, number: &str) -> Result<Spenders> {
    let key = db.keys.spenders(number);
    let top: Vec<(String, f64)> = db
        .run(async |c| {
            redis::cmd("ZREVRANGE").arg(&key).arg(0).arg(4).arg("WITHSCORES").query_async(c).await
        })
        .await?;
    let (labels, series) =
        top.into_iter().map(|(name, cents)| (name, Cents(cents.round() as i64))).unzip();
    Ok(Spenders { labels, series })
}

// ---- search -----------------------------------------------------------------------------------

/// Searchable words of a user's query: letters and digits only (so nothing reaches RediSearch's
/// query syntax), lower-cased, at most 8 words of 40 characters. Terms over 100 characters are a 400.
pub fn search_words(q: &str) -> Result<Vec<String>> {
    if q.chars().count() > MAX_TERM_CHARS {
        return Err(Error::BadRequest(format!(
            "The search term is longer than {MAX_TERM_CHARS} characters."
        )));
    }
    Ok(q.split(|c: char| !is_word_char(c))
        .filter(|w| !w.is_empty())
        .take(8)
        .map(|w| w.to_lowercase().chars().take(40).collect())
        .collect())
}

/// Word characters as RediSearch's tokenizer sees them: letters, digits and `_` (which is not
/// one of its separators), so our words and highlights match its terms.
fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// One search hit: the transaction and, per text field, the UTF-16 `[start, end)` ranges to mark.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Hit {
    #[serde(flatten)]
    pub tx: Transaction,
    pub highlight: Highlights,
}

#[derive(Debug, Clone, Default, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Highlights {
    #[schema(value_type = Vec<Vec<u32>>)]
    pub description: Vec<(usize, usize)>,
    #[schema(value_type = Vec<Vec<u32>>)]
    pub from_account_name: Vec<(usize, usize)>,
    #[schema(value_type = Vec<Vec<u32>>)]
    pub transaction_type: Vec<(usize, usize)>,
}

#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct SearchPage {
    pub total: usize,
    pub page: usize,
    pub pages: usize,
    pub results: Vec<Hit>,
}

/// Full-text + prefix search over description, vendor and type, in one account only (the account
/// filter is added here, from the session, never from the client), newest first.
pub async fn search(db: &Db, number: &str, q: &str, page: usize) -> Result<SearchPage> {
    if page == 0 || page > MAX_PAGE {
        return Err(Error::BadRequest(format!("page must be between 1 and {MAX_PAGE}")));
    }
    let words = search_words(q)?;
    let reply = match search_once(db, number, &words, page).await {
        Err(e) if is_missing_index(&e) => {
            ensure_index(db).await?;
            search_once(db, number, &words, page).await?
        }
        other => other?,
    };
    let (total, hits) = search_hits(&reply);
    let results = hits
        .into_iter()
        .filter_map(|(key, json)| {
            let tx: Transaction = parse_stored(&key, &json)?;
            // Defence in depth: never return another account's row, whatever the index said.
            (tx.account_id == number).then(|| {
                let highlight = Highlights {
                    description: highlight(&tx.description, &words),
                    from_account_name: highlight(&tx.from_account_name, &words),
                    transaction_type: highlight(&tx.transaction_type, &words),
                };
                Hit { tx, highlight }
            })
        })
        .collect();
    // Never point past the deepest page we serve.
    let pages = total.div_ceil(PAGE_SIZE).clamp(1, MAX_PAGE);
    Ok(SearchPage { total, page, pages, results })
}

async fn search_once(db: &Db, number: &str, words: &[String], page: usize) -> Result<Vec<Value>> {
    let index = db.keys.transaction_index();
    let mut query = String::from("@accountId:{$acct}");
    let mut params: Vec<(String, String)> = vec![("acct".into(), number.to_owned())];
    for (i, word) in words.iter().enumerate() {
        // RediSearch needs two characters for a prefix query; one letter matches whole words only.
        let star = if word.chars().count() >= 2 { "*" } else { "" };
        query.push_str(&format!(" @description|fromAccountName|transactionType:($w{i}{star})"));
        params.push((format!("w{i}"), word.clone()));
    }
    db.run(async |c| {
        let mut cmd = redis::cmd("FT.SEARCH");
        cmd.arg(&index).arg(&query).arg("PARAMS").arg(params.len() * 2);
        for (k, v) in &params {
            cmd.arg(k).arg(v);
        }
        cmd.arg("SORTBY")
            .arg("date")
            .arg("DESC")
            .arg("LIMIT")
            .arg((page - 1) * PAGE_SIZE)
            .arg(PAGE_SIZE)
            .arg("DIALECT")
            .arg(2)
            .query_async(c)
            .await
    })
    .await
}

/// UTF-16 ranges of the words of `text` that start with one of `words` (case-insensitive). The
/// ranges index the raw text; callers escape the pieces before wrapping matches in `<mark>`.
pub fn highlight(text: &str, words: &[String]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut utf16 = 0usize;
    let mut start: Option<(usize, usize)> = None; // (byte, utf16) of the current word
    let mut push = |from: (usize, usize), to_byte: usize, to16: usize| {
        let word = text[from.0..to_byte].to_lowercase();
        // A one-letter query word matches whole words only (as in the query), longer ones prefixes.
        let hit = |w: &String| {
            if w.chars().count() < 2 { word == *w } else { word.starts_with(w.as_str()) }
        };
        if words.iter().any(hit) {
            out.push((from.1, to16));
        }
    };
    for (i, c) in text.char_indices() {
        if is_word_char(c) {
            if start.is_none() {
                start = Some((i, utf16));
            }
        } else if let Some(from) = start.take() {
            push(from, i, utf16);
        }
        utf16 += c.len_utf16();
    }
    if let Some(from) = start {
        push(from, text.len(), utf16);
    }
    out
}

/// Splits `text` at UTF-16 `ranges` into (piece, marked) segments for escaping templates.
pub fn segments(text: &str, ranges: &[(usize, usize)]) -> Vec<(String, bool)> {
    let units: Vec<u16> = text.encode_utf16().collect();
    let mut out = Vec::new();
    let mut at = 0;
    for &(s, e) in ranges {
        if s > at {
            out.push((String::from_utf16_lossy(&units[at..s]), false));
        }
        out.push((String::from_utf16_lossy(&units[s..e.min(units.len())]), true));
        at = e.min(units.len());
    }
    if at < units.len() {
        out.push((String::from_utf16_lossy(&units[at..]), false));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_plain_and_bounded() {
        assert_eq!(
            search_words("Ins* @accountId:{*} | -coff").unwrap_or_default(),
            ["ins", "accountid", "coff"]
        );
        assert!(search_words(&"x".repeat(101)).is_err());
        assert!(search_words("").unwrap_or_default().is_empty());
    }

    #[test]
    fn thin_keeps_at_most_max_points_in_order_ending_with_the_newest() {
        let points: Vec<BalancePoint> =
            (0..1440).map(|i| BalancePoint { x: i, y: Cents(i) }).collect();
        let out = thin(points, 500);
        assert_eq!(out.len(), 500);
        assert!(out.windows(2).all(|w| w[0].x < w[1].x));
        assert_eq!(out.last().map(|p| p.x), Some(1439));
        let few: Vec<BalancePoint> = (0..3).map(|i| BalancePoint { x: i, y: Cents(i) }).collect();
        assert_eq!(thin(few.clone(), 500), few);
    }

    #[test]
    fn highlight_marks_word_prefixes_in_utf16_units() {
        let words = vec!["ins".to_owned()];
        assert_eq!(highlight("State Farm Insurance", &words), vec![(11, 20)]);
        assert_eq!(highlight("🔐 insomnia", &words), vec![(3, 11)]);
        assert_eq!(
            segments("<b>Insomnia</b>", &highlight("<b>Insomnia</b>", &words)),
            vec![
                ("<b>".to_owned(), false),
                ("Insomnia".to_owned(), true),
                ("</b>".to_owned(), false)
            ]
        );
    }
}
