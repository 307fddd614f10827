//! Redis pub/sub → in-process fan-out.
//!
//! One dedicated pub/sub connection per process (pooled connections cannot subscribe), one pattern
//! subscription for every account channel. Each message is decoded once and sent to that account's
//! broadcast channel; SSE streams subscribe there. Pub/sub is at-most-once and does not resubscribe
//! by itself, so after any failure the bridge reconnects with capped exponential backoff,
//! resubscribes, and tells every stream to catch up from the account stream ([`Msg::Resync`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rocket::Shutdown;
use rocket::futures::StreamExt;
use tokio::sync::broadcast;

use super::event::{Frame, Msg, Notice, SECURITY_PREFIX};
use crate::config::Config;
use crate::redis::Db;

/// Per-account broadcast channels plus the open-stream counters behind the SSE limits.
pub struct Hub {
    channels: Mutex<HashMap<String, broadcast::Sender<Msg>>>,
    capacity: usize,
    open: AtomicUsize,
    holders: Mutex<Holders>,
}

impl Hub {
    pub fn new(capacity: usize) -> Self {
        Hub {
            channels: Mutex::new(HashMap::new()),
            capacity,
            open: AtomicUsize::new(0),
            holders: Mutex::new(Holders::default()),
        }
    }

    /// A receiver for `account`'s events (subscribe before replaying, so nothing falls in between).
    pub fn subscribe(&self, account: &str) -> broadcast::Receiver<Msg> {
        let mut channels = self.channels.lock().unwrap_or_else(PoisonError::into_inner);
        channels
            .entry(account.to_owned())
            .or_insert_with(|| broadcast::channel(self.capacity).0)
            .subscribe()
    }

    /// Sends to the account's listeners; a channel nobody listens to any more is dropped.
    pub fn publish(&self, account: &str, msg: Msg) {
        let mut channels = self.channels.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(tx) = channels.get(account) {
            if tx.send(msg).is_err() {
                channels.remove(account);
            }
        }
    }

    fn resync_all(&self) {
        let mut channels = self.channels.lock().unwrap_or_else(PoisonError::into_inner);
        channels.retain(|_, tx| tx.send(Msg::Resync).is_ok());
    }

    /// Takes a stream slot for `owner` under the limits of `config`, or says which one is hit.
    pub fn open_stream(
        self: &Arc<Self>,
        owner: Owner<'_>,
        config: &Config,
    ) -> Result<StreamSlot, Limit> {
        let mut holders = self.holders.lock().unwrap_or_else(PoisonError::into_inner);
        let count = |map: &Counts, key: &str| map.get(key).map_or(0, |(_, n)| *n);
        if count(&holders.sessions, owner.session) >= config.live.max_per_session {
            return Err(Limit::Session);
        }
        if count(&holders.users, owner.user) >= config.live.max_per_user {
            return Err(Limit::User);
        }
        if count(&holders.addresses, owner.address) >= config.live.max_per_address {
            return Err(Limit::Address);
        }
        if self.open.fetch_add(1, Ordering::AcqRel) >= config.live.max_streams {
            self.open.fetch_sub(1, Ordering::AcqRel);
            return Err(Limit::Global);
        }
        let Holders { sessions, users, addresses } = &mut *holders;
        Ok(StreamSlot {
            hub: self.clone(),
            keys: [
                take(sessions, owner.session),
                take(users, owner.user),
                take(addresses, owner.address),
            ],
        })
    }
}

/// Counts one more stream under `key`; returns the map's shared copy of the key, so 10,000
/// streams of one user hold one copy of its name, not 10,000.
fn take(map: &mut Counts, key: &str) -> Arc<str> {
    let (shared, n) = map.entry(key.to_owned()).or_insert_with(|| (Arc::from(key), 0));
    *n += 1;
    shared.clone()
}

/// Open streams per key, with the key's shared copy.
type Counts = HashMap<String, (Arc<str>, usize)>;

/// Who opens a stream: the keys of the per-session, per-user and per-address limits.
#[derive(Debug, Clone, Copy)]
pub struct Owner<'a> {
    pub session: &'a str,
    pub user: &'a str,
    /// The client address group (IPv4 address, or IPv6 /64).
    pub address: &'a str,
}

