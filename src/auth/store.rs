//! Sessions in Redis: the only module that touches their keys.
//!
//! Rules this file keeps (docs/SECURITY.md A/C): session keys are named by SHA-256 of the token;
//! every session key has a TTL in (0, idle]; a refresh writes one field by JSON path inside a script
//! that first checks the key exists, so a request racing a logout can never bring the key back; a
//! document that does not parse is deleted and treated as no session.

use crate::audit::ClientInfo;
use crate::redis::lua::lua;
use redis::Value;
use rocket::futures::future::BoxFuture;

use crate::clock::now_ms;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::redis::doc::{PutJson, to_json};
use crate::redis::{Db, Keys, create_json_index, is_missing_index, parse_stored, search_hits};

use super::model::{
    Assurance, SESSION_SCHEMA, Session, SessionDoc, SessionId, SessionKind, SessionToken, User,
};

/// TTL for a session key: the idle timeout, but never past the absolute deadline.
fn ttl_ms(config: &Config, doc: &SessionDoc, now: i64) -> i64 {
    let idle = config.session.idle_secs as i64 * 1000;
    idle.min(doc.expires_at(config) - now)
}

/// Mints a new token and stores its session document with a TTL, atomically.
pub async fn create_session(
    db: &Db,
    config: &Config,
    user: &User,
    kind: SessionKind,
    client: &ClientInfo,
    assurance: Assurance,
) -> Result<(SessionToken, Session)> {
    let now = now_ms();
    let doc = SessionDoc {
        v: SESSION_SCHEMA,
        user: user.username.clone(),
        display_name: user.display_name.clone(),
        roles: user.roles.clone(),
        account: user.account.clone(),
        kind,
        created_at: now,
        last_seen_at: now,
        ip: client.ip.clone(),
        user_agent: client.user_agent.chars().take(256).collect(),
        assurance,
        current_balance_amount: None,
        password_outdated: user.password_outdated,
    };
    let token = store_new(db, config, &doc, now).await?;
    let session = Session::of_token(&token, doc);
    // Best effort: the sign-in has happened; a cap that cannot be applied now is applied by the
    // user's next one (failing the login here would leave its session behind, unused).
    if let Err(e) = enforce_session_cap(db, config, &user.username, &session.id).await {
        rocket::warn!("sessions: could not apply max_sessions_per_user: {e}");
    }
    Ok((token, session))
}

/// Stores `doc` under a new token with its TTL, atomically.
async fn store_new(db: &Db, config: &Config, doc: &SessionDoc, now: i64) -> Result<SessionToken> {
    let token = SessionToken::generate();
    let key = db.keys.session(token.id().as_str());
    let json = to_json(doc)?;
    let ttl = ttl_ms(config, doc, now);
    if ttl <= 0 {
        return Err(Error::Unauthorized);
    }
    db.query::<()>(redis::pipe().atomic().put_new_json(&key, &json, ttl)).await?;
    Ok(token)
}

/// Records a step-up on a live session: its new assurance (three top-level fields, merged in
/// one step, never re-creating a session that ended meanwhile). False when the session is gone.
pub async fn set_assurance(db: &Db, id: &SessionId, assurance: &Assurance) -> Result<bool> {
    let json = to_json(assurance)?;
    let key = db.keys.session(id.as_str());
    let alive: i64 =
        db.run(async |c| lua!("auth/lua/merge").key(&key).arg(&json).invoke_async(c).await).await?;
    Ok(alive == 1)
}

/// A browser session after a step-up: the same session (created_at, so the same absolute
/// deadline) under a new token (so a new CSRF token) with the new assurance; the old token
/// stops working at once. A token seen before the step-up is worth nothing after it.
pub async fn rotate(
    db: &Db,
    config: &Config,
    session: &Session,
    assurance: Assurance,
) -> Result<(SessionToken, Session)> {
    let now = now_ms();
    let mut doc = session.doc.clone();
    doc.assurance = assurance;
    doc.last_seen_at = now;
    if !destroy(db, &session.id).await? {
        // Ended meanwhile (logout, revocation): no new session in its place.
        return Err(Error::Unauthorized);
    }
    let token = store_new(db, config, &doc, now).await?;
    let session = Session::of_token(&token, doc);
    Ok((token, session))
}

