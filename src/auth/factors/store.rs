//! A user's second factors in Redis: the TOTP secret and its last accepted step, the pending
//! enrolment, the recovery codes and the passkeys. The only module that touches those keys.
//!
//! Single use is enforced by Redis, not by a read followed by a write: a TOTP step is accepted by
//! a script that compares and sets in one step, a recovery code is burnt by `SREM`, so two
//! requests racing with the same code cannot both pass.

use super::totp::TotpSecret;
use crate::clock::now_ms;
use crate::error::{Error, Result};
use crate::redis::Db;
use crate::redis::lua::lua;
use crate::secret::SecretBox;

/// How long a TOTP secret shown for enrolment waits for its confirming code.
pub const PENDING_TOTP_SECS: u64 = 600;

/// What second factors a user has.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Factors {
    pub totp: bool,
    pub passkeys: usize,
    pub recovery_codes: usize,
}

impl Factors {
    /// Whether the user has a second factor (recovery codes alone are not one: they back up TOTP).
    pub fn any(&self) -> bool {
        self.totp || self.passkeys > 0
    }

    /// What a sign-in may be completed with, in the API's words.
    pub fn methods(&self) -> Vec<&'static str> {
        let mut methods = Vec::new();
        if self.totp {
            methods.push("totp");
        }
        if self.passkeys > 0 {
            methods.push("passkey");
        }
        if self.recovery_codes > 0 {
            methods.push("recovery");
        }
        methods
    }
}

/// The user's factors, in one round trip.
pub async fn factors(db: &Db, username: &str) -> Result<Factors> {
    let (totp, passkeys, codes) =
        (db.keys.totp(username), db.keys.passkeys(username), db.keys.recovery_codes(username));
    let (totp, passkeys, recovery_codes): (bool, usize, usize) = db
        .query(
            redis::pipe()
                .cmd("EXISTS")
                .arg(&totp)
                .cmd("HLEN")
                .arg(&passkeys)
                .cmd("SCARD")
                .arg(&codes),
        )
        .await?;
    Ok(Factors { totp, passkeys, recovery_codes })
}

// ---- TOTP -----------------------------------------------------------------------------------

/// What a TOTP secret of `username` is sealed for: it opens for this user's factor only.
fn seal_context(username: &str) -> String {
    format!("totp:{username}")
}

/// `secret` sealed for `username` (`totp_keys`).
fn seal(db: &Db, username: &str, secret: &TotpSecret) -> Result<String> {
    db.sealer
        .seal(&secret.base32(), &seal_context(username))
        .ok_or_else(|| Error::Internal("no key to seal TOTP secrets (totp_keys)".into()))
}

/// A stored TOTP secret: sealed (opened with `totp_keys`), or plain base32 when stored before
/// secrets were sealed (re-sealed by `redbank admin totp-rekey`).
fn unseal(db: &Db, username: &str, stored: &str) -> Option<TotpSecret> {
    if SecretBox::is_sealed(stored) {
        let (base32, _) = db.sealer.open(stored, &seal_context(username))?;
        TotpSecret::from_base32(&base32)
    } else {
        TotpSecret::from_base32(stored)
    }
}

/// The user's enrolled TOTP secret.
pub async fn totp_secret(db: &Db, username: &str) -> Result<Option<TotpSecret>> {
    let key = db.keys.totp(username);
    let secret: Option<String> = db.query(redis::cmd("HGET").arg(&key).arg("secret")).await?;
    Ok(secret.as_deref().and_then(|s| unseal(db, username, s)))
}

/// A TOTP secret waiting for its confirming code, and its stored (sealed) form, which names it.
pub struct Pending {
    pub secret: TotpSecret,
    stored: String,
}

/// A new secret for enrolment, kept (sealed) until confirmed or for [`PENDING_TOTP_SECS`];
/// asking again replaces it.
pub async fn begin_totp(db: &Db, username: &str) -> Result<Pending> {
    let secret = TotpSecret::generate();
    let key = db.keys.totp_pending(username);
    let stored = seal(db, username, &secret)?;
    db.query::<()>(redis::cmd("SET").arg(&key).arg(&stored).arg("EX").arg(PENDING_TOTP_SECS))
        .await?;
    Ok(Pending { secret, stored })
}

