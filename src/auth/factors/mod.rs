//! The second factors: TOTP authenticator apps, passkeys, recovery codes and the e-mailed code that
//! binds a first factor; their store, the rules of adding and removing them, and their API and
//! pages (with the sign-in and step-up pages that use them). Every piece of state is in Redis, so
//! any instance can finish what another started.

pub mod email_code;
pub mod pages;
pub mod passkey;
pub mod recovery;
pub mod routes;
pub mod service;
pub mod store;
pub mod totp;
pub mod user_handle;

use rocket::fairing::AdHoc;
use rocket::routes;

use crate::config::Config;
use crate::stage::needs;
use passkey::RelyingParty;

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
                crate::auth::signin::routes::login_totp,
                crate::auth::signin::routes::login_recovery,
                crate::auth::signin::routes::login_renew,
                crate::auth::signin::pages::renew_page,
                crate::auth::signin::pages::renew_submit,
                crate::auth::signin::routes::login_passkey_options,
                crate::auth::signin::routes::login_passkey,
                routes::totp_begin,
                routes::totp_confirm,
                routes::totp_remove,
                routes::recovery_renew,
                routes::passkey_options,
                routes::passkey_add,
                routes::passkey_list,
                routes::passkey_remove,
                crate::auth::step_up::routes::step_up_totp,
                crate::auth::step_up::routes::step_up_recovery,
                crate::auth::step_up::routes::step_up_password,
                crate::auth::step_up::routes::step_up_passkey_options,
                crate::auth::step_up::routes::step_up_passkey,
                routes::security_activity,
                routes::not_me,
                pages::not_me_page,
                pages::not_me_submit,
                crate::auth::signin::verify::verify_page,
                crate::auth::signin::verify::verify_submit,
                crate::auth::signin::pages::passkey_options,
                crate::auth::signin::pages::passkey_sign_in,
                pages::totp_begin,
                pages::totp_confirm,
                pages::totp_remove,
                pages::recovery_renew,
                pages::passkey_remove,
            ],
        ))
    })
}
