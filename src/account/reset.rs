//! "Forgot password?": a single-use link, valid 30 minutes, e-mailed to the account's address.
//!
//! - Asking answers the same for any input (202), so it tells nobody who banks here. Asks are
//!   counted per client address group (429 beyond `PER_CLIENT` an hour) and mails per account
//!   (beyond `PER_ACCOUNT` an hour nothing more is sent, still without a word to the asker).
//! - The link's token is stored only as its SHA-256, with the fingerprint of the password it
//!   replaces: the reset changes that password, which ends this link and every other one sent
//!   before it.
//! - A reset never lowers the account's assurance: an account with a second factor must also
//!   pass it (a TOTP or recovery code, counted like every other code, or a passkey whose
//!   ceremony is bound to this link). The new password follows the same rules as any other.
//! - It ends every session and remembered device, and the mail that says so carries a "this
//!   wasn't me" link.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::audit;
use crate::audit::{Activity, ClientInfo};
use crate::auth::factors::passkey::{self, Purpose, RelyingParty};
use crate::auth::factors::store as factors;
use crate::auth::model::User;
use crate::auth::notice::{self, Notice};
use crate::auth::password::Passwords;
use crate::auth::policy;
use crate::auth::signin::code::{self, CodeKind};
use crate::auth::store as sessions;
use crate::auth::throttle;
use crate::auth::users;
use crate::clock::now_ms;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::redis::{As, Db};
use crate::secret::{random_token, sha256_hex};

/// How long a reset link works.
pub const LINK_SECS: u64 = 1800;
/// Reset requests one client address group may make an hour.
const PER_CLIENT: i64 = 10;
/// Reset mails one account gets an hour.
const PER_ACCOUNT: i64 = 3;
const WINDOW_SECS: u64 = 3600;

/// What a link remembers.
#[derive(Debug, Serialize, Deserialize)]
struct Link {
    user: String,
    /// [`users::fingerprint`] of the password hash the link may replace.
    replaces: String,
    sent_at: i64,
}

fn gone() -> Error {
    Error::Gone("This reset link was used, has expired, or was replaced by a newer one.".into())
}

/// Sends a reset link to the account `login` names (a username or an e-mail address), if
/// there is one with an address. Answers the same whether there is or not.
pub async fn ask(db: &Db, config: &Config, login: &str, client: &ClientInfo) -> Result<()> {
    let group = throttle::address_group(&client.ip);
    throttle::per_window(
        db,
        &db.keys.throttle_hourly(&format!("reset:{group}")),
        PER_CLIENT,
        WINDOW_SECS,
    )
    .await?;
    if login.len() > 254 {
        return Ok(());
    }
    // Whether the account exists is looked up after the answer is decided, off the request: the
    // two branches differ in work, and the time would say which one ran.
    let (db, config, login, client) =
        (db.clone(), config.clone(), login.to_owned(), client.clone());
    tokio::spawn(async move {
        if let Err(e) = send_link(&db, &config, &login, &client).await {
            rocket::warn!("password reset: link not sent: {e}");
        }
    });
    Ok(())
}

/// The reset link for the account `login` names, if there is one with an address.
async fn send_link(db: &Db, config: &Config, login: &str, client: &ClientInfo) -> Result<()> {
    let Some(user) = users::find_by_login(db, login).await? else { return Ok(()) };
    let Some(address) = user.email.clone() else { return Ok(()) };
    let per_account = db.keys.throttle_hourly(&format!("reset-mail:{}", user.username));
    match throttle::per_window(db, &per_account, PER_ACCOUNT, WINDOW_SECS).await {
        Err(Error::TooManyRequests { .. }) => return Ok(()),
        other => other?,
    }
    let token = random_token();
    let link = Link {
        user: user.username.clone(),
        replaces: users::fingerprint(&user.password_hash),
        sent_at: now_ms(),
    };
    let ttl = std::time::Duration::from_secs(LINK_SECS);
    db.put(&db.keys.password_reset(&sha256_hex(&token)), &link, As::Text, ttl).await?;
    audit::record(db, &user.username, client, Activity::PasswordResetRequested).await;
    let text = format!(
        "Hello {name},\n\n\
         Someone asked to reset the password of your redbank account. To choose a new one, open \
         this link within 30 minutes:\n\n\
         {origin}/password/reset?token={token}\n\n\
         The link works once.{factor} Resetting signs out every session and device.\n\n\
         If you did not ask, ignore this e-mail: your password stays as it is.\n",
        name = user.display_name,
        origin = config.web.public_origin.trim_end_matches('/'),
        factor = if factors::factors(db, &user.username).await?.any() {
            " You will also need your second factor (authenticator app, passkey or a recovery \
             code)."
        } else {
            ""
        },
    );
    crate::mail::queue(db, &address, "Reset your redbank password", &text).await
}

