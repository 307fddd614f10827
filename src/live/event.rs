//! The one event shape shared by the publisher (the transaction script's `PUBLISH`) and the SSE
//! streams: decoded once per process by the bridge, serialized once, fanned out to every client.

use std::cmp::Ordering;
use std::sync::Arc;

use bytes::Bytes;

use serde::Deserialize;

use crate::bank::model::{BalancePoint, Spenders, Transaction};
use crate::error::{Error, Result};
use crate::money::Cents;
use crate::redis::doc::to_json;

/// A Redis stream entry id (`<ms>-<seq>`), ordered numerically; it is also the SSE event id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StreamId(pub u64, pub u64);

impl StreamId {
    /// Strict parse: 1–20 ASCII digits, `-`, 1–20 ASCII digits, each within `u64` (no sign, no
    /// space); anything else (from a client's `Last-Event-ID`) is rejected.
    pub fn parse(raw: &str) -> Option<Self> {
        let (ms, seq) = raw.split_once('-')?;
        let number = |part: &str| {
            let digits = (1..=20).contains(&part.len()) && part.bytes().all(|b| b.is_ascii_digit());
            digits.then(|| part.parse::<u64>().ok()).flatten()
        };
        Some(StreamId(number(ms)?, number(seq)?))
    }

    /// Whether a stream can continue after this id: every id but the largest one (Redis refuses
    /// an exclusive range that starts there).
    pub fn can_resume(&self) -> bool {
        *self != StreamId(u64::MAX, u64::MAX)
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
    /// The entry before this one when the app announced it after its `WAITAOF` (empty otherwise).
    #[serde(default)]
    prev: String,
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

/// One transaction's SSE events — `transaction`, `balance` and `spenders`, all with the stream id
/// as event id — framed once per process as wire bytes that every client's stream shares.
#[derive(Debug, Clone)]
pub struct Frame {
    pub id: StreamId,
    /// The stream entry before this one, when announcements may arrive out of order or not at
    /// all (after a `WAITAOF`): a stream that saw another last reads the gap from the stream.
    pub prev: Option<StreamId>,
    pub account: String,
    pub wire: Bytes,
}

/// Appends one SSE event. Every line of `data` becomes its own `data:` field (the SSE way to carry
/// newlines), so no content can end the event early or forge another one. (Our data is JSON, which
/// never contains raw line breaks; this keeps framing safe whatever is passed.)
///
/// An event without an id (`None`) leaves the browser's last event id as it was: it is not in
/// the account stream, so there is nothing to resume from it.
pub fn push_event(out: &mut String, name: &str, id: Option<&str>, data: &str) {
    out.push_str("event:");
    out.push_str(name);
    out.push('\n');
    if let Some(id) = id {
        out.push_str("id:");
        out.push_str(id);
        out.push('\n');
    }
    let mut rest = data;
    loop {
        let end = rest.find(['\r', '\n']).unwrap_or(rest.len());
        out.push_str("data:");
        out.push_str(&rest[..end]);
        out.push('\n');
        if end == rest.len() {
            break;
        }
        let skip = if rest[end..].starts_with("\r\n") { 2 } else { 1 };
        rest = &rest[end + skip..];
    }
    out.push('\n');
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
        let mut frame = Frame::from_transaction(id, &p.tx, Some(&spenders))?;
        frame.account = p.account;
        frame.prev = StreamId::parse(&p.prev);
        Ok(frame)
    }

    /// A frame for a transaction; `spenders` is the top 5 after it, when known.
    pub fn from_transaction(
        id: StreamId,
        tx: &Transaction,
        spenders: Option<&Spenders>,
    ) -> Result<Frame> {
        let id_text = id.to_string();
        let mut wire = String::with_capacity(1024);
        push_event(&mut wire, "transaction", Some(&id_text), &to_json(tx)?);
        push_event(
            &mut wire,
            "balance",
            Some(&id_text),
            &to_json(&BalancePoint { x: tx.date, y: tx.balance_after })?,
        );
        if let Some(spenders) = spenders {
            push_event(&mut wire, "spenders", Some(&id_text), &to_json(spenders)?);
        }
        Ok(Frame { id, prev: None, account: tx.account_id.clone(), wire: Bytes::from(wire) })
    }
}

/// What the security activity publishes (after [`SECURITY_PREFIX`]) when a device new to the
/// account signs in.
#[derive(Debug, Deserialize)]
struct PublishedNotice {
    account: String,
    /// The session that signed in: it is not told about itself.
    session: String,
    notice: serde_json::Value,
}

pub use crate::audit::SECURITY_PREFIX;

/// A `security` event for the account's other sessions, framed once.
#[derive(Debug, Clone)]
pub struct Notice {
    pub account: String,
    pub session: String,
    pub wire: Bytes,
}

impl Notice {
    /// Decodes a published notice (the text after [`SECURITY_PREFIX`]).
    pub fn from_published(payload: &str) -> Result<Notice> {
        let p: PublishedNotice = serde_json::from_str(payload)
            .map_err(|e| Error::Internal(format!("undecodable notice: {e}")))?;
        let mut wire = String::with_capacity(256);
        push_event(&mut wire, "security", None, &to_json(&p.notice)?);
        Ok(Notice { account: p.account, session: p.session, wire: Bytes::from(wire) })
    }
}

/// What travels on an account's in-process broadcast channel.
#[derive(Debug, Clone)]
pub enum Msg {
    Event(Arc<Frame>),
    /// A security notice for every stream of the account but the one of `Notice::session`.
    Security(Arc<Notice>),
    /// The bridge (re)subscribed after a Redis outage: pub/sub may have dropped events, so every
    /// stream catches up from its last id in the account stream.
    Resync,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_lines_are_framed_so_nothing_can_forge_an_event() {
        let mut out = String::new();
        push_event(&mut out, "transaction", Some("1-0"), "a\nevent: x\r\ndata: y\rz");
        assert_eq!(
            out,
            "event:transaction\nid:1-0\ndata:a\ndata:event: x\ndata:data: y\ndata:z\n\n"
        );
        let mut out = String::new();
        push_event(&mut out, "balance", Some("2-1"), "{}");
        assert_eq!(out, "event:balance\nid:2-1\ndata:{}\n\n");
        let mut out = String::new();
        push_event(&mut out, "security", None, "{}");
        assert_eq!(out, "event:security\ndata:{}\n\n");
    }

    #[test]
    fn stream_ids_parse_strictly_and_order_numerically() {
        assert!(
            StreamId::parse("1700000000000-9").unwrap_or(StreamId(0, 0))
                < StreamId(1700000000000, 10)
        );
        assert!(StreamId(9, 0) < StreamId(10, 0));
        assert!(StreamId(u64::MAX, u64::MAX - 1).can_resume());
        assert!(!StreamId(u64::MAX, u64::MAX).can_resume());
        for bad in [
            "",
            "-",
            "1-",
            "-1",
            "a-1",
            "1-2-3",
            "99999999999999999999999-1",
            "18446744073709551616-0",
            "$",
            "+",
            "+1-0",
            "1-+0",
            " 1-0",
        ] {
            assert!(StreamId::parse(bad).is_none(), "{bad}");
        }
    }
}
