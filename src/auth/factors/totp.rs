//! Time-based one-time passwords (RFC 6238 over RFC 4226's HOTP): HMAC-SHA-1, 6 digits, 30-second
//! steps — what every authenticator app implements — and the enrolment's `otpauth://` URI as a QR
//! code rendered here as SVG (no script, nothing from another site).
//!
//! Verification only says which time step a code belongs to; making each step usable once is the
//! store's job (it keeps the last accepted step and refuses that one and older ones atomically).

use data_encoding::BASE32_NOPAD;
use hmac::{Hmac, Mac};
use rand::RngCore;
use rand::rngs::OsRng;
use sha1::Sha1;

/// The issuer authenticator apps show next to the account.
pub const ISSUER: &str = "redbank";
/// Seconds per time step.
pub const STEP_SECS: i64 = 30;
/// Digits of a code.
pub const DIGITS: usize = 6;
/// Steps of clock drift accepted either side of now (a code from the previous or next 30 s).
pub const SKEW: i64 = 1;

/// A shared TOTP secret: 160 random bits (RFC 4226 recommends the HMAC-SHA-1 output length).
#[derive(Clone, PartialEq, Eq)]
pub struct TotpSecret(Vec<u8>);

impl std::fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TotpSecret(…)")
    }
}

impl TotpSecret {
    pub fn generate() -> Self {
        let mut bytes = vec![0u8; 20];
        OsRng.fill_bytes(&mut bytes);
        TotpSecret(bytes)
    }

    /// From the base32 form authenticator apps show (case, spaces and `=` padding ignored); at
    /// least 80 bits.
    pub fn from_base32(text: &str) -> Option<Self> {
        let bytes = BASE32_NOPAD.decode(typed_base32(text, '=').as_bytes()).ok()?;
        (bytes.len() >= 10).then_some(TotpSecret(bytes))
    }

    /// The base32 form (RFC 4648, no padding): what the enrolment page shows and Redis keeps.
    pub fn base32(&self) -> String {
        BASE32_NOPAD.encode(&self.0)
    }

    /// The code of time step `step` (RFC 4226 dynamic truncation).
    pub fn code_at(&self, step: i64) -> String {
        let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(&self.0) else {
            unreachable!("HMAC accepts keys of any length")
        };
        mac.update(&step.to_be_bytes());
        let digest = mac.finalize().into_bytes();
        let offset = (digest[19] & 0x0f) as usize;
        let binary = u32::from_be_bytes([
            digest[offset] & 0x7f,
            digest[offset + 1],
            digest[offset + 2],
            digest[offset + 3],
        ]);
        format!("{:0width$}", binary % 10u32.pow(DIGITS as u32), width = DIGITS)
    }

    /// The time step whose code `code` is, within [`SKEW`] steps of `now_secs` (the newest
    /// matching one), or None. Spaces in the code are ignored (apps show `123 456`).
    pub fn matching_step(&self, code: &str, now_secs: i64) -> Option<i64> {
        let code = normalize_code(code)?;
        let now = now_secs.div_euclid(STEP_SECS);
        // Every candidate is computed and compared in full, so timing says nothing about which
        // step (if any) matched.
        let mut found = None;
        for step in (now - SKEW)..=(now + SKEW) {
            if crate::auth::csrf::tokens_match(&self.code_at(step), &code) {
                found = Some(step);
            }
        }
        found
    }

    /// The `otpauth://` URI authenticator apps import (Google Authenticator's key URI format).
    pub fn otpauth_uri(&self, issuer: &str, account: &str) -> String {
        let issuer_enc = percent_encode(issuer);
        format!(
            "otpauth://totp/{issuer_enc}:{account}?secret={secret}&issuer={issuer_enc}\
             &algorithm=SHA1&digits={DIGITS}&period={STEP_SECS}",
            account = percent_encode(account),
            secret = self.base32(),
        )
    }
}

/// The time step of `now_secs` (for tests and for computing a code "now").
pub fn step_of(now_secs: i64) -> i64 {
    now_secs.div_euclid(STEP_SECS)
}

/// A code as typed: digits with optional spaces, exactly [`DIGITS`] of them.
fn normalize_code(code: &str) -> Option<String> {
    let digits: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    (digits.len() == DIGITS && digits.bytes().all(|b| b.is_ascii_digit())).then_some(digits)
}

