//! The account side: accounts with balances in Redis, the transaction generator, the dashboard and
//! transactions pages, RediSearch search, and the JSON API (plus the seed's `/transaction/*`).

pub mod generator;
pub mod model;
pub mod routes;
pub mod store;
pub mod view;

use std::sync::Arc;

use rocket::fairing::AdHoc;
use rocket::{Orbit, Rocket, routes};

use crate::config::Config;
use crate::error::Result;
use crate::redis::{Db, when_ready};
use generator::Generator;
use model::Account;

pub fn stage() -> AdHoc {
    AdHoc::on_ignite("Bank", |rocket| async {
        rocket
            .mount(
                "/",
                routes![
                    routes::dashboard,
                    routes::transactions_page,
                    routes::api_account,
                    routes::api_balance,
                    routes::api_spenders,
                    routes::api_transactions,
                    routes::api_search,
                    routes::seed_balance,
                    routes::seed_spenders,
                    routes::seed_transactions,
                    routes::seed_search,
                ],
            )
            .attach(AdHoc::on_liftoff("Accounts and generator", |rocket| Box::pin(liftoff(rocket))))
    })
}

async fn liftoff(rocket: &Rocket<Orbit>) {
    let (Some(db), Some(config)) = (rocket.state::<Db>(), rocket.state::<Config>()) else { return };
    let (setup_db, setup_config) = (db.clone(), config.clone());
    when_ready(rocket, "accounts", move || {
        let (db, config) = (setup_db.clone(), setup_config.clone());
        async move { setup(&db, &config).await }
    })
    .await;
    if config.generator_interval_ms == 0 {
        rocket::info!("generator: off (generator_interval_ms = 0)");
        return;
    }
    let generator = generator::vendors()
        .and_then(|vendors| Generator::new(db.clone(), config.clone(), Arc::new(vendors)));
    match generator {
        Ok(generator) => {
            tokio::spawn(generator.run(rocket.shutdown()));
        }
        Err(e) => rocket::error!("generator: not started: {e}"),
    }
}

/// The transaction index and one checking account per configured user (never resetting a balance).
async fn setup(db: &Db, config: &Config) -> Result<()> {
    store::ensure_index(db).await?;
    for (number, username, holder, city) in crate::demo::accounts(config) {
        let account = Account {
            number: number.into(),
            username: username.into(),
            holder: holder.into(),
            city: city.into(),
        };
        store::ensure_account(db, &account).await?;
    }
    Ok(())
}
