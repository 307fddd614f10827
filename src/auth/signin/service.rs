//! Signing in — the one path of the browser form and the mobile API, for every method.
//!
//! A password is checked with the throttle first (no hashing while locked), then argon2 under a
//! bounded hashing queue, also for unknown users, so both failures cost and look the same. A user
//! with a second factor then gets a pre-auth state instead of a session ([`crate::auth::signin::preauth`]);
//! the session is only created by [`complete`], after every factor the user has.

use std::time::Duration;

use serde_json::Value;

use crate::audit;
use crate::audit::{Activity, ClientInfo};
use crate::auth::factors::email_code::NewFactor;
use crate::auth::factors::passkey::{Purpose, RelyingParty};
use crate::auth::factors::{email_code, passkey, store as factors};
use crate::auth::model::{Assurance, DeviceToken, Session, SessionKind, SessionToken, User};
use crate::auth::notice::Notice;
use crate::auth::password::{MAX_PASSWORD_BYTES, Passwords};
use crate::auth::policy;
use crate::auth::signin::preauth;
use crate::auth::signin::preauth::{PreAuth, Renewal};
use crate::auth::throttle;
use crate::auth::throttle::Throttle;
use crate::auth::{notice, store};
use crate::clock::now_ms;
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
    /// Every factor is in, but the owner reported the password compromised ("this wasn't me"):
    /// a code was e-mailed, and `token` names the state [`renew_password`] completes.
    NewPassword {
        token: SessionToken,
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

    fn parse(text: &str) -> Method {
        match text {
            "totp" => Method::Totp,
            "recovery" => Method::Recovery,
            "passkey" => Method::Passkey,
            _ => Method::Password,
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
    // A customer who opened their account signs in with their address: the throttle counts the
    // account it names (so its two names share one budget); an unknown one, as typed.
    let login = throttle::normalize_username(attempt.username);
    let username = match attempt.username.contains('@') {
        true => {
            let found = crate::auth::users::find_by_email(db, attempt.username).await?;
            found.map_or(login, |u| u.username)
        }
        false => login,
    };
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
    let max_wait = Duration::from_millis(config.sign_in.queue_max_ms);
    let slot = passwords.login_slot(max_wait, throttle.from_known_device()).await?;
    throttle.check(db, config).await.map_err(throttled)?;
    let user = crate::auth::users::get_user(db, &username).await?;
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
            audit::failed_sign_in(db, &username, attempt.ip).await;
            let failed = Activity::FailedSignIn { method: Method::Password.as_str().into() };
            audit::record(db, &username, client, failed).await;
        }
        return Err(Error::InvalidCredentials);
    };
    drop(slot);
    let owned = factors::factors(db, &user.username).await?;
    let verified = crate::auth::users::fingerprint(&user.password_hash);
    // A password that predates today's rules keeps working; the pages ask for a change. Only
    // the length is judged here (a count, no zxcvbn on every sign-in): every password chosen
    // since the rules exist met all of them.
    let typed_chars = attempt.password.chars().count();
    if !user.password_outdated && typed_chars < policy::min_chars(owned.any()) {
        crate::auth::users::set_password_outdated(db, &user.username).await?;
    }
    if owned.any() {
        let pre = PreAuth {
            user: user.username.clone(),
            kind,
            ip: client.ip.clone(),
            user_agent: client.user_agent.clone(),
            throttle,
            renewal: None,
            password: Some(verified),
        };
        let token = preauth::create(db, &pre).await?;
        outcome("second_factor");
        return Ok(Outcome::SecondFactor { token, methods: owned.methods() });
    }
    let assurance = Assurance::password(now_ms());
    let arrival = Arrival { user: &user, throttle: &throttle, kind, client };
    finish_with_password(db, config, arrival, assurance, Method::Password, Some(&verified)).await
}