/// The live session for `token` if it is of `kind`, enforcing the absolute timeout and refreshing the idle one
/// (throttled to once per `session_touch_secs`). Ok(None) = no session; Err = Redis trouble.
pub async fn load_session(
    db: &Db,
    config: &Config,
    token: &SessionToken,
    kind: SessionKind,
) -> Result<Option<Session>> {
    let key = db.keys.session(token.id().as_str());
    let raw: Result<Option<String>> = db.query(redis::cmd("JSON.GET").arg(&key)).await;
    let raw = match raw {
        Ok(None) => return Ok(None),
        Ok(Some(raw)) => raw,
        Err(e) if e.is_outage() => return Err(e),
        // Not JSON at all (wrong type): treat as no session and clear it.
        Err(e) => {
            rocket::warn!("session key of wrong type dropped: {e}");
            delete(db, &key).await?;
            return Ok(None);
        }
    };
    let doc: SessionDoc = match serde_json::from_str(&raw) {
        Ok(doc) if doc_is_sane(&doc) => doc,
        _ => {
            rocket::warn!("corrupt or old-schema session document dropped");
            delete(db, &key).await?;
            return Ok(None);
        }
    };
    // A token presented through the other kind's channel is no session — and is not refreshed.
    if doc.kind != kind {
        return Ok(None);
    }
    let now = now_ms();
    let ttl = ttl_ms(config, &doc, now);
    if ttl <= 0 {
        delete(db, &key).await?;
        return Ok(None);
    }
    let mut session = Session::of_token(token, doc);
    if now - session.doc.last_seen_at >= config.session.touch_secs as i64 * 1000
        && !touch(db, config, &mut session).await?
    {
        return Ok(None);
    }
    Ok(Some(session))
}

/// Refreshes the session's idle timeout now (its `last_seen_at` and TTL), never past the
/// absolute deadline and never bringing back a session that ended; false when it has.
pub async fn touch(db: &Db, config: &Config, session: &mut Session) -> Result<bool> {
    let now = now_ms();
    let ttl = ttl_ms(config, &session.doc, now);
    if ttl <= 0 {
        return Ok(false);
    }
    let key = db.keys.session(session.id.as_str());
    let alive: i64 = db
        .run(async |c| lua!("auth/lua/touch").key(&key).arg(now).arg(ttl).invoke_async(c).await)
        .await?;
    if alive == 1 {
        session.doc.last_seen_at = now;
    }
    Ok(alive == 1)
}

fn doc_is_sane(doc: &SessionDoc) -> bool {
    doc.v == SESSION_SCHEMA && !doc.user.is_empty()
}

async fn delete(db: &Db, key: &str) -> Result<bool> {
    let n: i64 = db.query(redis::cmd("DEL").arg(key)).await?;
    Ok(n > 0)
}

/// Deletes a session; true when it existed.
pub async fn destroy(db: &Db, id: &SessionId) -> Result<bool> {
    delete(db, &db.keys.session(id.as_str())).await
}

/// One session by id (for ownership checks before a revoke).
pub async fn get_session(db: &Db, id: &SessionId) -> Result<Option<SessionDoc>> {
    let key = db.keys.session(id.as_str());
    let raw: Option<String> = db.query(redis::cmd("JSON.GET").arg(&key)).await?;
    Ok(raw.and_then(|raw| parse_stored(&key, &raw)))
}