/// The secret waiting for its confirming code.
pub async fn pending_totp(db: &Db, username: &str) -> Result<Option<Pending>> {
    let key = db.keys.totp_pending(username);
    let stored: Option<String> = db.query(redis::cmd("GET").arg(&key)).await?;
    Ok(stored.and_then(|stored| {
        let secret = unseal(db, username, &stored)?;
        Some(Pending { secret, stored })
    }))
}

/// Confirms enrolment of `pending` (whose code for `step` the user typed), storing the digests
/// of the new recovery codes. False when that secret is no longer pending.
pub async fn confirm_totp(
    db: &Db,
    username: &str,
    pending: &Pending,
    step: i64,
    recovery_digests: &[String],
) -> Result<bool> {
    let keys = [
        db.keys.totp_pending(username),
        db.keys.totp(username),
        db.keys.recovery_codes(username),
        db.keys.recovery_issued(username),
    ];
    let text = &pending.stored;
    let done: i64 = db
        .run(async |c| {
            let script = lua!("auth/factors/lua/confirm_totp");
            let mut call = script.key(&keys[0]);
            call.key(&keys[1]).key(&keys[2]).key(&keys[3]).arg(text).arg(now_ms()).arg(step);
            for digest in recovery_digests {
                call.arg(digest);
            }
            call.invoke_async(c).await
        })
        .await?;
    Ok(done == 1)
}

/// Checks `code` against the user's TOTP factor at `now_secs` and uses its step up. False for a
/// wrong code, a code already used (or older than one used), or no factor.
pub async fn use_totp_code(db: &Db, username: &str, code: &str, now_secs: i64) -> Result<bool> {
    let Some(secret) = totp_secret(db, username).await? else { return Ok(false) };
    let Some(step) = secret.matching_step(code, now_secs) else { return Ok(false) };
    let key = db.keys.totp(username);
    let fresh: i64 = db
        .run(async |c| lua!("auth/factors/lua/use_step").key(&key).arg(step).invoke_async(c).await)
        .await?;
    Ok(fresh == 1)
}

/// When the user's TOTP factor was enrolled (ms), if they have one.
pub async fn totp_enrolled_at(db: &Db, username: &str) -> Result<Option<i64>> {
    let key = db.keys.totp(username);
    let (exists, at): (bool, Option<i64>) = db
        .query(redis::pipe().cmd("EXISTS").arg(&key).cmd("HGET").arg(&key).arg("enrolled_at"))
        .await?;
    // A factor without the field (the demo's) counts as old.
    Ok(exists.then(|| at.unwrap_or(0)))
}

/// Drops an enrolment in progress (the pending TOTP secret and the e-mailed code).
pub async fn drop_pending(db: &Db, username: &str) -> Result<()> {
    db.delete_each(&[db.keys.totp_pending(username), db.keys.enrol_code(username)]).await
}

/// Re-seals every enrolled TOTP secret not sealed with the first of `totp_keys` (after a new key
/// was put first, before the old one is dropped; also seals secrets stored before sealing
/// existed). Answers (re-sealed, unreadable: no configured key opens them). Pending enrolments
/// are left to expire (10 minutes).
pub async fn reseal_all(db: &Db) -> Result<(usize, usize)> {
    let pattern = db.keys.totp("*");
    let (prefix, suffix) = pattern.split_once('*').unwrap_or((&pattern, ""));
    let (prefix, suffix) = (prefix.to_owned(), suffix.to_owned());
    let (mut resealed, mut unreadable) = (0, 0);
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = db
            .query(
                redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(1000)
                    .arg("TYPE")
                    .arg("hash"),
            )
            .await?;
        for key in keys {
            let Some(user) = key.strip_prefix(&prefix).and_then(|k| k.strip_suffix(&suffix)) else {
                continue;
            };
            let stored: Option<String> =
                db.query(redis::cmd("HGET").arg(&key).arg("secret")).await?;
            let Some(stored) = stored else { continue };
            let current = SecretBox::is_sealed(&stored)
                && db.sealer.open(&stored, &seal_context(user)).is_some_and(|(_, first)| first);
            if current {
                continue;
            }
            let Some(secret) = unseal(db, user, &stored) else {
                unreadable += 1;
                continue;
            };
            let sealed = seal(db, user, &secret)?;
            let done: i64 = db
                .run(async |c| {
                    lua!("auth/factors/lua/reseal")
                        .key(&key)
                        .arg(&stored)
                        .arg(&sealed)
                        .invoke_async(c)
                        .await
                })
                .await?;
            resealed += done as usize;
        }
        cursor = next;
        if cursor == 0 {
            return Ok((resealed, unreadable));
        }
    }
}

