//! The sections of the configuration, one per concern: their keys (flat in `Rocket.toml`, renamed
//! where a section drops a prefix), their defaults and their own rules.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::money::Cents;

/// Redis: how long a round trip may take, Sentinel, replicas, repair.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct RedisConfig {
    /// Upper bound for one Redis round trip including the wait for a pooled connection: past it the
    /// request fails fast with 503 instead of hanging on a frozen or unreachable server.
    #[serde(rename = "redis_timeout_ms")]
    pub timeout_ms: u64,
    /// Redis Sentinel addresses (`host:port`). When set, the primary of `redis_master` is found
    /// through them (and found again after a failover) instead of `databases.redis.url`.
    #[serde(rename = "redis_sentinels")]
    pub sentinels: Vec<String>,
    /// The name the sentinels monitor the primary under.
    #[serde(rename = "redis_master")]
    pub master: String,
    /// Replicas that must have a money-moving write on disk (`WAITAOF`) before it is
    /// acknowledged; unset: 1 with sentinels, 0 with a single Redis. A write no replica confirmed
    /// in time is reported as pending, never as lost.
    pub min_replicas_ack: Option<u32>,
    /// Idempotent setup (indexes, demo users, accounts) is re-applied this often, repairing a Redis
    /// that lost its data.
    pub repair_interval_secs: u64,
}

/// Sessions: their lifetimes, the cookie, how many per user, how fresh a step-up must be.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct SessionConfig {
    /// A session dies after this long without activity (the key's TTL): 5 minutes, PSD2's limit
    /// for a signed-in payment service (RTS Art. 4(3)(d)). Pages warn a minute before.
    #[serde(rename = "session_idle_secs")]
    pub idle_secs: u64,
    /// A session dies this long after login, however busy it is.
    #[serde(rename = "session_absolute_secs")]
    pub absolute_secs: u64,
    /// A session's `last_seen_at` and TTL are refreshed at most this often (not on every request).
    #[serde(rename = "session_touch_secs")]
    pub touch_secs: u64,
    /// Mark the session cookie `Secure` and name it `__Host-redbank` (needs HTTPS, or localhost).
    pub cookie_secure: bool,
    /// Sessions per user; a new sign-in beyond it ends that user's least recently used session.
    #[serde(rename = "max_sessions_per_user")]
    pub max_per_user: usize,
    /// How recent a strong sign-in or step-up must be for a sensitive action (RFC 9470 `max_age`):
    /// a factor removed, new recovery codes, an operator's destructive console action.
    pub step_up_max_age_secs: u64,
}

/// Sign-in: the throttle's budgets, remembered devices, password hashing.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct SignInConfig {
    /// Failed logins per account from one client address (or from one known device) within the
    /// window before that client is soft-locked (429).
    #[serde(rename = "login_user_limit")]
    pub user_limit: u64,
    /// Failed logins per client address (IPv4, or IPv6 /64) within the window, across accounts.
    #[serde(rename = "login_ip_limit")]
    pub ip_limit: u64,
    /// Failed logins per account from all clients without its device token within the window:
    /// the bound on guesses against one account. Known devices are never locked by it.
    #[serde(rename = "login_account_limit")]
    pub account_limit: u64,
    /// Window of the failed-login counters.
    #[serde(rename = "login_window_secs")]
    pub window_secs: u64,
    /// A device that signed in is known (its failures counted apart from strangers') this long.
    pub device_trust_days: u64,
    /// Wrong second-factor codes (second step of a sign-in, step-up) per account within
    /// `login_window_secs`, from any device or address, before that step is locked (429; the
    /// owner is told by mail).
    pub second_factor_limit: u64,
    /// A login that would queue longer than this for a hashing slot gets 503 + `Retry-After` at once.
    #[serde(rename = "login_queue_max_ms")]
    pub queue_max_ms: u64,
    /// Concurrent argon2 computations.
    pub password_hash_concurrency: usize,
}

/// Mail: the server, the sender, the folder of the embedded default, the operator's address
/// (checked by the mail stage at ignite).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct MailConfig {
    /// The mail server (`smtps://host`, or `smtp://host:587?tls=required` for STARTTLS; user and
    /// password in the URL). Unset: every message is written as an `.eml` file in `mail_dir`.
    pub smtp_url: Option<String>,
    /// The sender of every message (`Name <address>` or a bare address).
    #[serde(rename = "mail_from")]
    pub from: String,
    /// Where messages are written when no `smtp_url` is set (created readable by its owner only).
    #[serde(rename = "mail_dir")]
    pub dir: PathBuf,
    /// The `admin` user's e-mail address (security notices go there).
    pub admin_email: Option<String>,
}

/// Accounts: the transaction generator and how long history is kept.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct BankConfig {
    /// Period of the transaction generator; 0 turns it off.
    pub generator_interval_ms: u64,
    /// Transaction documents expire this many days after they are written.
    pub transaction_retention_days: u64,
    /// Account streams keep at least this many hours of entries (trimmed with MINID).
    pub stream_retention_hours: u64,
    /// What an account a customer opens starts with, in cents. Unset: $1,000.00 while
    /// `demo_users` is on, nothing otherwise (a public sign-up must not hand out money).
    pub opening_balance_cents: Option<i64>,
    /// In demo mode, the accounts customers opened get generated transactions only while a
    /// dashboard or app streams them, at most this many accounts a tick (a public demo's
    /// sign-ups must not become unbounded load).
    pub generator_watched_max: usize,
}

