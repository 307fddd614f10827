//! Acknowledged means on disk: a money-moving write (a transfer's leg, a generated transaction)
//! is followed, on the connection that wrote it, by `WAITAOF`, and is reported done only once
//! Redis says its append-only file has it fsynced. `WAITAOF` answers for the writes of its own
//! connection (one that wrote nothing is answered at once), hence the same connection.
//!
//! What that costs depends on the server's `appendfsync`: under `always` Redis fsyncs before it
//! answers anything, so `WAITAOF` answers at once; under `everysec` it waits for the next fsync
//! (up to a second, ≈ 1 s at p50), and a connection waiting in Redis holds up whatever is queued
//! behind it — so these writes have connections of their own, and the startup check names the
//! setting in a warning. Without an append-only file nothing can be on disk, and under
//! `appendfsync no` the kernel decides when it is (`WAITAOF` never confirms a local fsync there):
//! the check says so and the writes stop waiting for a local fsync (replicas asked for by
//! `min_replicas_ack` are still waited for, by [`super::Db::replicated`]).

use std::sync::atomic::Ordering;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{ErrorKind, FromRedisValue, RedisError, RedisResult, Value};

use super::lua::Call;
use super::{Db, Slot};
use crate::error::{Error, Result};

/// Connections kept for durable writes.
pub(super) const CONNECTIONS: usize = 4;

/// What the server promises for a write it acknowledged, by `CONFIG GET appendonly appendfsync`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Fsync {
    /// Not learned yet (Redis unreachable at startup, or `CONFIG` not allowed): wait as under
    /// `always`, and learn from `WAITAOF`'s answer.
    Unknown = 0,
    /// `appendfsync always`: on disk before Redis answers.
    Always = 1,
    /// `appendfsync everysec`: on disk within about a second.
    EverySec = 2,
    /// `appendfsync no`: when the kernel writes it back (`WAITAOF` never confirms it, so
    /// nothing is waited for).
    No = 3,
    /// `appendonly no`: never on disk.
    Off = 4,
}

impl Fsync {
    fn from_u8(n: u8) -> Fsync {
        match n {
            1 => Fsync::Always,
            2 => Fsync::EverySec,
            3 => Fsync::No,
            4 => Fsync::Off,
            _ => Fsync::Unknown,
        }
    }

    /// From `CONFIG GET`'s values.
    pub fn of(appendonly: &str, appendfsync: &str) -> Fsync {
        match (appendonly, appendfsync) {
            ("no", _) => Fsync::Off,
            (_, "always") => Fsync::Always,
            (_, "everysec") => Fsync::EverySec,
            (_, "no") => Fsync::No,
            _ => Fsync::Unknown,
        }
    }

    /// Whether `WAITAOF` can confirm a local fsync here: not without an append-only file, and
    /// not under `appendfsync no` (the kernel's write-back is nothing Redis reports).
    pub fn confirms_locally(self) -> bool {
        !matches!(self, Fsync::Off | Fsync::No)
    }

    /// The operator's warning for this setting, if it deserves one.
    pub fn warning(self) -> Option<&'static str> {
        match self {
            Fsync::Always | Fsync::Unknown => None,
            Fsync::EverySec => Some(
                "Redis runs appendfsync everysec: every transfer and generated transaction waits \
                 up to a second for its fsync before it is acknowledged. Set appendfsync always \
                 (scripts/redis and docker-compose.yml do).",
            ),
            Fsync::No => Some(
                "Redis runs appendfsync no: an acknowledged transfer is on disk only when the \
                 kernel writes it back, and a power cut can lose it. Set appendfsync always.",
            ),
            Fsync::Off => Some(
                "Redis keeps no append-only file (appendonly no): an acknowledged transfer is in \
                 memory only, and a restart loses it. Set appendonly yes and appendfsync always.",
            ),
        }
    }
}

impl Db {
    /// What this server was last seen to promise.
    pub fn fsync(&self) -> Fsync {
        Fsync::from_u8(self.shared.fsync.load(Ordering::Acquire))
    }

    fn learn(&self, fsync: Fsync) {
        let before = self.shared.fsync.swap(fsync as u8, Ordering::AcqRel);
        if before != fsync as u8 {
            if let Some(warning) = fsync.warning() {
                rocket::warn!("{warning}");
            }
        }
    }

    /// Reads the server's persistence settings and warns about any that leaves an acknowledged
    /// write off the disk. Not fatal, as the module check: Redis may be down at startup.
    pub async fn check_fsync(&self) {
        let asked = self
            .query::<Vec<String>>(
                redis::cmd("CONFIG").arg("GET").arg("appendonly").arg("appendfsync"),
            )
            .await;
        match asked {
            Ok(pairs) => {
                let get = |name: &str| {
                    pairs.chunks(2).find(|p| p[0] == name).and_then(|p| p.get(1)).cloned()
                };
                let (aof, fsync) = (get("appendonly"), get("appendfsync"));
                let learned =
                    Fsync::of(aof.as_deref().unwrap_or(""), fsync.as_deref().unwrap_or(""));
                if learned == Fsync::Always {
                    rocket::info!("Redis: appendfsync always (acknowledged writes are on disk)");
                }
                self.learn(learned);
            }
            Err(e) => rocket::warn!("Redis: could not read its persistence settings ({e})"),
        }
    }

