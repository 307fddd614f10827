//! What a user and a session are, as stored in Redis (JSON documents) and shown to clients.

use serde::{Deserialize, Serialize};

pub use super::token::{DeviceToken, SessionId, SessionToken};
use crate::config::Config;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Admin,
}

/// A user document at `<prefix>user:<username>`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct User {
    pub username: String,
    pub display_name: String,
    pub roles: Vec<Role>,
    /// The user's checking account number.
    pub account: String,
    pub city: String,
    /// argon2id PHC string.
    pub password_hash: String,
    /// Where one-time codes and security notices go (the second channel; see `mail`). Users
    /// stored before addresses existed have none until the configuration gives them one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// The owner said "this wasn't me": the next password sign-in also needs an e-mailed code
    /// and a new password.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub password_compromised: bool,
    /// The password breaks today's rules (it predates them: see `auth::policy`); found at a
    /// sign-in, cleared by a new password. The pages ask for a change; nothing forces one.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub password_outdated: bool,
}

/// What clients may see of a user (never the hash).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct UserView {
    pub username: String,
    pub display_name: String,
    pub roles: Vec<Role>,
    pub account: String,
}

impl From<&User> for UserView {
    fn from(u: &User) -> Self {
        UserView {
            username: u.username.clone(),
            display_name: u.display_name.clone(),
            roles: u.roles.clone(),
            account: u.account.clone(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SessionKind {
    Browser,
    Mobile,
}

/// Bump when the document's shape changes: older documents then fail to parse and are treated as
/// no session (and deleted) instead of being half-read. Version 2 (smaller, see `SessionDoc`)
/// also named keys by base64url instead of hex: an upgrade from 1 signs everyone out once.
pub const SESSION_SCHEMA: u32 = 2;

/// The session document at `<prefix>session:<base64url(sha256(token))>`. Fields added later by
/// other features are written by JSON path.
///
/// Kept small because a bank holds a million of them (docs/PERFORMANCE.md): RedisJSON spends
/// about 130 bytes on each nested object and 50 on each array, and nothing on a repeated string
/// (strings are shared), so the assurance sits at the top level, the roles are written only when
/// they are not the ordinary `["user"]`, and the CSRF token is not stored at all (it is derived
/// from the session token: [`SessionToken::csrf`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionDoc {
    pub v: u32,
    pub user: String,
    pub display_name: String,
    #[serde(default = "ordinary_roles", skip_serializing_if = "has_ordinary_roles")]
    pub roles: Vec<Role>,
    pub account: String,
    pub kind: SessionKind,
    /// ms since epoch; the absolute timeout counts from here.
    pub created_at: i64,
    /// ms since epoch; refreshed at most once per touch interval.
    pub last_seen_at: i64,
    pub ip: String,
    pub user_agent: String,
    /// How strongly the user proved who they are, and when (sign-in, then each step-up): `aal`,
    /// `amr` and `auth_time`, at the top level.
    #[serde(flatten)]
    pub assurance: Assurance,
    /// The seed's `currentBalanceAmount` (the newest balance point `/transaction/balance` served),
    /// written by JSON path and read back so an unchanged point is not written again.
    #[serde(rename = "currentBalanceAmount", default, skip_serializing_if = "Option::is_none")]
    pub current_balance_amount: Option<serde_json::Value>,
    /// The user's password breaks today's rules (see `User::password_outdated`): the pages ask
    /// for a change. Copied at sign-in; cleared on this session by a change.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub password_outdated: bool,
}

/// The roles of nearly every session, left out of its document.
fn ordinary_roles() -> Vec<Role> {
    vec![Role::User]
}

fn has_ordinary_roles(roles: &[Role]) -> bool {
    roles == [Role::User]
}

/// Authentication methods (RFC 8176 `amr` values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Amr {
    /// A password.
    Pwd,
    /// A one-time code (TOTP or a recovery code).
    Otp,
    /// A hardware-bound key (a passkey).
    Hwk,
    /// The authenticator verified the user (PIN or biometric) — a passkey with user verification.
    User,
    /// More than one factor.
    Mfa,
}

/// The assurance of a session: NIST SP 800-63B's authenticator assurance level (1 = one factor,
/// 2 = two), the methods used (RFC 8176) and when the user last authenticated (ms), which
/// step-up refreshes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assurance {
    pub aal: u8,
    /// Stored as one string of words (`"pwd otp mfa"`), as OAuth writes scopes: an array would
    /// cost each session document ≈ 50 bytes more (the API still shows an array).
    #[serde(with = "amr_words")]
    pub amr: Vec<Amr>,
    pub auth_time: i64,
}

/// `Vec<Amr>` as space-separated RFC 8176 names.
mod amr_words {
    use super::Amr;
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

