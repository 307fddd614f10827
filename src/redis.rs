//! Redis access: the connection pool (rocket_db_pools + deadpool_redis), the time bound on every
//! round trip, key naming, and the startup check for the JSON and Search modules.
//!
//! Every command goes through [`Db::run`], which bounds the wait for a pooled connection *and* the
//! command itself by `redis_timeout_ms`: a frozen or unreachable Redis turns into a fast 503, never
//! a hung request. Pooled connections re-check themselves (PING) when taken from the pool, so the
//! app reconnects by itself once Redis is back.

use std::future::Future;
use std::time::Duration;

use redis::{RedisResult, Value};
use rocket::fairing::AdHoc;
use rocket::{Build, Orbit, Rocket};
use rocket_db_pools::Database;
use rocket_db_pools::deadpool_redis::{Connection, Pool};

use crate::config::Config;
use crate::error::{Error, Result};

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

    pub fn timeout(&self) -> Duration {
        self.timeout
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

/// Every Redis key, channel and index name in one place, all under the configured prefix.
#[derive(Clone, Debug)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        Self { prefix: prefix.to_owned() }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// JSON user document.
    pub fn user(&self, username: &str) -> String {
        format!("{}user:{username}", self.prefix)
    }

    /// JSON session document; `id` is the hex SHA-256 of the token, never the token.
    pub fn session(&self, id: &str) -> String {
        format!("{}session:{id}", self.prefix)
    }

    /// Common prefix of session documents (the session index covers it).
    pub fn session_prefix(&self) -> String {
        format!("{}session:", self.prefix)
    }

    /// RediSearch index over session documents (TAG user, kind; NUMERIC created_at,
    /// last_seen_at). Versioned: a schema change gets a new name, and the old index is dropped.
    pub fn session_index(&self) -> String {
        format!("{}idx:session:2", self.prefix)
    }

    /// Earlier session index names, dropped at startup (their documents stay).
    pub fn legacy_session_indexes(&self) -> [String; 1] {
        [format!("{}idx:session", self.prefix)]
    }

    /// Failed logins against one account from all unknown clients (expires with the window).
    pub fn throttle_user(&self, username: &str) -> String {
        format!("{}throttle:user:{username}", self.prefix)
    }

    /// Failed logins against one account from one client address (IPv4, or IPv6 /64).
    pub fn throttle_client(&self, username: &str, group: &str) -> String {
        format!("{}throttle:client:{group}:{username}", self.prefix)
    }

    /// Failed logins from one client address, across accounts.
    pub fn throttle_ip(&self, group: &str) -> String {
        format!("{}throttle:ip:{group}", self.prefix)
    }

    /// Failed logins from one known device (by its token's SHA-256).
    pub fn throttle_device(&self, id: &str) -> String {
        format!("{}throttle:device:{id}", self.prefix)
    }

    /// A known device: SHA-256 of its token → the username it signed in as.
    pub fn device(&self, id: &str) -> String {
        format!("{}device:{id}", self.prefix)
    }

    // Everything written for one account shares the hash tag `{acct:<number>}`, so the atomic
    // transaction script touches a single Redis Cluster slot.

    /// Set of all account numbers (the generator's work list).
    pub fn accounts(&self) -> String {
        format!("{}accounts", self.prefix)
    }

    /// JSON account document (number, holder, city, username).
    pub fn account(&self, number: &str) -> String {
        format!("{}{{acct:{number}}}:account", self.prefix)
    }

    /// Balance in integer cents.
    pub fn balance(&self, number: &str) -> String {
        format!("{}{{acct:{number}}}:balance", self.prefix)
    }

    /// Stream of the account's transactions (balance history, recent list, SSE replay).
    pub fn stream(&self, number: &str) -> String {
        format!("{}{{acct:{number}}}:stream", self.prefix)
    }

    /// Sorted set of per-minute balances (score = minute start ms, member = `<ts>:<cents>`, the
    /// minute's last transaction): dense chart windows read ≤ 1,440 of these, not the stream.
    pub fn balance_minutes(&self, number: &str) -> String {
        format!("{}{{acct:{number}}}:minutes", self.prefix)
    }

    /// Sorted set: vendor → cents spent there.
    pub fn spenders(&self, number: &str) -> String {
        format!("{}{{acct:{number}}}:spenders", self.prefix)
    }

    /// JSON transaction document.
    pub fn transaction(&self, number: &str, id: u64) -> String {
        format!("{}tx:{{acct:{number}}}:{id}", self.prefix)
    }

    /// Common prefix of transaction documents (the transaction index covers it).
    pub fn transaction_prefix(&self) -> String {
        format!("{}tx:", self.prefix)
    }

    /// RediSearch index over transaction documents.
    pub fn transaction_index(&self) -> String {
        format!("{}idx:tx", self.prefix)
    }

    /// Pub/sub channel announcing the account's new transactions.
    pub fn events(&self, number: &str) -> String {
        format!("{}events:{{acct:{number}}}", self.prefix)
    }

    /// Pattern matching every account's channel (one subscription per app process).
    pub fn events_pattern(&self) -> String {
        format!("{}events:*", self.prefix)
    }

    /// Leader lock: only its holder runs the generator.
    pub fn generator_leader(&self) -> String {
        format!("{}generator:leader", self.prefix)
    }
}

