//! Opening an account (`open_registration`).
//!
//! An application is only a request until its address is confirmed: the name, the address and
//! the password's hash wait 24 hours under the hash of a single-use link mailed to the address.
//! Following the link and giving the same password opens the account (user, address, checking
//! account with `opening_balance_cents`). So:
//! - An address that is already registered gets exactly the same answer, and its mailbox a
//!   message that someone tried; nothing else happens. Nothing exists to sign in to before the
//!   confirmation, so signing in cannot tell a stranger which addresses are taken either.
//! - Only the applicant finishes an application: whoever reads the mailbox cannot open an
//!   account someone else applied for with their address (they would need that password), and
//!   an application never confirmed leaves nothing behind.
//! - New customers sign in with their address: no chosen username tells anyone who banks here.
//! - Or with a passkey alone: an application without a password gets a secret of its own (the
//!   page keeps it in a cookie, an app gets it in the answer), and the link opens the account
//!   only with that secret and a passkey created for the link's options — so still only the
//!   applicant finishes it, and the account never has a password.
//! - Applications are counted per client address group (`PER_CLIENT` an hour, 429; any attempt
//!   at all, `ATTEMPTS_PER_MINUTE`), mails per address (`PER_ADDRESS` an hour, then silently
//!   none), wrong passwords per link (`TRIES`, then the application is dropped).

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::audit;
use crate::audit::{Activity, ClientInfo};
use crate::auth::factors::passkey::{self, RelyingParty};
use crate::auth::model::{Role, User};
use crate::auth::password::{MAX_PASSWORD_BYTES, Passwords};
use crate::auth::policy;
use crate::auth::throttle;
use crate::auth::users;
use crate::bank::model::Account;
use crate::bank::store as bank;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::money::Cents;
use crate::redis::doc::to_json;
use crate::redis::{As, Db};
use crate::secret::{random_token, sha256_hex};

/// How long an application (and its link) waits for the confirmation.
pub const APPLICATION_SECS: u64 = 86_400;
/// Applications one client address group may make an hour.
const PER_CLIENT: i64 = 5;
/// Attempts (refused ones too) one client address group may make a minute: each judges a
/// password.
const ATTEMPTS_PER_MINUTE: i64 = 20;
/// Mails one address gets from applications an hour.
const PER_ADDRESS: i64 = 3;
/// Wrong passwords one confirmation link takes before the application is dropped.
const TRIES: i64 = 5;
const HOUR: u64 = 3600;
/// The longest name accepted.
const MAX_NAME_CHARS: usize = 80;

/// What a new customer gives: a password, or none to open the account with a passkey.
pub struct Application<'a> {
    pub name: &'a str,
    pub email: &'a str,
    pub password: Option<&'a str>,
}

/// What waits for the confirmation.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Pending {
    name: String,
    email: String,
    /// Empty for an application with a passkey.
    #[serde(default)]
    password_hash: String,
    /// An application with a passkey: SHA-256 of the secret its applicant holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    applicant: Option<String>,
    /// The username the account will have, once its passkey's options were asked for (the
    /// passkey is made for it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    username: Option<String>,
}

fn invalid(field: &'static str, message: &str) -> Error {
    Error::Invalid { field, message: message.into() }
}

/// A name as people write them: letters, marks, spaces and a little punctuation.
fn valid_name(name: &str) -> bool {
    use unicode_general_category::{GeneralCategory as G, get_general_category};
    let chars = name.chars().count();
    (1..=MAX_NAME_CHARS).contains(&chars)
        && name.chars().all(|c| {
            c == ' '
                || matches!(c, '.' | '-' | '\'' | '’' | ',')
                || matches!(
                    get_general_category(c),
                    G::UppercaseLetter
                        | G::LowercaseLetter
                        | G::TitlecaseLetter
                        | G::ModifierLetter
                        | G::OtherLetter
                        | G::NonspacingMark
                        | G::SpacingMark
                )
        })
}