/// The end of a sign-in that used the password (with a code after it, or alone): the session —
/// or, when the owner reported the password compromised, a renewal state and an e-mailed code
/// first ([`Outcome::NewPassword`]): the password alone, even with a second factor, must not
/// let a thief back in.
pub async fn finish_with_password(
    db: &Db,
    config: &Config,
    arrival: Arrival<'_>,
    assurance: Assurance,
    method: Method,
    verified: Option<&str>,
) -> Result<Outcome> {
    // Read again now, not when the password was checked (an argon2 hash ago): a "this wasn't
    // me" pressed meanwhile must not let this sign-in through, nor may a password changed or
    // reset meanwhile (`verified`: the fingerprint of the hash it was checked against).
    let unchanged =
        |u: &User| verified.is_none_or(|f| crate::auth::users::fingerprint(&u.password_hash) == f);
    let fresh = crate::auth::users::get_user(db, &arrival.user.username).await?;
    let mut user = fresh.filter(unchanged).ok_or(Error::InvalidCredentials)?;
    let (kind, client) = (arrival.kind, arrival.client);
    if !user.password_compromised {
        // The session copies what it shows from the user as read now.
        let current = Arrival { user: &user, ..arrival };
        let opened = open(db, config, &current, assurance.clone()).await?;
        // Once more, now that the session exists and its device is remembered. "This wasn't me"
        // marks the password before it signs the user's sessions out and forgets their devices,
        // so a mark this read misses is followed by a sign-out and a forgetting that end this
        // session and this device; a mark it sees, it acts on itself. Nothing else has happened
        // yet (counters untouched, no sign-in recorded or announced), so undoing both leaves no
        // trace of a sign-in that did not happen.
        let now = crate::auth::users::get_user(db, &user.username).await?;
        if now.as_ref().is_some_and(|u| !u.password_compromised && unchanged(u)) {
            let done = welcome(db, config, &current, method, opened).await?;
            return Ok(Outcome::SignedIn(Box::new(done)));
        }
        // A reset or change ends every session after it replaces the hash: one this sign-in
        // opened after that sweep is ended here.
        store::destroy(db, &opened.session.id).await?;
        throttle::forget_device(db, &user.username, &opened.device).await?;
        user = now.filter(unchanged).ok_or(Error::InvalidCredentials)?;
    }
    let pre = PreAuth {
        user: user.username.clone(),
        kind,
        ip: client.ip.clone(),
        user_agent: client.user_agent.clone(),
        throttle: arrival.throttle.clone(),
        renewal: Some(Renewal { assurance, method: method.as_str().into() }),
        // The renewal replaces the password itself.
        password: None,
    };
    let token = preauth::create(db, &pre).await?;
    // One renewal code per user at a time, valid for any of the user's renewal states (see
    // `email_code::code_key`).
    email_code::queue(db, &user.username, NewFactor::Password, RENEWAL).await?;
    db.metrics.logins.with_label_values(&["new_password"]).inc();
    Ok(Outcome::NewPassword { token })
}

/// What a renewal code is bound to: the user's password renewal (whichever sign-in asks).
const RENEWAL: &str = "password renewal";

/// Completes the renewal state `token` (for a session of `kind`) with the e-mailed code and a new
/// password: the password is replaced (and no longer compromised), and the session the factors
/// earned is created. 422 naming `email_code` or `password`; an expired or used state is
/// [`Error::SignInExpired`].
pub async fn renew_password(
    db: &Db,
    config: &Config,
    passwords: &Passwords,
    token: &str,
    kind: SessionKind,
    email_code: &str,
    new_password: &str,
) -> Result<SignedIn> {
    let pre = preauth::load(db, token).await?.filter(|p| p.kind == kind);
    let pre = pre.ok_or(Error::SignInExpired)?;
    let renewal = pre.renewal.clone().ok_or(Error::SignInExpired)?;
    if !preauth::try_code(db, token).await? {
        return Err(Error::SignInExpired);
    }
    // The password's rules first, so a refused password does not burn the e-mailed code.
    let user = crate::auth::users::get_user(db, &pre.user).await?.ok_or(Error::SignInExpired)?;
    let has_factor = factors::factors(db, &user.username).await?.any();
    let personal = policy::personal_words(&user);
    if let Some(problem) = policy::problem_blocking(new_password, has_factor, personal).await? {
        return Err(Error::Invalid { field: "password", message: problem });
    }
    let slot = passwords.slot().await?;
    if passwords.verify(&slot, new_password, Some(&user.password_hash)).await? {
        let message = "Choose a different password: this one was reported compromised.".into();
        return Err(Error::Invalid { field: "password", message });
    }
    drop(slot);
    email_code::redeem(db, &pre.user, NewFactor::Password, RENEWAL, Some(email_code)).await?;
    let hash = passwords.hash(new_password).await?;
    if !preauth::take(db, token).await? {
        return Err(Error::SignInExpired);
    }
    crate::auth::users::set_password_hash(db, &user.username, &hash).await?;
    crate::auth::users::set_password_compromised(db, &user.username, false).await?;
    let client = pre.client();
    audit::record(db, &user.username, &client, Activity::PasswordRenewed).await;
    let method = Method::parse(&renewal.method);
    let arrival = Arrival { user: &user, throttle: &pre.throttle, kind: pre.kind, client: &client };
    complete(db, config, &arrival, renewal.assurance, method).await
}

