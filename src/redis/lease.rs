//! A leader lease: among the instances sharing a Redis, one at a time holds it and does the work
//! it guards (the transaction generator, transfer recovery). It is taken or renewed with an
//! expiry, so a holder that dies is replaced once the lease lapses, and handed on at once by a
//! holder that stops.

use std::time::Duration;

use super::Db;
use crate::error::Result;
use crate::redis::lua::lua;
use crate::secret::random_token;

/// This instance's claim on one lease.
pub struct Lease {
    key: String,
    holder: String,
}

impl Lease {
    /// A claim on the lease at `key`, under a random holder id of this instance.
    pub fn new(key: String) -> Self {
        Lease { key, holder: random_token() }
    }

    /// Takes the lease when it is free, or renews it when ours, for `ttl`: true while this
    /// instance holds it.
    pub async fn hold(&self, db: &Db, ttl: Duration) -> Result<bool> {
        let ms = ttl.as_millis().max(1) as u64;
        let script = lua!("redis/lua/lease_hold");
        let held: i64 = db
            .run(async |c| script.key(&self.key).arg(&self.holder).arg(ms).invoke_async(c).await)
            .await?;
        Ok(held == 1)
    }

    /// Gives the lease up if still ours, so another instance takes over without waiting for it
    /// to lapse; best effort (a lease not handed on lapses by itself).
    pub async fn release(&self, db: &Db) {
        let script = lua!("redis/lua/lease_release");
        let _ = db
            .run(async |c| script.key(&self.key).arg(&self.holder).invoke_async::<_, i64>(c).await)
            .await;
    }
}
