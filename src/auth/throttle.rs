//! Login throttling that bounds guessing without letting a stranger lock the owner out
//! (docs/SECURITY.md C.15, F.30; OWASP's "device cookie" pattern).
//!
//! A client that signed in to an account before holds a device token for it (a cookie in the
//! browser, `device_token` in the mobile login body). Failed passwords are counted:
//! - from a **known device**: per device token only (`login_user_limit`) — strangers' failures never
//!   touch it, so the owner's own browsers and phones always get in;
//! - from **unknown clients**: per (account, client address) (`login_user_limit`), per client address
//!   across accounts (`login_ip_limit`), and per account across all unknown clients
//!   (`login_account_limit`). One address can therefore never lock the owner out of another
//!   address; only many addresses together can use up the account's budget for unknown clients,
//!   and even then known devices are unaffected.
//!
//! IPv6 clients are counted per /64 (one host usually owns a whole /64). Each counter is one
//! key, incremented and given its expiry in one script (no counter is ever left without a TTL,
//! which would be a lock that never ends), and a counter found without one is given one.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::audit::ClientInfo;
use crate::auth::model::DeviceToken;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::redis::doc::to_json;
use crate::redis::lua::lua;
use crate::redis::{Db, Keys};

/// `INCR` + expiry in one atomic step; the window starts at the first failure.
const COUNT_FAILURE: &str = include_str!("lua/count_failure.lua");

/// `INCR` + expiry like [`COUNT_FAILURE`], answering the count and the remaining window.
const RESERVE: &str = include_str!("lua/reserve.lua");

/// Gives back a reserved attempt that succeeded (never below zero, never re-creating a counter).
const REFUND: &str = include_str!("lua/refund.lua");

/// The count and remaining window of a counter; a counter without expiry is given one.
const READ_COUNTER: &str = include_str!("lua/read_counter.lua");

/// Counts one more action on `key` in the current minute (the minute starts at the first);
/// 429 + `Retry-After` once more than `limit` were counted. For actions that cost something to
/// start but are no guesses (WebAuthn ceremonies, transfers).
pub async fn per_minute(db: &Db, key: &str, limit: i64) -> Result<()> {
    per_window(db, key, limit, 60).await
}

/// [`per_minute`] over a window of `window_secs` (e-mails sent to one person).
pub async fn per_window(db: &Db, key: &str, limit: i64, window_secs: u64) -> Result<()> {
    let (count, ttl): (i64, i64) = db
        .query(
            redis::pipe()
                .atomic()
                .cmd("INCR")
                .arg(key)
                .cmd("EXPIRE")
                .arg(key)
                .arg(window_secs)
                .arg("NX")
                .ignore()
                .cmd("TTL")
                .arg(key),
        )
        .await?;
    if count > limit {
        return Err(crate::error::Error::TooManyRequests { retry_after: ttl.max(1) as u64 });
    }
    Ok(())
}

/// The username as it is looked up and counted: trimmed, lower-case, bounded (so any input maps
/// to a short key, and `" BOB "` is bob).
pub fn normalize_username(raw: &str) -> String {
    raw.trim().to_lowercase().chars().take(64).collect()
}

/// The address a client is counted under: IPv4 as is (IPv4-mapped IPv6 too), IPv6 per /64.
pub fn address_group(ip: &str) -> String {
    match ip.parse::<IpAddr>().map(|ip| ip.to_canonical()) {
        Ok(IpAddr::V4(v4)) => v4.to_string(),
        Ok(IpAddr::V6(v6)) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
        Err(_) => "unknown".into(),
    }
}

/// One failed-login counter and the count at which it locks.
#[derive(Debug, Clone)]
struct Counter {
    key: String,
    limit: u64,
    /// A successful login resets it (the per-client counters; never the account's budget).
    reset_on_success: bool,
}

/// The counters that apply to one login attempt.
#[derive(Debug, Clone)]
pub struct Counters(Vec<Counter>);