/// Checks an application (the password's rules on the blocking pool); the address in lower
/// case.
async fn checked(application: &Application<'_>) -> Result<String> {
    let name = application.name.trim();
    if !valid_name(name) {
        return Err(invalid(
            "name",
            "Give your name: 1 to 80 letters, with spaces, hyphens or apostrophes.",
        ));
    }
    let email = application.email.trim().to_lowercase();
    if !crate::mail::valid_address(&email) {
        return Err(invalid("email", "Give an e-mail address you can read, like you@example.com."));
    }
    if let Some(password) = application.password {
        let personal = policy::words_of(name, Some(&email));
        if let Some(message) = policy::problem_blocking(password, false, personal).await? {
            return Err(Error::Invalid { field: "password", message });
        }
    }
    Ok(email)
}

/// Takes an application: mails the address a link that opens the account, or, when the address
/// is taken, tells that mailbox. The same `Ok` either way, and the same work before it. For an
/// application without a password, the secret its applicant must present with the link.
pub async fn apply(
    db: &Db,
    config: &Config,
    passwords: &Passwords,
    application: Application<'_>,
    client: &ClientInfo,
) -> Result<Option<String>> {
    if !config.registration_open() {
        return Err(Error::Forbidden("This bank does not open accounts online.".into()));
    }
    let group = throttle::address_group(&client.ip);
    let attempts = db.keys.throttle_hourly(&format!("signup-attempt:{group}"));
    throttle::per_minute(db, &attempts, ATTEMPTS_PER_MINUTE).await?;
    let email = checked(&application).await?;
    let per_client = db.keys.throttle_hourly(&format!("signup:{group}"));
    throttle::per_window(db, &per_client, PER_CLIENT, HOUR).await?;
    let (password_hash, secret) = match application.password {
        Some(password) => (passwords.hash(password).await?, None),
        None => (String::new(), Some(random_token())),
    };
    let per_address = db.keys.throttle_hourly(&format!("signup-mail:{email}"));
    match throttle::per_window(db, &per_address, PER_ADDRESS, HOUR).await {
        Err(Error::TooManyRequests { .. }) => return Ok(secret),
        other => other?,
    }
    let pending = Pending {
        name: application.name.trim().to_owned(),
        email,
        password_hash,
        applicant: secret.as_deref().map(sha256_hex),
        username: None,
    };
    // Whether the address is taken is looked up after the answer is decided, off the request:
    // the two branches differ in work, and the time would say which one ran.
    let (db, config) = (db.clone(), config.clone());
    tokio::spawn(async move {
        if let Err(e) = mail_applicant(&db, &config, pending).await {
            rocket::warn!("sign-up: mail not queued: {e}");
        }
    });
    Ok(secret)
}

/// The link to a free address, or the "someone tried" notice to a taken one.
async fn mail_applicant(db: &Db, config: &Config, pending: Pending) -> Result<()> {
    let origin = config.web.public_origin.trim_end_matches('/');
    if users::find_by_email(db, &pending.email).await?.is_some() {
        let text = format!(
            "Hello,\n\n\
             Someone tried to open a redbank account with this e-mail address, which already \
             belongs to an account. Nothing was opened and nothing changed.\n\n\
             If it was you, sign in instead, or reset your password:\n\n\
             {origin}/password/forgot\n\n\
             If it was not you, there is nothing to do.\n",
        );
        let subject = "Someone tried to open a redbank account with your address";
        return crate::mail::queue(db, &pending.email, subject, &text).await;
    }
    let token = random_token();
    let ttl = std::time::Duration::from_secs(APPLICATION_SECS);
    db.put(&db.keys.email_verification(&sha256_hex(&token)), &pending, As::Text, ttl).await?;
    let how = if pending.applicant.is_some() {
        "open it in the browser where you applied, and create your passkey"
    } else {
        "enter the password you chose"
    };
    // No name in the text: it is the applicant's own words, and they could be anyone's.
    let text = format!(
        "Hello,\n\n\
         Someone (we hope you) asked to open a redbank account with this e-mail address. To \
         open it, follow this link within 24 hours and {how}:\n\n\
         {origin}/email/verify?token={token}\n\n\
         If you did not ask, ignore this e-mail: nothing is opened, and the request is \
         forgotten in a day.\n",
    );
    crate::mail::queue(db, &pending.email, "Confirm your e-mail address for redbank", &text).await
}