    /// Runs a money-moving script `call`, then `WAITAOF 1 0` on the same connection: `Ok` only
    /// once Redis has it in an fsynced append-only file. Not confirmed in time is
    /// [`Error::Unavailable`] — the write may well have happened (the caller's retry or recovery
    /// finds it: every such write is idempotent or checked), but it is not acknowledged.
    /// Without an append-only file, or under `appendfsync no`, there is nothing to wait for.
    ///
    /// The script and its `WAITAOF` go in one pipeline — one round trip, in that order on this
    /// connection — once the setting is known; a pipeline answers with its first error only, so
    /// while it is not (a `WAITAOF` refused for want of an append-only file must not hide the
    /// script's answer) they go one after the other.
    pub async fn run_durable<T: FromRedisValue>(&self, call: &Call<'_>) -> Result<T> {
        let fsync = self.fsync();
        let timeout_ms = self.timeout.as_millis() as u64;
        let slot = self.shared.durable_next.fetch_add(1, Ordering::Relaxed) % CONNECTIONS;
        // Under everysec the fsync is up to a second away: allow for it beyond the usual bound.
        let wait_ms = match fsync {
            Fsync::EverySec => timeout_ms + 1_100,
            _ => timeout_ms / 2,
        };
        let bound = Duration::from_millis(timeout_ms + wait_ms);
        let mut waitaof = redis::cmd("WAITAOF");
        waitaof.arg(1).arg(0).arg(wait_ms);
        let waited = self
            .run_on(Slot::Durable(slot), bound, async |c| match fsync {
                Fsync::No | Fsync::Off => Ok((eval(c, call).await?, Ok(1))),
                Fsync::Always | Fsync::EverySec => {
                    let mut pipe = redis::pipe();
                    pipe.add_command(call.evalsha()).add_command(waitaof);
                    let (out, (local, _)): (Value, (i64, i64)) = match pipe.query_async(c).await {
                        Err(e) if e.kind() == ErrorKind::NoScriptError => {
                            call.load(c).await?;
                            pipe.query_async(c).await?
                        }
                        reply => reply?,
                    };
                    Ok((out, Ok(local)))
                }
                Fsync::Unknown => {
                    let out = eval(c, call).await?;
                    let local = waitaof.query_async::<_, (i64, i64)>(c).await.map(|(l, _)| l);
                    Ok((out, local))
                }
            })
            .await;
        let out = match waited {
            Ok((out, Ok(local))) if local >= 1 => out,
            Ok((_, Ok(_))) => {
                return Err(Error::Unavailable(
                    "the write was not confirmed on disk in time".into(),
                ));
            }
            Ok((out, Err(e))) if no_aof(&e) => {
                // No append-only file (turned off since we looked, or never learned): the same
                // answer as had we known — nothing to wait for; say so once.
                self.learn(Fsync::Off);
                out
            }
            Ok((_, Err(e))) => {
                return Err(Error::Unavailable(format!("the write's fsync is unknown: {e}")));
            }
            // The append-only file was turned off since we looked: the script ran (a pipeline
            // answers with its first error), but its answer is lost behind the refused WAITAOF.
            // Not acknowledged; the caller's retry or recovery finds the write.
            Err(Error::Redis(e)) if no_aof(&e) => {
                self.learn(Fsync::Off);
                return Err(Error::Unavailable(format!("the write's fsync is unknown: {e}")));
            }
            Err(e) => return Err(e),
        };
        T::from_redis_value(&out).map_err(Error::from)
    }

    /// The durable connection of `slot`, made to the primary when missing.
    pub(super) async fn durable_connection(&self, slot: usize) -> Result<MultiplexedConnection> {
        let cached = self.shared.durable.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
            [slot]
            .clone();
        if let Some(conn) = cached {
            return Ok(conn);
        }
        let conn = self.fresh_connection().await?;
        self.shared.durable.lock().unwrap_or_else(std::sync::PoisonError::into_inner)[slot] =
            Some(conn.clone());
        Ok(conn)
    }
}

/// `call`'s `EVALSHA`, sending the script first when Redis does not have it.
async fn eval(c: &mut MultiplexedConnection, call: &Call<'_>) -> RedisResult<Value> {
    match call.evalsha().query_async(c).await {
        Err(e) if e.kind() == ErrorKind::NoScriptError => {
            call.load(c).await?;
            call.evalsha().query_async(c).await
        }
        reply => reply,
    }
}

/// `WAITAOF` refused: the server keeps no append-only file.
fn no_aof(e: &RedisError) -> bool {
    e.to_string().contains("appendonly is disabled")
}

#[cfg(test)]
mod tests {
    use super::Fsync;

    #[test]
    fn the_settings_name_what_an_acknowledgement_promises() {
        assert_eq!(Fsync::of("yes", "always"), Fsync::Always);
        assert_eq!(Fsync::of("yes", "everysec"), Fsync::EverySec);
        assert_eq!(Fsync::of("yes", "no"), Fsync::No);
        assert_eq!(Fsync::of("no", "always"), Fsync::Off);
        assert!(Fsync::Always.warning().is_none());
        assert!(Fsync::EverySec.warning().is_some_and(|w| w.contains("everysec")));
        assert!(Fsync::Off.warning().is_some_and(|w| w.contains("appendonly no")));
        for f in [Fsync::Unknown, Fsync::Always, Fsync::EverySec, Fsync::No, Fsync::Off] {
            assert_eq!(Fsync::from_u8(f as u8), f);
        }
        // What WAITAOF can confirm: an unknown setting is waited for as `always` would be.
        let waited: Vec<bool> =
            [Fsync::Unknown, Fsync::Always, Fsync::EverySec, Fsync::No, Fsync::Off]
                .map(Fsync::confirms_locally)
                .into();
        assert_eq!(waited, [true, true, true, false, false]);
    }
}
