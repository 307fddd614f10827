//! One-time codes as a second factor: completing a password sign-in with a TOTP or recovery
//! code, and stepping up an existing session with one. Wrong codes are counted by the same
//! throttle as wrong passwords (a known device's own counter, or the stranger counters), and by
//! the pre-auth state, which allows only a few.

use crate::audit;
use crate::audit::{Activity, ClientInfo};
use crate::auth::factors::{recovery, store as factors};
use crate::auth::model::{Amr, Assurance, Session, SessionKind};
use crate::auth::notice;
use crate::auth::notice::Notice;
use crate::auth::signin::service::Method;
use crate::auth::signin::{preauth, service as login};
use crate::auth::throttle::{Counters, Throttle};
use crate::clock::now_ms;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::redis::Db;

/// Which kind of code the user typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeKind {
    Totp,
    Recovery,
}

impl CodeKind {
    fn method(self) -> Method {
        match self {
            CodeKind::Totp => Method::Totp,
            CodeKind::Recovery => Method::Recovery,
        }
    }
}

/// Checks `code` for `username` and uses it up: a TOTP step or a recovery code works once.
async fn use_code(
    db: &Db,
    username: &str,
    client: &ClientInfo,
    kind: CodeKind,
    code: &str,
) -> Result<bool> {
    match kind {
        CodeKind::Totp => factors::use_totp_code(db, username, code, now_ms() / 1000).await,
        CodeKind::Recovery => {
            let Some(digest) = recovery::digest(code) else { return Ok(false) };
            if !factors::burn_recovery_code(db, username, &digest).await? {
                return Ok(false);
            }
            let remaining = factors::factors(db, username).await?.recovery_codes;
            audit::record(db, username, client, Activity::RecoveryCodeUsed { remaining }).await;
            Ok(true)
        }
    }
}

/// Completes the sign-in waiting under `mfa_token` (for a session of `kind`) with a code: the
/// session, or the renewal step when the password was reported compromised.
pub async fn finish_sign_in(
    db: &Db,
    config: &Config,
    mfa_token: &str,
    session_kind: SessionKind,
    kind: CodeKind,
    code: &str,
) -> Result<login::Outcome> {
    let pre = preauth::load(db, mfa_token).await?;
    // A state waiting for a new password takes no code.
    let pre = pre.filter(|p| p.kind == session_kind && p.renewal.is_none());
    let pre = pre.ok_or(Error::SignInExpired)?;
    let client = pre.client();
    // Counted before checked, by the state, by the login throttle and by the account's code
    // budget: parallel guesses cannot get more codes checked than any of them allows, and no
    // number of device tokens lifts the last.
    if !preauth::try_code(db, mfa_token).await? {
        return Err(Error::SignInExpired);
    }
    // The client's counters first: a refusal there must not spend the account's budget.
    pre.throttle.reserve(db, config).await?;
    reserve_code(db, config, &pre.user, &client).await?;
    if !use_code(db, &pre.user, &client, kind, code).await? {
        if preauth::after_wrong_code(db, mfa_token).await? {
            notice::send(db, config, &pre.user, &client, Notice::WrongSecondFactor).await;
        }
        db.metrics.logins.with_label_values(&["bad_code"]).inc();
        let failed = Activity::FailedSignIn { method: kind.method().as_str().into() };
        audit::record(db, &pre.user, &client, failed).await;
        return Err(Error::InvalidCode);
    }
    pre.throttle.refund(db, config).await?;
    Counters::codes(&db.keys, config, &pre.user).refund(db).await?;
    if !preauth::take(db, mfa_token).await? {
        return Err(Error::SignInExpired);
    }
    let user = crate::auth::users::get_user(db, &pre.user).await?.ok_or(Error::SignInExpired)?;
    let assurance = Assurance::password_and_code(now_ms());
    let arrival =
        login::Arrival { user: &user, throttle: &pre.throttle, kind: pre.kind, client: &client };
    let verified = pre.password.as_deref();
    login::finish_with_password(db, config, arrival, assurance, kind.method(), verified).await
}

/// The assurance after a step-up with `added` methods at level `aal`: the session's methods
/// and the new ones, and now as the time of authentication.
pub fn stepped_up(session: &Session, aal: u8, added: &[Amr]) -> Assurance {
    let mut amr = session.doc.assurance.amr.clone();
    for method in added {
        if !amr.contains(method) {
            amr.push(*method);
        }
    }
    let aal = aal.max(1);
    if aal >= 2 && !amr.contains(&Amr::Mfa) {
        amr.push(Amr::Mfa);
    }
    Assurance { aal, amr, auth_time: now_ms() }
}

/// Steps `session` up with a code; returns the new assurance (not yet stored).
pub async fn step_up(
    db: &Db,
    config: &Config,
    session: &Session,
    client: &ClientInfo,
    kind: CodeKind,
    code: &str,
) -> Result<Assurance> {
    let user = &session.doc.user;
    prove(db, config, user, client, kind, code).await?;
    let assurance = stepped_up(session, 2, &[Amr::Otp]);
    let record = Activity::StepUp { method: kind.method().as_str().into(), aal: 2 };
    audit::record(db, user, client, record).await;
    Ok(assurance)
}

/// Checks and uses up a code of `user`'s, counted by the password throttle of this client and by
/// the account's code budget (a right code gives both back); a wrong one is recorded and is
/// [`wrong_code`].
pub async fn prove(
    db: &Db,
    config: &Config,
    user: &str,
    client: &ClientInfo,
    kind: CodeKind,
    code: &str,
) -> Result<()> {
    let throttle = Throttle::new(db, user, &client.ip, Vec::new()).await?;
    throttle.reserve(db, config).await?;
    reserve_code(db, config, user, client).await?;
    if !use_code(db, user, client, kind, code).await? {
        let failed = Activity::FailedSignIn { method: kind.method().as_str().into() };
        audit::record(db, user, client, failed).await;
        return Err(wrong_code());
    }
    throttle.refund(db, config).await?;
    Counters::codes(&db.keys, config, user).refund(db).await
}

/// Counts a code against the account's budget before it is checked (`second_factor_limit` per
/// window, whatever device or address it comes from); the first refusal of a window is mailed
/// to the owner — the step is locked, and somebody who knows the password is trying.
async fn reserve_code(db: &Db, config: &Config, user: &str, client: &ClientInfo) -> Result<()> {
    let Some(retry_after) = Counters::codes(&db.keys, config, user).reserve(db, config).await?
    else {
        return Ok(());
    };
    let flag = db.keys.codes_lock_announced(user);
    let first: bool = db
        .run(async |c| {
            redis::cmd("SET")
                .arg(&flag)
                .arg(1)
                .arg("NX")
                .arg("EX")
                .arg(retry_after.max(1))
                .query_async::<_, Option<String>>(c)
                .await
                .map(|set| set.is_some())
        })
        .await?;
    if first {
        let minutes = retry_after.div_ceil(60);
        notice::send(db, config, user, client, Notice::SecondStepLocked { minutes }).await;
    }
    Err(Error::TooManyRequests { retry_after })
}

/// A signed-in user's wrong code (422: the session itself is fine).
pub fn wrong_code() -> Error {
    Error::NotConfirmed("That code is not valid. Please try again.".into())
}
