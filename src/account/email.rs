//! Changing the e-mail address: after a fresh authentication (the route's guard), the new
//! address must confirm itself (a link mailed to it, 24 hours) before anything changes; the old
//! address is told at once, and once the change is made, can undo it for 24 hours (a link that
//! puts the old address back and signs out every session and device). The address is where
//! resets and codes go, so a stolen session must not be able to move it quietly.

use serde::{Deserialize, Serialize};

use crate::audit;
use crate::audit::{Activity, ClientInfo};
use crate::auth::notice::{self, Notice};
use crate::auth::store as sessions;
use crate::auth::throttle;
use crate::auth::users;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::redis::{As, Db};
use crate::secret::{random_token, sha256_hex};

/// How long the new address's confirmation link, and the old address's undo link, work.
pub const LINK_SECS: u64 = 86_400;
/// Changes one user may ask for an hour.
const PER_USER: i64 = 3;

/// What a change link (to the new address) or an undo link (to the old one) remembers.
#[derive(Debug, Serialize, Deserialize)]
struct Change {
    user: String,
    old: String,
    new: String,
}

fn gone() -> Error {
    Error::Gone("This link was used, has expired, or the address changed since.".into())
}

fn origin(config: &Config) -> &str {
    config.web.public_origin.trim_end_matches('/')
}

/// Asks to move `username`'s address to `new`: mails the new address a confirmation link and
/// tells the old one. An address that belongs to another account answers the same (its owner
/// is told instead). 422 naming `email`; 409 for an account without an address.
pub async fn request(
    db: &Db,
    config: &Config,
    username: &str,
    client: &ClientInfo,
    new: &str,
) -> Result<()> {
    let user = users::get_user(db, username).await?.ok_or(Error::Unauthorized)?;
    let invalid = |message: &str| Error::Invalid { field: "email", message: message.into() };
    let new = new.trim().to_lowercase();
    if !crate::mail::valid_address(&new) {
        return Err(invalid("Give an e-mail address you can read, like you@example.com."));
    }
    let Some(old) = user.email.clone() else {
        return Err(Error::Conflict("Your account has no address to change.".into()));
    };
    if old.eq_ignore_ascii_case(&new) {
        return Err(invalid("This is your address already."));
    }
    let per_user = db.keys.throttle_hourly(&format!("email-change:{username}"));
    throttle::per_window(db, &per_user, PER_USER, 3600).await?;
    audit::record(db, username, client, Activity::EmailChangeRequested { new: new.clone() }).await;
    // The old address hears of it whatever happens next, with a "this wasn't me" link.
    notice::send(db, config, username, client, Notice::EmailChangeRequested { new: new.clone() })
        .await;
    if users::find_by_email(db, &new).await?.is_some() {
        let text = format!(
            "Hello,\n\n\
             Someone asked to move a redbank account's e-mail to this address, which already \
             belongs to an account. Nothing changed.\n\n\
             If it was you, sign in to the account this address belongs to instead: \
             {origin}/login\n",
            origin = origin(config),
        );
        return crate::mail::queue(db, &new, "Your address was given for a redbank account", &text)
            .await;
    }
    let token = random_token();
    let change = Change { user: username.to_owned(), old, new: new.clone() };
    let ttl = std::time::Duration::from_secs(LINK_SECS);
    db.put(&db.keys.email_change(&sha256_hex(&token)), &change, As::Text, ttl).await?;
    let text = format!(
        "Hello {name},\n\n\
         Confirm this address for your redbank account (the link works once, for 24 hours):\n\n\
         {origin}/email/verify?token={token}\n\n\
         Until you confirm, your account keeps its current address. If you did not ask for \
         this, ignore this e-mail.\n",
        name = user.display_name,
        origin = origin(config),
    );
    crate::mail::queue(db, &new, "Confirm your new e-mail address for redbank", &text).await
}

