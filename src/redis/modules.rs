//! The startup check for the RedisJSON and RediSearch modules.

use redis::Value;

use super::{Db, value_text};
use crate::error::Result;

/// The modules redbank needs: (name in `MODULE LIST`, product name for humans).
pub const REQUIRED_MODULES: [(&str, &str); 2] = [("ReJSON", "RedisJSON"), ("search", "RediSearch")];

/// Names (for humans) of the required modules the server lacks; empty when all are loaded.
pub async fn missing_modules(db: &Db) -> Result<Vec<&'static str>> {
    let modules: Vec<Vec<Value>> = db.query(redis::cmd("MODULE").arg("LIST")).await?;
    let loaded: Vec<String> = modules
        .iter()
        .filter_map(|fields| {
            // Each module is a flat [key, value, …] list; take the value after "name".
            let pos = fields.iter().position(|v| value_text(v).as_deref() == Some("name"))?;
            fields.get(pos + 1).and_then(value_text)
        })
        .collect();
    Ok(REQUIRED_MODULES
        .iter()
        .filter(|(name, _)| !loaded.iter().any(|l| l == name))
        .map(|(_, human)| *human)
        .collect())
}

/// Logs clearly which module is missing. Redis being down at startup is not fatal: the app serves
/// 503s and recovers when Redis comes back.
pub(super) async fn check_modules(db: &Db) {
    match missing_modules(db).await {
        Ok(missing) if missing.is_empty() => {
            rocket::info!("Redis: RedisJSON and RediSearch loaded")
        }
        Ok(missing) => rocket::error!(
            "Redis: required module(s) not loaded: {}. Start Redis with `scripts/redis start` \
             or use the redis:8 image.",
            missing.join(", ")
        ),
        Err(e) => {
            rocket::warn!("Redis: not reachable at startup ({e}); serving 503 until it is");
            return;
        }
    }
    db.check_fsync().await;
}
