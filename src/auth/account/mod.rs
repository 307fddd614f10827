//! A customer's own account: opening one (and confirming its address), the password rules every
//! new password meets, changing the password, and "Forgot password?" (a link e-mailed to the
//! account's address; the second factor too where there is one).

pub mod pages;
pub mod policy;
pub mod reset;
pub mod routes;
pub mod service;
pub mod signup;

use std::time::Duration;

use rocket::fairing::AdHoc;
use rocket::routes;

use crate::config::Config;
use crate::redis::{Db, when_ready};
use crate::stage::needs;

/// The routes (they use the hashing lanes of the sessions stage and the relying party of the
/// strong-authentication stage, so it is attached after both), and the sweep of accounts whose
/// address was not confirmed in time.
pub fn stage() -> AdHoc {
    AdHoc::try_on_ignite("Account", |rocket| async {
        let (Some(db), Some(config)) =
            (needs::<Db>(&rocket, "Account"), needs::<Config>(&rocket, "Account"))
        else {
            return Err(rocket);
        };
        let sweep = AdHoc::on_liftoff("Unconfirmed accounts", move |rocket| {
            let period = Duration::from_secs(config.redis.repair_interval_secs);
            Box::pin(when_ready(rocket, period, "unconfirmed accounts", move || {
                let db = db.clone();
                async move { signup::remove_unconfirmed(&db).await.map(|_| ()) }
            }))
        });
        Ok(rocket.attach(sweep).mount(
            "/",
            routes![
                routes::password_check,
                routes::password_change,
                routes::password_forgot,
                routes::password_reset_options,
                routes::password_reset_passkey,
                routes::password_reset,
                routes::open_account,
                routes::email_verify,
                routes::email_verify_resend,
                pages::forgot_form,
                pages::forgot_submit,
                pages::reset_page,
                pages::reset_submit,
                pages::change_form,
                pages::change_submit,
                pages::signup_form,
                pages::signup_submit,
                pages::verify_page,
                pages::verify_submit,
                pages::resend_submit,
            ],
        ))
    })
}
