//! Password hashing with argon2id (OWASP parameters: m = 19 MiB, t = 2, p = 1).
//!
//! Hashing is CPU- and memory-heavy by design, so it runs on the blocking pool behind a small
//! semaphore: a login storm queues here instead of starving the async workers that serve everything
//! else. Each computation needs 19 MiB of working memory; we keep one buffer per permit and reuse it,
//! because allocating it per login leaves every blocking thread's malloc arena holding its own
//! 19 MiB (measured: +350 MiB RSS after 50 logins). Unknown users are verified against a dummy hash
//! so they cost the same time as wrong passwords.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use tokio::sync::Semaphore;

use crate::error::{Error, Result};

/// Longest password we hash (bytes); longer input is rejected, never silently truncated.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Largest working memory a stored hash may ask for (256 MiB), so a bad record cannot exhaust RAM.
const MAX_BLOCKS: usize = 256 * 1024;

fn params() -> Params {
    Params::new(19 * 1024, 2, 1, Some(32)).unwrap_or_default()
}

/// Managed state: the hashing lanes, reusable working memory, a dummy hash, and a counter of hash
/// computations (observable by tests and metrics, e.g. to prove a throttled login computed nothing).
pub struct Passwords {
    /// Every hash and every sign-in from an unknown client.
    general: Lane,
    /// One slot kept for sign-ins from known devices (see `throttle`), so a flood of strangers'
    /// guesses filling the general queue cannot keep the owner out either.
    known: Lane,
    buffers: Arc<Mutex<Vec<Vec<Block>>>>,
    computed: AtomicU64,
    /// Running average of one computation (µs): with a lane's waiting logins, it estimates how
    /// long a new login would queue.
    average_us: Arc<AtomicU64>,
    dummy_hash: String,
}

/// A queue of hashing slots.
struct Lane {
    permits: Arc<Semaphore>,
    size: usize,
    /// Logins waiting for a slot of this lane.
    waiting: AtomicUsize,
}

impl Lane {
    fn new(size: usize) -> Self {
        Lane { permits: Arc::new(Semaphore::new(size)), size, waiting: AtomicUsize::new(0) }
    }

    async fn slot(&self) -> Result<HashSlot> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Error::Internal("password semaphore closed".into()))?;
        Ok(HashSlot { _permit: permit })
    }
}

impl Passwords {
    pub fn new(concurrency: usize) -> Result<Self> {
        let mut memory = Vec::new();
        let started = Instant::now();
        let dummy_hash = hash_with(&mut memory, "redbank dummy password, never valid")?;
        let first_us = started.elapsed().as_micros() as u64;
        Ok(Passwords {
            general: Lane::new(concurrency.max(1)),
            known: Lane::new(1),
            buffers: Arc::new(Mutex::new(vec![memory])),
            computed: AtomicU64::new(0),
            average_us: Arc::new(AtomicU64::new(first_us.max(1))),
            dummy_hash,
        })
    }

    /// A hashing slot for a sign-in (from the known-device lane when `known_device`), unless the
    /// queue ahead would take longer than `max_wait`: then [`Error::Overloaded`] at once (503 +
    /// `Retry-After`), so a login storm sheds load instead of queueing without limit. The estimate
    /// is the logins already waiting times the average computation time, divided by the lane's
    /// slots; the wait itself is bounded too.
    pub async fn login_slot(&self, max_wait: Duration, known_device: bool) -> Result<HashSlot> {
        let lane = if known_device { &self.known } else { &self.general };
        let average = Duration::from_micros(self.average_us.load(Ordering::Relaxed));
        let queued = |ahead: usize| average * (ahead + 1) as u32 / lane.size as u32;
        let overloaded =
            |ahead: usize| Error::Overloaded { retry_after: queued(ahead).as_secs().clamp(1, 60) };
        let ahead = lane.waiting.fetch_add(1, Ordering::AcqRel);
        let _waiting = Waiting(&lane.waiting);
        if lane.permits.available_permits() == 0 && queued(ahead) > max_wait {
            return Err(overloaded(ahead));
        }
        match tokio::time::timeout(max_wait, lane.slot()).await {
            Ok(slot) => slot,
            Err(_) => Err(overloaded(lane.waiting.load(Ordering::Acquire))),
        }
    }

