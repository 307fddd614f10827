//! Redis pub/sub → in-process fan-out, for the accounts someone watches here.
//!
//! One dedicated subscriber connection per process (pooled connections cannot subscribe). Each
//! account has its own shard channel (`events:{acct:N}`, on the account's slot, published with
//! `SPUBLISH`), and the process subscribes to it while at least one of its streams shows that
//! account — from the first stream's open to the last one's end — so it receives the events of
//! its own viewers, not the whole bank's. Each message is decoded once and sent to that
//! account's broadcast channel; SSE streams listen there.
//!
//! Nothing is lost in between: a stream replays from the account stream when it opens, and when
//! Redis confirms a subscription every stream of that account catches up once more from the
//! last event it sent ([`Msg::Resync`]), which covers whatever was published before the
//! subscription took effect. Pub/sub is at-most-once and does not resubscribe by itself, so
//! after any failure the bridge reconnects with capped exponential backoff and subscribes again
//! to every watched account — each confirmation again a catch-up.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rocket::Shutdown;
use tokio::sync::{broadcast, mpsc};

use super::event::{Frame, Msg, Notice, SECURITY_PREFIX};
use super::subscriber::{Heard, Subscriber};
use crate::config::Config;
use crate::redis::Db;

/// Per-account broadcast channels plus the open-stream counters behind the SSE limits.
pub struct Hub {
    channels: Mutex<HashMap<String, Listeners>>,
    capacity: usize,
    open: AtomicUsize,
    holders: Mutex<Holders>,
    /// Tells the bridge which accounts to (un)subscribe, in the order the first stream of an
    /// account opened and its last one closed (sent under the `channels` lock).
    interest: mpsc::UnboundedSender<Interest>,
}

/// One account's listeners in this process.
struct Listeners {
    tx: broadcast::Sender<Msg>,
    streams: usize,
}

/// A change in what this process watches.
#[derive(Debug, PartialEq, Eq)]
pub enum Interest {
    Watch(String),
    Unwatch(String),
}

impl Hub {
    /// The hub, and the receiver of its interest changes for [`run`].
    pub fn new(capacity: usize) -> (Self, mpsc::UnboundedReceiver<Interest>) {
        let (interest, changes) = mpsc::unbounded_channel();
        let hub = Hub {
            channels: Mutex::new(HashMap::new()),
            capacity,
            open: AtomicUsize::new(0),
            holders: Mutex::new(Holders::default()),
            interest,
        };
        (hub, changes)
    }

    /// A listener to `account`'s events (listen before replaying, so nothing falls in between);
    /// the first one of an account subscribes this process to it, the last one's drop
    /// unsubscribes.
    pub fn subscribe(self: &Arc<Self>, account: &str) -> Subscription {
        let mut channels = self.channels.lock().unwrap_or_else(PoisonError::into_inner);
        let listeners = channels.entry(account.to_owned()).or_insert_with(|| {
            // Nobody reads the interest only when the bridge has ended (shutdown).
            let _ = self.interest.send(Interest::Watch(account.to_owned()));
            Listeners { tx: broadcast::channel(self.capacity).0, streams: 0 }
        });
        listeners.streams += 1;
        Subscription {
            rx: listeners.tx.subscribe(),
            hub: self.clone(),
            account: account.to_owned(),
        }
    }

    fn unsubscribe(&self, account: &str) {
        let mut channels = self.channels.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(listeners) = channels.get_mut(account) {
            listeners.streams -= 1;
            if listeners.streams == 0 {
                channels.remove(account);
                let _ = self.interest.send(Interest::Unwatch(account.to_owned()));
            }
        }
    }

    /// Sends to the account's listeners (if it has any here).
    pub fn publish(&self, account: &str, msg: Msg) {
        let channels = self.channels.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(listeners) = channels.get(account) {
            let _ = listeners.tx.send(msg);
        }
    }

    /// Tells the account's listeners to catch up from the account stream.
    pub fn resync(&self, account: &str) {
        self.publish(account, Msg::Resync);
    }

