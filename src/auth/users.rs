//! Users in Redis: the only module that touches the user documents.

use redis::Script;

use super::model::User;
use crate::error::{Error, Result};
use crate::redis::Db;

/// The user document, or None when there is no such user (or the name is not a valid username).
pub async fn get_user(db: &Db, username: &str) -> Result<Option<User>> {
    if !super::model::valid_username(username) {
        return Ok(None);
    }
    let key = db.keys.user(username);
    let raw: Option<String> =
        db.run(async |c| redis::cmd("JSON.GET").arg(&key).query_async(c).await).await?;
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
    let n: i64 = db.run(async |c| redis::cmd("DEL").arg(&key).query_async(c).await).await?;
    Ok(n == 1)
}

/// Replaces a user's password hash by JSON path (never re-creating a deleted user).
pub async fn set_password_hash(db: &Db, username: &str, hash: &str) -> Result<()> {
    let key = db.keys.user(username);
    let json = serde_json::Value::from(hash).to_string();
    db.run(async |c| {
        redis::cmd("JSON.SET")
            .arg(&key)
            .arg("$.password_hash")
            .arg(&json)
            .arg("XX")
            .query_async::<_, ()>(c)
            .await
    })
    .await
}

/// Sets (or, with None, removes) a user's e-mail address by JSON path, in a script that first
/// checks the user exists: never re-creates a deleted user.
pub async fn set_email(db: &Db, username: &str, email: Option<&str>) -> Result<()> {
    let key = db.keys.user(username);
    let json = email.map(|e| serde_json::Value::from(e).to_string()).unwrap_or_default();
    db.run(async |c| {
        Script::new(
            "if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end \
             if ARGV[1] == '' then redis.call('JSON.DEL', KEYS[1], '$.email') \
             else redis.call('JSON.SET', KEYS[1], '$.email', ARGV[1]) end \
             return 1",
        )
        .key(&key)
        .arg(&json)
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
    db.run(async |c| redis::cmd("EXISTS").arg(&key).query_async(c).await).await
}

/// Creates the user unless it exists; true when created.
pub async fn create_user(db: &Db, user: &User) -> Result<bool> {
    let key = db.keys.user(&user.username);
    let doc = serde_json::to_string(user).map_err(|e| Error::Internal(e.to_string()))?;
    let created: Option<String> = db
        .run(async |c| {
            redis::cmd("JSON.SET").arg(&key).arg("$").arg(&doc).arg("NX").query_async(c).await
        })
        .await?;
    Ok(created.is_some())
}
