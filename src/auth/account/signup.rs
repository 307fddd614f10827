//! Opening an account (`open_registration`), and confirming its address.
//!
//! - New customers sign in with their e-mail address: no chosen username tells anyone who banks
//!   here. Their username is a random id nobody types.
//! - An address that is already registered gets exactly the same answer, and its mailbox a
//!   message that someone tried; nothing else happens.
//! - The account (user, address, checking account with `opening_balance_cents`) exists at once,
//!   but everything is written with a 24-hour expiry: confirming the address (a single-use link)
//!   keeps it, and an account never confirmed goes by itself, data and all. Until then the
//!   customer may sign in, but may not add a first factor (the e-mailed code would go to an
//!   address nobody confirmed) or send money, and nobody can send them any.
//! - Asks are counted per client address group (`PER_CLIENT` an hour, then 429) and mails per
//!   address (`PER_ADDRESS` an hour, then silently none).

use rand::Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::policy;
use crate::audit;
use crate::audit::{Activity, ClientInfo};
use crate::auth::model::{Role, User};
use crate::auth::password::Passwords;
use crate::auth::signin::throttle;
use crate::auth::store as sessions;
use crate::auth::users;
use crate::bank::model::Account;
use crate::bank::store as bank;
use crate::clock::now_ms;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::money::Cents;
use crate::redis::{As, Db};
use crate::secret::random_token;

/// How long an unconfirmed account lives, and its confirmation link with it.
pub const UNVERIFIED_SECS: u64 = 86_400;
/// Accounts one client address group may open an hour.
const PER_CLIENT: i64 = 5;
/// Mails one address gets from sign-ups an hour.
const PER_ADDRESS: i64 = 3;
const WINDOW_SECS: u64 = 3600;
/// The longest name accepted.
const MAX_NAME_CHARS: usize = 80;

/// What a new customer gives.
pub struct Application<'a> {
    pub name: &'a str,
    pub email: &'a str,
    /// None: a passkey will be the way in (added once the address is confirmed).
    pub password: Option<&'a str>,
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

/// Checks an application; the address in lower case.
fn checked(application: &Application<'_>) -> Result<String> {
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
        if let Some(message) = policy::problem(password, false, &personal) {
            return Err(Error::Invalid { field: "password", message });
        }
    }
    Ok(email)
}

/// Opens an account for `application`, or, when its address is taken, tells that mailbox.
/// The same `Ok` either way.
pub async fn open(
    db: &Db,
    config: &Config,
    passwords: &Passwords,
    application: Application<'_>,
    client: &ClientInfo,
) -> Result<()> {
    if !config.registration_open() {
        return Err(Error::Forbidden("This bank does not open accounts online.".into()));
    }
    let email = checked(&application)?;
    // Counted once the application is sound (a typo costs nothing), before anything is hashed.
    let group = throttle::address_group(&client.ip);
    let per_client = db.keys.throttle_hourly(&format!("signup:{group}"));
    throttle::per_window(db, &per_client, PER_CLIENT, WINDOW_SECS).await?;
    // Hashed before the address is looked up, so a taken address answers as fast as a new one.
    let hash = match application.password {
        Some(password) => passwords.hash(password).await?,
        None => String::new(),
    };
    let per_address = db.keys.throttle_hourly(&format!("signup-mail:{email}"));
    match throttle::per_window(db, &per_address, PER_ADDRESS, WINDOW_SECS).await {
        Err(Error::TooManyRequests { .. }) => return Ok(()),
        other => other?,
    }
    if users::find_by_email(db, &email).await?.is_some() {
        return tell_the_owner(db, config, &email).await;
    }
    let name = application.name.trim();
    let username = format!("c{}", &hex::encode(Sha256::digest(random_token().as_bytes()))[..15]);
    let account = open_checking_account(db, config, &username, name).await?;
    let user = User {
        username: username.clone(),
        display_name: name.to_owned(),
        roles: vec![Role::User],
        account,
        city: String::new(),
        password_hash: hash,
        email: Some(email.clone()),
        password_compromised: false,
        password_outdated: false,
        unverified: true,
    };
    // Listed before anything can be left behind by it: the sweep removes what this creates.
    let member = format!("{username} {} {email}", user.account);
    let goes_at = now_ms() + UNVERIFIED_SECS as i64 * 1000;
    let list = db.keys.unverified_users();
    db.run(async |c| {
        redis::cmd("ZADD").arg(&list).arg(goes_at).arg(&member).query_async::<_, ()>(c).await
    })
    .await?;
    if !users::create_unverified(db, &user, UNVERIFIED_SECS).await? {
        // Another sign-up took the address a moment ago: that mailbox hears of this one.
        return tell_the_owner(db, config, &email).await;
    }
    audit::record(db, &username, client, Activity::AccountOpened).await;
    send_link(db, config, &user).await
}

