//! Redis access: the connections (rocket_db_pools + deadpool_redis for one Redis, or the primary
//! Redis Sentinel names) and the time bound on every round trip. Key names, finding the primary,
//! the repair loop, the module check and RediSearch reply parsing live in the submodules, one job
//! each.
//!
//! Every command goes through [`Db::run`], which bounds the wait for a connection *and* the
//! command itself by `redis_timeout_ms`: a frozen or unreachable Redis turns into a fast 503, never
//! a hung request. It reuses a few shared multiplexed connections; one that fails or times out is
//! dropped, and the next call checks a fresh one out of the pool (which PINGs it, reconnecting if
//! needed), so the app recovers by itself once Redis is back.

pub mod doc;
mod durable;
mod keys;
mod lease;
pub mod lua;
mod modules;
mod primary;
mod repair;
mod search;
mod stream;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{FromRedisValue, RedisResult};
use rocket::fairing::{AdHoc, Fairing};
use rocket::{Build, Rocket};
use rocket_db_pools::Database;
use rocket_db_pools::deadpool_redis::{Connection, Pool};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::stage::needs;

pub use doc::As;
pub use durable::Fsync;
pub use keys::Keys;
pub use lease::Lease;
pub use modules::{REQUIRED_MODULES, missing_modules};
pub use primary::Primary;
pub use repair::when_ready;
pub use search::{create_json_index, is_missing_index, parse_stored, search_hits, value_text};
pub use stream::{StreamEntry, append_cmd};

/// The pool as rocket_db_pools builds it from `databases.redis` (url, max_connections,
/// connect_timeout) in the figment.
#[derive(Database)]
#[database("redis")]
pub struct Redis(Pool);

/// Bounded access to Redis plus this instance's key names; managed state, cheap to clone.
#[derive(Clone)]
pub struct Db {
    /// rocket_db_pools' pool for one Redis; `None` with sentinels (each connection is made to
    /// the primary they name).
    pool: Option<Pool>,
    primary: Arc<Primary>,
    timeout: Duration,
    pub keys: Keys,
    shared: Arc<Shared>,
    /// This process's metrics (every Redis round trip is timed here).
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Seals secrets stored here (TOTP secrets); without keys nothing can be sealed.
    pub sealer: Arc<crate::secret::SecretBox>,
}

/// Connections in use, taken from the pool once and shared: a multiplexed connection serves any
/// number of concurrent commands, while each checkout from the pool costs a round trip of its
/// own (deadpool-redis checks every connection it hands out with `UNWATCH` + `PING`) — half of
/// the Redis round trips of a typical request. When a call fails at the connection level or
/// times out, every shared connection is dropped (a restarted or unreachable Redis breaks them
/// all), and the next calls check fresh ones out of the pool (which reconnects).
#[derive(Default)]
struct Shared {
    slots: Mutex<[Option<Held>; SHARED_CONNECTIONS]>,
    next: AtomicUsize,
    /// The connections of money-moving writes ([`Db::run_durable`]): their `WAITAOF` may wait
    /// for an fsync, and a connection waiting in Redis holds up every command queued behind it,
    /// so sessions and pages never share one with them.
    durable: Mutex<[Option<MultiplexedConnection>; durable::CONNECTIONS]>,
    durable_next: AtomicUsize,
    /// What the server promises for an acknowledged write ([`Fsync`]), as last learned.
    fsync: std::sync::atomic::AtomicU8,
    /// Counts [`Db::forget_all`]: unchanged between a write and its `WAITAOF`, both went to the same
    /// server.
    generation: std::sync::atomic::AtomicU64,
}

/// A connection checked out of the pool and kept (so the pool hands a different one to the next
/// slot), with the handle calls clone.
struct Held {
    _pooled: Option<Connection>,
    conn: MultiplexedConnection,
}

/// Shared connections per process: a few sockets, so one connection's driver task is never
/// the bottleneck.
const SHARED_CONNECTIONS: usize = 16;

/// What [`Db::query`] sends: a command or a pipeline.
pub trait Query: Sync {
    fn send<T: FromRedisValue>(
        &self,
        c: &mut MultiplexedConnection,
    ) -> impl Future<Output = RedisResult<T>> + Send;
}