/// The longest wait of the counters `over` their limit, in seconds (`fallback` for a counter
/// without an expiry); None when none is.
fn longest_wait<'a>(
    over: impl Iterator<Item = (&'a Counter, u64, i64)>,
    fallback: u64,
) -> Option<u64> {
    over.map(|(_, _, ttl)| if ttl > 0 { (ttl as u64).div_ceil(1000) } else { fallback }).max()
}

impl Counters {
    /// From a known device of `username`: its own counter only. Otherwise the per-client,
    /// per-address and per-account counters.
    pub fn new(
        keys: &Keys,
        config: &Config,
        username: &str,
        ip: &str,
        device: Option<&DeviceToken>,
    ) -> Self {
        let counter = |key, limit, reset_on_success| Counter { key, limit, reset_on_success };
        if let Some(device) = device {
            return Counters(vec![counter(
                keys.throttle_device(&device.id()),
                config.sign_in.user_limit,
                true,
            )]);
        }
        let group = address_group(ip);
        Counters(vec![
            counter(keys.throttle_client(username, &group), config.sign_in.user_limit, true),
            counter(keys.throttle_ip(&group), config.sign_in.ip_limit, false),
            counter(keys.throttle_user(username), config.sign_in.account_limit, false),
        ])
    }

    /// The account's budget for second-factor codes (at the second step of a sign-in and for
    /// step-up): `second_factor_limit` per window, whatever device or address they come from.
    /// Whoever reaches that step knows the password already; locking it is acceptable, and the
    /// owner is told by mail.
    pub fn codes(keys: &Keys, config: &Config, username: &str) -> Self {
        let key = keys.throttle_codes(username);
        Counters(vec![Counter {
            key,
            limit: config.sign_in.second_factor_limit,
            reset_on_success: false,
        }])
    }

    /// Seconds until the caller may try again, when any counter is at its limit.
    pub async fn locked(&self, db: &Db, config: &Config) -> Result<Option<u64>> {
        let window = config.sign_in.window_secs;
        let counts = self.each(db, config, READ_COUNTER).await?;
        Ok(longest_wait(counts.filter(|(counter, count, _)| *count >= counter.limit), window))
    }

    /// Counts an attempt on every counter *before* it is checked (a one-time code costs nothing
    /// to check, so parallel guesses would otherwise all pass a check-then-count), answering the
    /// seconds to wait when it went over a limit. A correct attempt is given back ([`refund`]).
    ///
    /// [`refund`]: Counters::refund
    pub async fn reserve(&self, db: &Db, config: &Config) -> Result<Option<u64>> {
        let counts = self.each(db, config, RESERVE).await?;
        Ok(longest_wait(counts.filter(|(counter, count, _)| *count > counter.limit), 1))
    }

    /// Runs `script` on every counter in one round trip: each counter with its count and its
    /// milliseconds to live (as `PTTL` answers them).
    async fn each(
        &self,
        db: &Db,
        config: &Config,
        script: &str,
    ) -> Result<impl Iterator<Item = (&Counter, u64, i64)>> {
        let window_ms = config.sign_in.window_secs * 1000;
        let mut pipe = redis::pipe();
        for counter in &self.0 {
            pipe.cmd("EVAL").arg(script).arg(1).arg(&counter.key).arg(window_ms);
        }
        let replies: Vec<Vec<i64>> = db.query(&pipe).await?;
        Ok(self.0.iter().zip(replies).map(|(counter, reply)| match reply[..] {
            [count, ttl] => (counter, count.max(0) as u64, ttl),
            _ => (counter, 0, -2),
        }))
    }

    /// Gives back an attempt [`reserve`](Counters::reserve)d for a code that was right.
    pub async fn refund(&self, db: &Db) -> Result<()> {
        let mut pipe = redis::pipe();
        for counter in &self.0 {
            pipe.cmd("EVAL").arg(REFUND).arg(1).arg(&counter.key).ignore();
        }
        db.query(&pipe).await
    }