/// Runs `step` once now (so the app is ready when it starts serving), then again in the background:
/// with capped backoff while Redis is not there, and every `repair_interval_secs` after that (each
/// step is idempotent and cheap when nothing is missing), so a Redis that lost its data (restarted
/// without persistence, flushed) is repaired without restarting the app.
pub async fn when_ready<F, Fut>(rocket: &Rocket<Orbit>, what: &'static str, mut step: F)
where
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
    let period =
        Duration::from_secs(rocket.state::<Config>().map_or(30, |c| c.repair_interval_secs));
    tokio::spawn(async move {
        let mut delay = Duration::from_millis(250);
        loop {
            let wait = if ok { period } else { delay };
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tokio::time::sleep(wait) => {}
            }
            let now_ok = step().await.is_ok();
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

/// The modules redbank needs: (name in `MODULE LIST`, product name for humans).
pub const REQUIRED_MODULES: [(&str, &str); 2] = [("ReJSON", "RedisJSON"), ("search", "RediSearch")];

/// Names (for humans) of the required modules the server lacks; empty when all are loaded.
pub async fn missing_modules(db: &Db) -> Result<Vec<&'static str>> {
    let modules: Vec<Vec<Value>> =
        db.run(async |c| redis::cmd("MODULE").arg("LIST").query_async(c).await).await?;
    let loaded: Vec<String> = modules
        .iter()
        .filter_map(|fields| {
            // Each module is a flat [key, value, …] list; take the value after "name".
            let pos = fields.iter().position(|v| value_text(v).as_deref() == Some("name"))?;
            fields.get(pos + 1).and_then(value_text)
        })
        .collect();
    Ok(REQUIRED_MODULES
        .iter()
        .filter(|(name, _)| !loaded.iter().any(|l| l == name))
        .map(|(_, human)| *human)
        .collect())
}

/// A reply element as text (bulk or status strings).
pub fn value_text(v: &Value) -> Option<String> {
    match v {
        Value::Data(bytes) => String::from_utf8(bytes.clone()).ok(),
        Value::Status(s) => Some(s.clone()),
        _ => None,
    }
}

/// `FT.CREATE <name> ON JSON PREFIX 1 <prefix> SCHEMA <schema…>`, where an existing index is fine.
pub async fn create_json_index(db: &Db, name: &str, prefix: &str, schema: &[&str]) -> Result<()> {
    let created: Result<String> = db
        .run(async |c| {
            redis::cmd("FT.CREATE")
                .arg(name)
                .arg(&["ON", "JSON", "PREFIX", "1"][..])
                .arg(prefix)
                .arg("SCHEMA")
                .arg(schema)
                .query_async(c)
                .await
        })
        .await;
    match created {
        Err(Error::Redis(e)) if e.to_string().contains("already exists") => Ok(()),
        other => other.map(|_| ()),
    }
}

/// True for RediSearch's "the index is not there" errors (e.g. after Redis lost its data).
pub fn is_missing_index(e: &Error) -> bool {
    match e {
        Error::Redis(e) => {
            let text = e.to_string().to_lowercase();
            // "Unknown index name" (FT.SEARCH), "Unknown: Index name" (FT.DROPINDEX).
            text.contains("no such index")
                || text.contains("unknown index")
                || text.contains("unknown: index")
        }
        _ => false,
    }
}

/// An `FT.SEARCH` reply over JSON documents — `[total, key, [field, value, …, "$", json], …]` —
/// as the total and the (key, document JSON) pairs. With SORTBY the sort key precedes `$`.
pub fn search_hits(reply: &[Value]) -> (usize, Vec<(String, String)>) {
    let total = match reply.first() {
        Some(Value::Int(n)) => usize::try_from(*n).unwrap_or(0),
        _ => 0,
    };
    let hits = reply
        .get(1..)
        .unwrap_or_default()
        .chunks(2)
        .filter_map(|pair| {
            let key = value_text(pair.first()?)?;
            let Value::Bulk(fields) = pair.get(1)? else { return None };
            let at = fields.iter().position(|f| value_text(f).as_deref() == Some("$"))?;
            Some((key, value_text(fields.get(at + 1)?)?))
        })
        .collect();
    (total, hits)
}

/// Pool (rocket_db_pools), [`Db`] state, and a startup check of the server's modules.
pub fn stage() -> AdHoc {
    AdHoc::on_ignite("Redis", |rocket| async {
        rocket.attach(Redis::init()).attach(AdHoc::try_on_ignite("Redis state", manage_db)).attach(
            AdHoc::on_liftoff("Redis module check", |rocket| Box::pin(check_modules(rocket))),
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

/// Logs clearly which module is missing. Redis being down at startup is not fatal: the app serves
/// 503s and recovers when Redis comes back.
async fn check_modules(rocket: &Rocket<Orbit>) {
    let Some(db) = rocket.state::<Db>() else { return };
    match missing_modules(db).await {
        Ok(missing) if missing.is_empty() => {
            rocket::info!("Redis: RedisJSON and RediSearch loaded")
        }
        Ok(missing) => rocket::error!(
            "Redis: required module(s) not loaded: {}. Start Redis with `scripts/redis start` \
             or use the redis:8 image.",
            missing.join(", ")
        ),
        Err(e) => rocket::warn!("Redis: not reachable at startup ({e}); serving 503 until it is"),
    }
}
