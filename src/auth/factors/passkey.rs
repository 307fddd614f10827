//! Passkeys (WebAuthn, discoverable credentials, user verification required) through the
//! `webauthn-rs` relying-party library: registration, usernameless sign-in and step-up.
//!
//! Ceremony state lives in Redis, so any instance can finish what another started. It is named
//! by the SHA-256 of the challenge — which comes back inside the client data the authenticator
//! signed, so the client sends nothing else — and taken with `GETDEL` before it is checked: the
//! library keeps no record of used challenges, so this is what makes each one work once.
//!
//! `start_passkey_registration` asks for a non-resident key; the options are changed to require
//! a resident (discoverable) one, which "sign in with a passkey, no username" needs. The library's
//! checks do not depend on that field.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use webauthn_rs::prelude::{
    CredentialID, DiscoverableAuthentication, DiscoverableKey, Passkey, PasskeyRegistration,
    PublicKeyCredential, RegisterPublicKeyCredential, Url, Webauthn, WebauthnBuilder,
};
use webauthn_rs_proto::ResidentKeyRequirement;

use super::user_handle;
use crate::auth::throttle::{address_group, per_minute};
use crate::clock::{now_ms, rfc3339_ms};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::redis::doc::to_json;
use crate::redis::{As, Db};
use crate::secret::sha256_hex;

/// How long a ceremony waits for the authenticator (and its state for the answer).
pub const CEREMONY_SECS: u64 = 300;
/// How long a user handle lives until a passkey holds it: a day (an application's life) and a
/// ceremony.
const UNUSED_HANDLE_SECS: u64 = 86_400 + CEREMONY_SECS;
/// Passkeys per user.
pub const MAX_PASSKEYS: usize = 10;
/// Ceremonies one client address may start per minute (each keeps a little state in Redis
/// until it is used or expires, and sign-in ceremonies need no account).
pub const CEREMONIES_PER_MINUTE: i64 = 60;

/// The relying party: who passkeys are for (`public_origin`'s host) and which origin may use them.
pub struct RelyingParty {
    webauthn: Webauthn,
}

impl RelyingParty {
    pub fn new(config: &Config) -> std::result::Result<Self, String> {
        let origin = Url::parse(&config.web.public_origin)
            .map_err(|e| format!("public_origin is not a URL: {e}"))?;
        let rp_id = origin.host_str().ok_or("public_origin has no host")?.to_owned();
        // Browsers offer WebAuthn only in a secure context: HTTPS, or plain HTTP on loopback.
        // (An IP address cannot be a relying party id: use `localhost`.)
        let local = rp_id == "localhost";
        if origin.scheme() != "https" && !(origin.scheme() == "http" && local) {
            return Err("public_origin must be https:// (or http://localhost)".into());
        }
        if origin.path() != "/" || origin.query().is_some() {
            return Err("public_origin is an origin: scheme, host and port, no path".into());
        }
        let webauthn = WebauthnBuilder::new(&rp_id, &origin)
            .and_then(|b| b.rp_name("redbank").timeout(Duration::from_secs(CEREMONY_SECS)).build())
            .map_err(|e| format!("public_origin cannot be a WebAuthn relying party: {e}"))?;
        Ok(RelyingParty { webauthn })
    }
}

/// What a ceremony is for, kept with its state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "for", rename_all = "snake_case")]
pub enum Purpose {
    /// Adding a passkey to `user`'s account.
    Register { user: String, name: String },
    /// Signing in (no username: the passkey says who).
    SignIn,
    /// Re-authenticating session `session` of `user`.
    StepUp { user: String, session: String },
    /// Confirming one pending transfer of `user`: `binding` is its id, amount, currency and
    /// payee (PSD2 dynamic linking), compared with the transfer when the answer comes.
    Transfer { user: String, binding: String },
    /// Proving the second factor of `user` while resetting a forgotten password (`link`: the
    /// reset link's id).
    ResetPassword { user: String, link: String },
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
enum State {
    Registration(PasskeyRegistration),
    Authentication(DiscoverableAuthentication),
}

#[derive(Serialize, Deserialize)]
struct Ceremony {
    purpose: Purpose,
    state: State,
}

/// A stored passkey: its name and times, and the public key with its signature counter.
#[derive(Serialize, Deserialize)]
struct Stored {
    name: String,
    created_at: i64,
    last_used_at: Option<i64>,
    passkey: Passkey,
}

/// A passkey as the user sees it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PasskeyView {
    /// The credential id (base64url): names it in `DELETE /api/v1/passkeys/<id>`.
    pub id: String,
    pub name: String,
    pub created_at: String,
    pub last_used_at: Option<String>,
    /// The same times in ms, for pages.
    #[serde(skip)]
    pub created_ms: i64,
    #[serde(skip)]
    pub last_used_ms: Option<i64>,
}