    /// Counts one failed attempt on every counter.
    pub async fn failed(&self, db: &Db, config: &Config) -> Result<()> {
        let window_ms = config.sign_in.window_secs * 1000;
        let mut pipe = redis::pipe();
        for counter in &self.0 {
            pipe.cmd("EVAL").arg(COUNT_FAILURE).arg(1).arg(&counter.key).arg(window_ms).ignore();
        }
        db.query(&pipe).await
    }

    /// A successful login clears the counters of this client (not the account's budget for
    /// unknown clients, which only the window resets).
    pub async fn succeeded(&self, db: &Db) -> Result<()> {
        let keys: Vec<&String> =
            self.0.iter().filter(|c| c.reset_on_success).map(|c| &c.key).collect();
        db.delete_each(&keys).await
    }
}

/// The first of `candidates` that is a live device token of `username` (one `HMGET` on the
/// user's devices; none without candidates).
pub async fn known_device(
    db: &Db,
    username: &str,
    candidates: Vec<DeviceToken>,
) -> Result<Option<DeviceToken>> {
    if candidates.is_empty() {
        return Ok(None);
    }
    let key = db.keys.devices(username);
    let ids: Vec<String> = candidates.iter().map(DeviceToken::id).collect();
    let found: Vec<Option<String>> = db.query(redis::cmd("HMGET").arg(&key).arg(&ids)).await?;
    Ok(candidates.into_iter().zip(found).find_map(|(device, doc)| doc.map(|_| device)))
}

/// Most devices remembered per user: the least recently used one beyond it is forgotten, so a
/// guesser cannot mint device tokens to multiply any budget (docs/SECURITY.md G.36).
pub const MAX_DEVICES: usize = 10;

/// A device as the user's devices list shows it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Device {
    /// ms since epoch.
    pub created_at: i64,
    pub last_used_at: i64,
    pub ip: String,
    pub user_agent: String,
}

/// After a successful sign-in: the device token to hand back — the known one, its lifetime
/// renewed, or a new one for this account.
pub async fn remember_device(
    db: &Db,
    config: &Config,
    username: &str,
    known: Option<DeviceToken>,
    client: &ClientInfo,
) -> Result<DeviceToken> {
    let device = known.unwrap_or_else(DeviceToken::generate);
    let key = db.keys.devices(username);
    let now = crate::clock::now_ms();
    let doc = Device {
        created_at: now,
        last_used_at: now,
        ip: client.ip.clone(),
        user_agent: client.user_agent.chars().take(256).collect(),
    };
    let json = to_json(&doc)?;
    let ttl = config.sign_in.device_trust_days * 86_400;
    let id = device.id();
    db.run(async |c| {
        lua!("auth/lua/remember")
            .key(&key)
            .arg(&id)
            .arg(&json)
            .arg(ttl)
            .arg(MAX_DEVICES)
            .invoke_async::<_, ()>(c)
            .await
    })
    .await?;
    Ok(device)
}

/// The user's remembered devices, most recently used first.
pub async fn devices(db: &Db, username: &str) -> Result<Vec<Device>> {
    let key = db.keys.devices(username);
    let all: Vec<(String, String)> = db.query(redis::cmd("HGETALL").arg(&key)).await?;
    let mut list: Vec<Device> =
        all.into_iter().filter_map(|(_, doc)| serde_json::from_str(&doc).ok()).collect();
    list.sort_by_key(|d| std::cmp::Reverse(d.last_used_at));
    Ok(list)
}

/// Forgets one device token of the user (a sign-in undone before it was handed out).
pub async fn forget_device(db: &Db, username: &str, device: &DeviceToken) -> Result<()> {
    let key = db.keys.devices(username);
    let id = device.id();
    db.query::<()>(redis::cmd("HDEL").arg(&key).arg(&id)).await
}

