//! Stepping up, for the API and the pages alike: a password step-up, and storing the new
//! assurance on the session.

use crate::audit;
use crate::audit::{Activity, ClientInfo};
use crate::auth::factors::store as factors;
use crate::auth::model::{Amr, Assurance, Session, User};
use crate::auth::password::{MAX_PASSWORD_BYTES, Passwords};
use crate::auth::signin::code;
use crate::auth::signin::service::Method;
use crate::auth::throttle::Throttle;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::redis::Db;

/// Whether `password` is the signed-in `user`'s, checked as at sign-in: the throttle before
/// queueing, then again, the hash and a failure's count under one hashing slot (parallel guesses
/// see each other's failures). A wrong one is counted and recorded.
pub async fn password_is_right(
    db: &Db,
    config: &Config,
    passwords: &Passwords,
    user: &User,
    client: &ClientInfo,
    password: &str,
) -> Result<bool> {
    let throttle = Throttle::new(db, &user.username, &client.ip, Vec::new()).await?;
    throttle.check(db, config).await?;
    let max_wait = std::time::Duration::from_millis(config.sign_in.queue_max_ms);
    let slot = passwords.login_slot(max_wait, false).await?;
    throttle.check(db, config).await?;
    let ok = password.len() <= MAX_PASSWORD_BYTES
        && passwords.verify(&slot, password, Some(&user.password_hash)).await?;
    if !ok {
        throttle.failed(db, config).await?;
        drop(slot);
        let failed = Activity::FailedSignIn { method: Method::Password.as_str().into() };
        audit::record(db, &user.username, client, failed).await;
    }
    Ok(ok)
}

/// Steps up with the password — only for a user without a second factor (recorded as AAL1).
pub async fn step_up_with_password(
    db: &Db,
    config: &Config,
    passwords: &Passwords,
    session: &Session,
    client: &ClientInfo,
    password: &str,
) -> Result<Assurance> {
    let user = &session.doc.user;
    if factors::factors(db, user).await?.any() {
        return Err(Error::Forbidden(
            "Confirm with your second factor (authenticator app or passkey).".into(),
        ));
    }
    let stored = crate::auth::users::get_user(db, user).await?.ok_or(Error::Unauthorized)?;
    if !password_is_right(db, config, passwords, &stored, client, password).await? {
        return Err(Error::NotConfirmed("That password is not right. Please try again.".into()));
    }
    audit::record(db, user, client, Activity::StepUp { method: "password".into(), aal: 1 }).await;
    Ok(code::stepped_up(session, 1, &[Amr::Pwd]))
}
