//! `/admin` and `/api/v1/admin/*`: one set of operations, a page and JSON.

use rocket::form::Form;
use rocket::http::Status;
use rocket::response::Redirect;
use rocket::serde::json::{Json, Value, serde_json::json};
use rocket::{State, delete, get, post, uri};
use rocket_dyn_templates::{Template, context};

use super::Admin;
use super::store::{self, FailedSignIns, Filter};
use crate::clock::{display_ms, rfc3339_ms};
use crate::error::{Error, Result};
use crate::mfa::activity::{self, Activity};
use crate::redis::Db;
use crate::session::guard::{ApiUser, CurrentUser};
use crate::session::model::{Session, SessionId};
use crate::session::routes::CsrfForm;
use crate::session::store::{self as sessions, ClientInfo};

fn session_json(s: &Session) -> Value {
    json!({
        "id": s.id.as_str(),
        "user": s.doc.user,
        "kind": s.doc.kind,
        "ip": s.doc.ip,
        "user_agent": s.doc.user_agent,
        "device": activity::describe_device(&s.doc.user_agent),
        "created_at": rfc3339_ms(s.doc.created_at),
        "last_seen_at": rfc3339_ms(s.doc.last_seen_at),
        "aal": s.doc.assurance.aal,
        "created": display_ms(s.doc.created_at),
        "last_seen": display_ms(s.doc.last_seen_at),
    })
}

/// Ends one session (any user's), recording it for the user and in the audit stream.
async fn revoke(db: &Db, admin: &Session, id: &str, client: &ClientInfo) -> Result<String> {
    let id = SessionId::parse(id).ok_or(Error::NotFound)?;
    let doc = sessions::get_session(db, &id).await?.ok_or(Error::NotFound)?;
    if !sessions::destroy(db, &id).await? {
        return Err(Error::NotFound);
    }
    let record = Activity::RevokedByOperator { session: Some(id.as_str().to_owned()), count: 1 };
    activity::record(db, &doc.user, client, record).await;
    store::audit(db, &admin.doc.user, "revoke_session", &doc.user, id.as_str(), client).await;
    Ok(doc.user)
}

/// Ends every session of `user` (the operator's own current one excepted).
async fn revoke_user(db: &Db, admin: &Session, user: &str, client: &ClientInfo) -> Result<usize> {
    if !crate::session::model::valid_username(user) || !sessions::user_exists(db, user).await? {
        return Err(Error::NotFound);
    }
    let count = sessions::destroy_others(db, user, Some(&admin.id)).await?;
    let record = Activity::RevokedByOperator { session: None, count };
    activity::record(db, user, client, record).await;
    store::audit(db, &admin.doc.user, "revoke_user_sessions", user, &count.to_string(), client)
        .await;
    Ok(count)
}

/// Removes every second factor of `user` (TOTP, passkeys, recovery codes) and ends their
/// sessions: the bank's answer to a customer who lost their devices, or whose account got a
/// thief's passkey (a first factor needs no step-up). The customer then signs in with the
/// password and sets up new factors.
async fn reset_factors(db: &Db, admin: &Session, user: &str, client: &ClientInfo) -> Result<usize> {
    if !crate::session::model::valid_username(user) || !sessions::user_exists(db, user).await? {
        return Err(Error::NotFound);
    }
    if user == admin.doc.user {
        return Err(Error::Forbidden("Operators cannot reset their own factors here.".into()));
    }
    let removed = crate::mfa::store::remove_all_factors(db, user).await?;
    let count = sessions::destroy_others(db, user, None).await?;
    let record = Activity::FactorRemoved { factor: "all (by the bank)".into(), name: None };
    activity::record(db, user, client, record).await;
    store::audit(db, &admin.doc.user, "reset_factors", user, &removed.to_string(), client).await;
    Ok(count)
}

/// The live counts (sampled now for sessions; the process's own for the rest).
async fn stats(db: &Db) -> Value {
    crate::metrics::sample_sessions(db).await;
    let m = &db.metrics;
    let gauge = |v: &prometheus::IntGaugeVec, label: &str| v.with_label_values(&[label]).get();
    let logins = |label: &str| m.logins.with_label_values(&[label]).get();
    json!({
        "sessions_active": {
            "browser": gauge(&m.sessions_active, "browser"),
            "mobile": gauge(&m.sessions_active, "mobile"),
        },
        "event_streams_open": {
            "rocket": gauge(&m.streams_open, "rocket"),
            "listener": gauge(&m.streams_open, "listener"),
        },
        "this_process": {
            "logins": {
                "ok": logins("ok"),
                "bad_password": logins("bad_password"),
                "throttled": logins("throttled"),
                "second_factor": logins("second_factor"),
                "bad_code": logins("bad_code"),
            },
            "events_fanned_out": m.events_fanned_out.get(),
            "slow_clients_dropped": m.slow_clients_dropped.get(),
            "bridge_reconnects": m.bridge_reconnects.get(),
            "generator_transactions": m.generator_transactions.get(),
            "redis_errors": m.redis_errors.get(),
        },
    })
}

