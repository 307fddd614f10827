//! redbank: mobile-banking authentication, sessions and a live account dashboard on Redis.
//!
//! This file only assembles the Rocket: configuration comes from `Rocket.toml` + environment
//! (see [`figment`]), and each feature contributes one `stage()` with its routes, state and fairings.

pub mod access;
pub mod account;
pub mod admin;
pub mod audit;
pub mod auth;
pub mod bank;
pub mod clock;
pub mod config;
pub mod error;
pub mod live;
pub mod logging;
pub mod mail;
pub mod metrics;
pub mod money;
pub mod openapi;
pub mod redis;
pub mod secret;
pub mod stage;
pub mod transfer;
pub mod web;

use rocket::figment::Figment;
use rocket::{Build, Rocket};

pub use config::Config;
pub use error::{Error, Result};

/// Rocket's own figment (`Rocket.toml`, `ROCKET_*`), plus the ecosystem's `REDIS_URL`, which wins
/// over the file so `REDIS_URL=redis://… scripts/run` does what it says.
pub fn figment() -> Figment {
    let figment = rocket::Config::figment();
    match std::env::var("REDIS_URL") {
        Ok(url) if !url.trim().is_empty() => figment.merge(("databases.redis.url", url)),
        _ => figment,
    }
}

/// The app as `scripts/run` starts it.
pub fn rocket() -> Rocket<Build> {
    build(figment())
}

/// The app on a given configuration: tests pass their own figment (Redis port, key prefix, timeouts).
pub fn build(figment: Figment) -> Rocket<Build> {
    rocket::custom(figment)
        .attach(config::stage())
        .attach(redis::stage())
        .attach(mail::stage())
        .attach(access::stage())
        .attach(web::metrics::stage(auth::store::sample_sessions))
        .attach(web::stage())
        .attach(auth::stage())
        .attach(auth::security::stage())
        .attach(account::stage())
        .attach(bank::stage())
        .attach(live::stage())
        .attach(transfer::stage())
        .attach(admin::stage())
        .attach(openapi::stage())
}
