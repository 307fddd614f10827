//! Password hashing with argon2id (OWASP parameters: m = 19 MiB, t = 2, p = 1).
//!
//! Hashing is CPU-heavy by design, so it runs on the blocking pool behind a small semaphore: a
//! login storm queues here instead of starving the async workers that serve everything else.
//! Unknown users are verified against a dummy hash so they cost the same time as wrong passwords.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::Semaphore;

use crate::error::{Error, Result};

/// Longest password we hash (bytes); longer input is rejected, never silently truncated.
pub const MAX_PASSWORD_BYTES: usize = 1024;

fn argon2() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Managed state: the semaphore, a dummy hash, and a counter of hash computations (observable by
/// tests and metrics, e.g. to prove a throttled login computed nothing).
pub struct Passwords {
    permits: Arc<Semaphore>,
    computed: AtomicU64,
    dummy_hash: String,
}

impl Passwords {
    pub fn new(concurrency: usize) -> Result<Self> {
        Ok(Passwords {
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            computed: AtomicU64::new(0),
            dummy_hash: hash_blocking("redbank dummy password, never valid")?,
        })
    }

    /// How many argon2 computations (hash or verify) this instance has run.
    pub fn computed(&self) -> u64 {
        self.computed.load(Ordering::Relaxed)
    }

    pub async fn hash(&self, password: &str) -> Result<String> {
        let password = password.to_owned();
        self.blocking(move || hash_blocking(&password)).await?
    }

    /// True when `password` matches `hash`; with no hash (unknown user) it checks a dummy and
    /// returns false, taking the same time.
    pub async fn verify(&self, password: &str, hash: Option<&str>) -> Result<bool> {
        if password.len() > MAX_PASSWORD_BYTES {
            return Ok(false);
        }
        let known = hash.is_some();
        let hash = hash.unwrap_or(&self.dummy_hash).to_owned();
        let password = password.to_owned();
        let ok = self
            .blocking(move || {
                PasswordHash::new(&hash)
                    .is_ok_and(|h| argon2().verify_password(password.as_bytes(), &h).is_ok())
            })
            .await?;
        Ok(known && ok)
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T> {
        let _permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Error::Internal("password semaphore closed".into()))?;
        self.computed.fetch_add(1, Ordering::Relaxed);
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| Error::Internal(format!("hashing task: {e}")))
    }
}

fn hash_blocking(password: &str) -> Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| Error::Internal(format!("argon2: {e}")))
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
        assert!(p.verify(&long_unicode, Some(&hash)).await.expect("verify"));
        // No truncation: a prefix of the password is a different password.
        assert!(!p.verify(&long_unicode[..long_unicode.len() - 1], Some(&hash)).await.expect("v"));
        assert!(!p.verify("anything", None).await.expect("verify"));
        assert_eq!(p.computed(), 4);
    }
}
