//! Users in Redis: the only module that touches the user documents.

use redis::Script;

use super::model::User;
use crate::error::{Error, Result};
use crate::redis::Db;
use crate::redis::doc::to_json;
use crate::redis::lua::lua;

/// The user document, or None when there is no such user (or the name is not a valid username).
pub async fn get_user(db: &Db, username: &str) -> Result<Option<User>> {
    if !super::model::valid_username(username) {
        return Ok(None);
    }
    let key = db.keys.user(username);
    let raw: Option<String> = db.query(redis::cmd("JSON.GET").arg(&key)).await?;
    match raw {
        None => Ok(None),
        Some(raw) => serde_json::from_str(&raw)
            .map(Some)
            .map_err(|e| Error::Internal(format!("user document {key} is corrupt: {e}"))),
    }
}

/// Deletes a user document (not its account or history); true when it existed.
pub async fn delete_user(db: &Db, username: &str) -> Result<bool> {
    let key = db.keys.user(username);
    let n: i64 = db.query(redis::cmd("DEL").arg(&key)).await?;
    Ok(n == 1)
}

/// Replaces a user's password hash by JSON path (never re-creating a deleted user).
pub async fn set_password_hash(db: &Db, username: &str, hash: &str) -> Result<()> {
    let key = db.keys.user(username);
    let json = serde_json::Value::from(hash).to_string();
    db.query::<()>(redis::cmd("JSON.SET").arg(&key).arg("$.password_hash").arg(&json).arg("XX"))
        .await
}

/// Sets (or, with None, removes) a user's e-mail address by JSON path, in a script that first
/// checks the user exists (never re-creates a deleted user), and keeps the address index
/// ([`find_by_email`]) in step: the new address points at the user, the old one no longer does.
pub async fn set_email(db: &Db, username: &str, email: Option<&str>) -> Result<()> {
    let old = get_user(db, username).await?.and_then(|u| u.email);
    let key = db.keys.user(username);
    let json = email.map(|e| serde_json::Value::from(e).to_string()).unwrap_or_default();
    let set: i64 = db
        .run(async |c| {
            Script::new(
                "if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end \
                 if ARGV[1] == '' then redis.call('JSON.DEL', KEYS[1], '$.email') \
                 else redis.call('JSON.SET', KEYS[1], '$.email', ARGV[1]) end \
                 return 1",
            )
            .key(&key)
            .arg(&json)
            .invoke_async(c)
            .await
        })
        .await?;
    if set == 1 {
        if let Some(address) = email {
            let owner = db.keys.email_owner(&address.to_lowercase());
            db.query::<()>(redis::cmd("SET").arg(&owner).arg(username)).await?;
        }
    }
    if let Some(old) = old.filter(|old| email.is_none_or(|new| !new.eq_ignore_ascii_case(old))) {
        release_email(db, username, &old).await?;
    }
    Ok(())
}

/// Removes `address` from the index if it still names `username` (one key: a script is atomic).
async fn release_email(db: &Db, username: &str, address: &str) -> Result<()> {
    let owner = db.keys.email_owner(&address.to_lowercase());
    db.run(async |c| {
        Script::new(
            "if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end return 1",
        )
        .key(&owner)
        .arg(username)
        .invoke_async::<_, ()>(c)
        .await
    })
    .await
}

/// Claims `address` (any case) for `username` in the index: true when it is now theirs (it was
/// free, or theirs already), false when another account holds it.
pub async fn claim_email(db: &Db, username: &str, address: &str) -> Result<bool> {
    let owner = db.keys.email_owner(&address.to_lowercase());
    let holder: Option<String> =
        db.query(redis::cmd("SET").arg(&owner).arg(username).arg("NX").arg("GET")).await?;
    Ok(holder.is_none_or(|h| h == username))
}

/// The user whose address is `address` (any case), if any. The index is checked against the
/// user document, so an entry left behind by a change can never lead to the wrong account.
pub async fn find_by_email(db: &Db, address: &str) -> Result<Option<User>> {
    let lower = address.trim().to_lowercase();
    if lower.is_empty() || lower.len() > 254 {
        return Ok(None);
    }
    let owner = db.keys.email_owner(&lower);
    let username: Option<String> = db.query(redis::cmd("GET").arg(&owner)).await?;
    let Some(username) = username else { return Ok(None) };
    let user = get_user(db, &username).await?;
    Ok(user.filter(|u| u.email.as_deref().is_some_and(|e| e.to_lowercase() == lower)))
}

/// The user a sign-in name means: an e-mail address (it has an `@`) or a username.
pub async fn find_by_login(db: &Db, login: &str) -> Result<Option<User>> {
    if login.contains('@') {
        find_by_email(db, login).await
    } else {
        get_user(db, &login.trim().to_lowercase()).await
    }
}

/// What a password change compares: the SHA-1 of the stored hash, as the script computes it.
pub fn fingerprint(password_hash: &str) -> String {
    use sha1::Digest;
    hex::encode(sha1::Sha1::digest(password_hash.as_bytes()))
}

/// Replaces the user's password hash with `new_hash` if the stored one is still the one whose
/// [`fingerprint`] is `replaces`, clearing the compromised and outdated marks; false when it
/// was changed meanwhile (or the user is gone).
pub async fn replace_password(
    db: &Db,
    username: &str,
    replaces: &str,
    new_hash: &str,
) -> Result<bool> {
    let key = db.keys.user(username);
    let json = serde_json::Value::from(new_hash).to_string();
    let replaced: i64 = db
        .run(async |c| {
            lua!("auth/lua/replace_password")
                .key(&key)
                .arg(replaces)
                .arg(&json)
                .invoke_async(c)
                .await
        })
        .await?;
    Ok(replaced == 1)
}

/// Marks the user's password as breaking today's rules (found at a sign-in).
pub async fn set_password_outdated(db: &Db, username: &str) -> Result<()> {
    let key = db.keys.user(username);
    db.run(async |c| {
        Script::new(
            "if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end \
             redis.call('JSON.SET', KEYS[1], '$.password_outdated', 'true') return 1",
        )
        .key(&key)
        .invoke_async::<_, ()>(c)
        .await
    })
    .await
}

/// Marks (or clears) the user's password as compromised, by JSON path in a script that first
/// checks the user exists.
pub async fn set_password_compromised(db: &Db, username: &str, compromised: bool) -> Result<()> {
    let key = db.keys.user(username);
    db.run(async |c| {
        Script::new(
            "if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end \
             redis.call('JSON.SET', KEYS[1], '$.password_compromised', ARGV[1]) return 1",
        )
        .key(&key)
        .arg(if compromised { "true" } else { "false" })
        .invoke_async::<_, ()>(c)
        .await
    })
    .await
}

pub async fn user_exists(db: &Db, username: &str) -> Result<bool> {
    let key = db.keys.user(username);
    db.query(redis::cmd("EXISTS").arg(&key)).await
}

/// Creates the user unless it exists; true when created.
pub async fn create_user(db: &Db, user: &User) -> Result<bool> {
    let key = db.keys.user(&user.username);
    let doc = to_json(user)?;
    let created: Option<String> =
        db.query(redis::cmd("JSON.SET").arg(&key).arg("$").arg(&doc).arg("NX")).await?;
    Ok(created.is_some())
}
