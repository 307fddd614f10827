//! Documents: a value serialized as JSON and stored with an expiry, the shape most features
//! keep (ceremonies, links, transfers, pending states). As a RedisJSON document when its fields
//! are read or changed by path, or an index covers it; as a plain string when it is only ever
//! read whole.

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Db;
use crate::error::{Error, Result};

/// `value` as JSON text (a failure is a bug: our own types always serialize).
pub fn to_json<T: Serialize + ?Sized>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| Error::Internal(format!("serialize: {e}")))
}

/// `text` as a `T` (a failure means the stored document is not ours: an internal error).
fn from_json<T: DeserializeOwned>(text: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| Error::Internal(format!("stored document: {e}")))
}

/// A document written inside a transaction that writes more than it (a session, a transfer
/// and its index): the same two commands [`Db::put`] sends for [`As::Json`].
pub trait PutJson {
    /// `JSON.SET key $ json`, then `PEXPIRE key ms`: never a moment without the expiry.
    fn put_json(&mut self, key: &str, json: &str, ms: i64) -> &mut Self;
    /// The same with `NX`: a document already at `key` is left alone.
    fn put_new_json(&mut self, key: &str, json: &str, ms: i64) -> &mut Self;
}

impl PutJson for redis::Pipeline {
    fn put_json(&mut self, key: &str, json: &str, ms: i64) -> &mut Self {
        self.cmd("JSON.SET").arg(key).arg("$").arg(json).ignore();
        self.cmd("PEXPIRE").arg(key).arg(ms).ignore()
    }

    fn put_new_json(&mut self, key: &str, json: &str, ms: i64) -> &mut Self {
        self.cmd("JSON.SET").arg(key).arg("$").arg(json).arg("NX").ignore();
        self.cmd("PEXPIRE").arg(key).arg(ms).ignore()
    }
}

/// How a document is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum As {
    /// A RedisJSON document: its fields can be read and changed by path, an index can cover it.
    Json,
    /// JSON text in a plain string: read (or taken) whole.
    Text,
}

impl Db {
    /// Stores `value` at `key` as `stored`, expiring after `ttl`, in one step (no moment
    /// without the expiry): `JSON.SET` and `PEXPIRE` in one transaction, or `SET … PX`.
    pub async fn put<T: Serialize + ?Sized>(
        &self,
        key: &str,
        value: &T,
        stored: As,
        ttl: Duration,
    ) -> Result<()> {
        let json = to_json(value)?;
        let ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX).max(1);
        match stored {
            As::Json => self.query(redis::pipe().atomic().put_json(key, &json, ms)).await,
            As::Text => self.query(redis::cmd("SET").arg(key).arg(&json).arg("PX").arg(ms)).await,
        }
    }

    /// The JSON text at `key` as a `T`; None when there is none.
    pub async fn get_text<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        let raw: Option<String> = self.query(redis::cmd("GET").arg(key)).await?;
        raw.as_deref().map(from_json).transpose()
    }

    /// Takes (reads and deletes, in one command) the JSON text at `key`: of two callers racing
    /// for one value, one gets it.
    pub async fn take_text<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        let raw: Option<String> = self.query(redis::cmd("GETDEL").arg(key)).await?;
        raw.as_deref().map(from_json).transpose()
    }
}