/// Creates the RediSearch index over session documents if it is missing (and drops the index
/// of an older schema, keeping the documents).
pub async fn ensure_index(db: &Db) -> Result<()> {
    #[rustfmt::skip]
    let schema = [
        "$.user", "AS", "user", "TAG",
        "$.kind", "AS", "kind", "TAG",
        "$.ip", "AS", "ip", "TAG",
        "$.created_at", "AS", "created_at", "NUMERIC", "SORTABLE",
        // Not SORTABLE (≈ 30 bytes a session): only one user's few sessions are sorted by it.
        "$.last_seen_at", "AS", "last_seen_at", "NUMERIC",
    ];
    create_json_index(db, &db.keys.session_index(), &db.keys.session_prefix(), &schema).await?;
    for legacy in db.keys.legacy_session_indexes() {
        let dropped: Result<String> = db.query(redis::cmd("FT.DROPINDEX").arg(&legacy)).await;
        match dropped {
            Ok(_) => rocket::info!("sessions: dropped the old index {legacy}"),
            Err(e) if is_missing_index(&e) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Ends `user`'s least recently used sessions beyond `max_sessions_per_user`, never `keep` (the
/// sign-in that just happened). Deleting the document also ends the session's open streams at
/// their next heartbeat, as a logout does.
async fn enforce_session_cap(db: &Db, config: &Config, user: &str, keep: &SessionId) -> Result<()> {
    let index = db.keys.session_index();
    let query = async |offset: usize, count: usize| {
        db.query::<Vec<Value>>(
            redis::cmd("FT.SEARCH")
                .arg(&index)
                .arg("@user:{$user}")
                .arg("NOCONTENT")
                .arg("SORTBY")
                .arg("last_seen_at")
                .arg("ASC")
                .arg("LIMIT")
                .arg(offset)
                .arg(count)
                .arg("PARAMS")
                .arg(2)
                .arg("user")
                .arg(user)
                .arg("DIALECT")
                .arg(2),
        )
        .await
    };
    let total = match query(0, 0).await {
        Ok(reply) => search_hits(&reply).0,
        // No index yet (Redis lost it): the repair loop re-creates it; nothing to count now.
        Err(e) if is_missing_index(&e) => return Ok(()),
        Err(e) => return Err(e),
    };
    let max = config.session.max_per_user;
    if total <= max {
        return Ok(());
    }
    let reply = query(0, total - max + 1).await?;
    let prefix = db.keys.session_prefix();
    let victims: Vec<&str> = reply
        .iter()
        .skip(1)
        .filter_map(|key| match key {
            Value::Data(key) => std::str::from_utf8(key).ok(),
            _ => None,
        })
        .filter(|key| key.strip_prefix(prefix.as_str()) != Some(keep.as_str()))
        .take(total - max)
        .collect();
    db.delete_each(&victims).await
}

/// Sets the live-sessions gauge of each kind from the session index: what the metrics port
/// runs before a scrape, and the console before it shows the counts. A kind whose count fails
/// keeps its last value.
pub fn sample_sessions(db: &Db) -> BoxFuture<'_, ()> {
    Box::pin(async move {
        for kind in ["browser", "mobile"] {
            if let Ok(total) = count_kind(db, kind).await {
                db.metrics.sessions_active.with_label_values(&[kind]).set(total as i64);
            }
        }
    })
}

/// How many live sessions of `kind` (`browser` or `mobile`) there are, from the session index.
pub async fn count_kind(db: &Db, kind: &str) -> Result<u64> {
    let index = db.keys.session_index();
    let reply: Vec<redis::Value> = db
        .query(
            redis::cmd("FT.SEARCH")
                .arg(&index)
                .arg(format!("@kind:{{{kind}}}"))
                .arg("LIMIT")
                .arg(0)
                .arg(0),
        )
        .await?;
    Ok(search_hits(&reply).0 as u64)
}

/// Live sessions of `user` (all users when None), newest first. Built on the session index, so
/// expired sessions have already vanished.
pub async fn list_sessions(db: &Db, user: Option<&str>) -> Result<Vec<Session>> {
    match search_sessions(db, user).await {
        Err(e) if is_missing_index(&e) => {
            ensure_index(db).await?;
            search_sessions(db, user).await
        }
        other => other,
    }
}

async fn search_sessions(db: &Db, user: Option<&str>) -> Result<Vec<Session>> {
    let index = db.keys.session_index();
    let reply: Vec<Value> = db
        .run(async |c| {
            let mut cmd = redis::cmd("FT.SEARCH");
            cmd.arg(&index);
            match user {
                Some(user) => cmd.arg("@user:{$user}").arg("PARAMS").arg(2).arg("user").arg(user),
                None => cmd.arg("*"),
            };
            cmd.arg("SORTBY").arg("created_at").arg("DESC").arg("LIMIT").arg(0).arg(200);
            cmd.arg("DIALECT").arg(2).query_async(c).await
        })
        .await?;
    Ok(parse_session_hits(&db.keys, &reply))
}

/// Session hits of an FT.SEARCH reply (rows that no longer parse are logged and skipped).
fn parse_session_hits(keys: &Keys, reply: &[Value]) -> Vec<Session> {
    let prefix = keys.session_prefix();
    search_hits(reply)
        .1
        .into_iter()
        .filter_map(|(key, json)| {
            let id = SessionId::parse(key.strip_prefix(&prefix)?)?;
            Some(Session::listed(id, parse_stored(&key, &json)?))
        })
        .collect()
}

/// Deletes every session of `user` except `keep` (all of them with None); returns how many went.
pub async fn destroy_others(db: &Db, user: &str, keep: Option<&SessionId>) -> Result<usize> {
    let mut destroyed = 0;
    // The index answers in pages: repeat until no other session is left (bounded, in case
    // sessions are created as fast as we delete them).
    for _ in 0..100 {
        let victims: Vec<String> = list_sessions(db, Some(user))
            .await?
            .into_iter()
            .filter(|s| Some(&s.id) != keep && s.doc.user == user)
            .map(|s| db.keys.session(s.id.as_str()))
            .collect();
        if victims.is_empty() {
            break;
        }
        db.delete_each(&victims).await?;
        destroyed += victims.len();
    }
    Ok(destroyed)
}

/// Writes one extra field into a live session document by JSON path (never the whole document, and
/// never re-creating a deleted session: a path write on a missing key fails). True when written.
pub async fn set_session_field(
    db: &Db,
    id: &SessionId,
    field: &str,
    value: &serde_json::Value,
) -> Result<bool> {
    let key = db.keys.session(id.as_str());
    let path = format!("$.{field}");
    let json = value.to_string();
    let written: Result<Option<String>> =
        db.query(redis::cmd("JSON.SET").arg(&key).arg(&path).arg(&json)).await;
    match written {
        Ok(reply) => Ok(reply.is_some()),
        // "new objects must be created at the root": the session is gone; do not bring it back.
        Err(Error::Redis(e)) if e.to_string().contains("root") => Ok(false),
        Err(e) => Err(e),
    }
}

/// Whether the session still exists — a read that never extends it (SSE heartbeats use it).
pub async fn session_exists(db: &Db, id: &SessionId) -> Result<bool> {
    let key = db.keys.session(id.as_str());
    db.query(redis::cmd("EXISTS").arg(&key)).await
}
