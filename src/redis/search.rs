//! RediSearch over JSON documents: index creation, reply parsing, and stored-document parsing.

use redis::Value;

use super::Db;
use crate::error::{Error, Result};

/// A reply element as text (bulk or status strings).
pub fn value_text(v: &Value) -> Option<String> {
    match v {
        Value::Data(bytes) => String::from_utf8(bytes.clone()).ok(),
        Value::Status(s) => Some(s.clone()),
        _ => None,
    }
}

/// A stored JSON document as `T`. One that does not parse is logged (with its key, never its
/// content) and treated as absent: a corrupt row must neither fail a whole page nor vanish
/// without a trace.
pub fn parse_stored<T: serde::de::DeserializeOwned>(
    key: impl std::fmt::Display,
    json: &str,
) -> Option<T> {
    match serde_json::from_str(json) {
        Ok(value) => Some(value),
        Err(e) => {
            rocket::warn!("stored document {key} does not parse ({e}); skipped");
            None
        }
    }
}

/// `FT.CREATE <name> ON JSON PREFIX 1 <prefix> SCHEMA <schema…>`, where an existing index is fine.
pub async fn create_json_index(db: &Db, name: &str, prefix: &str, schema: &[&str]) -> Result<()> {
    let created: Result<String> = db
        .query(
            redis::cmd("FT.CREATE")
                .arg(name)
                .arg(&["ON", "JSON", "PREFIX", "1"][..])
                .arg(prefix)
                .arg("SCHEMA")
                .arg(schema),
        )
        .await;
    match created {
        Err(Error::Redis(e)) if e.to_string().contains("already exists") => Ok(()),
        other => other.map(|_| ()),
    }
}

/// True for RediSearch's "the index is not there" errors (e.g. after Redis lost its data).
pub fn is_missing_index(e: &Error) -> bool {
    match e {
        Error::Redis(e) => {
            let text = e.to_string().to_lowercase();
            // "Unknown index name" (FT.SEARCH), "Unknown: Index name" (FT.DROPINDEX).
            text.contains("no such index")
                || text.contains("unknown index")
                || text.contains("unknown: index")
        }
        _ => false,
    }
}

/// An `FT.SEARCH` reply over JSON documents — `[total, key, [field, value, …, "$", json], …]` —
/// as the total and the (key, document JSON) pairs. With SORTBY the sort key precedes `$`.
pub fn search_hits(reply: &[Value]) -> (usize, Vec<(String, String)>) {
    let total = match reply.first() {
        Some(Value::Int(n)) => usize::try_from(*n).unwrap_or(0),
        _ => 0,
    };
    let hits = reply
        .get(1..)
        .unwrap_or_default()
        .chunks(2)
        .filter_map(|pair| {
            let key = value_text(pair.first()?)?;
            let Value::Bulk(fields) = pair.get(1)? else { return None };
            let at = fields.iter().position(|f| value_text(f).as_deref() == Some("$"))?;
            Some((key, value_text(fields.get(at + 1)?)?))
        })
        .collect();
    (total, hits)
}