/// Forgets every device of the user: their next sign-ins count as strangers' (and are announced
/// as new). After "sign out everywhere", any change of factors, and "this wasn't me".
pub async fn forget_devices(db: &Db, username: &str) -> Result<()> {
    let key = db.keys.devices(username);
    db.query::<()>(redis::cmd("DEL").arg(&key)).await
}

/// The login throttle of one sign-in, kept until it completes (in the pre-auth state while a
/// second factor is owed): wrong codes are counted like wrong passwords, by the same counters.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Throttle {
    username: String,
    ip: String,
    /// The client's device token for this account, when it presented a live one.
    device: Option<String>,
}

impl Throttle {
    /// For `username` (normalized) from `ip`, with the device token the client holds, if any.
    pub async fn new(
        db: &Db,
        username: &str,
        ip: &str,
        devices: Vec<DeviceToken>,
    ) -> Result<Throttle> {
        let known = known_device(db, username, devices).await?;
        Ok(Throttle {
            username: username.to_owned(),
            ip: ip.to_owned(),
            device: known.map(|d| d.as_str().to_owned()),
        })
    }

    fn known(&self) -> Option<DeviceToken> {
        self.device.as_deref().and_then(DeviceToken::parse)
    }

    /// Whether the client presented a live device token for this account.
    pub fn from_known_device(&self) -> bool {
        self.device.is_some()
    }

    fn counters(&self, db: &Db, config: &Config) -> Counters {
        Counters::new(&db.keys, config, &self.username, &self.ip, self.known().as_ref())
    }

    /// `Err(TooManyRequests)` while any of this client's counters is at its limit.
    pub async fn check(&self, db: &Db, config: &Config) -> Result<()> {
        match self.counters(db, config).locked(db, config).await? {
            Some(retry_after) => Err(Error::TooManyRequests { retry_after }),
            None => Ok(()),
        }
    }

    /// Counts a one-time code before it is checked (`Err(TooManyRequests)` over a limit); a
    /// right one is given back with [`Throttle::refund`].
    pub async fn reserve(&self, db: &Db, config: &Config) -> Result<()> {
        match self.counters(db, config).reserve(db, config).await? {
            Some(retry_after) => Err(Error::TooManyRequests { retry_after }),
            None => Ok(()),
        }
    }

    /// Gives back a reserved attempt whose code was right.
    pub async fn refund(&self, db: &Db, config: &Config) -> Result<()> {
        self.counters(db, config).refund(db).await
    }

    /// Counts a wrong password or code.
    pub async fn failed(&self, db: &Db, config: &Config) -> Result<()> {
        self.counters(db, config).failed(db, config).await
    }

    /// Once the session exists: remembers this client's device and returns its token (the known
    /// one renewed, or a new one).
    pub(super) async fn remember(
        &self,
        db: &Db,
        config: &Config,
        client: &ClientInfo,
    ) -> Result<DeviceToken> {
        remember_device(db, config, &self.username, self.known(), client).await
    }

    /// Once the sign-in stands: clears this client's counters.
    pub(super) async fn succeeded(&self, db: &Db, config: &Config) -> Result<()> {
        self.counters(db, config).succeeded(db).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_grouped_per_ipv4_address_and_ipv6_64() {
        assert_eq!(address_group("10.1.2.3"), "10.1.2.3");
        assert_eq!(address_group("::ffff:10.1.2.3"), "10.1.2.3");
        assert_eq!(address_group("2001:db8:1:2::a"), "2001:db8:1:2::/64");
        assert_eq!(address_group("2001:db8:1:2:ffff::1"), "2001:db8:1:2::/64");
        assert_ne!(address_group("2001:db8:1:3::1"), address_group("2001:db8:1:2::1"));
        assert_eq!(address_group("unknown"), "unknown");
    }

    #[test]
    fn usernames_are_counted_as_they_are_looked_up() {
        assert_eq!(normalize_username(" BOB "), "bob");
        assert_eq!(normalize_username(&"x".repeat(500)).len(), 64);
    }
}
