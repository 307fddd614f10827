//! Where the primary is: one fixed URL, or whichever server Redis Sentinel names now.
//!
//! With sentinels, the primary is asked for when a connection is made and remembered until a
//! call fails at the connection level or meets a `READONLY` reply (a demoted primary); then the
//! next connection asks again. Every sentinel is asked at once and the first good answer wins, so
//! one that is unreachable (a cut link hangs rather than refuses) costs nothing; one search runs at
//! a time (the others wait for its answer), bounded by ¾ of `redis_timeout_ms`. The answer is the redis crate's own: it takes the
//! master the sentinels agree is up and confirms it with `ROLE`. While no primary can be found (the
//! sentinels have not promoted one yet) the search is retried with a backoff, 100 ms doubling to
//! 500 ms: requests meanwhile fail fast with 503 instead of each asking every sentinel again.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use redis::sentinel::{Sentinel, SentinelNodeConnectionInfo};
use redis::{Client, IntoConnectionInfo, RedisResult};
use rocket::futures::future::{BoxFuture, FutureExt, select_ok};

pub enum Primary {
    Url(String),
    Sentinel(Box<Sentinels>),
}

/// The sentinels, one client each (so they are asked concurrently), and the primary last found.
pub struct Sentinels {
    each: Vec<tokio::sync::Mutex<Sentinel>>,
    master: String,
    node: SentinelNodeConnectionInfo,
    current: Mutex<Option<Client>>,
    /// One search at a time: the others wait for its answer instead of asking again.
    search: tokio::sync::Mutex<()>,
    /// A search gives up after this (a cut primary hangs the `ROLE` check; the caller's bound
    /// would drop the search before it could record its failure).
    timeout: Duration,
    /// After a failed search: not before this instant, and the next wait.
    backoff: Mutex<(Option<Instant>, Duration)>,
}

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_millis(500);

impl Primary {
    /// From the configuration: sentinels when any are named, else the URL.
    /// `timeout`: the most one search for the primary may take.
    pub fn new(
        url: Option<String>,
        sentinels: &[String],
        master: &str,
        timeout: Duration,
    ) -> RedisResult<Primary> {
        if sentinels.is_empty() {
            let url = url.unwrap_or_else(|| "redis://127.0.0.1:6379".into());
            return Ok(Primary::Url(url));
        }
        // Credentials and database for the data servers come from the URL when one is given.
        let node_info = match url {
            Some(url) => Some(url.into_connection_info()?.redis),
            None => None,
        };
        let each = sentinels
            .iter()
            .map(|addr| {
                Sentinel::build(vec![format!("redis://{addr}")]).map(tokio::sync::Mutex::new)
            })
            .collect::<RedisResult<Vec<_>>>()?;
        Ok(Primary::Sentinel(Box::new(Sentinels {
            each,
            master: master.to_owned(),
            node: SentinelNodeConnectionInfo { tls_mode: None, redis_connection_info: node_info },
            current: Mutex::new(None),
            search: tokio::sync::Mutex::new(()),
            timeout,
            backoff: Mutex::new((None, FIRST_BACKOFF)),
        })))
    }

    /// A client for the primary (unbounded in time: callers bound it).
    pub async fn client(&self) -> RedisResult<Client> {
        match self {
            Primary::Url(url) => Client::open(url.as_str()),
            Primary::Sentinel(s) => s.client().await,
        }
    }

    /// Forgets the primary found, so the next connection asks the sentinels again.
    pub fn forget(&self) {
        if let Primary::Sentinel(s) = self {
            *s.current.lock().unwrap_or_else(PoisonError::into_inner) = None;
        }
    }

    /// How the primary is found, for `/healthz`.
    pub fn via(&self) -> &'static str {
        match self {
            Primary::Url(_) => "url",
            Primary::Sentinel(_) => "sentinel",
        }
    }
}

impl Sentinels {
    fn found(&self) -> Option<Client> {
        self.current.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    async fn client(&self) -> RedisResult<Client> {
        if let Some(client) = self.found() {
            return Ok(client);
        }
        let _one = self.search.lock().await;
        // Found by the search this one waited for?
        if let Some(client) = self.found() {
            return Ok(client);
        }
        let not_before = self.backoff.lock().unwrap_or_else(PoisonError::into_inner).0;
        if not_before.is_some_and(|t| Instant::now() < t) {
            let fail = "no primary (the last search failed; retrying shortly)";
            return Err((redis::ErrorKind::MasterNameNotFoundBySentinel, fail).into());
        }
        let asks = self.each.iter().map(|sentinel| -> BoxFuture<'_, RedisResult<Client>> {
            async move {
                    sentinel.lock().await.async_master_for(&self.master, Some(&self.node)).await
                }
                .boxed()
        });
        let found = match tokio::time::timeout(self.timeout, select_ok(asks)).await {
            Ok(found) => found,
            Err(_) => Err((redis::ErrorKind::IoError, "no sentinel answered in time").into()),
        };
        let mut backoff = self.backoff.lock().unwrap_or_else(PoisonError::into_inner);
        match found {
            Ok((client, _)) => {
                *backoff = (None, FIRST_BACKOFF);
                *self.current.lock().unwrap_or_else(PoisonError::into_inner) = Some(client.clone());
                Ok(client)
            }
            Err(e) => {
                let wait = backoff.1;
                *backoff = (Some(Instant::now() + wait), (wait * 2).min(MAX_BACKOFF));
                Err(e)
            }
        }
    }
}