/// Open streams per session, per user and per client address.
#[derive(Debug, Default)]
struct Holders {
    sessions: Counts,
    users: Counts,
    addresses: Counts,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Session,
    User,
    Address,
    Global,
}

/// An open stream's place in the limits; given back when the stream ends (dropped).
pub struct StreamSlot {
    hub: Arc<Hub>,
    /// Session, user and address, in that order.
    keys: [Arc<str>; 3],
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.hub.open.fetch_sub(1, Ordering::AcqRel);
        let mut holders = self.hub.holders.lock().unwrap_or_else(PoisonError::into_inner);
        let Holders { sessions, users, addresses } = &mut *holders;
        for (map, key) in [sessions, users, addresses].into_iter().zip(&self.keys) {
            if let Some((_, n)) = map.get_mut(&**key) {
                *n -= 1;
                if *n == 0 {
                    map.remove(&**key);
                }
            }
        }
    }
}

/// Runs the bridge until `shutdown`. Each (re)connection goes to the primary as it is then (with
/// sentinels, the one they name after a failover).
pub async fn run(db: Db, pattern: String, hub: Arc<Hub>, mut shutdown: Shutdown) {
    let metrics = db.metrics.clone();
    let mut backoff = Duration::from_millis(100);
    let mut subscribed_before = false;
    loop {
        let connect = async {
            let client = db.primary_client().await.map_err(|e| {
                redis::RedisError::from((redis::ErrorKind::IoError, "no primary", e.to_string()))
            })?;
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.psubscribe(&pattern).await?;
            Ok::<_, redis::RedisError>((pubsub, client.get_connection_info().addr.clone()))
        };
        let pubsub = tokio::select! {
            _ = &mut shutdown => return,
            r = tokio::time::timeout(Duration::from_secs(2), connect) => r,
        };
        match pubsub {
            Ok(Ok((pubsub, subscribed_to))) => {
                if std::mem::replace(&mut subscribed_before, true) {
                    metrics.bridge_reconnects.inc();
                    rocket::info!("live: resubscribed to {pattern} after an outage");
                }
                backoff = Duration::from_millis(100);
                // Anything published while we were away is in the account streams: catch up.
                hub.resync_all();
                let mut messages = pubsub.into_on_message();
                // A cut link does not close a subscription: it goes quiet. With sentinels, a
                // PING each second through the command connections finds a failover (their
                // failure makes the next connection ask the sentinels), and a new primary means
                // subscribing there.
                let mut check = tokio::time::interval(Duration::from_secs(1));
                let watch = db.via() == "sentinel";
                loop {
                    tokio::select! {
                        _ = &mut shutdown => return,
                        _ = check.tick(), if watch => {
                            let ping = db.run(async |c| redis::cmd("PING").query_async::<_, ()>(c).await);
                            let _ = ping.await;
                            match db.primary_client().await {
                                Ok(now) if now.get_connection_info().addr != subscribed_to => {
                                    rocket::warn!("live: the primary moved to {}; resubscribing", now.get_connection_info().addr);
                                    break;
                                }
                                _ => {}
                            }
                        }
                        msg = messages.next() => match msg {
                            Some(msg) => {
                                metrics.events_fanned_out.inc();
                                dispatch(&hub, msg.get_payload_bytes())
                            }
                            None => break,
                        },
                    }
                }
                rocket::warn!("live: pub/sub connection lost; reconnecting");
            }
            Ok(Err(e)) => rocket::warn!("live: subscribe failed ({e}); retrying in {backoff:?}"),
            Err(_) => rocket::warn!("live: subscribe timed out; retrying in {backoff:?}"),
        }
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

fn dispatch(hub: &Hub, payload: &[u8]) {
    let Ok(text) = std::str::from_utf8(payload) else { return };
    if let Some(notice) = text.strip_prefix(SECURITY_PREFIX) {
        match Notice::from_published(notice) {
            Ok(notice) => {
                let account = notice.account.clone();
                hub.publish(&account, Msg::Security(Arc::new(notice)));
            }
            Err(e) => rocket::warn!("live: {e}"),
        }
        return;
    }
    match Frame::from_published(text) {
        Ok(frame) => {
            let account = frame.account.clone();
            hub.publish(&account, Msg::Event(Arc::new(frame)));
        }
        Err(e) => rocket::warn!("live: {e}"),
    }
}
