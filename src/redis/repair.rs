//! The repair loop: idempotent setup steps re-run until Redis answers, then periodically.

use std::future::Future;
use std::time::Duration;

use rocket::{Orbit, Rocket};

use crate::error::Result;

/// Runs `step` once now (so the app is ready when it starts serving), then again in the background:
/// with capped backoff while Redis is not there, and every `period` after that (each
/// step is idempotent and cheap when nothing is missing), so a Redis that lost its data (restarted
/// without persistence, flushed) is repaired without restarting the app.
pub async fn when_ready<F, Fut>(
    rocket: &Rocket<Orbit>,
    period: Duration,
    what: &'static str,
    mut step: F,
) where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = Result<()>> + Send,
{
    let mut ok = match step().await {
        Ok(()) => true,
        Err(e) => {
            rocket::warn!("{what}: setup deferred until Redis answers ({e})");
            false
        }
    };
    let mut shutdown = rocket.shutdown();
    tokio::spawn(async move {
        let mut delay = Duration::from_millis(250);
        loop {
            let wait = if ok { period } else { delay };
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tokio::time::sleep(wait) => {}
            }
            let result = step().await;
            // Said once when it starts failing, not on every retry.
            if let (Err(e), true) = (&result, ok) {
                rocket::warn!("{what}: repair failed ({e}); retrying with backoff");
            }
            let now_ok = result.is_ok();
            if now_ok && !ok {
                rocket::info!("{what}: setup done");
            }
            delay = if now_ok {
                Duration::from_millis(250)
            } else {
                (delay * 2).min(Duration::from_secs(5))
            };
            ok = now_ok;
        }
    });
}
