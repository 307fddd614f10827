//! The secrets a client holds and the ids derived from them: a session token (cookie value or
//! bearer token), a remembered device's token, and a session's id. 256 random bits each, in
//! unpadded base64url; a token is never stored or logged, only its SHA-256.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::secret::random_token;

/// 32 bytes in unpadded base64url (43 characters), the shape of tokens and session ids.
fn is_256_bit_base64url(raw: &str) -> bool {
    raw.len() == 43
        && raw.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && URL_SAFE_NO_PAD.decode(raw).is_ok_and(|b| b.len() == 32)
}

/// The secret a client holds (cookie value or bearer token). Never stored, never logged.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionToken(String);

impl std::fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionToken(…)")
    }
}

impl SessionToken {
    pub fn generate() -> Self {
        SessionToken(random_token())
    }

    /// Only well-formed tokens are looked up: anything else is "no session" without a Redis call,
    /// and a client can never make us read a key it named.
    pub fn parse(raw: &str) -> Option<Self> {
        is_256_bit_base64url(raw).then(|| SessionToken(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Base64url SHA-256 of the token (43 characters; hex would make every session's key, which
    /// Redis and the session index each hold, 21 bytes longer).
    pub fn id(&self) -> SessionId {
        SessionId(URL_SAFE_NO_PAD.encode(Sha256::digest(self.0.as_bytes())))
    }

    /// The session's synchronizer token: SHA-256 of a label and the token, so it is never stored,
    /// changes with the token (a rotation after step-up gives a new one), and neither reveals the
    /// token nor follows from the session id, which the sessions page and the console show.
    pub fn csrf(&self) -> String {
        let mut hash = Sha256::new();
        hash.update(b"redbank csrf\0");
        hash.update(self.0.as_bytes());
        URL_SAFE_NO_PAD.encode(hash.finalize())
    }
}

/// Proof that a client signed in to an account before (OWASP's device cookie): a random token
/// like a session token, stored only as its SHA-256. It authenticates nothing by itself; it only
/// lets its holder's login attempts be counted apart from strangers' (see `throttle`).
#[derive(Clone, PartialEq, Eq)]
pub struct DeviceToken(SessionToken);

impl std::fmt::Debug for DeviceToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DeviceToken(…)")
    }
}

impl DeviceToken {
    pub fn generate() -> Self {
        DeviceToken(SessionToken::generate())
    }

    pub fn parse(raw: &str) -> Option<Self> {
        SessionToken::parse(raw).map(DeviceToken)
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// Hex SHA-256: the key suffix.
    pub fn id(&self) -> String {
        crate::secret::sha256_hex(self.as_str())
    }
}

/// Base64url SHA-256 of a token: names the Redis key and the rows of the sessions page.
/// Knowing it does not let anyone act as the session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SessionId(String);

impl SessionId {
    pub fn parse(raw: &str) -> Option<Self> {
        is_256_bit_base64url(raw).then(|| SessionId(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_256_bit_and_parse_back() {
        let t = SessionToken::generate();
        assert_eq!(t.as_str().len(), 43);
        assert_eq!(SessionToken::parse(t.as_str()), Some(t.clone()));
        assert_ne!(SessionToken::generate(), t);
    }

    #[test]
    fn malformed_tokens_are_rejected() {
        for bad in ["", "short", &"a".repeat(44), &"+".repeat(43), "../../etc/passwd", "*"] {
            assert!(SessionToken::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn session_id_and_csrf_token_are_sha256_of_the_token_apart() {
        let t = SessionToken::generate();
        let id = t.id();
        assert_eq!(
            URL_SAFE_NO_PAD.decode(id.as_str()).unwrap(),
            Sha256::digest(t.as_str()).to_vec()
        );
        assert!(SessionId::parse(id.as_str()).is_some());
        for bad in ["*", &"a".repeat(64), &"a".repeat(44), "../../etc/passwd"] {
            assert!(SessionId::parse(bad).is_none(), "{bad}");
        }
        let csrf = t.csrf();
        assert_eq!(csrf, t.csrf(), "the same token, the same CSRF token");
        assert_eq!(csrf.len(), 43);
        assert_ne!(csrf, id.as_str());
        assert_ne!(csrf, SessionToken::generate().csrf());
        assert!(!id.as_str().contains(&t.as_str()[..8]), "the id shows the token");
        assert!(!csrf.contains(&t.as_str()[..8]), "the CSRF token shows the token");
    }
}
