//! Recovery codes: ten single-use codes shown once at TOTP enrolment, for the day the phone is
//! lost. Each is 80 random bits written as `xxxx-xxxx-xxxx-xxxx` (base32, lower case, no letters
//! that read alike); only its SHA-256 is stored — 80 bits cannot be searched offline the way a
//! password can, so a slow hash adds nothing — in a Redis set, where `SREM` burns a code
//! atomically: two requests racing with the same code cannot both succeed.

use data_encoding::BASE32_NOPAD;
use rand::RngCore;
use rand::rngs::OsRng;

use super::totp::typed_base32;
use crate::secret::sha256_hex;

/// Codes per set.
pub const COUNT: usize = 10;

/// A fresh set of codes, as shown to the user.
pub fn generate() -> Vec<String> {
    (0..COUNT)
        .map(|_| {
            let mut bytes = [0u8; 10];
            OsRng.fill_bytes(&mut bytes);
            let text = BASE32_NOPAD.encode(&bytes).to_lowercase();
            text.as_bytes()
                .chunks(4)
                .map(|c| std::str::from_utf8(c).unwrap_or_default())
                .collect::<Vec<_>>()
                .join("-")
        })
        .collect()
}

/// What is stored for a code: hex SHA-256 of its normalized form. None for text that cannot be a
/// code (so a guess of the wrong shape costs no Redis call).
pub fn digest(code: &str) -> Option<String> {
    let clean = typed_base32(code, '-');
    let bytes = BASE32_NOPAD.decode(clean.as_bytes()).ok()?;
    (bytes.len() == 10).then(|| sha256_hex(&clean))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_and_digest_however_typed() {
        let codes = generate();
        assert_eq!(codes.len(), COUNT);
        for code in &codes {
            assert_eq!(code.len(), 19, "{code}");
            let typed = code.replace('-', " ").to_uppercase();
            assert_eq!(digest(code), digest(&typed));
            assert!(digest(code).is_some());
        }
        let mut unique = codes.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), COUNT);
        for bad in ["", "1234", "not a code at all", "aaaa-aaaa-aaaa-aaa!"] {
            assert_eq!(digest(bad), None, "{bad}");
        }
    }
}
