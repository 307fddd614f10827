//! The one event shape shared by the publisher (the transaction script's `PUBLISH`) and the SSE
//! streams: decoded once per process by the bridge, serialized once, fanned out to every client.

use std::cmp::Ordering;
use std::sync::Arc;

use serde::Deserialize;

use crate::bank::model::{BalancePoint, Cents, Spenders, Transaction};
use crate::error::{Error, Result};

/// A Redis stream entry id (`<ms>-<seq>`), ordered numerically; it is also the SSE event id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StreamId(pub u64, pub u64);

impl StreamId {
    /// Strict parse: anything else (from a client's `Last-Event-ID`) is rejected.
    pub fn parse(raw: &str) -> Option<Self> {
        let (ms, seq) = raw.split_once('-')?;
        if ms.is_empty() || seq.is_empty() || ms.len() > 20 || seq.len() > 20 {
            return None;
        }
        Some(StreamId(ms.parse().ok()?, seq.parse().ok()?))
    }
}

impl std::fmt::Display for StreamId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.0, self.1)
    }
}

impl PartialOrd for StreamId {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for StreamId {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.0, self.1).cmp(&(other.0, other.1))
    }
}

/// What the transaction script publishes on the account channel.
#[derive(Debug, Deserialize)]
struct Published {
    id: String,
    account: String,
    tx: Transaction,
    spenders: PublishedSpenders,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PublishedSpenders {
    labels: Vec<String>,
    series_cents: Vec<f64>,
}

/// One transaction's SSE events, serialized once: `transaction`, `balance`, and (live only)
/// `spenders`, all with the stream id as event id.
#[derive(Debug, Clone)]
pub struct Frame {
    pub id: StreamId,
    pub account: String,
    pub transaction: String,
    pub balance: String,
    pub spenders: Option<String>,
}

fn json<T: serde::Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| Error::Internal(e.to_string()))
}

impl Frame {
    /// Decodes a pub/sub payload.
    pub fn from_published(payload: &str) -> Result<Frame> {
        let p: Published = serde_json::from_str(payload)
            .map_err(|e| Error::Internal(format!("undecodable event: {e}")))?;
        let id = StreamId::parse(&p.id)
            .ok_or_else(|| Error::Internal(format!("bad stream id {}", p.id)))?;
        let spenders = Spenders {
            labels: p.spenders.labels,
            series: p.spenders.series_cents.into_iter().map(|c| Cents(c.round() as i64)).collect(),
        };
        let mut frame = Frame::from_transaction(id, &p.tx)?;
        frame.account = p.account;
        frame.spenders = Some(json(&spenders)?);
        Ok(frame)
    }

    /// A frame for a transaction read back from the stream (replay): no spenders snapshot.
    pub fn from_transaction(id: StreamId, tx: &Transaction) -> Result<Frame> {
        Ok(Frame {
            id,
            account: tx.account_id.clone(),
            transaction: json(tx)?,
            balance: json(&BalancePoint { x: tx.date, y: tx.balance_after })?,
            spenders: None,
        })
    }
}

/// What travels on an account's in-process broadcast channel.
#[derive(Debug, Clone)]
pub enum Msg {
    Event(Arc<Frame>),
    /// The bridge (re)subscribed after a Redis outage: pub/sub may have dropped events, so every
    /// stream catches up from its last id in the account stream.
    Resync,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_ids_parse_strictly_and_order_numerically() {
        assert!(
            StreamId::parse("1700000000000-9").unwrap_or(StreamId(0, 0))
                < StreamId(1700000000000, 10)
        );
        assert!(StreamId(9, 0) < StreamId(10, 0));
        for bad in ["", "-", "1-", "-1", "a-1", "1-2-3", "99999999999999999999999-1", "$", "+"] {
            assert!(StreamId::parse(bad).is_none(), "{bad}");
        }
    }
}
