//! Random secrets from the OS CSPRNG: session, device, CSRF tokens and instance ids all come from here.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use rand::rngs::OsRng;

/// 256 random bits from the OS CSPRNG, URL-safe base64 without padding (43 characters).
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// SHA-256 of `text` in hex: how a secret that must only be recognised is stored, and how a key
/// named after one is named — link tokens, e-mailed and recovery codes, device tokens, passkey
/// challenges, idempotency keys. A Redis dump holds nothing that works.
pub fn sha256_hex(text: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(text.as_bytes()))
}

// ---- secrets sealed at rest ---------------------------------------------------------------------

use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

/// The key of the demo (`demo_users` on and no `totp_keys`): public, so it protects nothing —
/// a deployment sets its own keys, and the app refuses to start without them otherwise.
const DEMO_KEY: &str = "demo:cmVkYmFuay1kZW1vLWtleS1wcm90ZWN0cy1ub3RoaW4=";

/// Seals small secrets (TOTP secrets) for storage: XChaCha20-Poly1305 with a random 192-bit
/// nonce, the first configured key sealing, every configured key opening (rotation: put the new
/// key first, re-seal, drop the old one). A sealed value reads `v1.<key id>.<base64url(nonce ‖
/// ciphertext)>`; the associated data binds it to where it belongs (a user's factor), so a value
/// copied to another user's key does not open. A Redis dump alone yields no working secret.
pub struct SecretBox {
    keys: Vec<(String, XChaCha20Poly1305)>,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|(id, _)| id.as_str()).collect();
        write!(f, "SecretBox({ids:?})")
    }
}

impl SecretBox {
    /// From `id:base64-of-32-bytes` keys, the first sealing. An error names what is wrong,
    /// never a key.
    pub fn new(specs: &[String]) -> Result<SecretBox, String> {
        let mut keys: Vec<(String, XChaCha20Poly1305)> = Vec::new();
        for spec in specs {
            let Some((id, key)) = spec.split_once(':') else {
                return Err("totp_keys: each key is `id:base64` (32 bytes)".into());
            };
            let valid_id = !id.is_empty()
                && id.len() <= 32
                && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !valid_id {
                // Not echoed: a key pasted the wrong way round would be its "id".
                return Err("totp_keys: a key id must be 1-32 letters, digits, - or _".into());
            }
            if keys.iter().any(|(other, _)| other == id) {
                return Err(format!("totp_keys: key id {id:?} appears twice"));
            }
            let bytes = STANDARD.decode(key.trim()).map_err(|_| {
                format!("totp_keys: key {id:?} is not base64 (`openssl rand -base64 32`)")
            })?;
            let cipher = XChaCha20Poly1305::new_from_slice(&bytes)
                .map_err(|_| format!("totp_keys: key {id:?} must be 32 bytes"))?;
            if bytes.len() != 32 {
                return Err(format!("totp_keys: key {id:?} must be 32 bytes"));
            }
            keys.push((id.to_owned(), cipher));
        }
        Ok(SecretBox { keys })
    }

    /// The public demo key (see [`DEMO_KEY`]).
    pub fn demo() -> SecretBox {
        SecretBox::new(&[DEMO_KEY.to_owned()]).unwrap_or_else(|_| SecretBox::empty())
    }

    /// No key: seals nothing, opens nothing (a tool's `Db` until it is given keys).
    pub fn empty() -> SecretBox {
        SecretBox { keys: Vec::new() }
    }

    /// Whether this box seals with the public demo key.
    pub fn is_demo(&self) -> bool {
        self.keys.first().is_some_and(|(id, _)| id == "demo")
    }

    /// `plaintext` sealed with the first key, bound to `context`; None without a key.
    pub fn seal(&self, plaintext: &str, context: &str) -> Option<String> {
        let (id, cipher) = self.keys.first()?;
        let mut nonce = [0u8; 24];
        OsRng.fill_bytes(&mut nonce);
        let payload = Payload { msg: plaintext.as_bytes(), aad: context.as_bytes() };
        let sealed = cipher.encrypt(XNonce::from_slice(&nonce), payload).ok()?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Some(format!("v1.{id}.{}", URL_SAFE_NO_PAD.encode(out)))
    }

    /// The plaintext of a value [`SecretBox::seal`] made for `context`, with whether it was
    /// sealed with the first key; None when no configured key opens it (or it was tampered with,
    /// or made for another context).
    pub fn open(&self, sealed: &str, context: &str) -> Option<(String, bool)> {
        let rest = sealed.strip_prefix("v1.")?;
        let (id, data) = rest.split_once('.')?;
        let position = self.keys.iter().position(|(key_id, _)| key_id == id)?;
        let bytes = URL_SAFE_NO_PAD.decode(data).ok()?;
        if bytes.len() < 24 + 16 {
            return None;
        }
        let (nonce, ciphertext) = bytes.split_at(24);
        let payload = Payload { msg: ciphertext, aad: context.as_bytes() };
        let plain = self.keys[position].1.decrypt(XNonce::from_slice(nonce), payload).ok()?;
        Some((String::from_utf8(plain).ok()?, position == 0))
    }

    /// Whether `value` is sealed (rather than a secret stored before sealing existed).
    pub fn is_sealed(value: &str) -> bool {
        value.starts_with("v1.")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str, byte: u8) -> String {
        format!("{id}:{}", STANDARD.encode([byte; 32]))
    }

    #[test]
    fn sealed_secrets_open_only_with_their_key_and_context_and_keys_rotate() {
        let old = SecretBox::new(&[key("a", 1)]).expect("a key");
        let sealed = old.seal("JBSWY3DPEHPK3PXP", "totp:bob").expect("sealed");
        assert!(sealed.starts_with("v1.a.") && !sealed.contains("JBSWY3DPEHPK3PXP"), "{sealed}");
        assert_eq!(old.open(&sealed, "totp:bob"), Some(("JBSWY3DPEHPK3PXP".into(), true)));
        assert_eq!(old.open(&sealed, "totp:alice"), None, "moved to another user");
        let mut tampered = sealed.clone();
        tampered.pop();
        tampered.push(if sealed.ends_with('A') { 'B' } else { 'A' });
        assert_eq!(old.open(&tampered, "totp:bob"), None);
        // Rotation: the new key first still opens the old value (not with the current key).
        let both = SecretBox::new(&[key("b", 2), key("a", 1)]).expect("two keys");
        assert_eq!(both.open(&sealed, "totp:bob"), Some(("JBSWY3DPEHPK3PXP".into(), false)));
        let resealed = both.seal("JBSWY3DPEHPK3PXP", "totp:bob").expect("sealed");
        assert!(resealed.starts_with("v1.b."));
        let new = SecretBox::new(&[key("b", 2)]).expect("a key");
        assert!(new.open(&resealed, "totp:bob").is_some());
        assert_eq!(new.open(&sealed, "totp:bob"), None, "the dropped key's values stay shut");
        for bad in ["nocolon", "a:notbase64!", "a:AAAA", "bad id:AAAA"] {
            assert!(SecretBox::new(&[bad.to_owned()]).is_err(), "{bad}");
        }
        assert!(SecretBox::new(&[key("a", 1), key("a", 2)]).is_err(), "duplicate id");
        assert!(SecretBox::demo().is_demo());
    }
}