    pub fn serialize<S: Serializer>(amr: &[Amr], s: S) -> Result<S::Ok, S::Error> {
        let names: Vec<String> = amr
            .iter()
            .map(|m| serde_json::to_value(m).ok().and_then(|v| v.as_str().map(str::to_owned)))
            .collect::<Option<_>>()
            .ok_or_else(|| serde::ser::Error::custom("an amr value without a name"))?;
        s.serialize_str(&names.join(" "))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Amr>, D::Error> {
        let words = String::deserialize(d)?;
        words
            .split_whitespace()
            .map(|w| serde_json::from_value(serde_json::Value::from(w)).map_err(D::Error::custom))
            .collect()
    }
}

impl Assurance {
    /// A password alone, at `now`.
    pub fn password(now: i64) -> Self {
        Assurance { aal: 1, amr: vec![Amr::Pwd], auth_time: now }
    }

    /// A password and a one-time code (TOTP or recovery code), at `now`.
    pub fn password_and_code(now: i64) -> Self {
        Assurance { aal: 2, amr: vec![Amr::Pwd, Amr::Otp, Amr::Mfa], auth_time: now }
    }

    /// A passkey with user verification: something the user has and is (or knows), at `now`.
    pub fn passkey(now: i64) -> Self {
        Assurance { aal: 2, amr: vec![Amr::Hwk, Amr::User, Amr::Mfa], auth_time: now }
    }
}

impl SessionDoc {
    /// The device as the user's own pages name it: a bearer session is the mobile app (what the
    /// server knows, not what the client says); a browser is named from its User-Agent ("Chrome
    /// on Android").
    pub fn device_name(&self) -> String {
        match self.kind {
            SessionKind::Mobile => "redbank mobile app".into(),
            SessionKind::Browser => crate::audit::describe_device(&self.user_agent),
        }
    }

    /// When the absolute lifetime ends (ms since epoch), however busy the session is.
    pub fn expires_at(&self, config: &Config) -> i64 {
        self.created_at + config.session.absolute_secs as i64 * 1000
    }

    pub fn is_admin(&self) -> bool {
        self.roles.contains(&Role::Admin)
    }

    pub fn user_view(&self) -> UserView {
        UserView {
            username: self.user.clone(),
            display_name: self.display_name.clone(),
            roles: self.roles.clone(),
            account: self.account.clone(),
        }
    }

    /// When the session ends if nothing more happens (ms): its idle timeout from the last
    /// refresh, or its absolute end if sooner.
    pub fn idle_deadline(&self, config: &Config) -> i64 {
        (self.last_seen_at + config.session.idle_secs as i64 * 1000).min(self.expires_at(config))
    }

    /// The signed-in user as pages show them, with when the session idles out (the page warns a
    /// minute before and offers to stay signed in).
    pub fn page_user(&self, config: &Config) -> PageUser {
        let left_ms = (self.idle_deadline(config) - crate::clock::now_ms()).max(0);
        PageUser {
            view: self.user_view(),
            idle_left_secs: (left_ms / 1000) as u64,
            idle_minutes: config.session.idle_secs.div_ceil(60),
            password_outdated: self.password_outdated,
            // A session at AAL1 is a password sign-in of a user without any factor (one with a
            // factor never has a password-only session): offer the passkey, with no lookup.
            offer_passkey: self.assurance.aal < 2 && !self.is_admin(),
        }
    }
}

/// [`UserView`] for templates: plus the seconds until the session idles out (a count, not a
/// time: the browser's clock may be off) and the idle limit.
#[derive(Debug, Clone, Serialize)]
pub struct PageUser {
    #[serde(flatten)]
    pub view: UserView,
    pub idle_left_secs: u64,
    pub idle_minutes: u64,
    pub password_outdated: bool,
    /// Signed in with a password alone: the dashboard offers a passkey.
    pub offer_passkey: bool,
}

/// A live session: its public id (the key suffix, base64url SHA-256 of the token), its document
/// and, when it was found by its token, its CSRF token.
#[derive(Debug, Clone)]
pub struct Session {
    pub id: SessionId,
    pub doc: SessionDoc,
    csrf: Option<String>,
}

impl Session {
    /// The session `token` names: its id and CSRF token both come from the token.
    pub fn of_token(token: &SessionToken, doc: SessionDoc) -> Self {
        Session { id: token.id(), doc, csrf: Some(token.csrf()) }
    }

