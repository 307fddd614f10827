//! WebAuthn user handles: a random UUID per user, so an authenticator holds no username, and the
//! record back from the handle to its user (who a discoverable passkey's assertion claims to be).

use webauthn_rs::prelude::Uuid;

use crate::error::{Error, Result};
use crate::redis::Db;

/// The user's WebAuthn user handle, created on first use. Until a passkey holds it ([`keep`]), it
/// and its owner record expire after `unused_secs`, counted again from every registration
/// started (so it cannot expire during a ceremony): the handle of an abandoned passkey
/// application, whose username exists nowhere else, goes with it.
pub(super) async fn get_or_make(db: &Db, username: &str, unused_secs: u64) -> Result<Uuid> {
    let key = db.keys.user_handle(username);
    let fresh = Uuid::new_v4();
    let fresh_text = fresh.to_string();
    let (created, stored, ttl): (bool, String, i64) = db
        .query(
            redis::pipe()
                .cmd("SET")
                .arg(&key)
                .arg(&fresh_text)
                .arg("NX")
                .arg("EX")
                .arg(unused_secs)
                .cmd("GET")
                .arg(&key)
                .cmd("TTL")
                .arg(&key),
        )
        .await?;
    let handle = Uuid::parse_str(&stored).map_err(|e| Error::Internal(e.to_string()))?;
    // Created now, or still unused (it expires): the owner record with it, for as long.
    if created || ttl > 0 {
        let owner = db.keys.handle_owner(&stored);
        db.query::<()>(
            redis::pipe()
                .cmd("SET")
                .arg(&owner)
                .arg(username)
                .arg("EX")
                .arg(unused_secs)
                .ignore()
                .cmd("EXPIRE")
                .arg(&key)
                .arg(unused_secs)
                .ignore(),
        )
        .await?;
    }
    Ok(handle)
}

/// Keeps `username`'s user handle and its owner record for good: a passkey holds it now.
pub(super) async fn keep(db: &Db, username: &str) -> Result<()> {
    let key = db.keys.user_handle(username);
    let handle: Option<String> = db.query(redis::cmd("GET").arg(&key)).await?;
    let Some(handle) = handle else {
        return Err(Error::Internal("a passkey was stored for a user handle that expired".into()));
    };
    let owner = db.keys.handle_owner(&handle);
    db.query::<()>(
        redis::pipe().cmd("PERSIST").arg(&key).ignore().cmd("PERSIST").arg(&owner).ignore(),
    )
    .await
}

/// The user `handle` belongs to (None: no one, or an abandoned application's that expired).
pub(super) async fn owner(db: &Db, handle: &Uuid) -> Result<Option<String>> {
    let key = db.keys.handle_owner(&handle.to_string());
    db.query(redis::cmd("GET").arg(&key)).await
}