/// Both have `query_async`, but no trait of `redis` names it.
macro_rules! sent_as_they_are {
    ($($built:ty),*) => {$(
        impl Query for $built {
            fn send<T: FromRedisValue>(
                &self,
                c: &mut MultiplexedConnection,
            ) -> impl Future<Output = RedisResult<T>> + Send {
                self.query_async(c)
            }
        }
    )*};
}
sent_as_they_are!(redis::Cmd, redis::Pipeline);

/// Which connection a call runs on.
#[derive(Debug, Clone, Copy)]
enum Slot {
    Shared(usize),
    Durable(usize),
}

impl Db {
    /// Runs `f` on a connection; the whole thing (a pool checkout if needed + the commands) is
    /// bounded by `redis_timeout_ms`.
    pub async fn run<T>(
        &self,
        f: impl AsyncFnOnce(&mut MultiplexedConnection) -> RedisResult<T>,
    ) -> Result<T> {
        // Never more than the pool can give (a small pool must still leave room for checkouts).
        let slots = match &self.pool {
            Some(pool) => SHARED_CONNECTIONS.min(pool.status().max_size.saturating_sub(1)).max(1),
            None => SHARED_CONNECTIONS,
        };
        let slot = Slot::Shared(self.shared.next.fetch_add(1, Ordering::Relaxed) % slots);
        self.run_on(slot, self.timeout, f).await
    }

    /// Sends one command or pipeline (a `MULTI` transaction too), built with `redis`'s own
    /// builders, as [`Db::run`] does, and reads its reply as `T`: what most store functions need.
    pub async fn query<T: FromRedisValue>(&self, query: &impl Query) -> Result<T> {
        self.run(async |c| query.send(c).await).await
    }

    /// Deletes `keys` in one round trip, one `DEL` per key (not one multi-key `DEL`), so it stays
    /// valid on Redis Cluster whatever slots the keys hash to.
    pub async fn delete_each<K: redis::ToRedisArgs + Sync>(&self, keys: &[K]) -> Result<()> {
        let mut pipe = redis::pipe();
        for key in keys {
            pipe.cmd("DEL").arg(key).ignore();
        }
        self.query(&pipe).await
    }

    /// [`Db::run`] on the connection of `slot`, bounded by `bound`.
    async fn run_on<T>(
        &self,
        slot: Slot,
        bound: Duration,
        f: impl AsyncFnOnce(&mut MultiplexedConnection) -> RedisResult<T>,
    ) -> Result<T> {
        let started = std::time::Instant::now();
        let work = async {
            let mut conn = match slot {
                Slot::Shared(slot) => self.connection(slot).await?,
                Slot::Durable(slot) => self.durable_connection(slot).await?,
            };
            let result = f(&mut conn).await;
            if let Err(e) = &result {
                // A broken connection, or a primary that was demoted under it (`READONLY`):
                // connect afresh (with sentinels: to the primary they name now).
                if e.is_io_error()
                    || e.is_connection_dropped()
                    || e.is_connection_refusal()
                    || e.kind() == redis::ErrorKind::ReadOnly
                {
                    self.forget_all();
                }
            }
            result.map_err(Error::from)
        };
        let result = match tokio::time::timeout(bound, work).await {
            Ok(result) => result,
            Err(_) => {
                self.forget_all();
                Err(Error::Unavailable(format!("no answer within {bound:?}")))
            }
        };
        self.metrics.redis(started.elapsed(), result.is_err());
        result
    }

    /// The shared connection of `slot`, checked out of the pool (and so verified) when missing.
    async fn connection(&self, slot: usize) -> Result<MultiplexedConnection> {
        let cached = self.shared.slots.lock().unwrap_or_else(PoisonError::into_inner)[slot]
            .as_ref()
            .map(|held| held.conn.clone());
        if let Some(conn) = cached {
            return Ok(conn);
        }
        let held = match &self.pool {
            Some(pool) => {
                let pooled = pool.get().await?;
                Held { conn: MultiplexedConnection::clone(&pooled), _pooled: Some(pooled) }
            }
            None => Held { conn: self.fresh_connection().await?, _pooled: None },
        };
        let conn = held.conn.clone();
        self.shared.slots.lock().unwrap_or_else(PoisonError::into_inner)[slot] = Some(held);
        Ok(conn)
    }

