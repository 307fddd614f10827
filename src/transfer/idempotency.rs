//! Idempotency: a client retrying a transfer request with the same `Idempotency-Key` gets the
//! transfer the first request made (as it is now), never a second one. The key is remembered,
//! with the request, for [`IDEMPOTENCY_SECS`].

use redis::Script;
use serde::{Deserialize, Serialize};

use super::model::{PENDING_SECS, Status, Transfer};
use super::service::{Request, create_with_id, invalid, load, new_id};
use crate::auth::model::Session;
use crate::clock::now_ms;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::redis::Db;
use crate::redis::doc::to_json;
use crate::secret::sha256_hex;

/// An `Idempotency-Key` is remembered this long.
pub const IDEMPOTENCY_SECS: u64 = 86_400;

/// What an `Idempotency-Key` remembers: the request it came with and the transfer it made.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Remembered {
    request: Request,
    transfer: String,
    /// When the key was first used (ms; 0 in records written before this field existed).
    #[serde(default)]
    at: i64,
}

/// Creates the transfer once per `Idempotency-Key`: the same key with the same request returns
/// that transfer (as it is now) without a second one; with another request it is 422.
pub async fn create_once(
    db: &Db,
    config: &Config,
    session: &Session,
    req: &Request,
    idempotency_key: &str,
) -> Result<Transfer> {
    let digest = sha256_hex(idempotency_key);
    let key = db.keys.idempotency(&session.doc.user, &digest);
    let id = new_id();
    let remembered = Remembered { request: req.clone(), transfer: id.clone(), at: now_ms() };
    let json = to_json(&remembered)?;
    let stored: Option<String> = db
        .query(
            redis::cmd("SET")
                .arg(&key)
                .arg(&json)
                .arg("NX")
                .arg("GET")
                .arg("EX")
                .arg(IDEMPOTENCY_SECS),
        )
        .await?;
    let Some(earlier) = stored else {
        // First use of the key. When no transfer came of it (refused, or Redis failed before it
        // was stored), the key is given back — only if it still holds this request — so a
        // corrected or repeated request can use it; once a transfer exists, the key answers
        // with it for 24 h.
        let made = create_with_id(db, config, session, req, id.clone()).await;
        if made.is_err() && load(db, &session.doc.account, &id).await.ok().flatten().is_none() {
            db.run(async |c| {
                Script::new(
                    "if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end \
                     return 1",
                )
                .key(&key)
                .arg(&json)
                .invoke_async::<_, i64>(c)
                .await
            })
            .await?;
        }
        return made;
    };
    let earlier: Remembered =
        serde_json::from_str(&earlier).map_err(|e| Error::Internal(e.to_string()))?;
    if earlier.request != *req {
        return Err(invalid(
            "Idempotency-Key",
            "This Idempotency-Key was used for a different transfer.",
        ));
    }
    // The same request again: the transfer as it stands (it may still be on its way).
    for _ in 0..20 {
        if let Some(t) = load(db, &session.doc.account, &earlier.transfer).await? {
            // A transfer refused when carried out answers as it did the first time.
            if let (Status::Failed, Some(why)) = (t.status, &t.failure) {
                return Err(invalid("amount", why.clone()));
            }
            return Ok(t);
        }
        // Gone long after any request could still be making it: it waited for its confirmation
        // and was forgotten after its expiry (a receipt would still be here).
        if now_ms() - earlier.at > (PENDING_SECS + 60) * 1000 {
            return Err(Error::Gone(
                "This transfer expired without a confirmation. Start a new one (with a new \
                 Idempotency-Key)."
                    .into(),
            ));
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    Err(Error::Conflict("The first request with this Idempotency-Key is still running.".into()))
}
