//! How the stages are wired: each feature's `stage()` takes what it needs from the stages attached
//! before it (see `lib.rs`) once, at ignite, and hands it to its own tasks. When something is
//! missing — the stages attached in another order — the launch stops with a message naming
//! both, instead of a task that silently never starts.

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
