//! Accounts and transactions in Redis: the one atomic write (a Lua script), and every read the
//! pages and API need. The only module that touches the account keys.
//!
//! Per account, everything shares the hash tag `{acct:<number>}`: balance (integer cents), stream
//! (one entry per transaction: balance history, recent list, live replay), biggest-spenders sorted
//! set, and the transaction JSON documents (indexed by RediSearch, expiring after the retention).

use redis::{Script, Value};

use super::model::{Account, BalancePoint, Cents, OPENING_BALANCE, Spenders, Transaction};
use crate::config::Config;
use crate::error::{Error, Result};
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
/// the JSON document (with expiry), append to the stream (trimmed by time), record the minute's
/// closing balance (trimmed like the stream), count the spending,
/// and announce it on the account's channel with the new top-5 spenders. Fails (changing nothing)
/// if the balance moved meanwhile, would go below zero, or the transaction id is taken.
const RECORD: &str = r#"
if redis.call('EXISTS', KEYS[4]) == 1 then return redis.error_reply('DUPLICATE transaction id') end
local cur = tonumber(redis.call('GET', KEYS[1]) or ARGV[1])
if cur ~= tonumber(ARGV[2]) then return redis.error_reply('CONFLICT balance moved') end
local amount = tonumber(ARGV[3])
local new = cur + amount
if new < 0 then return redis.error_reply('INSUFFICIENT funds') end
redis.call('SET', KEYS[1], new)
redis.call('JSON.SET', KEYS[4], '$', ARGV[4])
redis.call('EXPIRE', KEYS[4], ARGV[5])
local sid = redis.call('XADD', KEYS[2], 'MINID', '~', ARGV[6], '*',
  'tx', ARGV[7], 'amount', ARGV[3], 'balance', tostring(new), 'ts', ARGV[8])
