//! How the stages are wired: each feature's `stage()` takes what it needs from the stages attached
//! before it (see `lib.rs`) once, at ignite, and hands it to its own tasks. When something is
//! missing — the stages attached in another order — the launch stops with a message naming
//! both, instead of a task that silently never starts.

use std::future::Future;

use rocket::fairing::{self, AdHoc};
use rocket::{Build, Rocket};

use crate::config::Config;
use crate::redis::Db;

/// A clone of the `T` an earlier stage manages, for `stage`; None, after logging what is missing,
/// when there is none (the caller then fails the launch with `Err(rocket)`).
pub fn needs<T: Clone + Send + Sync + 'static>(rocket: &Rocket<Build>, stage: &str) -> Option<T> {
    let found = rocket.state::<T>().cloned();
    if found.is_none() {
        rocket::error!(
            "{stage}: needs {} from a stage attached before it (see lib.rs)",
            std::any::type_name::<T>()
        );
    }
    found
}

/// The stage `name` of a feature that keeps data: at ignite, `build` gets the rocket with the
/// Redis handle and the configuration the earlier stages manage; without either the launch
/// stops, naming `name`.
pub fn with_store<F, Fut>(name: &'static str, build: F) -> AdHoc
where
    F: FnOnce(Rocket<Build>, Db, Config) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = fairing::Result> + Send + 'static,
{
    AdHoc::try_on_ignite(name, move |rocket| async move {
        match (needs::<Db>(&rocket, name), needs::<Config>(&rocket, name)) {
            (Some(db), Some(config)) => build(rocket, db, config).await,
            _ => Err(rocket),
        }
    })
}
