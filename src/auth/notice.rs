//! Security notices by mail, each with a one-time "this wasn't me" link (docs/SECURITY.md G.34).
//!
//! The owner hears by mail of every factor added or removed, every sign-in from a device new to
//! the account, every correct password followed by a wrong second factor, and a locked second
//! step — on a channel a thief holding the password does not hold. The link (24 h, single use,
//! stored as its SHA-256) opens a page that only *shows* what it will do (mail scanners open
//! links); its button acts, without a sign-in: factors added in the last 24 hours are removed,
//! every session and remembered device is signed out, and the password is marked compromised,
//! so the next password sign-in also needs an e-mailed code and a new password (otherwise the
//! thief would simply sign in again).
//!
//! Sending goes through the mail outbox: the action that caused a notice never waits for, or
//! fails with, the mail server. A notice that cannot be queued is logged, not returned.

use serde::{Deserialize, Serialize};

use super::factors::{passkey, store as factors};
use crate::audit;
use crate::audit::{Activity, ClientInfo, describe_device};
use crate::auth::store as sessions;
use crate::auth::throttle;
use crate::clock::{display_ms, now_ms};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::redis::Db;
use crate::redis::doc::to_json;
use crate::secret::{random_token, sha256_hex};

/// How long a "this wasn't me" link works.
pub const LINK_SECS: u64 = 86_400;

/// What a notice is about.
#[derive(Debug, Clone)]
pub enum Notice {
    /// `factor` (`totp`, `passkey` or `recovery_codes`; a passkey's `name`) was added, or removed.
    FactorChanged { added: bool, factor: String, name: Option<String> },
    /// A sign-in from a device new to the account.
    NewDevice { method: String },
    /// The password was right, then a second-factor code was wrong.
    WrongSecondFactor,
    /// Too many wrong second-factor codes: that step is locked for `minutes`.
    SecondStepLocked { minutes: u64 },
    /// An operator removed every factor of the account.
    FactorsReset,
    /// The password was changed while signed in (`reset`: through a reset link); every other
    /// session and remembered device was signed out.
    PasswordChanged { reset: bool },
    /// Someone signed in asked to move the account's address to `new`.
    EmailChangeRequested { new: String },
}

fn factor_name(factor: &str, name: Option<&str>) -> String {
    match (factor, name) {
        ("totp", _) => "an authenticator app".into(),
        ("passkey", Some(name)) => format!("a passkey (\"{name}\")"),
        ("passkey", None) => "a passkey".into(),
        ("recovery_codes", _) => "new recovery codes".into(),
        (other, _) => other.to_owned(),
    }
}

impl Notice {
    fn subject(&self) -> &'static str {
        match self {
            Notice::FactorChanged { added: true, .. } => {
                "A sign-in factor was added to your redbank account"
            }
            Notice::FactorChanged { added: false, .. } => {
                "A sign-in factor was removed from your redbank account"
            }
            Notice::NewDevice { .. } => "New sign-in to your redbank account",
            Notice::WrongSecondFactor => "Your redbank password was used with a wrong code",
            Notice::SecondStepLocked { .. } => "Sign-in codes locked on your redbank account",
            Notice::FactorsReset => "The bank removed your redbank sign-in factors",
            Notice::PasswordChanged { reset: false } => "Your redbank password was changed",
            Notice::PasswordChanged { reset: true } => "Your redbank password was reset",
            Notice::EmailChangeRequested { .. } => "A new e-mail address for your redbank account",
        }
    }

    fn what(&self) -> String {
        match self {
            Notice::FactorChanged { added, factor, name } => {
                let way = if *added { "added to" } else { "removed from" };
                format!("{} was {way} your account's sign-in", factor_name(factor, name.as_deref()))
            }
            Notice::NewDevice { method } => {
                format!(
                    "Your account was signed in to from a device it had not seen (with {method})"
                )
            }
            Notice::WrongSecondFactor => {
                "Your password was entered correctly, then a wrong second-factor code".into()
            }
            Notice::SecondStepLocked { minutes } => format!(
                "Too many wrong second-factor codes were tried on your account; that step is \
                 locked for {minutes} minutes"
            ),
            Notice::FactorsReset => "The bank removed your sign-in factors at your request \
                                     and signed out every session"
                .into(),
            Notice::PasswordChanged { reset: false } => "Your password was changed, and every \
                                                         other session and device signed out"
                .into(),
            Notice::EmailChangeRequested { new } => format!(
                "Someone signed in to your account asked to move its e-mail address to {new}; \
                 it changes only once that address confirms"
            ),
            Notice::PasswordChanged { reset: true } => "Your password was reset with a link we \
                                                        e-mailed you, and every session and \
                                                        device signed out"
                .into(),
        }
    }
}