/// Transfers: the daily limit, PSD2's low-value exemption, pending transfers.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct TransferConfig {
    /// Most a customer may send by transfer per UTC day.
    pub daily_transfer_limit: Cents,
    /// Transfers up to this need no strong confirmation (PSD2's low-value exemption), while at
    /// most `sca_exempt_count` of them and `sca_exempt_total` have been sent since the last
    /// confirmed one.
    #[serde(rename = "sca_exempt_amount")]
    pub exempt_amount: Cents,
    #[serde(rename = "sca_exempt_count")]
    pub exempt_count: u32,
    #[serde(rename = "sca_exempt_total")]
    pub exempt_total: Cents,
    /// Transfers one user may have waiting for their confirmation at once; the next start is a
    /// 409 until one is confirmed or expires.
    pub max_pending_transfers: usize,
    /// Fault injection (built only with the `fault-injection` feature, which the tests turn on):
    /// every transfer stops between its debit and its credit (as if the process died there),
    /// leaving the credit to the recovery task.
    #[cfg(feature = "fault-injection")]
    pub fault_after_debit: bool,
}

/// Live updates: server-sent events, their limits, the stream listener.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct LiveConfig {
    /// Server-sent events: a comment line this often; also when a stream re-checks its session.
    #[serde(rename = "sse_heartbeat_secs")]
    pub heartbeat_secs: u64,
    /// Reconnection delay the browser is told to use (the SSE `retry:` field).
    #[serde(rename = "sse_retry_ms")]
    pub retry_ms: u64,
    /// Open event streams per session beyond which `/events` answers 429.
    #[serde(rename = "sse_max_per_session")]
    pub max_per_session: usize,
    /// Open event streams per user (all their sessions) beyond which `/events` answers 429.
    #[serde(rename = "sse_max_per_user")]
    pub max_per_user: usize,
    /// Open event streams per client address (IPv4, or IPv6 /64) beyond which `/events` answers 429.
    #[serde(rename = "sse_max_per_address")]
    pub max_per_address: usize,
    /// Open event streams per process beyond which `/events` answers 503.
    #[serde(rename = "sse_max_streams")]
    pub max_streams: usize,
    /// Events buffered per account for slow clients; a client further behind is disconnected
    /// (it resumes with `Last-Event-ID`).
    #[serde(rename = "sse_queue")]
    pub queue: usize,
    /// Port of the stream listener, a lean second server for `GET /events` only (on `address`);
    /// 0 = off. Behind a proxy, route `/events` to it when many dashboards stay open.
    pub stream_port: u16,
}

/// The web side: where it is reached, static files, request ids, logs, metrics.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct WebConfig {
    /// The origin browsers reach redbank at (scheme, host, port): passkeys are bound to its
    /// host (the WebAuthn relying party id) and only accepted from exactly this origin.
    pub public_origin: String,
    /// Folder served under `/static`.
    pub static_dir: PathBuf,
    /// The header a trusted proxy puts its request id in (e.g. `X-Request-Id`); unset, every id
    /// is made here and a client's header is ignored.
    pub request_id_header: Option<String>,
    /// `text` (Rocket's format) or `json` (one object per line) for the binary's log.
    pub log_format: LogFormat,
    /// Port of the Prometheus metrics (`GET /metrics`, on `address`); 0 = off. Never the public
    /// port: metrics name routes and counts that are for operators only.
    pub metrics_port: u16,
}

/// How the binary writes its log (see `logging`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            timeout_ms: 500,
            sentinels: Vec::new(),
            master: "redbank".into(),
            min_replicas_ack: None,
            repair_interval_secs: 30,
        }
    }
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            idle_secs: 300,
            absolute_secs: 43_200,
            touch_secs: 60,
            cookie_secure: true,
            max_per_user: 20,
            step_up_max_age_secs: 300,
        }
    }
}

impl Default for SignInConfig {
    fn default() -> Self {
        SignInConfig {
            user_limit: 5,
            ip_limit: 50,
            account_limit: 20,
            window_secs: 900,
            device_trust_days: 90,
            second_factor_limit: 10,
            queue_max_ms: 3000,
            password_hash_concurrency: 2,
        }
    }
}

impl Default for MailConfig {
    fn default() -> Self {
        MailConfig {
            smtp_url: None,
            from: "redbank <no-reply@localhost>".into(),
            dir: PathBuf::from(".mail"),
            admin_email: None,
        }
    }
}

impl Default for BankConfig {
    fn default() -> Self {
        BankConfig {
            generator_interval_ms: 10_000,
            transaction_retention_days: 30,
            stream_retention_hours: 24,
            opening_balance_cents: None,
            generator_watched_max: 100,
        }
    }
}

