//! `/admin` and `/api/v1/admin/*`: one set of operations, a page and JSON.

use rocket::http::Status;
use rocket::response::Redirect;
use rocket::serde::json::Json;
use rocket::{State, delete, get, post, uri};
use rocket_dyn_templates::{Template, context};
use serde::Serialize;

use super::store::{FailedSignIns, Filter};
use super::{Admin, FreshAdmin, store};
use crate::audit;
use crate::audit::{Activity, ClientInfo};
use crate::auth::context::AuthApp;
use crate::auth::guard::CsrfChecked;
use crate::auth::guard::{ApiUser, CurrentUser};
use crate::auth::model::{Session, SessionId, SessionKind};
use crate::auth::notice::Notice;
use crate::auth::sessions::routes::SignedOutCount;
use crate::auth::step_up::Signed;
use crate::auth::store as sessions;
use crate::clock::{display_ms, rfc3339_ms};
use crate::config::Config;
use crate::error::{ApiError, Error, Result};
use crate::redis::Db;
use crate::web::app::App;

/// Any user's session, as an operator sees it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AdminSession {
    id: String,
    user: String,
    kind: SessionKind,
    ip: String,
    user_agent: String,
    /// The device in words, as the user's own sessions page names it: a browser and system
    /// ("Chrome on Android"), or the mobile app for a bearer session.
    device: String,
    created_at: String,
    last_seen_at: String,
    aal: u8,
    /// The same times for people (UTC).
    created: String,
    last_seen: String,
}

fn session_json(s: &Session) -> AdminSession {
    AdminSession {
        id: s.id.as_str().to_owned(),
        user: s.doc.user.clone(),
        kind: s.doc.kind,
        ip: s.doc.ip.clone(),
        user_agent: s.doc.user_agent.clone(),
        device: s.doc.device_name(),
        created_at: rfc3339_ms(s.doc.created_at),
        last_seen_at: rfc3339_ms(s.doc.last_seen_at),
        aal: s.doc.assurance.aal,
        created: display_ms(s.doc.created_at),
        last_seen: display_ms(s.doc.last_seen_at),
    }
}

/// Ends one session (any user's), recording it for the user and in the audit stream.
async fn revoke(db: &Db, admin: &Session, id: &str, client: &ClientInfo) -> Result<String> {
    let id = SessionId::parse(id).ok_or(Error::NotFound)?;
    if id == admin.id {
        return Err(Error::Forbidden("This is your own session: sign out instead.".into()));
    }
    let doc = sessions::get_session(db, &id).await?.ok_or(Error::NotFound)?;
    if !sessions::destroy(db, &id).await? {
        return Err(Error::NotFound);
    }
    let record = Activity::RevokedByOperator { session: Some(id.as_str().to_owned()), count: 1 };
    audit::record(db, &doc.user, client, record).await;
    store::audit(db, &admin.doc.user, "revoke_session", &doc.user, id.as_str(), client).await;
    Ok(doc.user)
}

/// Ends every session of `user` (the operator's own current one excepted).
async fn revoke_user(db: &Db, admin: &Session, user: &str, client: &ClientInfo) -> Result<usize> {
    if !crate::auth::model::valid_username(user)
        || !crate::auth::users::user_exists(db, user).await?
    {
        return Err(Error::NotFound);
    }
    let count = sessions::destroy_others(db, user, Some(&admin.id)).await?;
    crate::auth::throttle::forget_devices(db, user).await?;
    let record = Activity::RevokedByOperator { session: None, count };
    audit::record(db, user, client, record).await;
    store::audit(db, &admin.doc.user, "revoke_user_sessions", user, &count.to_string(), client)
        .await;
    Ok(count)
}

