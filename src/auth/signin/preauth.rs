//! The state between a correct password and the second factor: who signed in, from where, and
//! the login throttle to settle — in Redis for five minutes, named by the SHA-256 of a random
//! `mfa_token` (the API's) or of the browser's pre-auth cookie. It is not a session: it opens no
//! page and no API. It takes [`MAX_TRIES`] codes — each counted before it is checked, so parallel
//! guesses cannot pass the bound — and is then gone, and it is taken (deleted) by the one request
//! that completes the sign-in, so it works once.

use rocket::http::{Cookie, SameSite};
use serde::{Deserialize, Serialize};

use crate::audit::ClientInfo;
use crate::auth::factors::store::parse;
use crate::auth::guard::{our_cookie, pre_auth_cookie_name};
use crate::auth::model::{Assurance, SessionKind, SessionToken};
use crate::auth::throttle::Throttle;
use crate::config::Config;
use crate::error::Result;
use crate::redis::Db;
use crate::redis::doc::to_json;
use crate::redis::lua::lua;

/// How long a password-verified sign-in waits for its second factor.
pub const TTL_SECS: u64 = 300;

/// The pre-auth cookie: names this five-minute state between password and second factor (not a
/// session). HttpOnly, same-site requests only, gone with the state.
pub fn pre_auth_cookie(config: &Config, token: &SessionToken) -> Cookie<'static> {
    let max_age = rocket::time::Duration::seconds(TTL_SECS as i64);
    let value = token.as_str().to_owned();
    our_cookie(config, pre_auth_cookie_name(config), value, SameSite::Strict, Some(max_age))
}
/// Codes one pre-auth state takes before it is dropped (the account's own throttle bounds
/// guesses across states).
pub const MAX_TRIES: i64 = 5;

/// A sign-in waiting for its second factor.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PreAuth {
    pub user: String,
    /// The channel the session will be for: an API `mfa_token` completes only through the API,
    /// the browser's cookie only through the pages.
    pub kind: SessionKind,
    pub ip: String,
    pub user_agent: String,
    pub throttle: Throttle,
    /// Set when every factor is in but the password was reported compromised: what the session
    /// will be once a new password is chosen (with the e-mailed code). Such a state completes
    /// only through the renewal step, never through a code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renewal: Option<Renewal>,
    /// The fingerprint (`users::fingerprint`) of the password hash the password was checked
    /// against: a password changed or reset since makes this state worth nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

/// The session a renewed password leads to: the assurance the factors earned, and how.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Renewal {
    pub assurance: Assurance,
    /// `password`, `totp` or `recovery` (see `login::Method`).
    pub method: String,
}

impl PreAuth {
    pub fn client(&self) -> ClientInfo {
        ClientInfo { ip: self.ip.clone(), user_agent: self.user_agent.clone() }
    }
}

/// Stores `pre` and returns its token (the `mfa_token`, or the pre-auth cookie's value).
pub async fn create(db: &Db, pre: &PreAuth) -> Result<SessionToken> {
    let token = SessionToken::generate();
    let key = db.keys.pre_auth(token.id().as_str());
    let json = to_json(pre)?;
    db.query::<()>(
        redis::pipe()
            .atomic()
            .cmd("HSET")
            .arg(&key)
            .arg("state")
            .arg(&json)
            .arg("tries")
            .arg(0)
            .ignore()
            .cmd("EXPIRE")
            .arg(&key)
            .arg(TTL_SECS)
            .ignore(),
    )
    .await?;
    Ok(token)
}

/// The key of the state `token` names; None when it is no token of ours.
fn key_of(db: &Db, token: &str) -> Option<String> {
    SessionToken::parse(token).map(|token| db.keys.pre_auth(token.id().as_str()))
}

/// The state behind `token`, if it is well-formed and still waiting.
pub async fn load(db: &Db, token: &str) -> Result<Option<PreAuth>> {
    let Some(key) = key_of(db, token) else { return Ok(None) };
    let raw: Option<String> = db.query(redis::cmd("HGET").arg(&key).arg("state")).await?;
    raw.map(|raw| parse(&key, &raw)).transpose()
}

/// Reserves one try of the state behind `token`; false when it is gone (expired, used, or out of
/// tries).
pub async fn try_code(db: &Db, token: &str) -> Result<bool> {
    let Some(key) = key_of(db, token) else { return Ok(false) };
    let n: i64 = db
        .run(async |c| lua!("auth/signin/lua/try").key(&key).arg(MAX_TRIES).invoke_async(c).await)
        .await?;
    Ok(n > 0)
}

/// After a wrong code: the state is dropped when that was its last try. True for the first
/// wrong code of this sign-in (the owner is told once per sign-in, not once per code).
pub async fn after_wrong_code(db: &Db, token: &str) -> Result<bool> {
    let Some(key) = key_of(db, token) else { return Ok(false) };
    let wrong: i64 = db
        .run(async |c| lua!("auth/signin/lua/wrong").key(&key).arg(MAX_TRIES).invoke_async(c).await)
        .await?;
    Ok(wrong == 1)
}

/// Takes the state for the one request that completes the sign-in; false when another request
/// took it first (or it expired meanwhile).
pub async fn take(db: &Db, token: &str) -> Result<bool> {
    let Some(key) = key_of(db, token) else { return Ok(false) };
    let n: i64 = db.query(redis::cmd("DEL").arg(&key)).await?;
    Ok(n == 1)
}