    /// How many argon2 computations (hash or verify) this instance has run.
    pub fn computed(&self) -> u64 {
        self.computed.load(Ordering::Relaxed)
    }

    /// A new hash of `password`, NFKC-normalized first (see [`normalized`]).
    pub async fn hash(&self, password: &str) -> Result<String> {
        let slot = self.slot().await?;
        let password = normalized(password);
        self.blocking(&slot, move |memory| hash_with(memory, &password)).await?
    }

    /// Waits for one of the general hashing slots. Login holds its slot across its throttle
    /// check, the hash and the failure count, so concurrent guesses see each other's failures:
    /// at most `concurrency − 1` of them can slip past a limit, while concurrent *successful*
    /// logins of one user are never refused.
    pub async fn slot(&self) -> Result<HashSlot> {
        self.general.slot().await
    }

    /// True when `password` matches `hash`; with no hash (unknown user) it checks a dummy and
    /// returns false, taking the same time.
    pub async fn verify(
        &self,
        slot: &HashSlot,
        password: &str,
        hash: Option<&str>,
    ) -> Result<bool> {
        if password.len() > MAX_PASSWORD_BYTES {
            return Ok(false);
        }
        // A hash that is not argon2id (or none) is checked against the dummy: the answer is no
        // either way, and it must take as long as a real check.
        let usable = |phc: &&str| {
            PasswordHash::new(phc).is_ok_and(|p| p.algorithm == Algorithm::Argon2id.ident())
        };
        let hash = hash.filter(usable);
        let known = hash.is_some();
        let hash = hash.unwrap_or(&self.dummy_hash).to_owned();
        let password = normalized(password);
        let ok = self.blocking(slot, move |memory| verify_with(memory, &password, &hash)).await?;
        Ok(known && ok)
    }

    /// Runs `f` on the blocking pool (the slot proves a permit is held) with a reusable buffer.
    async fn blocking<T: Send + 'static>(
        &self,
        _slot: &HashSlot,
        f: impl FnOnce(&mut Vec<Block>) -> T + Send + 'static,
    ) -> Result<T> {
        self.computed.fetch_add(1, Ordering::Relaxed);
        let buffers = self.buffers.clone();
        let average = self.average_us.clone();
        tokio::task::spawn_blocking(move || {
            let mut memory =
                buffers.lock().unwrap_or_else(PoisonError::into_inner).pop().unwrap_or_default();
            let started = Instant::now();
            let result = f(&mut memory);
            // Moving average over about eight computations.
            let took = started.elapsed().as_micros() as u64;
            let old = average.load(Ordering::Relaxed);
            average.store((old * 7 + took) / 8, Ordering::Relaxed);
            buffers.lock().unwrap_or_else(PoisonError::into_inner).push(memory);
            result
        })
        .await
        .map_err(|e| Error::Internal(format!("hashing task: {e}")))
    }
}

/// `password` in Unicode normalization form KC, as NIST SP 800-63B-4 asks: the same password
/// typed on two keyboards (a composed "é" or "e" and a combining accent, a full-width digit) is
/// the same password. Hashes are always of this form.
pub fn normalized(password: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    password.nfkc().collect()
}

/// Counts a login as waiting for as long as it lives.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One of the argon2 slots, held while hashing (see [`Passwords::slot`]).
pub struct HashSlot {
    _permit: tokio::sync::OwnedSemaphorePermit,
}

/// argon2id of `password` with `salt` into `out_len` bytes, in `memory` (grown once if needed).
fn compute(
    memory: &mut Vec<Block>,
    params: Params,
    password: &[u8],
    salt: &[u8],
    out_len: usize,
) -> Result<Vec<u8>> {
    let blocks = params.block_count();
    if blocks > MAX_BLOCKS {
        return Err(Error::Internal("password hash asks for too much memory".into()));
    }
    if memory.len() < blocks {
        memory.resize(blocks, Block::new());
    }
    let mut out = vec![0u8; out_len];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into_with_memory(password, salt, &mut out, &mut memory[..blocks])
        .map_err(|e| Error::Internal(format!("argon2: {e}")))?;
    Ok(out)
}

