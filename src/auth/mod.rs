//! Authentication and sessions in Redis JSON: browser cookie + mobile bearer token, idle and
//! absolute timeouts, CSRF, login throttling, and the "your active sessions" list (RediSearch).

pub mod context;
pub mod credential;
pub mod csrf;
pub mod demo;
pub mod factors;
pub mod guard;
pub mod model;
pub mod notice;
pub mod password;
pub mod policy;
pub mod security;
pub mod sessions;
pub mod signin;
pub mod step_up;
pub mod store;
pub mod throttle;
pub mod token;
pub mod users;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rocket::fairing::AdHoc;
use rocket::{Orbit, Rocket, routes};

use crate::config::Config;
use crate::error::Result;
use crate::redis::{Db, when_ready};
use crate::stage;
use demo::{DEMO_USERS, configured_users};
use model::User;
use password::Passwords;

pub fn stage() -> AdHoc {
    stage::with_both("Sessions", |rocket, db: Db, config: Config| async move {
        let passwords = match Passwords::new(config.sign_in.password_hash_concurrency) {
            Ok(p) => Arc::new(p),
            Err(e) => {
                rocket::error!("password hasher: {e}");
                return Err(rocket);
            }
        };
        Ok(rocket
            .attach(csrf::CookieRule)
            .manage(passwords.clone())
            .mount(
                "/",
                routes![
                    signin::pages::login_form,
                    signin::pages::login_submit,
                    sessions::pages::logout,
                    sessions::pages::index,
                    sessions::pages::sessions_page,
                    sessions::pages::revoke_form,
                    sessions::pages::revoke_others_form,
                    signin::routes::api_login,
                    sessions::routes::api_me,
                    sessions::routes::api_logout,
                    sessions::routes::api_refresh,
                    sessions::routes::api_sessions,
                    sessions::routes::api_revoke,
                    sessions::routes::api_revoke_others,
                ],
            )
            .attach(AdHoc::on_liftoff("Demo users and session index", |rocket| {
                Box::pin(prepare(rocket, db, config, passwords))
            })))
    })
}

/// Creates the session index and the configured users as soon as Redis answers (and again on
/// every repair); the first successful run also brings existing users in line with the
/// configuration.
async fn prepare(rocket: &Rocket<Orbit>, db: Db, config: Config, passwords: Arc<Passwords>) {
    let reconciled = Arc::new(AtomicBool::new(false));
    let period = Duration::from_secs(config.redis.repair_interval_secs);
    when_ready(rocket, period, "users", move || {
        let (db, config, passwords) = (db.clone(), config.clone(), passwords.clone());
        let reconciled = reconciled.clone();
        async move {
            setup(&db, &config, &passwords).await?;
            if !reconciled.load(Ordering::Acquire) {
                reconcile(&db, &config, &passwords).await?;
                reconciled.store(true, Ordering::Release);
            }
            Ok(())
        }
    })
    .await;
}

async fn setup(db: &Db, config: &Config, passwords: &Passwords) -> Result<()> {
    store::ensure_index(db).await?;
    for (demo, password) in configured_users(config) {
        if crate::auth::users::user_exists(db, demo.username).await? {
            continue;
        }
        if let Some(secret) =
            demo.totp.and_then(crate::auth::factors::totp::TotpSecret::from_base32)
        {
            crate::auth::factors::store::ensure_demo_totp(db, demo.username, &secret).await?;
        }
        let user = User {
            username: demo.username.into(),
            display_name: demo.display_name.into(),
            roles: vec![demo.role],
            account: demo.account.into(),
            city: demo.city.into(),
            password_hash: passwords.hash(password).await?,
            email: demo::email_of(demo, config).map(str::to_owned),
            password_compromised: false,
            password_outdated: false,
        };
        crate::auth::users::create_user(db, &user).await?;
    }
    Ok(())
}

/// Users the configuration no longer wants are removed with their sessions (a demo user after
/// `demo_users = false`, an `admin` left from a version that generated its password), and a
/// configured password that no longer matches the stored hash replaces it, ending that user's
/// sessions. Once per start: it costs one argon2 verification when `admin_password` is set.
async fn reconcile(db: &Db, config: &Config, passwords: &Passwords) -> Result<()> {
    for demo in &DEMO_USERS {
        let wanted = configured_users(config).find(|(u, _)| u.username == demo.username);
        match wanted {
            None => {
                if crate::auth::users::delete_user(db, demo.username).await? {
                    store::destroy_others(db, demo.username, None).await?;
                    crate::auth::factors::store::forget_user(db, demo.username).await?;
                    rocket::info!("users: removed `{}` (not configured)", demo.username);
                }
            }
            // The demo passwords are fixed; only a configured one can change.
            Some((_, password)) if demo.password.is_none() => {
                let Some(user) = crate::auth::users::get_user(db, demo.username).await? else {
                    continue;
                };
                let slot = passwords.slot().await?;
                if passwords.verify(&slot, password, Some(&user.password_hash)).await? {
                    continue;
                }
                drop(slot);
                crate::auth::users::set_password_hash(
                    db,
                    demo.username,
                    &passwords.hash(password).await?,
                )
                .await?;
                store::destroy_others(db, demo.username, None).await?;
                rocket::info!("users: password of `{}` changed by configuration", demo.username);
            }
            Some(_) => {}
        }
        // Addresses follow the configuration (users stored before addresses existed get one).
        if wanted.is_some() {
            crate::auth::users::set_email(db, demo.username, demo::email_of(demo, config)).await?;
        }
        // Demo mode: alice has her authenticator app from the README at every start.
        if let Some(secret) =
            demo.totp.and_then(crate::auth::factors::totp::TotpSecret::from_base32)
        {
            if wanted.is_some() {
                crate::auth::factors::store::ensure_demo_totp(db, demo.username, &secret).await?;
            }
        }
    }
    Ok(())
}
