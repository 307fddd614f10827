//! How the stages are wired: each feature's `stage()` takes what it needs from the stages attached
//! before it (see `lib.rs`) once, at ignite, and hands it to its own tasks. When something is
//! missing — the stages attached in another order — the launch stops with a message naming
//! both, instead of a task that silently never starts.

use std::future::Future;

use rocket::fairing::{self, AdHoc};
use rocket::{Build, Rocket};

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

/// The stage `name`, built at ignite by `build` with clones of the `A` and `B` that earlier
/// stages manage (for most features: the Redis handle and the configuration); without either
/// the launch stops, naming `name`.
pub fn with_both<A, B, F, Fut>(name: &'static str, build: F) -> AdHoc
where
    A: Clone + Send + Sync + 'static,
    B: Clone + Send + Sync + 'static,
    F: FnOnce(Rocket<Build>, A, B) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = fairing::Result> + Send + 'static,
{
    AdHoc::try_on_ignite(name, move |rocket| async move {
        match (needs::<A>(&rocket, name), needs::<B>(&rocket, name)) {
            (Some(a), Some(b)) => build(rocket, a, b).await,
            _ => Err(rocket),
        }
    })
}