fn gone() -> Error {
    Error::Gone("This confirmation link was used or has expired.".into())
}

async fn load(db: &Db, token: &str) -> Result<Pending> {
    if token.is_empty() || token.len() > 128 {
        return Err(gone());
    }
    db.get_text(&db.keys.email_verification(&sha256_hex(token))).await?.ok_or_else(gone)
}

/// The name on the application behind `token`, and whether it opens with a passkey, without
/// using it.
pub async fn peek(db: &Db, token: &str) -> Result<(String, bool)> {
    let pending = load(db, token).await?;
    Ok((pending.name, pending.applicant.is_some()))
}

/// The applicant's secret must be the one the application was made with.
fn check_applicant(pending: &Pending, application: Option<&str>) -> Result<()> {
    let presented = application.map(sha256_hex).unwrap_or_default();
    let expected = pending.applicant.as_deref().unwrap_or_default();
    if crate::auth::csrf::tokens_match(expected, &presented) {
        return Ok(());
    }
    Err(invalid(
        "application",
        "This link opens an account applied for in another browser or app: open it there.",
    ))
}

/// The passkey creation options for the application behind `token` (made without a password),
/// for its applicant (`application`, the secret given when applying). The account's username is
/// chosen now: the passkey is made for it.
pub async fn passkey_options(
    db: &Db,
    rp: &RelyingParty,
    token: &str,
    application: Option<&str>,
    ip: &str,
) -> Result<serde_json::Value> {
    let mut pending = load(db, token).await?;
    if pending.applicant.is_none() {
        return Err(invalid("password", "This application opens with its password."));
    }
    check_applicant(&pending, application)?;
    let username = match &pending.username {
        Some(username) => username.clone(),
        None => {
            let username = new_username();
            pending.username = Some(username.clone());
            let json = to_json(&pending)?;
            let key = db.keys.email_verification(&sha256_hex(token));
            let kept: Option<String> =
                db.query(redis::cmd("SET").arg(&key).arg(&json).arg("XX").arg("KEEPTTL")).await?;
            if kept.is_none() {
                return Err(gone());
            }
            username
        }
    };
    passkey::start_registration(db, rp, &username, &pending.name, "Passkey", ip).await
}

/// A new customer's username: random, so it tells nobody who banks here.
fn new_username() -> String {
    format!("c{}", &sha256_hex(&random_token())[..15])
}

/// Opens the account applied for behind `token`, if `password` is the one chosen; its username.
/// 410 for a used or expired link (or one dropped after `TRIES` wrong passwords); 422 naming
/// `password`; 409 when the address was registered meanwhile.
pub async fn confirm(
    db: &Db,
    config: &Config,
    passwords: &Passwords,
    token: &str,
    password: Option<&str>,
    client: &ClientInfo,
) -> Result<String> {
    let pending = load(db, token).await?;
    let key = db.keys.email_verification(&sha256_hex(token));
    let wrong = || invalid("password", "Enter the password you chose when you applied.");
    let password = password.filter(|p| !p.is_empty() && p.len() <= MAX_PASSWORD_BYTES);
    let tries = db.keys.throttle_hourly(&format!("signup-confirm:{}", sha256_hex(token)));
    if let Err(Error::TooManyRequests { .. }) =
        throttle::per_window(db, &tries, TRIES, APPLICATION_SECS).await
    {
        db.query::<()>(redis::cmd("DEL").arg(&key)).await?;
        return Err(gone());
    }
    let slot = passwords.slot().await?;
    let right = match password {
        Some(p) => passwords.verify(&slot, p, Some(&pending.password_hash)).await?,
        None => false,
    };
    drop(slot);
    if !right {
        return Err(wrong());
    }
    let taken: Option<String> = db.query(redis::cmd("GETDEL").arg(&key)).await?;
    if taken.is_none() {
        return Err(gone());
    }
    let username = new_username();
    open_for(db, config, username, pending, client).await
}

