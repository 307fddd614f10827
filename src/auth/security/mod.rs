//! What a signed-in user does with their own security: adding and removing factors (an
//! authenticator app, recovery codes, passkeys; a first one bound by an e-mailed code, each
//! change announced), reading the security activity, and "this wasn't me". `service.rs` has the
//! rules, `routes.rs` the API, `pages.rs` the Security page's forms and `/not-me` (the page itself
//! is `account::security`'s). It stands above the factors, sign-in and step-up, and mounts their
//! routes with its own in one stage, next to the relying party they share.

pub mod pages;
pub mod routes;
pub mod service;

use rocket::fairing::AdHoc;
use rocket::routes;

use crate::auth::factors::passkey::RelyingParty;
use crate::auth::{signin, step_up};
use crate::config::Config;
use crate::stage::needs;

/// The "Strong authentication" stage: the passkey relying party (its origin checked at ignite),
/// and the routes that use the factors — sign-in's second step, step-up, and these settings.
pub fn stage() -> AdHoc {
    AdHoc::try_on_ignite("Strong authentication", |rocket| async {
        let Some(config) = needs::<Config>(&rocket, "Strong authentication") else {
            return Err(rocket);
        };
        let rp = match RelyingParty::new(&config) {
            Ok(rp) => rp,
            Err(e) => {
                rocket::error!("configuration: {e}");
                return Err(rocket);
            }
        };
        Ok(rocket.manage(rp).mount(
            "/",
            routes![
                signin::routes::login_totp,
                signin::routes::login_recovery,
                signin::routes::login_renew,
                signin::pages::renew_page,
                signin::pages::renew_submit,
                signin::routes::login_passkey_options,
                signin::routes::login_passkey,
                routes::totp_begin,
                routes::totp_confirm,
                routes::totp_remove,
                routes::recovery_renew,
                routes::passkey_options,
                routes::passkey_add,
                routes::passkey_list,
                routes::passkey_remove,
                step_up::routes::step_up_totp,
                step_up::routes::step_up_recovery,
                step_up::routes::step_up_password,
                step_up::routes::step_up_passkey_options,
                step_up::routes::step_up_passkey,
                routes::security_activity,
                routes::not_me,
                pages::not_me_page,
                pages::not_me_submit,
                step_up::verify::verify_page,
                step_up::verify::verify_submit,
                signin::pages::passkey_options,
                signin::pages::passkey_sign_in,
                pages::totp_begin,
                pages::totp_confirm,
                pages::totp_remove,
                pages::recovery_renew,
                pages::passkey_remove,
            ],
        ))
    })
}