/// The user a passkey signed in, and which passkey it was.
#[derive(Debug, Clone)]
pub struct Verified {
    pub user: String,
    pub purpose: Purpose,
    pub passkey: String,
}

fn internal(e: impl std::fmt::Display) -> Error {
    Error::Internal(e.to_string())
}

fn bad_credential() -> Error {
    Error::BadRequest("The passkey response could not be read.".into())
}

fn too_many_passkeys() -> Error {
    Error::Conflict(format!(
        "You have {MAX_PASSKEYS} passkeys, the most an account can have. Remove one first."
    ))
}

/// Counts a ceremony started from `ip`; 429 past [`CEREMONIES_PER_MINUTE`]. Sign-ins are counted
/// apart: the login page starts one on every load (autofill), and those loads must not keep
/// the address's signed-in customers from confirming a transfer or stepping up.
async fn limit_ceremonies(db: &Db, ip: &str, purpose: &Purpose) -> Result<()> {
    let kind = if *purpose == Purpose::SignIn { "signin" } else { "account" };
    let key = db.keys.throttle_ceremony(kind, &address_group(ip));
    per_minute(db, &key, CEREMONIES_PER_MINUTE).await
}

/// Stores a ceremony under its challenge for [`CEREMONY_SECS`].
async fn save(db: &Db, challenge: &str, ceremony: &Ceremony) -> Result<()> {
    let key = db.keys.ceremony(&sha256_hex(challenge));
    db.put(&key, ceremony, As::Text, Duration::from_secs(CEREMONY_SECS)).await
}

/// The key of the ceremony the client data's challenge names.
fn ceremony_key(db: &Db, client_data_json: &[u8]) -> Result<String> {
    let client_data: Value =
        serde_json::from_slice(client_data_json).map_err(|_| bad_credential())?;
    let challenge =
        client_data.get("challenge").and_then(Value::as_str).ok_or_else(bad_credential)?;
    if challenge.len() > 128 {
        return Err(bad_credential());
    }
    Ok(db.keys.ceremony(&sha256_hex(challenge)))
}

/// Reads the ceremony at `key`, deleting it when `spend` (GETDEL: of two answers racing for one
/// ceremony, one gets it).
async fn ceremony_at(db: &Db, key: &str, spend: bool) -> Result<Ceremony> {
    let ceremony = if spend { db.take_text(key).await? } else { db.get_text(key).await? };
    ceremony.ok_or(Error::InvalidCode)
}

/// Takes (reads and deletes) the ceremony the client data's challenge names.
async fn take(db: &Db, client_data_json: &[u8]) -> Result<Ceremony> {
    ceremony_at(db, &ceremony_key(db, client_data_json)?, true).await
}

/// The challenge an answer (attestation or assertion, as JSON) says it answers, read from its
/// client data; None when there is none to read.
pub fn answered_challenge(answer: &Value) -> Option<String> {
    let raw = answer.pointer("/response/clientDataJSON")?.as_str()?;
    let bytes = URL_SAFE_NO_PAD.decode(raw.trim_end_matches('=')).ok()?;
    let client_data: Value = serde_json::from_slice(&bytes).ok()?;
    let challenge = client_data.get("challenge")?.as_str()?;
    (challenge.len() <= 128).then(|| challenge.to_owned())
}

/// The challenge that names a ceremony, from its options JSON as sent to the client.
pub fn challenge_of(options: &Value) -> Result<String> {
    options
        .pointer("/publicKey/challenge")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| internal("options without a challenge"))
}

async fn stored_passkeys(db: &Db, username: &str) -> Result<Vec<(String, Stored)>> {
    let key = db.keys.passkeys(username);
    let all: Vec<(String, String)> = db.query(redis::cmd("HGETALL").arg(&key)).await?;
    Ok(all
        .into_iter()
        .filter_map(|(id, json)| match serde_json::from_str::<Stored>(&json) {
            Ok(stored) => Some((id, stored)),
            Err(e) => {
                rocket::warn!("passkey {id} of {username} is corrupt, ignored: {e}");
                None
            }
        })
        .collect())
}