/// One sign-in on its way to a session: whose, counted by which throttle, for which kind of
/// session, from which client.
#[derive(Clone, Copy)]
pub struct Arrival<'a> {
    pub user: &'a User,
    pub throttle: &'a Throttle,
    pub kind: SessionKind,
    pub client: &'a ClientInfo,
}

/// Creates the session once every factor is in, then [`welcome`]s it.
pub async fn complete(
    db: &Db,
    config: &Config,
    arrival: &Arrival<'_>,
    assurance: Assurance,
    method: Method,
) -> Result<SignedIn> {
    let opened = open(db, config, arrival, assurance).await?;
    welcome(db, config, arrival, method, opened).await
}

/// The session of a sign-in and the device it comes from, remembered; not yet announced.
async fn open(
    db: &Db,
    config: &Config,
    arrival: &Arrival<'_>,
    assurance: Assurance,
) -> Result<SignedIn> {
    let Arrival { user, throttle, kind, client } = *arrival;
    let (token, session) = store::create_session(db, config, user, kind, client, assurance).await?;
    let device = throttle.remember(db, config, client).await?;
    Ok(SignedIn { token, session, device })
}

/// What follows a session that stays: clears the client's counters, records the sign-in and,
/// from a device new to the account, tells the user and their open dashboards.
async fn welcome(
    db: &Db,
    config: &Config,
    arrival: &Arrival<'_>,
    method: Method,
    opened: SignedIn,
) -> Result<SignedIn> {
    let Arrival { user, throttle, kind, client } = *arrival;
    let session = &opened.session;
    throttle.succeeded(db, config).await?;
    db.metrics.logins.with_label_values(&["ok"]).inc();
    let new_device = !throttle.from_known_device();
    let signed_in = Activity::SignIn {
        method: method.as_str().into(),
        aal: session.doc.assurance.aal,
        new_device,
        session: session.id.as_str().to_owned(),
        kind: if kind == SessionKind::Browser { "browser" } else { "mobile" }.into(),
    };
    audit::record(db, &user.username, client, signed_in).await;
    if new_device {
        audit::announce_sign_in(db, session.announcer(), session.doc.created_at).await;
        let notice = Notice::NewDevice { method: method.as_str().into() };
        notice::send(db, config, &user.username, client, notice).await;
    }
    Ok(opened)
}

/// Signs in with a passkey assertion alone (it counts as two factors): shared by the API and
/// the browser's `/login/passkey`.
pub async fn sign_in_with_passkey(
    db: &Db,
    config: &Config,
    rp: &RelyingParty,
    answer: &Value,
    kind: SessionKind,
    client: &ClientInfo,
    devices: Vec<crate::auth::model::DeviceToken>,
) -> Result<SignedIn> {
    let verified = passkey::finish_authentication(db, rp, answer).await?;
    if verified.purpose != Purpose::SignIn {
        return Err(Error::InvalidCode);
    }
    let user = crate::auth::users::get_user(db, &verified.user).await?.ok_or(Error::InvalidCode)?;
    let throttle = Throttle::new(db, &user.username, &client.ip, devices).await?;
    let assurance = Assurance::passkey(now_ms());
    let arrival = Arrival { user: &user, throttle: &throttle, kind, client };
    complete(db, config, &arrival, assurance, Method::Passkey).await
}