/// Whose account the change link behind `token` moves, without using it.
pub async fn peek(db: &Db, token: &str) -> Result<String> {
    let (_, user) = load(db, &db.keys.email_change(&sha256_hex(token)), token).await?;
    Ok(user.display_name)
}

/// The live change behind a link at `key`: the account's address must still be the one the
/// link starts from.
async fn load(db: &Db, key: &str, token: &str) -> Result<(Change, crate::auth::model::User)> {
    if token.is_empty() || token.len() > 128 {
        return Err(gone());
    }
    let change: Change = db.get_text(key).await?.ok_or_else(gone)?;
    let user = users::get_user(db, &change.user).await?.ok_or_else(gone)?;
    if !user.email.as_deref().is_some_and(|e| e.eq_ignore_ascii_case(&change.old)) {
        return Err(gone());
    }
    Ok((change, user))
}

/// Makes the change the link behind `token` confirms: the account's address becomes the new
/// one, and the old one gets a link that undoes it for 24 hours. 410 for a used, expired or
/// outdated link; 409 when the new address was taken meanwhile.
pub async fn confirm(db: &Db, config: &Config, token: &str, client: &ClientInfo) -> Result<()> {
    let key = db.keys.email_change(&sha256_hex(token));
    let (change, user) = load(db, &key, token).await?;
    let taken = "This address belongs to another account now.";
    move_address(db, &key, &change, taken).await?;
    let undo = random_token();
    let back = Change { user: change.user.clone(), old: change.new.clone(), new: change.old };
    let ttl = std::time::Duration::from_secs(LINK_SECS);
    db.put(&db.keys.email_undo(&sha256_hex(&undo)), &back, As::Text, ttl).await?;
    audit::record(db, &user.username, client, Activity::EmailChanged { new: change.new.clone() })
        .await;
    let text = format!(
        "Hello {name},\n\n\
         The e-mail address of your redbank account was changed to {new}. Codes, security \
         notices and password resets go there from now on.\n\n\
         If this was not you, open this link within 24 hours: it puts this address back and \
         signs out every session and device.\n\n\
         {origin}/email/undo?token={undo}\n",
        name = user.display_name,
        new = change.new,
        origin = origin(config),
    );
    crate::mail::queue(db, &back.new, "Your redbank e-mail address was changed", &text).await
}

/// Uses the link at `key` (of two requests racing with one link, one gets it: 410 for the other)
/// and gives its user the `change`'s new address; 409 with `taken` when another account holds
/// that address now.
async fn move_address(db: &Db, key: &str, change: &Change, taken: &str) -> Result<()> {
    let used: Option<String> = db.query(redis::cmd("GETDEL").arg(key)).await?;
    if used.is_none() {
        return Err(gone());
    }
    if !users::claim_email(db, &change.user, &change.new).await? {
        return Err(Error::Conflict(taken.into()));
    }
    users::set_email(db, &change.user, Some(&change.new)).await
}

/// Whose account the undo link behind `token` gives back its address, without using it.
pub async fn peek_undo(db: &Db, token: &str) -> Result<String> {
    let (_, user) = load(db, &db.keys.email_undo(&sha256_hex(token)), token).await?;
    Ok(user.display_name)
}

/// Undoes a change of address: the old address is back, and every session and remembered
/// device of the account is signed out (whoever moved the address may be signed in). 410 for a
/// used or expired link, or once the address changed again.
pub async fn undo(db: &Db, token: &str, client: &ClientInfo) -> Result<()> {
    let key = db.keys.email_undo(&sha256_hex(token));
    let (back, _) = load(db, &key, token).await?;
    move_address(db, &key, &back, "Your old address belongs to another account now.").await?;
    let signed_out = sessions::destroy_others(db, &back.user, None).await?;
    throttle::forget_devices(db, &back.user).await?;
    let undone = Activity::EmailChangeUndone { email: back.new, signed_out };
    audit::record(db, &back.user, client, undone).await;
    Ok(())
}