/// Sets a demo user's TOTP factor unless the user already has one (the fixed demo secret).
pub async fn ensure_demo_totp(db: &Db, username: &str, secret: &TotpSecret) -> Result<()> {
    let key = db.keys.totp(username);
    let text = seal(db, username, secret)?;
    db.query::<()>(redis::cmd("HSETNX").arg(&key).arg("secret").arg(&text)).await
}

/// Removes the TOTP factor (and the pending enrolment). True when there was one.
pub async fn remove_totp(db: &Db, username: &str) -> Result<bool> {
    let (key, pending) = (db.keys.totp(username), db.keys.totp_pending(username));
    let (removed, _): (i64, i64) =
        db.query(redis::pipe().cmd("DEL").arg(&key).cmd("DEL").arg(&pending)).await?;
    Ok(removed == 1)
}

// ---- recovery codes ---------------------------------------------------------------------------

/// Burns the recovery code with this digest; true when it was unused.
pub async fn burn_recovery_code(db: &Db, username: &str, digest: &str) -> Result<bool> {
    let key = db.keys.recovery_codes(username);
    let removed: i64 = db.query(redis::cmd("SREM").arg(&key).arg(digest)).await?;
    Ok(removed == 1)
}

/// Replaces the user's recovery codes with these digests (none: removes them), noting when.
pub async fn replace_recovery_codes(db: &Db, username: &str, digests: &[String]) -> Result<()> {
    let (key, issued) = (db.keys.recovery_codes(username), db.keys.recovery_issued(username));
    let mut pipe = redis::pipe();
    pipe.atomic().cmd("DEL").arg(&key).ignore().cmd("DEL").arg(&issued).ignore();
    if !digests.is_empty() {
        pipe.cmd("SADD").arg(&key).arg(digests).ignore();
        pipe.cmd("SET").arg(&issued).arg(now_ms()).ignore();
    }
    db.query(&pipe).await
}

/// When the user's recovery codes were made (ms), if they have any.
pub async fn recovery_issued_at(db: &Db, username: &str) -> Result<Option<i64>> {
    let key = db.keys.recovery_issued(username);
    db.query(redis::cmd("GET").arg(&key)).await
}

/// Removes every second factor of a user — TOTP (and a pending one), passkeys, recovery codes —
/// keeping the WebAuthn user handle (new passkeys reuse it). True when there was any.
pub async fn remove_all_factors(db: &Db, username: &str) -> Result<bool> {
    let before = factors(db, username).await?;
    let keys = [
        db.keys.totp(username),
        db.keys.totp_pending(username),
        db.keys.enrol_code(username),
        db.keys.renew_code(username),
        db.keys.recovery_codes(username),
        db.keys.recovery_issued(username),
        db.keys.passkeys(username),
    ];
    let mut pipe = redis::pipe();
    pipe.atomic();
    for key in &keys {
        pipe.cmd("DEL").arg(key).ignore();
    }
    db.query::<()>(&pipe).await?;
    Ok(before.any() || before.recovery_codes > 0)
}

/// Every factor key of a user (a removed user leaves none behind).
pub async fn forget_user(db: &Db, username: &str) -> Result<()> {
    let handle: Option<String> = {
        let key = db.keys.user_handle(username);
        db.query(redis::cmd("GET").arg(&key)).await?
    };
    remove_all_factors(db, username).await?;
    let mut keys = vec![db.keys.user_handle(username), db.keys.activity(username)];
    if let Some(handle) = handle {
        keys.push(db.keys.handle_owner(&handle));
    }
    db.delete_each(&keys).await
}

/// Parses a stored JSON value, naming the key when it is corrupt.
pub(crate) fn parse<T: serde::de::DeserializeOwned>(key: &str, raw: &str) -> Result<T> {
    serde_json::from_str(raw).map_err(|e| Error::Internal(format!("{key} is corrupt: {e}")))
}