/// A new checking account number (10 digits, not starting with 0 or 9: 9… are the bank's own)
/// for `username`, opened unverified.
async fn open_checking_account(
    db: &Db,
    config: &Config,
    username: &str,
    holder: &str,
) -> Result<String> {
    for _ in 0..10 {
        let number = rand::thread_rng().gen_range(1_000_000_000u64..9_000_000_000).to_string();
        let account = Account {
            number: number.clone(),
            username: username.to_owned(),
            holder: holder.to_owned(),
            city: String::new(),
            unverified: true,
        };
        let opening = Cents(config.bank.opening_balance_cents);
        if bank::open_account(db, &account, opening, UNVERIFIED_SECS).await? {
            return Ok(number);
        }
    }
    Err(Error::Internal("no free account number in 10 draws".into()))
}

async fn tell_the_owner(db: &Db, config: &Config, email: &str) -> Result<()> {
    let text = format!(
        "Hello,\n\n\
         Someone tried to open a redbank account with this e-mail address, which already \
         belongs to an account. Nothing was opened and nothing changed.\n\n\
         If it was you, sign in instead, or reset your password:\n\n\
         {origin}/password/forgot\n\n\
         If it was not you, there is nothing to do.\n",
        origin = config.web.public_origin.trim_end_matches('/'),
    );
    crate::mail::queue(
        db,
        email,
        "Someone tried to open a redbank account with your address",
        &text,
    )
    .await
}

/// What a confirmation link remembers.
#[derive(Debug, Serialize, Deserialize)]
struct Link {
    user: String,
    email: String,
}

