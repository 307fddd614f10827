//! Money movement: transfers between customers, confirmed by strong authentication bound to the
//! amount and payee (PSD2 dynamic linking), idempotent, and carried out by a two-step ledger that
//! never touches two accounts in one script (so it works across Redis Cluster shards), with a
//! recovery task for a debit whose credit did not land.

pub mod idempotency;
pub mod ledger;
pub mod model;
pub mod recovery;
pub mod routes;
pub mod service;

use rocket::fairing::AdHoc;
use rocket::futures::future::BoxFuture;
use rocket::routes;

use crate::audit::ClientInfo;
use crate::auth::model::Session;
use crate::config::Config;
use crate::error::Result;
use crate::redis::Db;
use crate::stage;
use model::Transfer;

/// What a closing's payout (a transfer with `closes_account`) leaves to do once it is carried
/// out: close the sender's account. Closing is `account::closing`'s, a layer above transfers
/// (it pays out through them), so the account stage hands this in as managed state
/// and transfers import nothing of it; a launch without it fails on `api_confirm`'s
/// `&State<ClosesAccount>`.
pub struct ClosesAccount(pub ClosingStep);

/// [`ClosesAccount`]'s step: `(db, config, (session, client), payout)`.
pub type ClosingStep = for<'a> fn(
    &'a Db,
    &'a Config,
    (&'a Session, &'a ClientInfo),
    &'a Transfer,
) -> BoxFuture<'a, Result<()>>;

pub fn stage() -> AdHoc {
    stage::with_both("Transfers", |rocket, db: Db, config: Config| async move {
        Ok(rocket
            .mount(
                "/",
                routes![
                    routes::api_create,
                    routes::api_get,
                    routes::api_options,
                    routes::api_confirm,
                    routes::form,
                    routes::submit,
                    routes::transfer_page,
                ],
            )
            .attach(AdHoc::on_liftoff("Transfer recovery", |rocket| {
                Box::pin(async move {
                    tokio::spawn(recovery::run(db, config, rocket.shutdown()));
                })
            })))
    })
}