/// What a reset link's page shows, and what it will ask for.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ResetView {
    /// The account's display name.
    pub name: String,
    /// Whether the reset needs the account's second factor too.
    pub second_factor_required: bool,
    /// The factors the account has: `totp`, `passkey`, `recovery`.
    pub methods: Vec<&'static str>,
    /// The shortest new password accepted.
    pub min_password_chars: usize,
}

/// The live link behind `token` and its user; [`gone`] when it was used, expired or replaced.
async fn load(db: &Db, token: &str) -> Result<(Link, User)> {
    if token.is_empty() || token.len() > 128 {
        return Err(gone());
    }
    let link: Link =
        db.get_text(&db.keys.password_reset(&sha256_hex(token))).await?.ok_or_else(gone)?;
    let user = users::get_user(db, &link.user).await?.ok_or_else(gone)?;
    if users::fingerprint(&user.password_hash) != link.replaces {
        return Err(gone());
    }
    Ok((link, user))
}

/// What the link behind `token` will ask for, without using it.
pub async fn peek(db: &Db, token: &str) -> Result<ResetView> {
    let (_, user) = load(db, token).await?;
    let owned = factors::factors(db, &user.username).await?;
    Ok(ResetView {
        name: user.display_name,
        second_factor_required: owned.any(),
        methods: owned.methods(),
        min_password_chars: policy::min_chars(owned.any()),
    })
}

/// Starts the passkey ceremony that proves the second factor of the link's account.
pub async fn passkey_options(
    db: &Db,
    rp: &RelyingParty,
    token: &str,
    client: &ClientInfo,
) -> Result<Value> {
    let (link, _) = load(db, token).await?;
    let purpose = Purpose::ResetPassword { user: link.user, link: sha256_hex(token) };
    passkey::start_authentication(db, rp, purpose, &client.ip).await
}

/// How a reset proves the account's second factor.
pub enum Proof {
    /// Nothing (enough only for an account without one).
    Nothing,
    Code(CodeKind, String),
    /// A passkey's assertion, answering [`passkey_options`].
    Passkey(Value),
}

/// What a reset asks: the link's token, the new password and the proof of the second factor.
pub struct Request<'a> {
    pub token: &'a str,
    pub password: &'a str,
    pub proof: Proof,
}

/// The field a missing or wrong second factor is reported on.
const CODE_FIELD: &str = "code";

/// Resets the password of the link behind the request's token, with its proof of the second
/// factor where the account has one; how many sessions ended. 410 for a used, expired or
/// replaced link; 422 naming `password` or `code`.
pub async fn reset(
    db: &Db,
    config: &Config,
    passwords: &Passwords,
    rp: &RelyingParty,
    request: Request<'_>,
    client: &ClientInfo,
) -> Result<usize> {
    let Request { token, password: new_password, proof } = request;
    let (link, user) = load(db, token).await?;
    let username = &user.username;
    let owned = factors::factors(db, username).await?;
    // The password's rules first, so a refused password spends no code.
    let personal = policy::personal_words(&user);
    if let Some(message) = policy::problem_blocking(new_password, owned.any(), personal).await? {
        return Err(Error::Invalid { field: "password", message });
    }
    if owned.any() {
        prove(db, config, rp, &user, &sha256_hex(token), proof, client).await?;
    }
    let hash = passwords.hash(new_password).await?;
    if !users::replace_password(db, username, &link.replaces, &hash).await? {
        return Err(gone());
    }
    let key = db.keys.password_reset(&sha256_hex(token));
    db.query::<()>(redis::cmd("DEL").arg(&key)).await?;
    let signed_out = sessions::destroy_others(db, username, None).await?;
    throttle::forget_devices(db, username).await?;
    audit::record(db, username, client, Activity::PasswordReset { signed_out }).await;
    notice::send(db, config, username, client, Notice::PasswordChanged { reset: true }).await;
    Ok(signed_out)
}

/// Checks the second factor of a reset: 422 on `code` when it is missing or wrong.
async fn prove(
    db: &Db,
    config: &Config,
    rp: &RelyingParty,
    user: &User,
    link: &str,
    proof: Proof,
    client: &ClientInfo,
) -> Result<()> {
    let on_code = |message: String| Error::Invalid { field: CODE_FIELD, message };
    match proof {
        Proof::Nothing => Err(on_code(
            "Your account has a second factor: enter a code from your authenticator app, a \
             recovery code, or use your passkey."
                .into(),
        )),
        Proof::Code(kind, code) => {
            match code::prove(db, config, &user.username, client, kind, &code).await {
                Err(Error::NotConfirmed(message)) => Err(on_code(message)),
                other => other,
            }
        }
        Proof::Passkey(answer) => {
            let wrong = || on_code("The passkey could not be confirmed. Please try again.".into());
            let verified = match passkey::finish_authentication(db, rp, &answer).await {
                Err(Error::InvalidCode) => return Err(wrong()),
                other => other?,
            };
            let expected =
                Purpose::ResetPassword { user: user.username.clone(), link: link.to_owned() };
            if verified.purpose != expected || verified.user != user.username {
                return Err(wrong());
            }
            Ok(())
        }
    }
}