/// Removes every second factor of `user` (TOTP, passkeys, recovery codes) and ends their
/// sessions: the bank's answer to a customer who lost their devices, or whose account got a
/// thief's passkey (a first factor needs no step-up). The customer then signs in with the
/// password and sets up new factors.
async fn reset_factors(
    db: &Db,
    config: &Config,
    admin: &Session,
    user: &str,
    client: &ClientInfo,
) -> Result<usize> {
    if !crate::auth::model::valid_username(user)
        || !crate::auth::users::user_exists(db, user).await?
    {
        return Err(Error::NotFound);
    }
    if user == admin.doc.user {
        return Err(Error::Forbidden("Operators cannot reset their own factors here.".into()));
    }
    let removed = crate::auth::factors::store::remove_all_factors(db, user).await?;
    let count = sessions::destroy_others(db, user, None).await?;
    let record = Activity::FactorRemoved { factor: "all (by the bank)".into(), name: None };
    audit::record(db, user, client, record).await;
    store::audit(db, &admin.doc.user, "reset_factors", user, &removed.to_string(), client).await;
    crate::auth::notice::factors_changed(db, config, user, client, Notice::FactorsReset).await;
    Ok(count)
}

/// The live counts: sessions across all instances (sampled from Redis now), the rest this
/// instance's own since it started.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Stats {
    sessions_active: SessionCounts,
    event_streams_open: StreamCounts,
    this_process: ProcessCounts,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SessionCounts {
    browser: i64,
    mobile: i64,
}

/// Open `/events` streams by transport.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StreamCounts {
    rocket: i64,
    listener: i64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ProcessCounts {
    logins: LoginCounts,
    events_fanned_out: u64,
    slow_clients_dropped: u64,
    bridge_reconnects: u64,
    generator_transactions: u64,
    redis_errors: u64,
}

/// Sign-ins by outcome.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LoginCounts {
    ok: u64,
    bad_password: u64,
    throttled: u64,
    second_factor: u64,
    bad_code: u64,
}

/// The live counts (sampled now for sessions; the process's own for the rest).
async fn stats(db: &Db) -> Stats {
    crate::auth::store::sample_sessions(db).await;
    let m = &db.metrics;
    let gauge = |v: &prometheus::IntGaugeVec, label: &str| v.with_label_values(&[label]).get();
    let logins = |label: &str| m.logins.with_label_values(&[label]).get();
    Stats {
        sessions_active: SessionCounts {
            browser: gauge(&m.sessions_active, "browser"),
            mobile: gauge(&m.sessions_active, "mobile"),
        },
        event_streams_open: StreamCounts {
            rocket: gauge(&m.streams_open, "rocket"),
            listener: gauge(&m.streams_open, "listener"),
        },
        this_process: ProcessCounts {
            logins: LoginCounts {
                ok: logins("ok"),
                bad_password: logins("bad_password"),
                throttled: logins("throttled"),
                second_factor: logins("second_factor"),
                bad_code: logins("bad_code"),
            },
            events_fanned_out: m.events_fanned_out.get(),
            slow_clients_dropped: m.slow_clients_dropped.get(),
            bridge_reconnects: m.bridge_reconnects.get(),
            generator_transactions: m.generator_transactions.get(),
            redis_errors: m.redis_errors.get(),
        },
    }
}

