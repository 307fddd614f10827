//! Signing in — the one path of the browser form and the mobile API, for every method.
//!
//! A password is checked with the throttle first (no hashing while locked), then argon2 under a
//! bounded hashing queue, also for unknown users, so both failures cost and look the same. A user
//! with a second factor then gets a pre-auth state instead of a session ([`crate::mfa::preauth`]);
//! the session is only created by [`complete`], after every factor the user has.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::model::{Assurance, DeviceToken, Session, SessionKind, SessionToken, User};
use super::password::{MAX_PASSWORD_BYTES, Passwords};
use super::store::{self, ClientInfo};
use super::throttle::{self, Counters};
use crate::clock::now_ms;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::mfa::activity::{self, Activity};
use crate::mfa::preauth::{self, PreAuth};
use crate::mfa::store as factors;
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

/// The login throttle of one sign-in, kept until it completes (in the pre-auth state while a
/// second factor is owed): wrong codes are counted like wrong passwords, by the same counters.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Throttle {
    username: String,
    ip: String,
    /// The client's device token for this account, when it presented a live one.
    device: Option<String>,
}

impl Throttle {
    /// For `username` (normalized) from `ip`, with the device token the client holds, if any.
    pub async fn new(
        db: &Db,
        username: &str,
        ip: &str,
        devices: Vec<DeviceToken>,
    ) -> Result<Throttle> {
        let known = throttle::known_device(db, username, devices).await?;
        Ok(Throttle {
            username: username.to_owned(),
            ip: ip.to_owned(),
            device: known.map(|d| d.as_str().to_owned()),
        })
    }

    fn known(&self) -> Option<DeviceToken> {
        self.device.as_deref().and_then(DeviceToken::parse)
    }

    fn counters(&self, db: &Db, config: &Config) -> Counters {
        Counters::new(&db.keys, config, &self.username, &self.ip, self.known().as_ref())
    }

    /// `Err(TooManyRequests)` while any of this client's counters is at its limit.
    pub async fn check(&self, db: &Db, config: &Config) -> Result<()> {
        match self.counters(db, config).locked(db, config).await? {
            Some(retry_after) => Err(Error::TooManyRequests { retry_after }),
            None => Ok(()),
        }
    }

    /// Counts a one-time code before it is checked (`Err(TooManyRequests)` over a limit); a
    /// right one is given back with [`Throttle::refund`].
    pub async fn reserve(&self, db: &Db, config: &Config) -> Result<()> {
        match self.counters(db, config).reserve(db, config).await? {
            Some(retry_after) => Err(Error::TooManyRequests { retry_after }),
            None => Ok(()),
        }
    }

    /// Gives back a reserved attempt whose code was right.
    pub async fn refund(&self, db: &Db, config: &Config) -> Result<()> {
        self.counters(db, config).refund(db).await
    }

    /// Counts a wrong password or code.
    pub async fn failed(&self, db: &Db, config: &Config) -> Result<()> {
        self.counters(db, config).failed(db, config).await
    }

    /// After the last factor: clears this client's counters and returns its device token (the
    /// known one renewed, or a new one).
    async fn succeeded(&self, db: &Db, config: &Config) -> Result<DeviceToken> {
        self.counters(db, config).succeeded(db).await?;
        throttle::remember_device(db, config, &self.username, self.known()).await
    }
}

/// A completed sign-in: the new session and its token, and the device token to hand back.
#[derive(Debug)]
pub struct SignedIn {
    pub token: SessionToken,
    pub session: Session,
    pub device: DeviceToken,
}

/// Where a correct password leads.
#[derive(Debug)]
pub enum Outcome {
    SignedIn(Box<SignedIn>),
    /// The user has a second factor: `token` names the pre-auth state (the API's `mfa_token`).
    SecondFactor {
        token: SessionToken,
        methods: Vec<&'static str>,
    },
}

