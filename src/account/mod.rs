//! A customer's own account, from opening to closing: opening one (and confirming its address),
//! changing the password or the address, "Forgot password?" (a link e-mailed to the account's
//! address; the second factor too where there is one), the Security page, and the customer's
//! data: a copy of it, and closing the account with a payout of what is left.
//!
//! It stands above `auth`, `bank` and `transfer` and uses all three (an account opens with a
//! user and a bank account, and closes through a transfer); none of them imports it. The one
//! call back, closing the account once a payout is confirmed, is handed to transfers here as
//! [`ClosesAccount`].

pub mod closing;
pub mod email;
pub mod pages;
pub mod reset;
pub mod routes;
pub mod security;
pub mod service;
pub mod signup;

use rocket::fairing::AdHoc;
use rocket::routes;

use crate::transfer::ClosesAccount;

/// The routes, and the closing step transfers run after a payout; the routes use the hashing
/// lanes of the sessions stage and the relying party of the strong-authentication stage, so it
/// is attached after both.
pub fn stage() -> AdHoc {
    AdHoc::on_ignite("Account", |rocket| async {
        rocket.manage(ClosesAccount(closing::service::close_after_payout)).mount(
            "/",
            routes![
                routes::password_check,
                routes::password_change,
                routes::password_forgot,
                routes::password_reset_options,
                routes::password_reset_passkey,
                routes::password_reset,
                routes::open_account,
                routes::signup_passkey_options,
                routes::email_verify,
                routes::email_change,
                routes::email_undo,
                closing::routes::account_export,
                closing::routes::account_close,
                security::security_page,
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
                pages::email_change_submit,
                pages::undo_page,
                pages::undo_submit,
                closing::pages::export_download,
                closing::pages::close_submit,
                closing::pages::closed,
            ],
        )
    })
}