/// RFC 3986 unreserved characters pass, everything else is %XX (labels in the URI).
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The URI as a QR code in SVG, sized by the viewBox (the page's CSS sets the display size).
pub fn qr_svg(uri: &str) -> Option<String> {
    let code = qrcode::QrCode::with_error_correction_level(uri, qrcode::EcLevel::M).ok()?;
    let svg = code
        .render::<qrcode::render::svg::Color<'_>>()
        .quiet_zone(true)
        .min_dimensions(200, 200)
        .dark_color(qrcode::render::svg::Color("#000000"))
        .light_color(qrcode::render::svg::Color("#ffffff"))
        .build();
    // Inline in HTML: the element only, without the XML declaration.
    svg.find("<svg").map(|start| svg[start..].to_owned())
}

/// The URI as a QR code for a terminal (two rows per character; dark on light, as scanners
/// expect, with a quiet zone).
pub fn qr_text(uri: &str) -> Option<String> {
    let code = qrcode::QrCode::with_error_correction_level(uri, qrcode::EcLevel::M).ok()?;
    Some(
        code.render::<qrcode::render::unicode::Dense1x2>()
            .dark_color(qrcode::render::unicode::Dense1x2::Light)
            .light_color(qrcode::render::unicode::Dense1x2::Dark)
            .quiet_zone(true)
            .build(),
    )
}

/// Base32 as people type it: upper case, without white space or `separator` (the `=` padding of
/// a secret, the `-` that groups a recovery code).
pub fn typed_base32(text: &str, separator: char) -> String {
    text.chars()
        .filter(|c| !c.is_whitespace() && *c != separator)
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 appendix B, SHA-1 rows (the 8-digit values' last 6 digits).
    #[test]
    fn rfc_6238_test_vectors() {
        let secret = TotpSecret(b"12345678901234567890".to_vec());
        for (time, code) in [
            (59, "287082"),
            (1_111_111_109, "081804"),
            (1_111_111_111, "050471"),
            (1_234_567_890, "005924"),
            (2_000_000_000, "279037"),
            (20_000_000_000, "353130"),
        ] {
            assert_eq!(secret.code_at(step_of(time)), code, "T = {time}");
        }
    }

    #[test]
    fn a_code_matches_its_step_and_one_either_side_only() {
        let secret = TotpSecret::generate();
        let now = 1_700_000_000;
        let step = step_of(now);
        assert_eq!(secret.matching_step(&secret.code_at(step), now), Some(step));
        assert_eq!(secret.matching_step(&secret.code_at(step - 1), now), Some(step - 1));
        assert_eq!(secret.matching_step(&secret.code_at(step + 1), now), Some(step + 1));
        let spaced = format!("{} {}", &secret.code_at(step)[..3], &secret.code_at(step)[3..]);
        assert_eq!(secret.matching_step(&spaced, now), Some(step));
        // Two steps away is refused (unless that code happens to equal a valid one).
        let old = secret.code_at(step - 2);
        let valid = [step - 1, step, step + 1].map(|s| secret.code_at(s));
        if !valid.contains(&old) {
            assert_eq!(secret.matching_step(&old, now), None);
        }
        for bad in ["", "12345", "1234567", "abcdef", "12345a"] {
            assert_eq!(secret.matching_step(bad, now), None, "{bad}");
        }
    }

    #[test]
    fn base32_round_trip_and_uri() {
        let secret = TotpSecret::generate();
        assert_eq!(secret.base32().len(), 32);
        assert_eq!(TotpSecret::from_base32(&secret.base32().to_lowercase()), Some(secret.clone()));
        assert_eq!(
            TotpSecret::from_base32("JBSW Y3DP EHPK 3PXP"),
            TotpSecret::from_base32("JBSWY3DPEHPK3PXP")
        );
        assert!(TotpSecret::from_base32("JBSWY3DP").is_none(), "40 bits is too short");
        assert!(TotpSecret::from_base32("not base32!").is_none());
        let uri = secret.otpauth_uri("redbank", "alice smith");
        assert!(uri.starts_with("otpauth://totp/redbank:alice%20smith?secret="), "{uri}");
        assert!(uri.contains("&digits=6&period=30"), "{uri}");
        let svg = qr_svg(&uri).unwrap_or_default();
        assert!(svg.starts_with("<svg") && svg.contains("viewBox"), "{svg}");
        assert!(!svg.contains("<script"));
    }
}