/// The user's passkeys, oldest first.
pub async fn list(db: &Db, username: &str) -> Result<Vec<PasskeyView>> {
    let mut all = stored_passkeys(db, username).await?;
    all.sort_by_key(|(_, s)| s.created_at);
    Ok(all
        .into_iter()
        .map(|(id, s)| PasskeyView {
            id,
            name: s.name,
            created_at: rfc3339_ms(s.created_at),
            last_used_at: s.last_used_at.map(rfc3339_ms),
            created_ms: s.created_at,
            last_used_ms: s.last_used_at,
        })
        .collect())
}

/// Removes one passkey; its name when it existed.
pub async fn remove(db: &Db, username: &str, id: &str) -> Result<Option<String>> {
    let key = db.keys.passkeys(username);
    let stored: Option<String> = db.query(redis::cmd("HGET").arg(&key).arg(id)).await?;
    let Some(stored) = stored else { return Ok(None) };
    let removed: i64 = db.query(redis::cmd("HDEL").arg(&key).arg(id)).await?;
    let name = serde_json::from_str::<Stored>(&stored).map(|s| s.name).unwrap_or_default();
    Ok((removed == 1).then_some(name))
}

/// Starts adding a passkey called `name` for `username`: the options for
/// `navigator.credentials.create`.
pub async fn start_registration(
    db: &Db,
    rp: &RelyingParty,
    username: &str,
    display_name: &str,
    name: &str,
    ip: &str,
) -> Result<Value> {
    let purpose = Purpose::Register { user: username.to_owned(), name: clean_name(name) };
    limit_ceremonies(db, ip, &purpose).await?;
    let existing = stored_passkeys(db, username).await?;
    if existing.len() >= MAX_PASSKEYS {
        return Err(too_many_passkeys());
    }
    let exclude: Vec<CredentialID> =
        existing.iter().map(|(_, s)| s.passkey.cred_id().clone()).collect();
    let handle = user_handle::get_or_make(db, username, UNUSED_HANDLE_SECS).await?;
    let (mut options, state) = rp
        .webauthn
        .start_passkey_registration(handle, username, display_name, Some(exclude))
        .map_err(internal)?;
    if let Some(selection) = options.public_key.authenticator_selection.as_mut() {
        selection.resident_key = Some(ResidentKeyRequirement::Required);
        selection.require_resident_key = true;
    }
    let options = serde_json::to_value(&options).map_err(internal)?;
    let ceremony = Ceremony { purpose, state: State::Registration(state) };
    save(db, &challenge_of(&options)?, &ceremony).await?;
    Ok(options)
}

/// A passkey name as stored: trimmed, printable, at most 64 characters.
fn clean_name(name: &str) -> String {
    let name: String = name.trim().chars().filter(|c| !c.is_control()).take(64).collect();
    if name.is_empty() { "Passkey".into() } else { name }
}

/// Checks the authenticator's answer to `username`'s registration options. Its ceremony stays
/// open, so an answer that does not verify (or, for a first factor, a mistyped e-mailed code
/// checked next) spends nothing; `store_registration` spends it.
pub async fn verify_registration(
    db: &Db,
    rp: &RelyingParty,
    username: &str,
    answer: &Value,
) -> Result<NewPasskey> {
    let credential: RegisterPublicKeyCredential =
        serde_json::from_value(answer.clone()).map_err(|_| bad_credential())?;
    let ceremony = ceremony_key(db, credential.response.client_data_json.as_ref())?;
    let open = ceremony_at(db, &ceremony, false).await?;
    let (Purpose::Register { user, name }, State::Registration(state)) = (open.purpose, open.state)
    else {
        return Err(Error::InvalidCode);
    };
    if user != username {
        return Err(Error::InvalidCode);
    }
    let passkey = rp.webauthn.finish_passkey_registration(&credential, &state).map_err(|e| {
        rocket::info!("passkey registration refused: {e}");
        Error::InvalidCode
    })?;
    Ok(NewPasskey { ceremony, name, passkey })
}

/// An attestation that verified against its open ceremony, not stored yet.
pub struct NewPasskey {
    ceremony: String,
    name: String,
    passkey: Passkey,
}

