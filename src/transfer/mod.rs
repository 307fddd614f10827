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
use rocket::routes;

use crate::config::Config;
use crate::redis::Db;
use crate::stage;

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
