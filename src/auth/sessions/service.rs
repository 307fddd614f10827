//! The rules of revoking sessions: only the caller's own, recorded in the security activity.

use serde::Serialize;

use crate::audit;
use crate::audit::Activity;
use crate::audit::ClientInfo;
use crate::auth::model::{Amr, Session, SessionId, SessionKind};
use crate::auth::store;
use crate::clock::{display_ms, rfc3339_ms};
use crate::error::{Error, Result};
use crate::redis::Db;

/// Deletes session `id` if `me` owns it (operators end other users' sessions in the console).
/// True when it was `me`'s own session.
pub async fn revoke(db: &Db, me: &Session, id: &str, client: &ClientInfo) -> Result<bool> {
    let id = SessionId::parse(id).ok_or(Error::NotFound)?;
    let doc = store::get_session(db, &id).await?.ok_or(Error::NotFound)?;
    if doc.user != me.doc.user {
        return Err(Error::Forbidden("You can only revoke your own sessions.".into()));
    }
    if store::destroy(db, &id).await? {
        let revoked = Activity::SessionRevoked { session: id.as_str().to_owned() };
        audit::record(db, &doc.user, client, revoked).await;
    }
    Ok(id == me.id)
}

/// Ends every other session of `me`'s user and records it; how many ended.
/// "Sign out everywhere else": every other session ends, and every remembered device is
/// forgotten (a thief's device token must not keep its own throttle budget).
pub async fn sign_out_others(db: &Db, me: &Session, client: &ClientInfo) -> Result<usize> {
    let count = store::destroy_others(db, &me.doc.user, Some(&me.id)).await?;
    crate::auth::throttle::forget_devices(db, &me.doc.user).await?;
    audit::record(db, &me.doc.user, client, Activity::OtherSessionsSignedOut { count }).await;
    Ok(count)
}

/// A session as a row on the sessions page or in the API.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SessionRow {
    id: String,
    user: String,
    kind: SessionKind,
    ip: String,
    user_agent: String,
    created_at: String,
    last_seen_at: String,
    created: String,
    last_seen: String,
    current: bool,
    /// Assurance level (1 or 2), methods (RFC 8176) and time of the last authentication.
    aal: u8,
    amr: Vec<Amr>,
    auth_time: String,
}

pub fn rows(sessions: Vec<Session>, current: &SessionId) -> Vec<SessionRow> {
    sessions
        .into_iter()
        .map(|s| SessionRow {
            current: &s.id == current,
            id: s.id.as_str().to_owned(),
            user: s.doc.user,
            kind: s.doc.kind,
            ip: s.doc.ip,
            user_agent: s.doc.user_agent,
            created_at: rfc3339_ms(s.doc.created_at),
            last_seen_at: rfc3339_ms(s.doc.last_seen_at),
            created: display_ms(s.doc.created_at),
            last_seen: display_ms(s.doc.last_seen_at),
            aal: s.doc.assurance.aal,
            amr: s.doc.assurance.amr,
            auth_time: rfc3339_ms(s.doc.assurance.auth_time),
        })
        .collect()
}