/// Stores a verified passkey, spending its ceremony: a ceremony already spent (a parallel answer
/// to the same options) adds nothing.
pub async fn store_registration(db: &Db, username: &str, new: NewPasskey) -> Result<PasskeyView> {
    let NewPasskey { ceremony, name, passkey } = new;
    ceremony_at(db, &ceremony, true).await?;
    let id = URL_SAFE_NO_PAD.encode(passkey.cred_id().as_ref());
    let now = now_ms();
    let stored = Stored { name: name.clone(), created_at: now, last_used_at: None, passkey };
    let json = to_json(&stored)?;
    let key = db.keys.passkeys(username);
    // The cap again, atomically with the write: registrations started in parallel cannot pass it.
    let added: i64 = db
        .run(async |c| {
            redis::Script::new(
                "if redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[3]) then return -1 end \
                 return redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2])",
            )
            .key(&key)
            .arg(&id)
            .arg(&json)
            .arg(MAX_PASSKEYS)
            .invoke_async(c)
            .await
        })
        .await?;
    match added {
        -1 => return Err(too_many_passkeys()),
        0 => return Err(Error::BadRequest("This passkey is already registered.".into())),
        _ => {}
    }
    user_handle::keep(db, username).await?;
    let created_at = rfc3339_ms(now);
    Ok(PasskeyView {
        id,
        name,
        created_at,
        last_used_at: None,
        created_ms: now,
        last_used_ms: None,
    })
}

/// Starts a passkey sign-in or step-up: the options for `navigator.credentials.get` (no
/// allowed credentials: the authenticator offers the user's passkeys for this site).
pub async fn start_authentication(
    db: &Db,
    rp: &RelyingParty,
    purpose: Purpose,
    ip: &str,
) -> Result<Value> {
    limit_ceremonies(db, ip, &purpose).await?;
    let (mut options, state) = rp.webauthn.start_discoverable_authentication().map_err(internal)?;
    // The library asks for the autofill UI; a button wants the plain dialog.
    options.mediation = None;
    let options = serde_json::to_value(&options).map_err(internal)?;
    let ceremony = Ceremony { purpose, state: State::Authentication(state) };
    save(db, &challenge_of(&options)?, &ceremony).await?;
    Ok(options)
}

/// Checks a passkey assertion: the ceremony it answers, the user its passkey belongs to and
/// the signature; updates the passkey's counter and last use.
pub async fn finish_authentication(db: &Db, rp: &RelyingParty, answer: &Value) -> Result<Verified> {
    let credential: PublicKeyCredential =
        serde_json::from_value(answer.clone()).map_err(|_| bad_credential())?;
    let ceremony = take(db, credential.response.client_data_json.as_ref()).await?;
    let State::Authentication(state) = ceremony.state else { return Err(Error::InvalidCode) };
    let (handle, cred_id) = rp
        .webauthn
        .identify_discoverable_authentication(&credential)
        .map_err(|_| Error::InvalidCode)?;
    let id = URL_SAFE_NO_PAD.encode(cred_id);
    let user = user_handle::owner(db, &handle).await?.ok_or(Error::InvalidCode)?;
    let key = db.keys.passkeys(&user);
    let before: Option<String> = db.query(redis::cmd("HGET").arg(&key).arg(&id)).await?;
    let before = before.ok_or(Error::InvalidCode)?;
    let mut stored: Stored = serde_json::from_str(&before).map_err(internal)?;
    let result = rp
        .webauthn
        .finish_discoverable_authentication(
            &credential,
            state,
            &[DiscoverableKey::from(&stored.passkey)],
        )
        .map_err(|e| {
            rocket::info!("passkey assertion refused: {e}");
            Error::InvalidCode
        })?;
    stored.passkey.update_credential(&result);
    stored.last_used_at = Some(now_ms());
    let json = to_json(&stored)?;
    // Compare and set: only over the record this assertion was checked against. Two assertions
    // racing with one counter value (a cloned authenticator) cannot both pass, and a passkey
    // removed meanwhile is not brought back.
    let swapped: i64 = db
        .run(async |c| {
            redis::Script::new(
                "if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end \
                 redis.call('HSET', KEYS[1], ARGV[1], ARGV[3]) return 1",
            )
            .key(&key)
            .arg(&id)
            .arg(&before)
            .arg(&json)
            .invoke_async(c)
            .await
        })
        .await?;
    if swapped == 0 {
        return Err(Error::InvalidCode);
    }
    Ok(Verified { user, purpose: ceremony.purpose, passkey: stored.name })
}

/// A credential id from a URL path: base64url (standard base64 is accepted too).
pub fn parse_id(raw: &str) -> Option<String> {
    let bytes = URL_SAFE_NO_PAD.decode(raw).or_else(|_| STANDARD.decode(raw)).ok()?;
    (!bytes.is_empty() && bytes.len() <= 1023).then(|| URL_SAFE_NO_PAD.encode(bytes))
}

/// A passkey answer that failed for a signed-in user: 422 (their session is fine), not the 401 of
/// a failed sign-in.
pub fn for_signed_in(e: Error) -> Error {
    match e {
        Error::InvalidCode => {
            Error::NotConfirmed("The passkey could not be confirmed. Please try again.".into())
        }
        e => e,
    }
}