/// Failed sign-ins of the recent past (the audit stream's newest entries).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FailedView {
    total: usize,
    /// RFC 3339: the oldest entry counted.
    since: Option<String>,
    by_account: Vec<ByAccount>,
    by_address: Vec<ByAddress>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ByAccount {
    user: String,
    count: usize,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ByAddress {
    address: String,
    count: usize,
}

fn failed_json(failed: &FailedSignIns) -> FailedView {
    let by_account = failed.by_account.iter();
    let by_address = failed.by_address.iter();
    FailedView {
        total: failed.total,
        since: failed.since.map(rfc3339_ms),
        by_account: by_account.map(|(a, n)| ByAccount { user: a.clone(), count: *n }).collect(),
        by_address: by_address.map(|(a, n)| ByAddress { address: a.clone(), count: *n }).collect(),
    }
}

// ---- API ------------------------------------------------------------------------------------

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AdminSessionPage {
    total: usize,
    page: usize,
    pages: usize,
    sessions: Vec<AdminSession>,
}

/// Active sessions across all users, newest first, filtered (admin at AAL2).
#[utoipa::path(
    tag = "admin",
    operation_id = "admin_sessions",
    params(
        ("user" = Option<String>, Query, description = "Only this user's"),
        ("kind" = Option<String>, Query, description = "`browser` or `mobile`"),
        ("ip" = Option<String>, Query, description = "Only from this address"),
        ("older_than_secs" = Option<u64>, Query, maximum = 315_360_000, description = "Only sessions signed in at least this long ago (seconds, at most ten years)"),
        ("page" = Option<usize>, Query, minimum = 1, maximum = 1000, description = "1 (default) to 1000"),
    ),
    responses(
        (status = 200, body = AdminSessionPage, links(
            ("EndFirst" = (operation_id = "admin_revoke_session", parameters(("id" = "$response.body#/sessions/0/id")))),
        )),
        (status = 400, description = "A filter that cannot match (bad name, kind, address or page)", body = ApiError),
    )
)]
#[get("/api/v1/admin/sessions?<user>&<kind>&<ip>&<older_than_secs>&<page>")]
pub async fn api_sessions(
    user: Option<&str>,
    kind: Option<&str>,
    ip: Option<&str>,
    older_than_secs: Option<u64>,
    page: Option<usize>,
    _admin: Admin<ApiUser>,
    db: &State<Db>,
) -> Result<Json<AdminSessionPage>> {
    let filter = Filter::parse(user, kind, ip, older_than_secs, page)?;
    let (total, found) = store::search(db, &filter).await?;
    let pages = total.div_ceil(store::PAGE_SIZE).max(1);
    Ok(Json(AdminSessionPage {
        total,
        page: filter.page,
        pages,
        sessions: found.iter().map(session_json).collect(),
    }))
}

/// Ends any user's session (their open streams end within a heartbeat); not the operator's own
/// current one (that is `DELETE /api/v1/session`).
#[utoipa::path(
    tag = "admin",
    operation_id = "admin_revoke_session",
    params(("id" = String, Path)),
    responses(
        (status = 204, description = "Ended"),
        (status = 403, description = "Not an admin at AAL2, or the operator's own current session", body = ApiError),
        (status = 404, description = "No such session", body = ApiError),
    )
)]
#[delete("/api/v1/admin/sessions/<id>")]
pub async fn api_revoke(id: &str, admin: Admin<ApiUser>, app: AuthApp<'_>) -> Result<Status> {
    let AuthApp { db, client, .. } = app;
    revoke(db, admin.session(), id, &client).await?;
    Ok(Status::NoContent)
}

/// Ends every session of a user (the operator's own excepted); needs a two-factor
/// authentication within `step_up_max_age_secs` (the step-up challenge otherwise).
#[utoipa::path(
    tag = "admin",
    params(("user" = String, Path)),
    responses(
        (status = 200, body = SignedOutCount),
        (status = 404, description = "No such user", body = ApiError),
    )
)]
#[delete("/api/v1/admin/users/<user>/sessions")]
pub async fn api_revoke_user(
    user: &str,
    admin: FreshAdmin<ApiUser>,
    app: AuthApp<'_>,
) -> Result<Json<SignedOutCount>> {
    let AuthApp { db, client, .. } = app;
    let count = revoke_user(db, admin.session(), user, &client).await?;
    Ok(Json(SignedOutCount { signed_out: count }))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FactorsReset {
    factors_removed: bool,
    signed_out: usize,
}

/// Removes every second factor of a user and ends their sessions: the way back for a customer
/// who lost their devices, or whose account got a thief's passkey. Needs a two-factor
/// authentication within `step_up_max_age_secs` (the step-up challenge otherwise).
#[utoipa::path(
    tag = "admin",
    params(("user" = String, Path)),
    responses(
        (status = 200, body = FactorsReset),
        (status = 403, description = "Not an admin at AAL2, or the operator's own account", body = ApiError),
        (status = 404, description = "No such user", body = ApiError),
    )
)]
#[delete("/api/v1/admin/users/<user>/factors")]
pub async fn api_reset_factors(
    user: &str,
    admin: FreshAdmin<ApiUser>,
    app: AuthApp<'_>,
) -> Result<Json<FactorsReset>> {
    let AuthApp { db, config, client, .. } = app;
    let count = reset_factors(db, config, admin.session(), user, &client).await?;
    Ok(Json(FactorsReset { factors_removed: true, signed_out: count }))
}