    /// A session found by a search (the sessions page, the console): no token, so no CSRF
    /// token; it can be shown and ended, not acted as.
    pub fn listed(id: SessionId, doc: SessionDoc) -> Self {
        Session { id, doc, csrf: None }
    }

    /// The synchronizer token that the session's own forms and `X-CSRF-Token` carry; empty for
    /// a listed session, which no check accepts (`csrf::tokens_match`).
    pub fn csrf(&self) -> &str {
        self.csrf.as_deref().unwrap_or_default()
    }

    /// This session as the subject of a security notice to the account's other dashboards.
    pub fn announcer(&self) -> crate::audit::Announcer<'_> {
        crate::audit::Announcer {
            account: &self.doc.account,
            session: self.id.as_str(),
            user_agent: &self.doc.user_agent,
            ip: &self.doc.ip,
        }
    }
}

/// Usernames are short and plain so they are safe as key parts and RediSearch tags.
pub fn valid_username(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.')
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn doc(roles: Vec<Role>) -> SessionDoc {
        SessionDoc {
            v: SESSION_SCHEMA,
            user: "bob".into(),
            display_name: "Bob Jones".into(),
            roles,
            account: "1580783161".into(),
            kind: SessionKind::Browser,
            created_at: 1,
            last_seen_at: 2,
            ip: "127.0.0.1".into(),
            user_agent: "curl/8".into(),
            assurance: Assurance::password_and_code(3),
            current_balance_amount: None,
            password_outdated: false,
        }
    }

    #[test]
    fn a_session_document_is_flat_and_leaves_out_what_is_ordinary() {
        let json = serde_json::to_value(doc(vec![Role::User])).unwrap();
        assert_eq!(json["aal"], 2);
        assert_eq!(json["amr"], "pwd otp mfa");
        assert_eq!(json["auth_time"], 3);
        for absent in ["roles", "assurance", "csrf_token", "password_outdated"] {
            assert!(json.get(absent).is_none(), "{absent} in {json}");
        }
        let back: SessionDoc = serde_json::from_value(json).unwrap();
        assert_eq!(
            (back.roles, back.assurance),
            (vec![Role::User], Assurance::password_and_code(3))
        );

        let admin = serde_json::to_value(doc(vec![Role::User, Role::Admin])).unwrap();
        assert_eq!(admin["roles"], serde_json::json!(["user", "admin"]));
        let back: SessionDoc = serde_json::from_value(admin).unwrap();
        assert!(back.is_admin());
    }

    #[test]
    fn methods_are_stored_as_words_and_unknown_ones_refused() {
        for assurance in
            [Assurance::password(1), Assurance::passkey(2), Assurance::password_and_code(3)]
        {
            let json = serde_json::to_value(&assurance).unwrap();
            assert!(json["amr"].is_string(), "{json}");
            assert_eq!(serde_json::from_value::<Assurance>(json).unwrap(), assurance);
        }
        let unknown = serde_json::json!({"aal": 2, "amr": "pwd sms", "auth_time": 1});
        assert!(serde_json::from_value::<Assurance>(unknown).is_err());
    }

    #[test]
    fn a_version_1_document_does_not_parse() {
        let mut json = serde_json::to_value(doc(vec![Role::User])).unwrap();
        let object = json.as_object_mut().unwrap();
        let assurance = serde_json::json!({
            "aal": object.remove("aal").unwrap(),
            "amr": object.remove("amr").unwrap(),
            "auth_time": object.remove("auth_time").unwrap(),
        });
        object.insert("assurance".into(), assurance);
        object.insert("v".into(), 1.into());
        assert!(serde_json::from_value::<SessionDoc>(json).is_err());
    }
}