fn argon_error(e: argon2::password_hash::Error) -> Error {
    Error::Internal(format!("argon2: {e}"))
}

/// A new PHC string (`$argon2id$v=19$m=19456,t=2,p=1$salt$hash`).
fn hash_with(memory: &mut Vec<Block>, password: &str) -> Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    let mut raw = [0u8; 64];
    let salt_bytes = salt.decode_b64(&mut raw).map_err(argon_error)?;
    let params = params();
    let out = compute(memory, params.clone(), password.as_bytes(), salt_bytes, 32)?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(params).map_err(argon_error)?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&out).map_err(argon_error)?),
    };
    Ok(phc.to_string())
}

/// Checks `password` against a PHC string with the parameters it records (argon2id only).
fn verify_with(memory: &mut Vec<Block>, password: &str, phc: &str) -> bool {
    let mut check = || -> Option<bool> {
        let parsed = PasswordHash::new(phc).ok()?;
        if parsed.algorithm != Algorithm::Argon2id.ident() {
            return None;
        }
        let params = Params::try_from(&parsed).ok()?;
        let expected = parsed.hash?;
        let mut raw = [0u8; 64];
        let salt = parsed.salt?.decode_b64(&mut raw).ok()?;
        let out = compute(memory, params, password.as_bytes(), salt, expected.len()).ok()?;
        // `Output` compares in constant time.
        Some(Output::new(&out).ok()? == expected)
    };
    check().unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_are_argon2id_with_owasp_parameters_and_verify() {
        let p = Passwords::new(1).expect("dummy hash");
        let long_unicode = "pässwörd 🔐 ".repeat(40);
        let hash = p.hash(&long_unicode).await.expect("hash");
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{hash}");
        assert!(
            p.verify(&p.slot().await.expect("slot"), &long_unicode, Some(&hash))
                .await
                .expect("verify")
        );
        // No truncation: a prefix of the password is a different password.
        assert!(
            !p.verify(
                &p.slot().await.expect("slot"),
                &long_unicode[..long_unicode.len() - 1],
                Some(&hash)
            )
            .await
            .expect("v")
        );
        assert!(!p.verify(&p.slot().await.expect("slot"), "anything", None).await.expect("verify"));
        assert_eq!(p.computed(), 4);
        // Hashes made by the reference implementation verify too (and vice versa).
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        let salt = SaltString::generate(&mut OsRng);
        let reference = Argon2::new(Algorithm::Argon2id, Version::V0x13, params())
            .hash_password(b"foobared", &salt)
            .expect("reference hash")
            .to_string();
        assert!(
            p.verify(&p.slot().await.expect("slot"), "foobared", Some(&reference))
                .await
                .expect("verify")
        );
        assert!(
            !p.verify(&p.slot().await.expect("slot"), "foobarec", Some(&reference))
                .await
                .expect("verify")
        );
        let ours = PasswordHash::new(&hash).expect("PHC");
        assert!(argon2::Argon2::default().verify_password(long_unicode.as_bytes(), &ours).is_ok());
        // Not argon2id, or garbage: never a match.
        assert!(
            !p.verify(
                &p.slot().await.expect("slot"),
                "x",
                Some("$argon2i$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA")
            )
            .await
            .expect("v")
        );
        assert!(
            !p.verify(&p.slot().await.expect("slot"), "x", Some("not a hash"))
                .await
                .expect("verify")
        );
    }

    #[tokio::test]
    async fn passwords_are_compared_in_nfkc() {
        let p = Passwords::new(1).expect("dummy hash");
        // "é" composed, then "e" and a combining acute accent; full-width Latin letters.
        let hash = p.hash("caf\u{e9} ｆｏｏｂａｒｅｄ").await.expect("hash");
        let slot = p.slot().await.expect("slot");
        assert!(p.verify(&slot, "cafe\u{301} foobared", Some(&hash)).await.expect("verify"));
        assert!(!p.verify(&slot, "cafe foobared", Some(&hash)).await.expect("verify"));
    }
}
