//! The session API for mobile clients (and the browser's own session): who am I, stay signed
//! in, sign out, and the active sessions.

use rocket::http::Status;
use rocket::serde::json::Json;
use rocket::{State, delete, get, post};
use serde::Serialize;

use crate::auth::context::AuthApp;
use crate::auth::guard::{ApiUser, Via, removal_cookie};
use crate::auth::model::{Amr, SessionKind, UserView};
use crate::auth::sessions::service::{SessionRow, revoke, rows, sign_out_others};
use crate::auth::store;
use crate::clock::rfc3339_ms;
use crate::config::Config;
use crate::error::{ApiError, Error, Result};
use crate::redis::Db;
use crate::web::app::App;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Me {
    user: UserView,
    session: MySession,
}

/// The session the request came with.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MySession {
    kind: SessionKind,
    /// How this request presented it: `bearer` or `cookie`.
    via: &'static str,
    created_at: String,
    last_seen_at: String,
    expires_at: String,
    ip: String,
    user_agent: String,
    aal: u8,
    amr: Vec<Amr>,
    auth_time: String,
}

/// Who is signed in, and the session's kind, times and assurance.
#[utoipa::path(tag = "session", responses((status = 200, body = Me)))]
#[get("/api/v1/me")]
pub fn api_me(user: ApiUser, config: &State<Config>) -> Json<Me> {
    let doc = &user.session.doc;
    Json(Me {
        user: doc.user_view(),
        session: MySession {
            kind: doc.kind,
            via: if user.via == Via::Bearer { "bearer" } else { "cookie" },
            created_at: rfc3339_ms(doc.created_at),
            last_seen_at: rfc3339_ms(doc.last_seen_at),
            expires_at: rfc3339_ms(doc.expires_at(config)),
            ip: doc.ip.clone(),
            user_agent: doc.user_agent.clone(),
            aal: doc.assurance.aal,
            amr: doc.assurance.amr.clone(),
            auth_time: rfc3339_ms(doc.assurance.auth_time),
        },
    })
}

/// The session after "stay signed in".
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Refreshed {
    /// RFC 3339: when it ends if nothing more happens (`session_idle_secs` from now, or the
    /// absolute end if sooner).
    idle_expires_at: String,
    /// RFC 3339: the absolute end.
    expires_at: String,
    /// Seconds until it idles out (clients count from this, whatever their clock says).
    idle_secs_left: u64,
}

/// "Stay signed in": extends the session's idle timeout now — the one request a page makes just
/// to say the customer is still there (an open live stream never counts as activity).
#[utoipa::path(tag = "session", responses((status = 200, body = Refreshed)))]
#[post("/api/v1/session/refresh")]
pub async fn api_refresh(user: ApiUser, app: App<'_>) -> Result<Json<Refreshed>> {
    let App { db, config } = app;
    let mut session = user.session;
    if !store::touch(db, config, &mut session).await? {
        return Err(Error::Unauthorized);
    }
    let deadline = session.doc.idle_deadline(config);
    Ok(Json(Refreshed {
        idle_expires_at: rfc3339_ms(deadline),
        expires_at: rfc3339_ms(session.doc.expires_at(config)),
        idle_secs_left: ((deadline - crate::clock::now_ms()).max(0) / 1000) as u64,
    }))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SignedOut {
    #[schema(example = "signed out")]
    status: &'static str,
}

/// Signs this session out (its token stops working at once).
#[utoipa::path(tag = "session", responses((status = 200, body = SignedOut)))]
#[delete("/api/v1/session")]
pub async fn api_logout(user: ApiUser, app: AuthApp<'_>) -> Result<Json<SignedOut>> {
    let AuthApp { db, config, jar, .. } = app;
    store::destroy(db, &user.session.id).await?;
    if user.via == Via::Cookie {
        jar.add(removal_cookie(config));
    }
    Ok(Json(SignedOut { status: "signed out" }))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SessionList {
    sessions: Vec<SessionRow>,
}

/// The caller's active sessions (an admin's too: the console lists everyone's), newest first; `current` marks
/// the one asking.
#[utoipa::path(tag = "session", responses((status = 200, body = SessionList)))]
#[get("/api/v1/sessions")]
pub async fn api_sessions(user: ApiUser, db: &State<Db>) -> Result<Json<SessionList>> {
    let list = store::list_sessions(db, Some(&user.session.doc.user)).await?;
    Ok(Json(SessionList { sessions: rows(list, &user.session.id) }))
}

/// How many sessions an action ended.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SignedOutCount {
    pub signed_out: usize,
}

/// Signs out every other session of the caller (protective: no step-up), e.g. from the
/// dashboard's "not me" when the session it named has already changed.
#[utoipa::path(tag = "session", responses((status = 200, body = SignedOutCount)))]
#[post("/api/v1/sessions/revoke-others")]
pub async fn api_revoke_others(user: ApiUser, app: AuthApp<'_>) -> Result<Json<SignedOutCount>> {
    let AuthApp { db, client, .. } = app;
    let count = sign_out_others(db, &user.session, &client).await?;
    Ok(Json(SignedOutCount { signed_out: count }))
}

/// Signs out one of the caller's sessions by its `id` (from the list).
#[utoipa::path(
    tag = "session",
    params(("id" = String, Path, description = "A session id from `GET /api/v1/sessions`")),
    responses(
        (status = 204, description = "Signed out"),
        (status = 404, description = "No such session of yours", body = ApiError),
    )
)]
#[delete("/api/v1/sessions/<id>")]
pub async fn api_revoke(id: &str, user: ApiUser, app: AuthApp<'_>) -> Result<Status> {
    let AuthApp { db, client, .. } = app;
    revoke(db, &user.session, id, &client).await?;
    Ok(Status::NoContent)
}