impl Default for TransferConfig {
    fn default() -> Self {
        TransferConfig {
            daily_transfer_limit: Cents(1_000_000),
            exempt_amount: Cents(3_000),
            exempt_count: 5,
            exempt_total: Cents(10_000),
            max_pending_transfers: 5,
            #[cfg(feature = "fault-injection")]
            fault_after_debit: false,
        }
    }
}

impl Default for LiveConfig {
    fn default() -> Self {
        LiveConfig {
            heartbeat_secs: 15,
            retry_ms: 3000,
            max_per_session: 8,
            max_per_user: 16,
            max_per_address: 32,
            max_streams: 15_000,
            queue: 256,
            stream_port: 0,
        }
    }
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig {
            public_origin: "http://localhost:8080".into(),
            static_dir: PathBuf::from("static"),
            request_id_header: None,
            log_format: LogFormat::Text,
            metrics_port: 0,
        }
    }
}

impl RedisConfig {
    /// Replicas a money-moving write waits for (see `min_replicas_ack`).
    pub fn replicas_to_ack(&self) -> u32 {
        self.min_replicas_ack.unwrap_or(if self.sentinels.is_empty() { 0 } else { 1 })
    }

    pub fn validate(&self) -> Result<(), String> {
        let host_port = |a: &str| {
            a.rsplit_once(':').is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
        };
        if let Some(bad) = self.sentinels.iter().find(|a| !host_port(a)) {
            return Err(format!("redis_sentinels: {bad:?} is not host:port"));
        }
        if self.master.trim().is_empty() {
            return Err("redis_master must name the monitored primary".into());
        }
        if !(10..=10_000).contains(&self.timeout_ms) {
            return Err("redis_timeout_ms must be between 10 and 10000".into());
        }
        if self.repair_interval_secs == 0 {
            return Err("repair_interval_secs must be > 0".into());
        }
        Ok(())
    }
}

impl SessionConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.idle_secs == 0 {
            return Err("session_idle_secs must be > 0".into());
        }
        if self.absolute_secs < self.idle_secs {
            return Err("session_absolute_secs must be >= session_idle_secs".into());
        }
        if self.touch_secs >= self.idle_secs {
            return Err("session_touch_secs must be < session_idle_secs".into());
        }
        if self.max_per_user == 0 {
            return Err("max_sessions_per_user must be > 0".into());
        }
        if !(30..=3600).contains(&self.step_up_max_age_secs) {
            return Err("step_up_max_age_secs must be between 30 and 3600".into());
        }
        Ok(())
    }
}

impl SignInConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.user_limit == 0
            || self.ip_limit == 0
            || self.account_limit == 0
            || self.window_secs == 0
        {
            return Err("login_user_limit, login_ip_limit, login_account_limit and \
                        login_window_secs must be > 0"
                .into());
        }
        if self.device_trust_days == 0 || self.queue_max_ms == 0 {
            return Err("device_trust_days and login_queue_max_ms must be > 0".into());
        }
        if self.second_factor_limit == 0 {
            return Err("second_factor_limit must be > 0".into());
        }
        if self.password_hash_concurrency == 0 {
            return Err("password_hash_concurrency must be > 0".into());
        }
        Ok(())
    }
}

impl BankConfig {
    /// The oldest transaction date (ms) still shown at `now`: documents older than the retention
    /// have expired, and a copy elsewhere (an idle account's stream entry) must not outlive them.
    pub fn oldest_transaction(&self, now: i64) -> i64 {
        now - self.transaction_retention_ms()
    }

    /// How long a transaction document is kept, in ms.
    pub fn transaction_retention_ms(&self) -> i64 {
        self.transaction_retention_days as i64 * 86_400_000
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.transaction_retention_days == 0 {
            return Err("transaction_retention_days must be > 0".into());
        }
        if self.stream_retention_hours < 24 {
            return Err("stream_retention_hours must be >= 24".into());
        }
        if self.generator_interval_ms != 0 && self.generator_interval_ms < 10 {
            return Err("generator_interval_ms must be 0 (off) or >= 10".into());
        }
        Ok(())
    }
}

impl TransferConfig {
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=100).contains(&self.max_pending_transfers) {
            return Err("max_pending_transfers must be between 1 and 100".into());
        }
        if self.daily_transfer_limit.0 <= 0 || self.exempt_amount.0 < 0 {
            return Err("daily_transfer_limit must be > 0 and sca_exempt_amount >= 0".into());
        }
        Ok(())
    }

    /// Whether transfers stop between their debit and credit (fault injection, tests only).
    pub fn fault_after_debit(&self) -> bool {
        #[cfg(feature = "fault-injection")]
        return self.fault_after_debit;
        #[cfg(not(feature = "fault-injection"))]
        false
    }
}

impl LiveConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.heartbeat_secs == 0
            || self.max_streams == 0
            || self.max_per_session == 0
            || self.max_per_user == 0
            || self.max_per_address == 0
        {
            return Err("sse_heartbeat_secs, sse_max_streams, sse_max_per_session, \
                        sse_max_per_user and sse_max_per_address must be > 0"
                .into());
        }
        if self.queue < 8 {
            return Err("sse_queue must be >= 8".into());
        }
        Ok(())
    }
}
