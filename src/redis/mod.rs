//! Redis access: the connection pool (rocket_db_pools + deadpool_redis) and the time bound on
//! every round trip. Key names, the repair loop, the module check and RediSearch reply parsing
//! live in the submodules, one job each.
//!
//! Every command goes through [`Db::run`], which bounds the wait for a pooled connection *and* the
//! command itself by `redis_timeout_ms`: a frozen or unreachable Redis turns into a fast 503, never
//! a hung request. Pooled connections re-check themselves (PING) when taken from the pool, so the
//! app reconnects by itself once Redis is back.

mod keys;
mod modules;
mod repair;
mod search;

use std::time::Duration;

use redis::RedisResult;
use rocket::fairing::AdHoc;
use rocket::{Build, Rocket};
use rocket_db_pools::Database;
use rocket_db_pools::deadpool_redis::{Connection, Pool};

use crate::config::Config;
use crate::error::{Error, Result};

pub use keys::Keys;
pub use modules::{REQUIRED_MODULES, missing_modules};
pub use repair::when_ready;
pub use search::{create_json_index, is_missing_index, parse_stored, search_hits, value_text};

/// The pool as rocket_db_pools builds it from `databases.redis` (url, max_connections,
/// connect_timeout) in the figment.
#[derive(Database)]
#[database("redis")]
pub struct Redis(Pool);

/// Bounded access to Redis plus this instance's key names; managed state, cheap to clone.
#[derive(Clone)]
pub struct Db {
    pool: Pool,
    timeout: Duration,
    pub keys: Keys,
}

impl Db {
    /// Runs `f` on a pooled connection; the whole thing (wait for a connection + commands) is
    /// bounded by `redis_timeout_ms`.
    pub async fn run<T>(
        &self,
        f: impl AsyncFnOnce(&mut Connection) -> RedisResult<T>,
    ) -> Result<T> {
        let work = async {
            let mut conn = self.pool.get().await?;
            f(&mut conn).await.map_err(Error::from)
        };
        match tokio::time::timeout(self.timeout, work).await {
            Ok(result) => result,
            Err(_) => Err(Error::Unavailable(format!("no answer within {:?}", self.timeout))),
        }
    }

    /// A `Db` outside Rocket (tools, benchmarks, tests): its own pool to `url`.
    pub fn connect(url: &str, key_prefix: &str, timeout: Duration) -> Result<Db> {
        use rocket_db_pools::deadpool_redis::{Config as PoolConfig, Runtime};
        let pool = PoolConfig::from_url(url)
            .create_pool(Some(Runtime::Tokio1))
            .map_err(|e| Error::Internal(format!("redis pool: {e}")))?;
        Ok(Db { pool, timeout, keys: Keys::new(key_prefix) })
    }
}

/// Pool (rocket_db_pools), [`Db`] state, and a startup check of the server's modules.
pub fn stage() -> AdHoc {
    AdHoc::on_ignite("Redis", |rocket| async {
        rocket.attach(Redis::init()).attach(AdHoc::try_on_ignite("Redis state", manage_db)).attach(
            AdHoc::on_liftoff("Redis module check", |rocket| {
                Box::pin(modules::check_modules(rocket))
            }),
        )
    })
}

async fn manage_db(rocket: Rocket<Build>) -> rocket::fairing::Result {
    let (Some(redis), Some(config)) = (Redis::fetch(&rocket), rocket.state::<Config>()) else {
        rocket::error!("Redis pool or config missing at ignite");
        return Err(rocket);
    };
    let db = Db {
        pool: redis.0.clone(),
        timeout: Duration::from_millis(config.redis_timeout_ms),
        keys: Keys::new(&config.key_prefix),
    };
    Ok(rocket.manage(db))
}
