//! The account side: accounts with balances in Redis, the transaction generator, the dashboard and
//! transactions pages, RediSearch search, and the JSON API (plus the seed's `/transaction/*`).

pub mod generator;
pub mod history;
pub mod model;
pub mod routes;
pub mod search;
pub mod store;
pub mod view;

use std::sync::Arc;
use std::time::Duration;

use rocket::fairing::AdHoc;
use rocket::{Orbit, Rocket, routes};

use crate::config::Config;
use crate::error::Result;
use crate::redis::{Db, when_ready};
use crate::stage;
use generator::Generator;
use model::Account;

pub fn stage() -> AdHoc {
    stage::with_both("Bank", |rocket, db: Db, config: Config| async move {
        // Built now, so a bad vendor list stops the launch instead of leaving no generator.
        let generator = match generator::vendors()
            .and_then(|vendors| Generator::new(db.clone(), config.clone(), Arc::new(vendors)))
        {
            Ok(generator) => generator,
            Err(e) => {
                rocket::error!("generator: {e}");
                return Err(rocket);
            }
        };
        Ok(rocket
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
            .attach(AdHoc::on_liftoff("Accounts and generator", |rocket| {
                Box::pin(liftoff(rocket, db, config, generator))
            })))
    })
}

async fn liftoff(rocket: &Rocket<Orbit>, db: Db, config: Config, generator: Generator) {
    let (setup_db, setup_config) = (db.clone(), config.clone());
    let period = Duration::from_secs(config.redis.repair_interval_secs);
    when_ready(rocket, period, "accounts", move || {
        let (db, config) = (setup_db.clone(), setup_config.clone());
        async move { setup(&db, &config).await }
    })
    .await;
    if config.bank.generator_interval_ms == 0 {
        rocket::info!("generator: off (generator_interval_ms = 0)");
        return;
    }
    tokio::spawn(generator.run(rocket.shutdown()));
}

/// The transaction index and one checking account per configured user (never resetting a balance).
async fn setup(db: &Db, config: &Config) -> Result<()> {
    search::ensure_index(db).await?;
    for (number, username, holder, city) in crate::auth::demo::accounts(config) {
        let account = Account {
            number: number.into(),
            username: username.into(),
            holder: holder.into(),
            city: city.into(),
            closed: false,
        };
        store::ensure_account(db, &account).await?;
    }
    Ok(())
}