/// Opens the account applied for behind `token` with a passkey: the applicant's secret
/// (`application`) and the passkey's answer to [`passkey_options`]; its username. The account
/// has no password. 410, 409 as [`confirm`]; 422 naming `application` or `passkey`.
pub async fn confirm_with_passkey(
    db: &Db,
    config: &Config,
    rp: &RelyingParty,
    token: &str,
    application: Option<&str>,
    answer: &serde_json::Value,
    client: &ClientInfo,
) -> Result<String> {
    let pending = load(db, token).await?;
    let key = db.keys.email_verification(&sha256_hex(token));
    if pending.applicant.is_none() {
        return Err(invalid("password", "Enter the password you chose when you applied."));
    }
    check_applicant(&pending, application)?;
    let refused = || invalid("passkey", "The passkey was not created for this link. Try again.");
    let Some(username) = pending.username.clone() else { return Err(refused()) };
    let new =
        passkey::verify_registration(db, rp, &username, answer).await.map_err(|e| match e {
            Error::InvalidCode | Error::BadRequest(_) => refused(),
            e => e,
        })?;
    // The passkey first: an account must never open with nothing to sign in with.
    let view = passkey::store_registration(db, &username, new).await?;
    let taken: Option<String> = db.query(redis::cmd("GETDEL").arg(&key)).await?;
    if taken.is_none() {
        return Err(gone());
    }
    let opened = open_for(db, config, username.clone(), pending, client).await?;
    let added = Activity::FactorAdded { factor: "passkey".into(), name: Some(view.name) };
    audit::record(db, &username, client, added).await;
    Ok(opened)
}

/// Opens the account of a confirmed application as `username`: the address, the checking
/// account, the user.
async fn open_for(
    db: &Db,
    config: &Config,
    username: String,
    pending: Pending,
    client: &ClientInfo,
) -> Result<String> {
    if !users::claim_email(db, &username, &pending.email).await? {
        return Err(Error::Conflict("This address belongs to an account now: sign in.".into()));
    }
    let account = open_checking_account(db, config, &username, &pending.name).await?;
    let user = User {
        username: username.clone(),
        display_name: pending.name,
        roles: vec![Role::User],
        account,
        city: String::new(),
        password_hash: pending.password_hash,
        email: Some(pending.email),
        password_compromised: false,
        password_outdated: false,
    };
    users::create_user(db, &user).await?;
    audit::record(db, &username, client, Activity::AccountOpened).await;
    Ok(username)
}

/// A demo account's first history: this many transactions over this many days.
const SAMPLE_TRANSACTIONS: usize = 20;
const SAMPLE_DAYS: i64 = 14;

/// A new checking account number (10 digits, not starting with 0 or 9: 9… are the bank's own)
/// for `username`.
async fn open_checking_account(
    db: &Db,
    config: &Config,
    username: &str,
    holder: &str,
) -> Result<String> {
    let opening = Cents(config.opening_balance_cents());
    for _ in 0..10 {
        let number = rand::thread_rng().gen_range(1_000_000_000u64..9_000_000_000).to_string();
        let account = Account {
            number: number.clone(),
            username: username.to_owned(),
            holder: holder.to_owned(),
            city: String::new(),
            closed: false,
        };
        if bank::open_account(db, &account, opening).await? {
            // A demo account starts with a little history, so its dashboard, chart and search
            // show something at the first sign-in; later ones come while it is watched.
            if config.demo_users {
                let sampled = crate::bank::generator::sample_history(
                    db,
                    config,
                    &account,
                    SAMPLE_TRANSACTIONS,
                    SAMPLE_DAYS,
                );
                if let Err(e) = sampled.await {
                    rocket::warn!("account {number}: no sample history ({e})");
                }
            }
            return Ok(number);
        }
    }
    Err(Error::Internal("no free account number in 10 draws".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_letters_of_any_script_with_a_little_punctuation() {
        for name in ["Bob Jones", "Zoë O'Brien-Smith", "李小龙", "José María", "Ng. Văn A"] {
            assert!(valid_name(name), "{name}");
        }
        for name in ["", "bob\u{202e}", "a\nb", "<script>", "x".repeat(81).as_str(), "Bob 2"] {
            assert!(!valid_name(name), "{name:?}");
        }
    }
}
