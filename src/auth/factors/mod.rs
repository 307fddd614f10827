//! The second factors, one file each — TOTP authenticator apps, passkeys, recovery codes and the
//! e-mailed code that binds a first factor — and their store. Sign-in, step-up and the user's
//! own security settings (`auth::security`) use them; they use none of those. Every piece of
//! state is in Redis, so any instance can finish what another started.

pub mod email_code;
pub mod passkey;
pub mod recovery;
pub mod store;
pub mod totp;
pub mod user_handle;
