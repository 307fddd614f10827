//! Bench customers, made through the app's own store code (`users::create_user`,
//! `bank::store::ensure_account`, `auth::store::create_session`) the way a sign-up and a sign-in
//! leave them — without argon2 (their password is never used: the login row is argon2's).

use redbank::Config;
use redbank::audit::ClientInfo;
use redbank::auth::model::{Assurance, Role, SessionKind, User};
use redbank::bank::model::Account;
use redbank::redis::Db;

/// Customer `n` of a bench run: username `<label><n>` and an account number of ten digits that
/// starts with `digit` (one digit per bench, so their customers never collide).
pub fn user(label: &str, digit: char, n: usize) -> User {
    let username = format!("{label}{n:06}");
    User {
        display_name: format!("Bench Customer {n}"),
        roles: vec![Role::User],
        account: format!("{digit}{n:09}"),
        city: "Benchville".into(),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$unused$unused".into(),
        email: Some(format!("{username}@bench.example")),
        password_compromised: false,
        password_outdated: false,
        username,
    }
}

/// Creates the user and their account (with its opening balance, in the generator's list).
pub async fn open(db: &Db, user: &User) -> Result<(), String> {
    let e = |e: redbank::Error| format!("customer {}: {e}", user.username);
    redbank::auth::users::create_user(db, user).await.map_err(e)?;
    let account = Account {
        number: user.account.clone(),
        username: user.username.clone(),
        holder: user.display_name.clone(),
        city: user.city.clone(),
        closed: false,
    };
    redbank::bank::store::ensure_account(db, &account).await.map_err(e)
}

/// Signs the customer in from `ip` (a session as a password sign-in leaves it, or as `assurance`
/// says) and returns the session token.
pub async fn sign_in(
    db: &Db,
    config: &Config,
    user: &User,
    kind: SessionKind,
    ip: &str,
    assurance: Assurance,
) -> Result<String, String> {
    let client = ClientInfo { ip: ip.to_owned(), user_agent: "redbank bench".into() };
    let (token, _) =
        redbank::auth::store::create_session(db, config, user, kind, &client, assurance)
            .await
            .map_err(|e| format!("signing {} in: {e}", user.username))?;
    Ok(token.as_str().to_owned())
}