/// Recent failed sign-ins by account and by address.
#[utoipa::path(tag = "admin", responses((status = 200, body = FailedView)))]
#[get("/api/v1/admin/failed-sign-ins")]
pub async fn api_failed_sign_ins(
    _admin: Admin<ApiUser>,
    db: &State<Db>,
) -> Result<Json<FailedView>> {
    Ok(Json(failed_json(&store::failed_sign_ins(db).await?)))
}

/// The live counts of the metrics.
#[utoipa::path(tag = "admin", responses((status = 200, body = Stats)))]
#[get("/api/v1/admin/stats")]
pub async fn api_stats(_admin: Admin<ApiUser>, db: &State<Db>) -> Json<Stats> {
    Json(stats(db).await)
}

// ---- page -----------------------------------------------------------------------------------

#[get("/admin?<user>&<kind>&<ip>&<older_than_secs>&<page>")]
#[allow(clippy::too_many_arguments)] // one per query field and guard: what Rocket routes look like
pub async fn page(
    user: Option<&str>,
    kind: Option<&str>,
    ip: Option<&str>,
    older_than_secs: Option<u64>,
    page: Option<usize>,
    admin: Admin<CurrentUser>,
    app: App<'_>,
) -> Result<Template> {
    let App { db, config } = app;
    let filter = Filter::parse(user, kind, ip, older_than_secs, page)?;
    let (total, found) = store::search(db, &filter).await?;
    let me = admin.session();
    Ok(Template::render(
        "admin/console",
        context! {
            user: me.doc.page_user(config),
            csrf: me.csrf(),
            total,
            page: filter.page,
            pages: total.div_ceil(store::PAGE_SIZE).max(1),
            sessions: found.iter().map(session_json).collect::<Vec<_>>(),
            filter_user: user.unwrap_or_default(),
            filter_kind: kind.unwrap_or_default(),
            filter_ip: ip.unwrap_or_default(),
            failed: failed_json(&store::failed_sign_ins(db).await?),
            stats: stats(db).await,
            me: me.id.as_str(),
        },
    ))
}

#[post("/admin/sessions/<id>/revoke", data = "<_csrf>")]
pub async fn revoke_form(
    id: &str,
    admin: Admin<CurrentUser>,
    _csrf: CsrfChecked,
    app: AuthApp<'_>,
) -> Result<Redirect> {
    let AuthApp { db, client, .. } = app;
    revoke(db, admin.session(), id, &client).await?;
    Ok(Redirect::to(uri!("/admin")))
}

#[post("/admin/users/<user>/reset-factors", data = "<_csrf>")]
pub async fn reset_factors_form(
    user: &str,
    admin: FreshAdmin<CurrentUser>,
    _csrf: CsrfChecked,
    app: AuthApp<'_>,
) -> Result<Redirect> {
    let AuthApp { db, config, client, .. } = app;
    reset_factors(db, config, admin.session(), user, &client).await?;
    Ok(Redirect::to(uri!("/admin")))
}

#[post("/admin/users/<user>/revoke", data = "<_csrf>")]
pub async fn revoke_user_form(
    user: &str,
    admin: FreshAdmin<CurrentUser>,
    _csrf: CsrfChecked,
    app: AuthApp<'_>,
) -> Result<Redirect> {
    let AuthApp { db, client, .. } = app;
    revoke_user(db, admin.session(), user, &client).await?;
    Ok(Redirect::to(uri!("/admin")))
}
