//! A user's security activity: sign-ins (method, assurance, address, device), failed sign-ins,
//! factor changes, recovery codes used, sessions revoked and step-ups — one Redis stream per user,
//! bounded in length and age, shown on `/security` and by `GET /api/v1/security/activity`.
//!
//! A sign-in from a device that never signed in to the account before is also announced on the
//! account's event channel, so every other open dashboard of the user shows it at once (the feed
//! leaves out the session that signed in).

use serde::{Deserialize, Serialize};

use crate::clock::now_ms;
use crate::error::Result;
use crate::redis::doc::to_json;
use crate::redis::{Db, append_cmd};

/// What we know about the client at login time.
#[derive(Debug, Clone, Default)]
pub struct ClientInfo {
    pub ip: String,
    pub user_agent: String,
}

/// Entries kept per user (about; Redis trims whole nodes).
pub const MAX_ENTRIES: usize = 200;
/// Entries older than this are trimmed, and a stream nobody writes to expires after it.
pub const MAX_AGE_DAYS: i64 = 90;

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Activity {
    /// A new session. `method`: `password`, `totp`, `recovery` or `passkey`.
    SignIn {
        method: String,
        aal: u8,
        new_device: bool,
        session: String,
        kind: String,
    },
    /// A wrong password or code for this account (`method` as above).
    FailedSignIn {
        method: String,
    },
    /// `factor`: `totp`, `passkey` or `recovery_codes`.
    FactorAdded {
        factor: String,
        name: Option<String>,
    },
    FactorRemoved {
        factor: String,
        name: Option<String>,
    },
    RecoveryCodeUsed {
        remaining: usize,
    },
    SessionRevoked {
        session: String,
    },
    /// An operator ended `session` (or, without one, `count` sessions of the user).
    RevokedByOperator {
        session: Option<String>,
        count: usize,
    },
    OtherSessionsSignedOut {
        count: usize,
    },
    StepUp {
        method: String,
        aal: u8,
    },
    /// The owner used a "this wasn't me" link: these factors were removed, every session and
    /// device signed out, and the password marked compromised.
    NotMe {
        factors_removed: Vec<String>,
        signed_out: usize,
    },
    /// The password was replaced after it was marked compromised.
    PasswordRenewed,
    /// The owner changed the password; `signed_out` other sessions ended.
    PasswordChanged {
        signed_out: usize,
    },
    /// A reset link was asked for (the address it went to is the account's own).
    PasswordResetRequested,
    /// The password was reset with an e-mailed link; `signed_out` sessions ended.
    PasswordReset {
        signed_out: usize,
    },
    /// The customer opened the account (`/signup`).
    AccountOpened,
    /// A change of address to `new` was asked for (it waits for `new` to confirm).
    EmailChangeRequested {
        new: String,
    },
    /// The address is now `new`.
    EmailChanged {
        new: String,
    },
    /// The old address undid a change: `email` is back, `signed_out` sessions ended.
    EmailChangeUndone {
        email: String,
        signed_out: usize,
    },
}

/// One entry of the stream.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    /// ms since epoch.
    pub at: i64,
    pub ip: String,
    pub user_agent: String,
    #[serde(flatten)]
    pub activity: Activity,
}

/// Appends to the user's activity. Best effort for the caller: the action it records has
/// happened, so a failure here is logged, not returned.
pub async fn record(db: &Db, username: &str, client: &ClientInfo, activity: Activity) {
    if let Err(e) = append(db, username, client, activity).await {
        rocket::warn!("security activity of {username} not recorded: {e}");
    }
}

async fn append(db: &Db, username: &str, client: &ClientInfo, activity: Activity) -> Result<()> {
    let now = now_ms();
    let entry = Entry {
        at: now,
        ip: client.ip.clone(),
        user_agent: client.user_agent.chars().take(256).collect(),
        activity,
    };
    let doc = to_json(&entry)?;
    let key = db.keys.activity(username);
    let max_age_ms = MAX_AGE_DAYS * 86_400_000;
    let mut pipe = redis::pipe();
    pipe.atomic().add_command(append_cmd(&key, MAX_ENTRIES, &[("doc", &doc)])).ignore();
    pipe.cmd("XTRIM").arg(&key).arg("MINID").arg("~").arg(now - max_age_ms).ignore();
    pipe.cmd("PEXPIRE").arg(&key).arg(max_age_ms).ignore();
    db.query::<()>(&pipe).await
}

/// The newest `count` entries, newest first (entries that no longer parse are skipped).
pub async fn newest(db: &Db, username: &str, count: usize) -> Result<Vec<Entry>> {
    let entries = db.newest_entries(&db.keys.activity(username), count).await?;
    Ok(entries.iter().filter_map(|e| serde_json::from_str(e.field("doc")?).ok()).collect())
}

/// Marks a security notice on an account channel (transaction payloads are JSON objects); the
/// live bridge turns what follows into a `security` event.
pub const SECURITY_PREFIX: &str = "security:";

/// The session a notice is about: it is told to the account's other open dashboards, not to
/// itself.
#[derive(Debug, Clone, Copy)]
pub struct Announcer<'a> {
    pub account: &'a str,
    /// The session's public id.
    pub session: &'a str,
    pub user_agent: &'a str,
    pub ip: &'a str,
}