    /// The accounts watched here now.
    pub fn watched(&self) -> Vec<String> {
        self.channels.lock().unwrap_or_else(PoisonError::into_inner).keys().cloned().collect()
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

/// A stream's listener to its account's events; while any exists, the process is subscribed.
pub struct Subscription {
    rx: broadcast::Receiver<Msg>,
    hub: Arc<Hub>,
    account: String,
}

impl Subscription {
    pub async fn recv(&mut self) -> Result<Msg, broadcast::error::RecvError> {
        self.rx.recv().await
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub.unsubscribe(&self.account);
    }
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
pub async fn run(
    db: Db,
    hub: Arc<Hub>,
    mut interest: mpsc::UnboundedReceiver<Interest>,
    mut shutdown: Shutdown,
) {
    let metrics = db.metrics.clone();
    let mut backoff = Duration::from_millis(100);
    let mut connected_before = false;
    loop {
        let connect = async {
            let client = db.primary_client().await.map_err(|e| io::Error::other(e.to_string()))?;
            let info = client.get_connection_info().clone();
            Subscriber::connect(&info).await.map(|conn| (conn, info.addr))
        };
        let connected = tokio::select! {
            _ = &mut shutdown => return,
            r = tokio::time::timeout(Duration::from_secs(2), connect) => r,
        };
        match connected {
            Ok(Ok((mut conn, subscribed_to))) => {
                if std::mem::replace(&mut connected_before, true) {
                    metrics.bridge_reconnects.inc();
                    rocket::info!("live: subscriber reconnected after an outage");
                }
                match listen(&db, &hub, &mut interest, &mut conn, subscribed_to, &mut shutdown)
                    .await
                {
                    Ended::Shutdown => return,
                    Ended::Lost(why) => {
                        rocket::warn!("live: subscriber connection lost ({why}); reconnecting");
                        backoff = Duration::from_millis(100);
                    }
                }
            }
            Ok(Err(e)) => {
                rocket::warn!("live: subscriber cannot connect ({e}); retrying in {backoff:?}")
            }
            Err(_) => rocket::warn!("live: subscriber connect timed out; retrying in {backoff:?}"),
        }
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

enum Ended {
    Shutdown,
    Lost(String),
}

/// Most channels in one `SSUBSCRIBE` when subscribing again after a reconnect.
const BATCH: usize = 500;

/// Serves one connection: subscribes to every watched account, then follows the hub's interest
/// and hands each message to the hub, until the connection fails or `shutdown`.
async fn listen(
    db: &Db,
    hub: &Hub,
    interest: &mut mpsc::UnboundedReceiver<Interest>,
    conn: &mut Subscriber,
    subscribed_to: redis::ConnectionAddr,
    shutdown: &mut Shutdown,
) -> Ended {
    let metrics = &db.metrics;
    // What was asked while disconnected is in the hub's present set: take that instead. A
    // change queued after this read repeats part of it, which is harmless (a second SSUBSCRIBE
    // is a second catch-up; an SUNSUBSCRIBE of a channel not subscribed does nothing).
    while interest.try_recv().is_ok() {}
    // channel name → account, for the subscriptions asked of this connection.
    let mut accounts: HashMap<Vec<u8>, String> = HashMap::new();
    for batch in hub.watched().chunks(BATCH) {
        let mut cmd = redis::cmd("SSUBSCRIBE");
        for account in batch {
            let channel = db.keys.events(account);
            cmd.arg(&channel);
            accounts.insert(channel.into_bytes(), account.clone());
        }
        if let Err(e) = conn.send(&cmd).await {
            return Ended::Lost(e.to_string());
        }
    }
    // A cut link does not close a connection: it goes quiet. A PING each second, answered
    // within three, tells; with sentinels, the check also finds a failover (a new primary means
    // subscribing there).
    let mut check = tokio::time::interval(Duration::from_secs(1));
    let mut unanswered = 0u32;
    let watch = db.via() == "sentinel";
    loop {
        tokio::select! {
            _ = &mut *shutdown => return Ended::Shutdown,
            change = interest.recv() => {
                let (cmd, account) = match change {
                    Some(Interest::Watch(account)) => ("SSUBSCRIBE", account),
                    Some(Interest::Unwatch(account)) => ("SUNSUBSCRIBE", account),
                    None => return Ended::Shutdown,
                };
                let channel = db.keys.events(&account);
                if cmd == "SSUBSCRIBE" {
                    accounts.insert(channel.clone().into_bytes(), account);
                } else {
                    accounts.remove(channel.as_bytes());
                }
                if let Err(e) = conn.send(redis::cmd(cmd).arg(&channel)).await {
                    return Ended::Lost(e.to_string());
                }
            }
            _ = check.tick() => {
                if unanswered >= 3 {
                    return Ended::Lost("no answer to PING for 3 s".into());
                }
                unanswered += 1;
                if let Err(e) = conn.send(&redis::cmd("PING")).await {
                    return Ended::Lost(e.to_string());
                }
                if watch {
                    let _ = db.query::<()>(&redis::cmd("PING")).await;
                    match db.primary_client().await {
                        Ok(now) if now.get_connection_info().addr != subscribed_to => {
                            rocket::warn!("live: the primary moved to {}; resubscribing", now.get_connection_info().addr);
                            return Ended::Lost("failover".into());
                        }
                        _ => {}
                    }
                }
            }
            heard = conn.hear() => match heard {
                Ok(Heard::Message(_, payload)) => {
                    metrics.events_fanned_out.inc();
                    dispatch(hub, &payload);
                }
                // From now on its messages arrive; what came before is in the account stream.
                Ok(Heard::Subscribed(channel)) => {
                    if let Some(account) = accounts.get(&channel) {
                        hub.resync(account);
                    }
                }
                Ok(Heard::Pong) => unanswered = 0,
                Ok(Heard::Refused(e)) => rocket::warn!("live: Redis refused a subscription change: {e}"),
                Ok(Heard::Unsubscribed(_) | Heard::Other) => {}
                Err(e) => return Ended::Lost(e.to_string()),
            },
        }
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
