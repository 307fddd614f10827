//! Checking a username and password — the one sign-in path of the browser form and the mobile
//! API: throttle first (no hashing while locked), then argon2 under a bounded hashing queue, also
//! for unknown users, so both failures cost and look the same.

use std::time::Duration;

use super::model::{DeviceToken, User};
use super::password::{MAX_PASSWORD_BYTES, Passwords};
use super::store;
use super::throttle::{self, Counters};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::redis::Db;

/// Who is trying to sign in, and from where.
#[derive(Debug, Clone, Copy)]
pub struct Attempt<'a> {
    /// As typed: trimmed and lower-cased here ([`throttle::normalize_username`]).
    pub username: &'a str,
    pub password: &'a str,
    /// The client address (socket peer, or `ip_header` behind a proxy).
    pub ip: &'a str,
}

/// A successful sign-in: the user, and the device token to hand back to the client.
#[derive(Debug)]
pub struct SignedIn {
    pub user: User,
    pub device: DeviceToken,
}

/// Checks a username/password pair. `devices` are the device tokens the client presented.
pub async fn check_credentials(
    db: &Db,
    config: &Config,
    passwords: &Passwords,
    attempt: Attempt<'_>,
    devices: Vec<DeviceToken>,
) -> Result<SignedIn> {
    let username = throttle::normalize_username(attempt.username);
    let known = throttle::known_device(db, &username, devices).await?;
    let counters = Counters::new(&db.keys, config, &username, attempt.ip, known.as_ref());
    // A locked caller is answered at once, without queueing for a hashing slot…
    if let Some(retry_after) = counters.locked(db, config).await? {
        return Err(Error::TooManyRequests { retry_after });
    }
    // …then check again, hash and count under one slot, so parallel guesses see each other's
    // failures (at most `password_hash_concurrency − 1` can pass a limit together).
    let max_wait = Duration::from_millis(config.login_queue_max_ms);
    let slot = passwords.login_slot(max_wait, known.is_some()).await?;
    if let Some(retry_after) = counters.locked(db, config).await? {
        return Err(Error::TooManyRequests { retry_after });
    }
    let user = store::get_user(db, &username).await?;
    let ok = attempt.password.len() <= MAX_PASSWORD_BYTES
        && passwords
            .verify(&slot, attempt.password, user.as_ref().map(|u| u.password_hash.as_str()))
            .await?;
    match user {
        Some(user) if ok => {
            drop(slot);
            counters.succeeded(db).await?;
            let device = throttle::remember_device(db, config, &username, known).await?;
            Ok(SignedIn { user, device })
        }
        _ => {
            counters.failed(db, config).await?;
            Err(Error::InvalidCredentials)
        }
    }
}
