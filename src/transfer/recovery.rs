//! Completes transfers a request left half done (the process stopped, or Redis failed at that
//! moment): a confirmed transfer never debited is carried out (or marked failed when the balance no
//! longer allows it), and every owed credit of every account is applied — once, by the payee-side
//! marker — and the transfer completed. Runs at start and then every
//! `repair_interval_secs`, on one instance at a time (a leader lease, as the generator's).

use std::time::Duration;

use rocket::Shutdown;

use super::{ledger, service};
use crate::bank::store as bank;
use crate::clock::now_ms;
use crate::config::Config;
use crate::error::Result;
use crate::redis::{Db, Lease};

/// A transfer left `executing` this long is taken over (the request carrying it out has had
/// ample time).
const STALE_MS: i64 = 10_000;

/// Carries out every transfer left `executing` and applies every owed credit; how many were
/// completed. One that fails is logged and left for the next round; the others go on.
pub async fn run_once(db: &Db, config: &Config) -> Result<usize> {
    let mut done = 0;
    for account in bank::all_account_numbers(db).await? {
        let stale = now_ms() - STALE_MS;
        for id in service::executing_before(db, &account, stale).await? {
            match service::resume(db, config, &account, &id).await {
                Ok(true) => done += 1,
                Ok(false) => {}
                Err(e) => rocket::warn!("transfers: transfer {id} of {account} not resumed: {e}"),
            }
        }
        for owed in ledger::owed_by(db, &account).await? {
            match ledger::credit(db, config, &owed).await {
                Ok(_) => done += 1,
                Err(e) => {
                    rocket::warn!("transfers: credit of {} not applied yet: {e}", owed.transfer)
                }
            }
        }
    }
    Ok(done)
}

/// Runs until `shutdown`, under the recovery lease.
pub async fn run(db: Db, config: Config, mut shutdown: Shutdown) {
    let period = Duration::from_secs(config.redis.repair_interval_secs);
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let lease = Lease::new(db.keys.transfer_recovery_leader());
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = ticker.tick() => {}
        }
        let ttl = (period * 3).max(Duration::from_secs(1));
        if !matches!(lease.hold(&db, ttl).await, Ok(true)) {
            continue;
        }
        match run_once(&db, &config).await {
            Ok(0) => {}
            Ok(n) => rocket::info!("transfers: completed {n} credit(s) left owed"),
            Err(e) => rocket::warn!("transfers: recovery failed, retrying next round: {e}"),
        }
    }
    lease.release(&db).await;
}