    /// A new connection to the primary (with sentinels, the one they name now).
    async fn fresh_connection(&self) -> Result<MultiplexedConnection> {
        let connect = async {
            let client = self.primary.client().await?;
            client.get_multiplexed_async_connection().await
        };
        connect.await.map_err(|e| {
            // A primary that cannot be reached may have been replaced: ask again next time.
            self.forget_all();
            e.into()
        })
    }

    fn forget_all(&self) {
        let mut slots = self.shared.slots.lock().unwrap_or_else(PoisonError::into_inner);
        *slots = Default::default();
        *self.shared.durable.lock().unwrap_or_else(PoisonError::into_inner) = Default::default();
        self.shared.generation.fetch_add(1, Ordering::AcqRel);
        self.primary.forget();
    }

    /// Which connections are in use: take it before a write, hand it to [`Db::replicated`].
    pub fn generation(&self) -> u64 {
        self.shared.generation.load(Ordering::Acquire)
    }

    /// A client for the primary (the pub/sub bridge makes its own connection from it), found
    /// within `redis_timeout_ms`.
    pub async fn primary_client(&self) -> Result<redis::Client> {
        match tokio::time::timeout(self.timeout, self.primary.client()).await {
            Ok(client) => Ok(client?),
            Err(_) => Err(Error::Unavailable("no primary found in time".into())),
        }
    }

    /// Whether `min_replicas_ack` replicas have every write made since [`Db::generation`] was
    /// `since` (none to wait for: yes). Never an error: the write it is asked about has happened,
    /// so a `WAITAOF` that fails or times out means "not confirmed", logged.
    ///
    /// A probe write, then `WAITAOF`, on a connection of its own: a replica that has the probe has
    /// all that came before it on the primary (one replication stream, applied in order),
    /// whichever connection wrote it; and a `WAITAOF` that waits (replicas gone) holds up no other
    /// request, as it would on the shared connections. If the connections were dropped since the
    /// write (a failover may have begun), the probe could reach another server: not confirmed.
    /// At most half of `redis_timeout_ms` for the `WAITAOF`, `redis_timeout_ms` in all.
    pub async fn replicated(&self, config: &Config, since: u64) -> bool {
        let wanted = config.redis.replicas_to_ack();
        if wanted == 0 {
            return true;
        }
        if self.generation() != since {
            return false;
        }
        match self.wait_for_replicas(config, wanted).await {
            Ok(acked) => acked && self.generation() == since,
            Err(e) => {
                rocket::warn!("a write could not be confirmed by a replica: {e}");
                false
            }
        }
    }

    async fn wait_for_replicas(&self, config: &Config, wanted: u32) -> Result<bool> {
        let key = self.keys.replication_probe();
        let wait_ms = config.redis.timeout_ms / 2;
        // The probe is on disk here and on `wanted` replicas (`WAITAOF`: each replica needs an
        // append-only file of its own) — and so is every write before it.
        let local = u32::from(self.fsync().confirms_locally());
        let probe = async {
            let client = self.primary.client().await?;
            let mut conn = client.get_multiplexed_async_connection().await?;
            redis::cmd("SET")
                .arg(&key)
                .arg(crate::clock::now_ms())
                .arg("PX")
                .arg(60_000)
                .query_async::<_, ()>(&mut conn)
                .await?;
            // Asked only once the write is answered, not in the same pipeline: the replica then
            // has the write (and has fsynced it) before the primary's GETACK reaches it. Sent
            // together, it answers GETACK before its fsync, and the next answer comes with its
            // once-a-second ACK (measured: ≈ 985 ms instead of ≈ 0.7 ms).
            redis::cmd("WAITAOF")
                .arg(local)
                .arg(wanted)
                .arg(wait_ms)
                .query_async::<_, (u32, u32)>(&mut conn)
                .await
        };
        match tokio::time::timeout(self.timeout, probe).await {
            Ok(Ok((fsynced, acked))) => Ok(fsynced >= local && acked >= wanted),
            Ok(Err(e)) => Err(e.into()),
            Err(_) => Err(Error::Unavailable("no WAITAOF answer in time".into())),
        }
    }