fn failed_json(failed: &FailedSignIns) -> Value {
    json!({
        "total": failed.total,
        "since": failed.since.map(rfc3339_ms),
        "by_account": failed.by_account.iter().map(|(a, n)| json!({"user": a, "count": n})).collect::<Vec<_>>(),
        "by_address": failed.by_address.iter().map(|(a, n)| json!({"address": a, "count": n})).collect::<Vec<_>>(),
    })
}

// ---- API ------------------------------------------------------------------------------------

#[get("/api/v1/admin/sessions?<user>&<kind>&<ip>&<older_than_secs>&<page>")]
pub async fn api_sessions(
    user: Option<&str>,
    kind: Option<&str>,
    ip: Option<&str>,
    older_than_secs: Option<u64>,
    page: Option<usize>,
    _admin: Admin<ApiUser>,
    db: &State<Db>,
) -> Result<Json<Value>> {
    let filter = Filter::parse(user, kind, ip, older_than_secs, page)?;
    let (total, found) = store::search(db, &filter).await?;
    let pages = total.div_ceil(store::PAGE_SIZE).max(1);
    Ok(Json(json!({
        "total": total,
        "page": filter.page,
        "pages": pages,
        "sessions": found.iter().map(session_json).collect::<Vec<_>>(),
    })))
}

#[delete("/api/v1/admin/sessions/<id>")]
pub async fn api_revoke(
    id: &str,
    admin: Admin<ApiUser>,
    client: ClientInfo,
    db: &State<Db>,
) -> Result<Status> {
    revoke(db, admin.session(), id, &client).await?;
    Ok(Status::NoContent)
}

#[delete("/api/v1/admin/users/<user>/sessions")]
pub async fn api_revoke_user(
    user: &str,
    admin: Admin<ApiUser>,
    client: ClientInfo,
    db: &State<Db>,
) -> Result<Json<Value>> {
    let count = revoke_user(db, admin.session(), user, &client).await?;
    Ok(Json(json!({ "signed_out": count })))
}

#[delete("/api/v1/admin/users/<user>/factors")]
pub async fn api_reset_factors(
    user: &str,
    admin: Admin<ApiUser>,
    client: ClientInfo,
    db: &State<Db>,
) -> Result<Json<Value>> {
    let count = reset_factors(db, admin.session(), user, &client).await?;
    Ok(Json(json!({ "factors_removed": true, "signed_out": count })))
}

#[get("/api/v1/admin/failed-sign-ins")]
pub async fn api_failed_sign_ins(_admin: Admin<ApiUser>, db: &State<Db>) -> Result<Json<Value>> {
    Ok(Json(failed_json(&store::failed_sign_ins(db).await?)))
}

#[get("/api/v1/admin/stats")]
pub async fn api_stats(_admin: Admin<ApiUser>, db: &State<Db>) -> Json<Value> {
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
    db: &State<Db>,
) -> Result<Template> {
    let filter = Filter::parse(user, kind, ip, older_than_secs, page)?;
    let (total, found) = store::search(db, &filter).await?;
    let me = admin.session();
    Ok(Template::render(
        "admin/console",
        context! {
            user: me.doc.user_view(),
            csrf: &me.doc.csrf_token,
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

#[post("/admin/sessions/<id>/revoke", data = "<form>")]
pub async fn revoke_form(
    id: &str,
    admin: Admin<CurrentUser>,
    form: Form<CsrfForm>,
    client: ClientInfo,
    db: &State<Db>,
) -> Result<Redirect> {
    admin.0.check_csrf(&form.csrf)?;
    revoke(db, admin.session(), id, &client).await?;
    Ok(Redirect::to(uri!("/admin")))
}

#[post("/admin/users/<user>/reset-factors", data = "<form>")]
pub async fn reset_factors_form(
    user: &str,
    admin: Admin<CurrentUser>,
    form: Form<CsrfForm>,
    client: ClientInfo,
    db: &State<Db>,
) -> Result<Redirect> {
    admin.0.check_csrf(&form.csrf)?;
    reset_factors(db, admin.session(), user, &client).await?;
    Ok(Redirect::to(uri!("/admin")))
}

#[post("/admin/users/<user>/revoke", data = "<form>")]
pub async fn revoke_user_form(
    user: &str,
    admin: Admin<CurrentUser>,
    form: Form<CsrfForm>,
    client: ClientInfo,
    db: &State<Db>,
) -> Result<Redirect> {
    admin.0.check_csrf(&form.csrf)?;
    revoke_user(db, admin.session(), user, &client).await?;
    Ok(Redirect::to(uri!("/admin")))
}