/// What a link remembers: whose account, and when it was sent.
#[derive(Debug, Serialize, Deserialize)]
struct Link {
    user: String,
    sent_at: i64,
}

/// Mails `notice` about `username`'s account, caused from `client`, with a new "this wasn't
/// me" link. Best effort: logged, never returned (what it reports has happened).
pub async fn send(db: &Db, config: &Config, username: &str, client: &ClientInfo, notice: Notice) {
    if let Err(e) = queue(db, config, username, client, &notice).await {
        rocket::warn!("security notice to {username} not queued: {e}");
    }
}

/// A change of the user's factors: every remembered device is forgotten (a device token handed
/// out before must not outlive the change) and the owner is told by mail. Best effort, like
/// [`send`]: the change itself has happened.
pub async fn factors_changed(
    db: &Db,
    config: &Config,
    username: &str,
    client: &ClientInfo,
    notice: Notice,
) {
    if let Err(e) = throttle::forget_devices(db, username).await {
        rocket::warn!("devices of {username} not forgotten after a change of factors: {e}");
    }
    send(db, config, username, client, notice).await;
}

async fn queue(
    db: &Db,
    config: &Config,
    username: &str,
    client: &ClientInfo,
    notice: &Notice,
) -> Result<()> {
    let Some(user) = crate::auth::users::get_user(db, username).await? else { return Ok(()) };
    let Some(address) = user.email.as_deref() else { return Ok(()) };
    let token = random_token();
    let now = now_ms();
    let link = to_json(&Link { user: username.to_owned(), sent_at: now })?;
    let key = db.keys.not_me(&sha256_hex(&token));
    db.query::<()>(redis::cmd("SET").arg(&key).arg(&link).arg("EX").arg(LINK_SECS)).await?;
    let device = known_device(&client.user_agent);
    let text = format!(
        "Hello {name},\n\n\
         {what}.\n\n\
         When: {when}\nFrom: {ip} ({device})\n\n\
         If this was you, there is nothing to do.\n\n\
         If it was not you, open this link within 24 hours:\n\n\
         {origin}/not-me?token={token}\n\n\
         After you confirm on that page, factors added in the last 24 hours are removed, every \
         session and device is signed out, and your next sign-in with your password also needs \
         a code we e-mail you and a new password.\n",
        name = user.display_name,
        what = notice.what(),
        when = display_ms(now),
        ip = client.ip,
        origin = config.web.public_origin.trim_end_matches('/'),
    );
    crate::mail::queue(db, address, notice.subject(), &text).await
}

/// The device as a notice names it: a browser and system redbank knows, or "an unknown
/// device" — never the client's own text (a thief must not write into a genuine bank mail).
fn known_device(user_agent: &str) -> String {
    let named = describe_device(user_agent);
    let known = ["Edge", "Opera", "Firefox", "Chrome", "Safari"];
    if known.iter().any(|b| named.starts_with(b)) { named } else { "an unknown device".into() }
}