    /// How the primary is found: `url` or `sentinel`.
    pub fn via(&self) -> &'static str {
        self.primary.via()
    }

    /// A `Db` outside Rocket (tools, benchmarks, tests): its own pool to `url`.
    pub fn connect(url: &str, key_prefix: &str, timeout: Duration) -> Result<Db> {
        use rocket_db_pools::deadpool_redis::{Config as PoolConfig, Runtime};
        let pool = PoolConfig::from_url(url)
            .create_pool(Some(Runtime::Tokio1))
            .map_err(|e| Error::Internal(format!("redis pool: {e}")))?;
        let primary = Primary::Url(url.to_owned());
        Ok(Db::new(Some(pool), primary, timeout, Keys::new(key_prefix)))
    }

    fn new(pool: Option<Pool>, primary: Primary, timeout: Duration, keys: Keys) -> Db {
        let (shared, metrics, primary) = (Arc::default(), Arc::default(), Arc::new(primary));
        let sealer = Arc::new(crate::secret::SecretBox::empty());
        Db { pool, primary, timeout, keys, shared, metrics, sealer }
    }

    /// This `Db` sealing with `sealer` (a tool's `Db` from [`Db::connect`] has no key).
    pub fn with_sealer(mut self, sealer: crate::secret::SecretBox) -> Db {
        self.sealer = Arc::new(sealer);
        self
    }
}

/// Connections (rocket_db_pools' pool for one Redis; none to set up with sentinels), [`Db`]
/// state, and a startup check of the server's modules.
pub fn stage() -> AdHoc {
    AdHoc::try_on_ignite("Redis", |rocket| async {
        let Some(config) = needs::<Config>(&rocket, "Redis") else { return Err(rocket) };
        if !config.redis.sentinels.is_empty() {
            return manage_db(rocket).await;
        }
        // rocket_db_pools' initializer, run here rather than attached: the pool and `Db` must
        // exist when the stages attached after this one ignite.
        let rocket = Redis::init().on_ignite(rocket).await?;
        let rocket = rocket.attach(AdHoc::on_shutdown("Redis pool", |rocket| {
            Box::pin(async move {
                if let Some(redis) = Redis::fetch(rocket) {
                    redis.close();
                }
            })
        }));
        manage_db(rocket).await
    })
}

async fn manage_db(rocket: Rocket<Build>) -> rocket::fairing::Result {
    let Some(config) = rocket.state::<Config>() else {
        rocket::error!("Redis: no configuration at ignite");
        return Err(rocket);
    };
    let url: Option<String> = rocket.figment().extract_inner("databases.redis.url").ok();
    // A search for the primary leaves room, within one request's bound, to connect to it.
    let search = Duration::from_millis(config.redis.timeout_ms * 3 / 4);
    let primary = match Primary::new(url, &config.redis.sentinels, &config.redis.master, search) {
        Ok(primary) => primary,
        Err(e) => {
            rocket::error!("Redis: {e}");
            return Err(rocket);
        }
    };
    let pool = match &primary {
        Primary::Url(_) => match Redis::fetch(&rocket) {
            Some(redis) => Some(redis.0.clone()),
            None => {
                rocket::error!("Redis pool missing at ignite");
                return Err(rocket);
            }
        },
        Primary::Sentinel(_) => None,
    };
    let sealer = match config.secret_box() {
        Ok(sealer) => sealer,
        Err(e) => {
            rocket::error!("configuration: {e}");
            return Err(rocket);
        }
    };
    if sealer.is_demo() {
        rocket::warn!("TOTP secrets are sealed with the public demo key: set totp_keys");
    }
    let db = Db::new(
        pool,
        primary,
        Duration::from_millis(config.redis.timeout_ms),
        Keys::new(&config.key_prefix),
    )
    .with_sealer(sealer);
    Ok(rocket.manage(db.clone()).attach(AdHoc::on_liftoff("Redis module check", |_| {
        Box::pin(async move { modules::check_modules(&db).await })
    })))
}