/// Tells the user's other open dashboards that a session just signed in, at `at`, from a new
/// device (over the account's event channel).
pub async fn announce_sign_in(db: &Db, who: Announcer<'_>, at: i64) {
    let mut notice = about(who, "new_sign_in", at);
    notice["session"] = serde_json::json!(who.session);
    announce(db, who, notice).await;
}

/// Tells the user's other open dashboards that a session added a second factor: the one thing
/// a session may do without a step-up (adding a first factor is protective) that a thief holding
/// it would want to do, so the owner hears of it at once.
pub async fn announce_factor(db: &Db, who: Announcer<'_>, factor: &str, name: Option<&str>) {
    let mut notice = about(who, "factor_added", crate::clock::now_ms());
    notice["factor"] = serde_json::json!(factor);
    notice["name"] = serde_json::json!(name);
    announce(db, who, notice).await;
}

/// The part of a notice that says who did it: the device, address and time.
fn about(who: Announcer<'_>, kind: &str, at: i64) -> serde_json::Value {
    serde_json::json!({
        "type": kind,
        "device": describe_device(who.user_agent),
        "ip": who.ip,
        "at": crate::clock::rfc3339_ms(at),
        "time": crate::clock::display_ms(at),
    })
}

/// Publishes `notice` to every open stream of the account except those of the session.
async fn announce(db: &Db, who: Announcer<'_>, notice: serde_json::Value) {
    let message = serde_json::json!({
        "account": who.account,
        "session": who.session,
        "notice": notice,
    });
    let payload = format!("{SECURITY_PREFIX}{message}");
    let channel = db.keys.events(who.account);
    let published = db.query::<i64>(redis::cmd("SPUBLISH").arg(&channel).arg(&payload)).await;
    if let Err(e) = published {
        rocket::warn!("security notice not announced: {e}");
    }
}

/// "Chrome on Linux": the browser and system named by a `User-Agent`, for people (never for a
/// decision: the header is whatever the client says).
pub fn describe_device(user_agent: &str) -> String {
    let ua = user_agent;
    let browser = if ua.contains("Edg/") {
        "Edge"
    } else if ua.contains("OPR/") {
        "Opera"
    } else if ua.contains("Firefox/") {
        "Firefox"
    } else if ua.contains("Chrome/") || ua.contains("Chromium/") {
        "Chrome"
    } else if ua.contains("Safari/") {
        "Safari"
    } else {
        ua.split('/').next().filter(|n| !n.is_empty() && n.len() <= 32).unwrap_or("Unknown client")
    };
    let system = if ua.contains("Android") {
        Some("Android")
    } else if ua.contains("iPhone") {
        Some("iPhone")
    } else if ua.contains("iPad") {
        Some("iPad")
    } else if ua.contains("Windows") {
        Some("Windows")
    } else if ua.contains("Mac OS X") || ua.contains("Macintosh") {
        Some("macOS")
    } else if ua.contains("CrOS") {
        Some("ChromeOS")
    } else if ua.contains("Linux") || ua.contains("X11") {
        Some("Linux")
    } else {
        None
    };
    match system {
        Some(system) => format!("{browser} on {system}"),
        None => browser.to_owned(),
    }
}

/// Failed sign-ins kept in the stream.
pub const FAILED_KEPT: usize = 1_000;

/// Records a failed password sign-in of an existing account.
pub async fn failed_sign_in(db: &Db, user: &str, ip: &str) {
    let key = db.keys.failed_sign_ins();
    let written = db.append(&key, FAILED_KEPT, &[("user", user), ("ip", ip)]).await;
    if let Err(e) = written {
        rocket::warn!("failed sign-in not recorded for the console: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_are_named_for_people() {
        let chrome = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) \
                      HeadlessChrome/131.0.0.0 Safari/537.36";
        assert_eq!(describe_device(chrome), "Chrome on Linux");
        let iphone = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 \
                      (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1";
        assert_eq!(describe_device(iphone), "Safari on iPhone");
        let android = "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like \
                       Gecko) Chrome/131.0.0.0 Mobile Safari/537.36";
        assert_eq!(describe_device(android), "Chrome on Android");
        // A name a client gives itself is only a name: never "redbank" on the client's word.
        assert_eq!(describe_device("redbank-ios/2.1 (iPhone; iOS 17.0)"), "redbank-ios on iPhone");
        assert_eq!(describe_device("curl/8.5.0"), "curl");
        assert_eq!(describe_device(""), "Unknown client");
    }

    #[test]
    fn entries_are_flat_json_with_a_type() {
        let entry = Entry {
            at: 1,
            ip: "127.0.0.1".into(),
            user_agent: "curl/8".into(),
            activity: Activity::StepUp { method: "totp".into(), aal: 2 },
        };
        let json = serde_json::to_value(&entry).unwrap_or_default();
        assert_eq!(json["type"], "step_up");
        assert_eq!(json["aal"], 2);
        let back: Entry = serde_json::from_value(json).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back.activity, entry.activity);
    }
}
