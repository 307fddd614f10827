//! An account's history, read: the stream (recent entries, and after an id for live replay),
//! the dashboard's recent list in one round trip, the balance series for the chart and the
//! biggest spenders. Every read costs what the page asks for, not what the account holds.

use redis::Value;

use super::model::{Account, BalancePoint, OPENING_BALANCE, Spenders, Transaction};
use super::store::SERIES;
use crate::error::{Error, Result};
use crate::money::Cents;
use crate::redis::{Db, parse_stored, value_text};

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
    let reply: Vec<Value> = db.query(&cmd).await?;
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
    let reply: Vec<Value> = db.query(&cmd).await?;
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
            let docs: Vec<Option<String>> =
                db.query(redis::cmd("JSON.MGET").arg(&older).arg("$")).await?;
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
    let mut reply: Vec<Value> = db.query(&pipe).await?;
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
        .query(redis::cmd("ZRANGEBYSCORE").arg(&key).arg(start - series.width_ms).arg("+inf"))
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
    let top: Vec<(String, f64)> =
        db.query(redis::cmd("ZREVRANGE").arg(&key).arg(0).arg(4).arg("WITHSCORES")).await?;
    let (labels, series) =
        top.into_iter().map(|(name, cents)| (name, Cents(cents.round() as i64))).unzip();
    Ok(Spenders { labels, series })
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
