//! Changing the password while signed in: the current password (counted by the sign-in
//! throttle, so a stolen session cannot guess it), a recent second factor where the account has
//! one (the route's guard), and the rules of `policy`. An account opened with a passkey has no
//! password to give: it sets its first one after the passkey's recent step-up alone. Every other
//! session ends, every remembered device (this one too) is forgotten, and the owner is told by
//! mail with a "this wasn't me" link. And which kind of mailed link confirms an address: an
//! application's, or a change's.

use super::{email, signup};
use crate::audit;
use crate::audit::{Activity, ClientInfo};
use crate::auth::factors::store as factors;
use crate::auth::model::Session;
use crate::auth::notice::{self, Notice};
use crate::auth::password::{Passwords, normalized};
use crate::auth::policy;
use crate::auth::step_up::service::password_is_right;
use crate::auth::store as sessions;
use crate::auth::throttle;
use crate::auth::users;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::redis::Db;

/// Replaces the password of `session`'s user; how many other sessions ended. 422 naming
/// `current_password` or `new_password`.
pub async fn change_password(
    db: &Db,
    config: &Config,
    passwords: &Passwords,
    session: &Session,
    client: &ClientInfo,
    current: &str,
    new: &str,
) -> Result<usize> {
    let username = &session.doc.user;
    let user = users::get_user(db, username).await?.ok_or(Error::Unauthorized)?;
    let has_factor = factors::factors(db, username).await?.any();
    let has_password = !user.password_hash.is_empty();
    // Without a password, the recent second factor is all that stands for the owner: an account
    // with neither (its last passkey removed) gets a password only through "Forgot password?".
    if !has_password && !has_factor {
        return Err(Error::Forbidden(
            "This account has no password and no second factor: use \"Forgot password?\" on \
             the sign-in page to set one."
                .into(),
        ));
    }
    let personal = policy::personal_words(&user);
    if let Some(message) = policy::problem_blocking(new, has_factor, personal).await? {
        return Err(Error::Invalid { field: "new_password", message });
    }
    if has_password && normalized(new) == normalized(current) {
        let message = "Choose a password different from the current one.".into();
        return Err(Error::Invalid { field: "new_password", message });
    }
    if has_password && !password_is_right(db, config, passwords, &user, client, current).await? {
        let message = "That is not your current password.".into();
        return Err(Error::Invalid { field: "current_password", message });
    }
    let hash = passwords.hash(new).await?;
    let replaces = users::fingerprint(&user.password_hash);
    if !users::replace_password(db, username, &replaces, &hash).await? {
        let message = "Your password was changed meanwhile. Please sign in again.".into();
        return Err(Error::Conflict(message));
    }
    let signed_out = sessions::destroy_others(db, username, Some(&session.id)).await?;
    if session.doc.password_outdated {
        let no = serde_json::Value::Bool(false);
        sessions::set_session_field(db, &session.id, "password_outdated", &no).await?;
    }
    throttle::forget_devices(db, username).await?;
    audit::record(db, username, client, Activity::PasswordChanged { signed_out }).await;
    notice::send(db, config, username, client, Notice::PasswordChanged { reset: false }).await;
    Ok(signed_out)
}

/// Confirms an address with a link's token: an application's (with its password; true, an
/// account opened), or a change's new address (false).
pub async fn confirm_address(
    db: &Db,
    config: &Config,
    passwords: &Passwords,
    token: &str,
    password: Option<&str>,
    client: &ClientInfo,
) -> Result<bool> {
    match signup::confirm(db, config, passwords, token, password, client).await {
        Err(Error::Gone(_)) => email::confirm(db, config, token, client).await.map(|()| false),
        other => other.map(|_| true),
    }
}