/// How a sign-in was completed, as the activity log names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Password,
    Totp,
    Recovery,
    Passkey,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Password => "password",
            Method::Totp => "totp",
            Method::Recovery => "recovery",
            Method::Passkey => "passkey",
        }
    }
}

/// Checks a username/password pair for a session of `kind`. `devices` are the device tokens the
/// client presented.
pub async fn with_password(
    db: &Db,
    config: &Config,
    passwords: &Passwords,
    attempt: Attempt<'_>,
    devices: Vec<DeviceToken>,
    kind: SessionKind,
    client: &ClientInfo,
) -> Result<Outcome> {
    let username = throttle::normalize_username(attempt.username);
    let throttle = Throttle::new(db, &username, attempt.ip, devices).await?;
    let outcome = |label: &str| db.metrics.logins.with_label_values(&[label]).inc();
    let throttled = |e: Error| {
        if let Error::TooManyRequests { .. } = e {
            outcome("throttled");
        }
        e
    };
    // A locked caller is answered at once, without queueing for a hashing slot…
    throttle.check(db, config).await.map_err(throttled)?;
    // …then check again, hash and count under one slot, so parallel guesses see each other's
    // failures (at most `password_hash_concurrency − 1` can pass a limit together).
    let max_wait = Duration::from_millis(config.login_queue_max_ms);
    let slot = passwords.login_slot(max_wait, throttle.device.is_some()).await?;
    throttle.check(db, config).await.map_err(throttled)?;
    let user = store::get_user(db, &username).await?;
    let ok = attempt.password.len() <= MAX_PASSWORD_BYTES
        && passwords
            .verify(&slot, attempt.password, user.as_ref().map(|u| u.password_hash.as_str()))
            .await?;
    let exists = user.is_some();
    let Some(user) = user.filter(|_| ok) else {
        throttle.failed(db, config).await?;
        drop(slot);
        outcome("bad_password");
        if exists {
            crate::admin::store::failed_sign_in(db, &username, attempt.ip).await;
            let failed = Activity::FailedSignIn { method: Method::Password.as_str().into() };
            activity::record(db, &username, client, failed).await;
        }
        return Err(Error::InvalidCredentials);
    };
    drop(slot);
    let owned = factors::factors(db, &user.username).await?;
    if owned.any() {
        let pre = PreAuth {
            user: user.username.clone(),
            kind,
            ip: client.ip.clone(),
            user_agent: client.user_agent.clone(),
            throttle,
        };
        let token = preauth::create(db, &pre).await?;
        outcome("second_factor");
        return Ok(Outcome::SecondFactor { token, methods: owned.methods() });
    }
    let assurance = Assurance::password(now_ms());
    let done = complete(db, config, &user, &throttle, kind, client, assurance, Method::Password);
    Ok(Outcome::SignedIn(Box::new(done.await?)))
}

/// Creates the session once every factor is in: settles the throttle, records the sign-in and,
/// from a device new to the account, tells the user's other open dashboards.
#[allow(clippy::too_many_arguments)] // each is one fact about the sign-in
pub async fn complete(
    db: &Db,
    config: &Config,
    user: &User,
    throttle: &Throttle,
    kind: SessionKind,
    client: &ClientInfo,
    assurance: Assurance,
    method: Method,
) -> Result<SignedIn> {
    let device = throttle.succeeded(db, config).await?;
    db.metrics.logins.with_label_values(&["ok"]).inc();
    let aal = assurance.aal;
    let (token, session) = store::create_session(db, config, user, kind, client, assurance).await?;
    let new_device = throttle.device.is_none();
    let signed_in = Activity::SignIn {
        method: method.as_str().into(),
        aal,
        new_device,
        session: session.id.as_str().to_owned(),
        kind: if kind == SessionKind::Browser { "browser" } else { "mobile" }.into(),
    };
    activity::record(db, &user.username, client, signed_in).await;
    if new_device {
        activity::announce_sign_in(db, &session).await;
    }
    Ok(SignedIn { token, session, device })
}