fn link_id(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn gone() -> Error {
    Error::Gone("This confirmation link was used or has expired.".into())
}

/// Mails `user` a link that confirms their address.
async fn send_link(db: &Db, config: &Config, user: &User) -> Result<()> {
    let Some(email) = user.email.clone() else { return Ok(()) };
    let token = random_token();
    let link = Link { user: user.username.clone(), email: email.clone() };
    let ttl = std::time::Duration::from_secs(UNVERIFIED_SECS);
    db.put(&db.keys.email_verification(&link_id(&token)), &link, As::Text, ttl).await?;
    let text = format!(
        "Hello {name},\n\n\
         Welcome to redbank. Confirm this e-mail address to finish opening your account \
         (the link works once, for 24 hours):\n\n\
         {origin}/email/verify?token={token}\n\n\
         Until then you can sign in, but not send money or add a sign-in factor. An account \
         whose address is not confirmed within 24 hours is removed.\n\n\
         If you did not open an account, ignore this e-mail: it will be removed.\n",
        name = user.display_name,
        origin = config.web.public_origin.trim_end_matches('/'),
    );
    crate::mail::queue(db, &email, "Confirm your e-mail address for redbank", &text).await
}

/// Sends the signed-in, unconfirmed `username` a new confirmation link (at most `PER_ADDRESS`
/// an hour); 409 when the address is confirmed already.
pub async fn resend(db: &Db, config: &Config, username: &str) -> Result<()> {
    let user = users::get_user(db, username).await?.ok_or(Error::Unauthorized)?;
    if !user.unverified {
        return Err(Error::Conflict("Your address is confirmed already.".into()));
    }
    let email = user.email.clone().unwrap_or_default();
    let per_address = db.keys.throttle_hourly(&format!("signup-mail:{email}"));
    throttle::per_window(db, &per_address, PER_ADDRESS, WINDOW_SECS).await?;
    send_link(db, config, &user).await
}

/// The name of the account whose address the link behind `token` confirms, without using it.
pub async fn peek(db: &Db, token: &str) -> Result<String> {
    let (_, user) = load(db, token).await?;
    Ok(user.display_name)
}

async fn load(db: &Db, token: &str) -> Result<(Link, User)> {
    if token.is_empty() || token.len() > 128 {
        return Err(gone());
    }
    let key = db.keys.email_verification(&link_id(token));
    let link: Link = db.get_text(&key).await?.ok_or_else(gone)?;
    let user = users::get_user(db, &link.user).await?.ok_or_else(gone)?;
    // A link for an address the account no longer has confirms nothing.
    if user.email.as_deref() != Some(link.email.as_str()) {
        return Err(gone());
    }
    Ok((link, user))
}

/// Confirms the address the link behind `token` was sent to: the account is kept for good, and
/// its sessions may add a first factor and send money. 410 for a used or expired link.
pub async fn confirm(db: &Db, token: &str, client: &ClientInfo) -> Result<()> {
    let (link, user) = load(db, token).await?;
    let key = db.keys.email_verification(&link_id(token));
    let taken: Option<String> =
        db.run(async |c| redis::cmd("GETDEL").arg(&key).query_async(c).await).await?;
    if taken.is_none() {
        return Err(gone());
    }
    if user.unverified {
        if !bank::keep_account(db, &user.account).await? || !users::keep(db, &user).await? {
            return Err(gone());
        }
        let member = format!("{} {} {}", user.username, user.account, link.email);
        let list = db.keys.unverified_users();
        db.run(async |c| redis::cmd("ZREM").arg(&list).arg(&member).query_async::<_, ()>(c).await)
            .await?;
        for session in sessions::list_sessions(db, Some(&user.username)).await? {
            let no = serde_json::Value::Bool(false);
            sessions::set_session_field(db, &session.id, "unverified", &no).await?;
        }
    }
    let confirmed = Activity::EmailConfirmed { email: link.email };
    audit::record(db, &user.username, client, confirmed).await;
    Ok(())
}

/// Removes every account whose address was not confirmed in time, with what it wrote: the
/// user, its address, its checking account and balance (which expire by themselves too), and
/// its sessions, remembered devices, factors and activity (which would not, for weeks). How many
/// went. Idempotent: run by the account stage every `repair_interval_secs`, by any instance.
pub async fn remove_unconfirmed(db: &Db) -> Result<usize> {
    let list = db.keys.unverified_users();
    let due: Vec<String> = db
        .run(async |c| {
            redis::cmd("ZRANGEBYSCORE")
                .arg(&list)
                .arg("-inf")
                .arg(now_ms())
                .arg("LIMIT")
                .arg(0)
                .arg(100)
                .query_async(c)
                .await
        })
        .await?;
    let mut removed = 0;
    for member in due {
        let mut parts = member.splitn(3, ' ');
        let (Some(username), Some(account), Some(email)) =
            (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        // Confirmed after all (the confirmation took the member out, then a retry put it…): keep.
        let confirmed = users::get_user(db, username).await?.is_some_and(|u| !u.unverified);
        if !confirmed {
            sessions::destroy_others(db, username, None).await?;
            throttle::forget_devices(db, username).await?;
            crate::auth::factors::store::forget_user(db, username).await?;
            let keys = &db.keys;
            let doomed = [keys.user(username), keys.activity(username), keys.account(account)];
            let balance = keys.balance(account);
            db.run(async |c| {
                let mut pipe = redis::pipe();
                for key in doomed.iter().chain([&balance]) {
                    pipe.cmd("DEL").arg(key).ignore();
                }
                pipe.query_async::<_, ()>(c).await
            })
            .await?;
            users::release(db, username, email).await?;
            removed += 1;
        }
        db.run(async |c| redis::cmd("ZREM").arg(&list).arg(&member).query_async::<_, ()>(c).await)
            .await?;
    }
    Ok(removed)
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