/// What the link's page shows before anything is done: whose account, and until when.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LinkView {
    /// The account's display name.
    pub name: String,
    /// When the notice was sent (RFC 3339).
    pub sent_at: String,
    /// The same, for people.
    pub sent: String,
}

/// The account a link names, without using it (the page the mail links to).
pub async fn peek(db: &Db, token: &str) -> Result<LinkView> {
    let key = db.keys.not_me(&sha256_hex(token));
    let raw: Option<String> = db.query(redis::cmd("GET").arg(&key)).await?;
    let link: Link = raw.and_then(|r| serde_json::from_str(&r).ok()).ok_or_else(gone)?;
    let user = crate::auth::users::get_user(db, &link.user).await?.ok_or_else(gone)?;
    Ok(LinkView {
        name: user.display_name,
        sent_at: crate::clock::rfc3339_ms(link.sent_at),
        sent: display_ms(link.sent_at),
    })
}

fn gone() -> Error {
    Error::Gone("This link was already used or has expired.".into())
}

/// What "this wasn't me" did.
#[derive(Debug, Default, Serialize, utoipa::ToSchema)]
pub struct Undone {
    /// Factors added in the last 24 hours, now removed (`totp`, or the passkey's name).
    pub factors_removed: Vec<String>,
    /// Sessions signed out.
    pub signed_out: usize,
}

/// Uses the link and secures the account: the password marked compromised first (so no sign-in
/// with it can finish from then on), then factors added in the last 24 hours removed, pending
/// enrolments dropped, every session and remembered device signed out. Each step can run again:
/// the link is deleted last, so a step that failed (Redis away: 503) is retried with the same
/// link. 410 for a used, expired or unknown link.
pub async fn undo(db: &Db, token: &str, client: &ClientInfo) -> Result<Undone> {
    if token.len() > 128 {
        return Err(gone());
    }
    let key = db.keys.not_me(&sha256_hex(token));
    let raw: Option<String> = db.query(redis::cmd("GET").arg(&key)).await?;
    let link: Link = raw.and_then(|r| serde_json::from_str(&r).ok()).ok_or_else(gone)?;
    let user = link.user;
    crate::auth::users::set_password_compromised(db, &user, true).await?;
    let since = now_ms() - LINK_SECS as i64 * 1000;
    let mut undone = Undone::default();
    if factors::totp_enrolled_at(db, &user).await?.is_some_and(|at| at >= since) {
        factors::remove_totp(db, &user).await?;
        undone.factors_removed.push("totp".into());
    }
    for view in passkey::list(db, &user).await? {
        if view.created_ms >= since {
            let id =
                passkey::parse_id(&view.id).ok_or_else(|| Error::Internal("passkey id".into()))?;
            if passkey::remove(db, &user, &id).await?.is_some() {
                undone.factors_removed.push(view.name);
            }
        }
    }
    factors::drop_pending(db, &user).await?;
    // Recovery codes made in the last 24 hours may be the intruder's (with the factor they added,
    // or renewed under it); with no factor left there is nothing for them to back up.
    let recent_codes = factors::recovery_issued_at(db, &user).await?.is_some_and(|at| at >= since);
    let owned = factors::factors(db, &user).await?;
    if owned.recovery_codes > 0 && (recent_codes || !owned.any()) {
        factors::replace_recovery_codes(db, &user, &[]).await?;
        if recent_codes {
            undone.factors_removed.push("recovery codes".into());
        }
    }
    undone.signed_out = sessions::destroy_others(db, &user, None).await?;
    throttle::forget_devices(db, &user).await?;
    let used: i64 = db.query(redis::cmd("DEL").arg(&key)).await?;
    if used == 0 {
        // Another request with this link finished first: it reported what was done.
        return Err(gone());
    }
    let record = Activity::NotMe {
        factors_removed: undone.factors_removed.clone(),
        signed_out: undone.signed_out,
    };
    audit::record(db, &user, client, record).await;
    Ok(undone)
}