local minute = tonumber(ARGV[8]) - tonumber(ARGV[8]) % 60000
local prev = redis.call('ZRANGEBYSCORE', KEYS[5], minute, minute)[1]
local count = 1
if prev then count = (tonumber(string.match(prev, '^%d+:%-?%d+:(%d+)$')) or 1) + 1 end
redis.call('ZREMRANGEBYSCORE', KEYS[5], minute, minute)
redis.call('ZADD', KEYS[5], minute, ARGV[8] .. ':' .. tostring(new) .. ':' .. count)
redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', '(' .. ARGV[6])
if amount < 0 then redis.call('ZINCRBY', KEYS[3], -amount, ARGV[9]) end
local top = redis.call('ZREVRANGE', KEYS[3], 0, 4, 'WITHSCORES')
local labels, series = {}, {}
for i = 1, #top, 2 do
  labels[#labels + 1] = cjson.encode(top[i])
  series[#series + 1] = top[i + 1]
end
redis.call('PUBLISH', ARGV[10], '{"id":"' .. sid .. '","account":' .. cjson.encode(ARGV[11]) ..
  ',"tx":' .. ARGV[4] .. ',"spenders":{"labels":[' .. table.concat(labels, ',') ..
  '],"seriesCents":[' .. table.concat(series, ',') .. ']}}')
return {new, sid}
"#;

/// What [`record`] wrote: the new balance and the stream entry id (also the SSE event id).
#[derive(Debug, Clone)]
pub struct Recorded {
    pub balance: Cents,
    pub stream_id: String,
}

/// Writes `tx` (whose `balance_after` must be `expected + amount`) atomically; see [`RECORD`].
pub async fn record(
    db: &Db,
    config: &Config,
    expected: Cents,
    tx: &Transaction,
) -> Result<Recorded> {
    let keys = &db.keys;
    let acct = &tx.account_id;
    let doc = serde_json::to_string(tx).map_err(|e| Error::Internal(e.to_string()))?;
    let retention_secs = config.transaction_retention_days * 86_400;
    let min_id = tx.date - config.stream_retention_hours as i64 * 3_600_000;
    let (balance, stream_id): (i64, String) = db
        .run(async |c| {
            Script::new(RECORD)
                .key(keys.balance(acct))
                .key(keys.stream(acct))
                .key(keys.spenders(acct))
                .key(keys.transaction(acct, tx.id))
                .key(keys.balance_minutes(acct))
                .arg(OPENING_BALANCE.0)
                .arg(expected.0)
                .arg(tx.amount.0)
                .arg(&doc)
                .arg(retention_secs)
                .arg(min_id.max(0))
                .arg(tx.id)
                .arg(tx.date)
                .arg(&tx.from_account_name)
                .arg(keys.events(acct))
                .arg(acct)
                .invoke_async(c)
                .await
        })
        .await?;
    Ok(Recorded { balance: Cents(balance), stream_id })
}

// ---- reads ------------------------------------------------------------------------------------

/// One stream entry: its id and the fields we store.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub stream_id: String,
    pub tx_id: u64,
    pub amount: Cents,
    pub balance: Cents,
    pub ts: i64,
}

/// XRANGE / XREVRANGE reply → entries (malformed entries are skipped, never a panic).
fn parse_entries(reply: &[Value]) -> Vec<Entry> {
    reply.iter().filter_map(parse_entry).collect()
}

/// One stream entry (`[id, [field, value, …]]`), or None when malformed.
fn parse_entry(item: &Value) -> Option<Entry> {
    let Value::Bulk(parts) = item else { return None };
    let stream_id = value_text(parts.first()?)?;
    let Value::Bulk(fields) = parts.get(1)? else { return None };
    let mut entry = Entry { stream_id, tx_id: 0, amount: Cents(0), balance: Cents(0), ts: 0 };
    for pair in fields.chunks(2) {
        let (Some(k), Some(v)) =
            (pair.first().and_then(value_text), pair.get(1).and_then(value_text))
        else {
            continue;
        };
        match k.as_str() {
            "tx" => entry.tx_id = v.parse().ok()?,
            "amount" => entry.amount = Cents(v.parse().ok()?),
            "balance" => entry.balance = Cents(v.parse().ok()?),
            "ts" => entry.ts = v.parse().ok()?,
            _ => {}
        }
    }
    Some(entry)
}

/// `XRANGE`/`XREVRANGE key from to COUNT count`, as Redis answers it.
async fn range(
    db: &Db,
    command: &str,
    key: &str,
    from: &str,
    to: &str,
    count: usize,
) -> Result<Vec<Value>> {
    db.run(async |c| {
        redis::cmd(command).arg(key).arg(from).arg(to).arg("COUNT").arg(count).query_async(c).await
    })
    .await
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
    let reply = range(db, "XREVRANGE", &db.keys.stream(number), "+", "-", limit).await?;
    Ok(parse_entries(&reply))
}

/// Entries strictly after `after_id`, oldest first, at most `limit` (live replay).
pub async fn entries_after(
    db: &Db,
    number: &str,
    after_id: &str,
    limit: usize,
) -> Result<StreamPage> {
    let key = db.keys.stream(number);
    let reply = range(db, "XRANGE", &key, &format!("({after_id}"), "+", limit).await?;
    let last_id = reply.last().and_then(|item| match item {
        Value::Bulk(parts) => parts.first().and_then(value_text),
        _ => None,
    });
    Ok(StreamPage { entries: parse_entries(&reply), last_id, last_page: reply.len() < limit })
}

/// The transaction documents behind `entries`, in the same order (one JSON.MGET; entries whose
/// document has expired are left out).
pub async fn transactions_for(
    db: &Db,
    number: &str,
    entries: &[Entry],
) -> Result<Vec<(Entry, Transaction)>> {
    if entries.is_empty() {
        return Ok(Vec::new());
    }
    let keys: Vec<String> = entries.iter().map(|e| db.keys.transaction(number, e.tx_id)).collect();
    let docs: Vec<Option<String>> =
        db.run(async |c| redis::cmd("JSON.MGET").arg(&keys).arg("$").query_async(c).await).await?;
    Ok(entries
        .iter()
        .zip(docs)
        .zip(&keys)
        .filter_map(|((entry, doc), key)| {
            // `$` paths answer with a one-element array (an expired document: none at all).
            let mut list: Vec<Transaction> = parse_stored(key, &doc?)?;
            Some((entry.clone(), list.pop()?))
        })
        .collect())
}

/// The newest transactions in one round trip: `XREVRANGE … COUNT n`, then `JSON.MGET` of the
/// documents those entries name (keys built in the script — all in the account's hash slot), and
/// for the dashboard (`ARGV[3] == "1"`) the account document and balance. The documents come back
/// as one JSON array (newest first; expired ones left out) and the newest stream id separately:
/// a handful of reply values instead of one per entry field, which is what the client's reply
/// parser spends its time on.
const RECENT: &str = r#"
local entries = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', ARGV[1])
local keys = {}
for _, entry in ipairs(entries) do
  local fields = entry[2]
  for j = 1, #fields, 2 do
    if fields[j] == 'tx' then keys[#keys + 1] = ARGV[2] .. fields[j + 1] end
  end
end
local docs = {}
if #keys > 0 then
  keys[#keys + 1] = '.'
  for _, doc in ipairs(redis.call('JSON.MGET', unpack(keys))) do
    if doc then docs[#docs + 1] = doc end
  end
end
local newest = false
if entries[1] then newest = entries[1][1] end
local account, balance = false, false
if ARGV[3] == '1' then
  account = redis.call('JSON.GET', KEYS[2])
  balance = redis.call('GET', KEYS[3])
end
return {newest, '[' .. table.concat(docs, ',') .. ']', account, balance}
"#;

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

/// The newest `limit` transactions (and, with `with_account`, the account and its balance) in
/// one round trip, whatever the history.
pub async fn recent_view(
    db: &Db,
    number: &str,
    limit: usize,
    with_account: bool,
) -> Result<RecentView> {
    let keys = &db.keys;
    let reply: Vec<Value> = db
        .run(async |c| {
            Script::new(RECENT)
                .key(keys.stream(number))
                .key(keys.account(number))
                .key(keys.balance(number))
                .arg(limit)
                .arg(keys.transaction_prefix_of(number))
                .arg(if with_account { "1" } else { "0" })
                .invoke_async(c)
                .await
        })
        .await?;
    let [newest, docs, account, balance] = &reply[..] else {
        return Err(Error::Internal("recent: unexpected script reply".into()));
    };
    let docs = value_text(docs).unwrap_or_else(|| "[]".into());
    // One parse for the whole list; should a stored document be corrupt, parse them one by one
    // so that one is logged and skipped instead of failing the page.
    let recent = match serde_json::from_str::<Vec<Transaction>>(&docs) {
        Ok(list) => list,
        Err(_) => serde_json::from_str::<Vec<Box<serde_json::value::RawValue>>>(&docs)
            .map_err(|e| Error::Internal(format!("recent: documents of {number}: {e}")))?
            .iter()
            .filter_map(|doc| parse_stored(&keys.transaction_prefix_of(number), doc.get()))
            .collect(),
    };
    let account = match value_text(account) {
        Some(json) => Some(
            serde_json::from_str(&json)
                .map_err(|e| Error::Internal(format!("account {number}: {e}")))?,
        ),
        None => None,
    };
    let balance = value_text(balance).and_then(|b| b.parse().ok()).map_or(OPENING_BALANCE, Cents);
    Ok(RecentView { recent, newest_id: value_text(newest), account, balance })
}

/// The newest `limit` transactions, newest first (one round trip).
pub async fn recent(db: &Db, number: &str, limit: usize) -> Result<Vec<Transaction>> {
    Ok(recent_view(db, number, limit, false).await?.recent)
}

/// The balance series of a window in one round trip, its cost set by the window's length, not by
/// how many transactions it holds. The per-minute closing balances also count the minute's
/// transactions (`<ts>:<cents>:<count>`): when the window holds at most `ARGV[2]`, every
/// transaction's point comes from the stream; otherwise the minutes themselves are the series.
/// Either way the reply is two values: which source, and the points as `ts:cents,…`.
const BALANCE: &str = r#"
local start, max = tonumber(ARGV[1]), tonumber(ARGV[2])
local minutes = redis.call('ZRANGEBYSCORE', KEYS[2], start - 60000, '+inf')
local held = 0
for _, m in ipairs(minutes) do
  held = held + (tonumber(string.match(m, '^%d+:%-?%d+:(%d+)$')) or 1)
end
if held <= max then
  local entries = redis.call('XRANGE', KEYS[1], ARGV[1], '+', 'COUNT', max + 1)
  if #entries <= max then
    local out = {}
    for _, entry in ipairs(entries) do
      local f, ts, balance = entry[2], nil, nil
      for j = 1, #f, 2 do
        if f[j] == 'ts' then ts = f[j + 1] elseif f[j] == 'balance' then balance = f[j + 1] end
      end
      if ts and balance then out[#out + 1] = ts .. ':' .. balance end
    end
    return {0, table.concat(out, ',')}
  end
end
return {1, table.concat(minutes, ',')}
"#;

/// Balance over the last `window_ms`, oldest first, at most `max_points` (every transaction when
/// the window holds no more, else the per-minute closing balances, thinned), ending with the
/// newest point — one script call ([`BALANCE`]).
pub async fn balance_history(
    db: &Db,
    number: &str,
    now: i64,
    window_ms: i64,
    max_points: usize,
) -> Result<Vec<BalancePoint>> {
    let start = (now - window_ms).max(0);
    let (from_minutes, points): (i64, String) = db
        .run(async |c| {
            Script::new(BALANCE)
                .key(db.keys.stream(number))
                .key(db.keys.balance_minutes(number))
                .arg(start)
                .arg(max_points)
                .invoke_async(c)
                .await
        })
        .await?;
    let points: Vec<BalancePoint> = points
        .split(',')
        .filter_map(|point| {
            let mut parts = point.split(':');
            let (ts, cents) = (parts.next()?, parts.next()?);
            Some(BalancePoint { x: ts.parse().ok()?, y: Cents(cents.parse().ok()?) })
        })
        .filter(|p| p.x >= start)
        .collect();
    Ok(if from_minutes == 1 { thin(points, max_points) } else { points })
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
#[derive(Debug, Clone, serde::Serialize)]
pub struct Hit {
    #[serde(flatten)]
    pub tx: Transaction,
    pub highlight: Highlights,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Highlights {
    pub description: Vec<(usize, usize)>,
    pub from_account_name: Vec<(usize, usize)>,
    pub transaction_type: Vec<(usize, usize)>,
}

#[derive(Debug, Clone, serde::Serialize)]
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
