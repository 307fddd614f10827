//! Capped streams: the logs several features keep (security activity, failed sign-ins, the
//! operators' audit, the mail outbox). Each is appended with `XADD MAXLEN ~` so it never grows
//! past a bound, and read newest first.

use std::collections::HashMap;

use redis::Value;

use super::{Db, value_text};
use crate::error::Result;

/// One stream entry: its id (`<ms>-<seq>`) and its fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamEntry {
    pub id: String,
    pub fields: HashMap<String, String>,
}

impl StreamEntry {
    /// The field `name`, if the entry has it.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }

    /// When the entry was added (the id's milliseconds).
    pub fn added_ms(&self) -> Option<i64> {
        self.id.split('-').next()?.parse().ok()
    }
}

/// `XADD key MAXLEN ~ max * field value …`: appends an entry, trimming the oldest beyond about
/// `max` (the `~` lets Redis trim whole nodes, which is what keeps it cheap).
pub fn append_cmd(key: &str, max: usize, fields: &[(&str, &str)]) -> redis::Cmd {
    let mut cmd = redis::cmd("XADD");
    cmd.arg(key).arg("MAXLEN").arg("~").arg(max).arg("*");
    for (name, value) in fields {
        cmd.arg(*name).arg(*value);
    }
    cmd
}

impl Db {
    /// Appends an entry to the capped stream `key` (see [`append_cmd`]).
    pub async fn append(&self, key: &str, max: usize, fields: &[(&str, &str)]) -> Result<()> {
        let cmd = append_cmd(key, max, fields);
        self.query::<()>(&cmd).await
    }

    /// The newest `count` entries of the stream `key`, newest first (`XREVRANGE + - COUNT`: its
    /// cost does not grow with the stream). Fields that are not text are left out.
    pub async fn newest_entries(&self, key: &str, count: usize) -> Result<Vec<StreamEntry>> {
        let mut cmd = redis::cmd("XREVRANGE");
        cmd.arg(key).arg("+").arg("-").arg("COUNT").arg(count);
        let reply: Vec<Value> = self.query(&cmd).await?;
        Ok(reply.iter().filter_map(entry).collect())
    }
}

/// An entry of an `XRANGE`-shaped reply: `[id, [field, value, …]]`.
fn entry(value: &Value) -> Option<StreamEntry> {
    let Value::Bulk(parts) = value else { return None };
    let (Some(id), Some(Value::Bulk(raw))) = (parts.first().and_then(value_text), parts.get(1))
    else {
        return None;
    };
    let fields = raw
        .chunks(2)
        .filter_map(|pair| match pair {
            [name, value] => Some((value_text(name)?, value_text(value)?)),
            _ => None,
        })
        .collect();
    Some(StreamEntry { id, fields })
}
