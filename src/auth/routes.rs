//! Sign-in, sign-out and the "your active sessions" page, for browsers (forms) and mobile (JSON).

use std::sync::Arc;

use rocket::form::{Form, FromForm};
use rocket::http::{CookieJar, Status};
use rocket::request::Request;
use rocket::response::{self, Redirect, Responder};
use rocket::serde::json::Json;
use rocket::{State, delete, get, post, uri};
use rocket_dyn_templates::{Template, context};
use serde::{Deserialize, Serialize};

use super::credential::Presented;
use super::csrf::{self, SameOrigin};
use super::guard::{
    ApiUser, CurrentUser, MaybeUser, PresentedDevice, Via, device_cookie, pre_auth_cookie,
    pre_auth_removal_cookie, removal_cookie, session_cookie,
};
use super::model::{Amr, DeviceToken, Session, SessionId, SessionKind, UserView};
use super::password::Passwords;
use super::signin::service::{self as login, Attempt, Outcome, SignedIn};
use super::store::{self, ClientInfo};
use crate::audit::{self, Activity};
use crate::clock::{display_ms, rfc3339_ms};
use crate::config::Config;
use crate::error::{ApiError, Error, Result};
use crate::redis::Db;
use crate::web::{SecretForm, SecretJson};

pub const INVALID_CREDENTIALS: &str = "Invalid username or password";

// ---- browser ----------------------------------------------------------------------------------

#[derive(Debug, FromForm)]
pub struct LoginForm {
    #[field(default = String::new())]
    username: String,
    #[field(default = String::new())]
    password: String,
    #[field(default = String::new())]
    csrf: String,
}

#[derive(Debug, FromForm)]
pub struct CsrfForm {
    #[field(default = String::new())]
    pub csrf: String,
}

/// The login page again, with a status and a message (and `Retry-After` when throttled).
pub struct LoginPage {
    status: Status,
    page: Template,
    retry_after: Option<u64>,
}

impl<'r> Responder<'r, 'static> for LoginPage {
    fn respond_to(self, req: &'r Request<'_>) -> response::Result<'static> {
        let mut res = self.page.respond_to(req)?;
        res.set_status(self.status);
        if let Some(secs) = self.retry_after {
            crate::error::set_retry_after(&mut res, secs);
        }
        Ok(res)
    }
}

fn login_page(
    jar: &CookieJar<'_>,
    config: &Config,
    status: Status,
    error: Option<&str>,
    username: &str,
) -> LoginPage {
    let csrf = csrf::login_token(jar, config);
    let demo = config.demo_users;
    let page = Template::render("session/login", context! { csrf, error, username, demo });
    LoginPage { status, page, retry_after: None }
}

/// Either the redirect after a successful sign-in, or the form again with a status.
#[derive(rocket::Responder)]
pub enum LoginReply {
    Done(Redirect),
    Page(LoginPage),
}

#[get("/login")]
pub fn login_form(user: MaybeUser, jar: &CookieJar<'_>, config: &State<Config>) -> LoginReply {
    // A Redis outage is a 503 here, not "not signed in" (MaybeUser passes errors through).
    match user.0 {
        Some(_) => LoginReply::Done(Redirect::to(uri!("/dashboard"))),
        None => LoginReply::Page(login_page(jar, config, Status::Ok, None, "")),
    }
}

#[post("/login", data = "<form>")]
#[allow(clippy::too_many_arguments)] // one per request guard: what Rocket routes look like
pub async fn login_submit(
    _same_origin: SameOrigin,
    form: SecretForm<LoginForm>,
    presented: Presented,
    device: PresentedDevice,
    jar: &CookieJar<'_>,
    client: ClientInfo,
    db: &State<Db>,
    config: &State<Config>,
    passwords: &State<Arc<Passwords>>,
) -> Result<LoginReply> {
    let form = form.0;
    if !csrf::check_login_token(jar, config, &form.csrf) {
        let msg = "Your sign-in form expired. Please try again.";
        return Ok(LoginReply::Page(login_page(
            jar,
            config,
            Status::Forbidden,
            Some(msg),
            &form.username,
        )));
    }
    let username = form.username.trim();
    let attempt = Attempt { username, password: &form.password, ip: &client.ip };
    let kind = SessionKind::Browser;
    match login::with_password(db, config, passwords, attempt, device.0, kind, &client).await {
        Ok(Outcome::SignedIn(signed_in)) => {
            sign_in_browser(db, config, jar, presented, &signed_in).await?;
            Ok(LoginReply::Done(Redirect::to(uri!("/dashboard"))))
        }
        Ok(Outcome::SecondFactor { token, .. }) => {
            next_step(db, config, jar, presented, &token, "/login/verify").await
        }
        Ok(Outcome::NewPassword { token }) => {
            next_step(db, config, jar, presented, &token, "/login/renew").await
        }
        Err(Error::InvalidCredentials) => Ok(LoginReply::Page(login_page(
            jar,
            config,
            Status::Unauthorized,
            Some(INVALID_CREDENTIALS),
            username,
        ))),
        Err(Error::TooManyRequests { retry_after }) => {
            let minutes = retry_after.div_ceil(60);
            let msg = format!("Too many failed sign-ins. Try again in {minutes} minute(s).");
            let mut page = login_page(jar, config, Status::TooManyRequests, Some(&msg), username);
            page.retry_after = Some(retry_after);
            Ok(LoginReply::Page(page))
        }
        Err(Error::Overloaded { retry_after }) => {
            let msg = format!("Too many sign-ins right now. Try again in {retry_after} s.");
            let mut page =
                login_page(jar, config, Status::ServiceUnavailable, Some(&msg), username);
            page.retry_after = Some(retry_after);
            Ok(LoginReply::Page(page))
        }
        Err(e) => Err(e),
    }
}

/// Hands a browser its new session: whatever session it had is destroyed first (no fixation:
/// a new token is minted at every sign-in), then the session and device cookies are set and the
/// pre-auth cookie, if any, is dropped.
/// A browser's sign-in goes on to `next` (the second factor, or a new password): the pre-auth
/// cookie names its state, and whatever session this browser had ends here already.
pub async fn next_step(
    db: &Db,
    config: &Config,
    jar: &CookieJar<'_>,
    presented: Presented,
    token: &crate::auth::model::SessionToken,
    next: &'static str,
) -> Result<LoginReply> {
    if let Presented::Token(old, Via::Cookie) = presented {
        store::destroy(db, &old.id()).await?;
        jar.add(removal_cookie(config));
    }
    jar.add(pre_auth_cookie(config, token));
    Ok(LoginReply::Done(Redirect::to(next)))
}

pub async fn sign_in_browser(
    db: &Db,
    config: &Config,
    jar: &CookieJar<'_>,
    presented: Presented,
    signed_in: &SignedIn,
) -> Result<()> {
    if let Presented::Token(old, Via::Cookie) = presented {
        store::destroy(db, &old.id()).await?;
    }
    jar.add(session_cookie(config, &signed_in.token));
    jar.add(device_cookie(config, &signed_in.device));
    jar.add(pre_auth_removal_cookie(config));
    Ok(())
}

#[post("/logout", data = "<form>")]
pub async fn logout(
    user: CurrentUser,
    form: Form<CsrfForm>,
    jar: &CookieJar<'_>,
    db: &State<Db>,
    config: &State<Config>,
) -> Result<Redirect> {
    user.check_csrf(&form.csrf)?;
    store::destroy(db, &user.0.id).await?;
    jar.add(removal_cookie(config));
    Ok(Redirect::to(uri!("/login")))
}

#[get("/")]
pub fn index(_user: CurrentUser) -> Redirect {
    Redirect::to(uri!("/dashboard"))
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

fn rows(sessions: Vec<Session>, current: &SessionId) -> Vec<SessionRow> {
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

#[get("/sessions")]
pub async fn sessions_page(
    user: CurrentUser,
    db: &State<Db>,
    config: &State<Config>,
) -> Result<Template> {
    let me = &user.0;
    // Only the caller's own, an admin's too: every user's sessions are the console's (AAL2,
    // audited), in one place behind one guard.
    let list = store::list_sessions(db, Some(&me.doc.user)).await?;
    Ok(Template::render(
        "session/sessions",
        context! {
            user: me.doc.page_user(config),
            csrf: &me.doc.csrf_token,
            sessions: rows(list, &me.id),
        },
    ))
}

/// Deletes session `id` if `me` owns it (operators end other users' sessions in the console).
/// True when it was `me`'s own session.
async fn revoke(db: &Db, me: &Session, id: &str, client: &ClientInfo) -> Result<bool> {
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

#[post("/sessions/<id>/revoke", data = "<form>")]
pub async fn revoke_form(
    id: &str,
    user: CurrentUser,
    form: Form<CsrfForm>,
    client: ClientInfo,
    jar: &CookieJar<'_>,
    db: &State<Db>,
    config: &State<Config>,
) -> Result<Redirect> {
    user.check_csrf(&form.csrf)?;
    if revoke(db, &user.0, id, &client).await? {
        jar.add(removal_cookie(config));
        return Ok(Redirect::to(uri!("/login")));
    }
    Ok(Redirect::to(uri!("/sessions")))
}

/// Ends every other session of `me`'s user and records it; how many ended.
/// "Sign out everywhere else": every other session ends, and every remembered device is
/// forgotten (a thief's device token must not keep its own throttle budget).
async fn sign_out_others(db: &Db, me: &Session, client: &ClientInfo) -> Result<usize> {
    let count = store::destroy_others(db, &me.doc.user, Some(&me.id)).await?;
    super::signin::throttle::forget_devices(db, &me.doc.user).await?;
    audit::record(db, &me.doc.user, client, Activity::OtherSessionsSignedOut { count }).await;
    Ok(count)
}

#[post("/sessions/revoke-others", data = "<form>")]
pub async fn revoke_others_form(
    user: CurrentUser,
    form: Form<CsrfForm>,
    client: ClientInfo,
    db: &State<Db>,
) -> Result<Redirect> {
    user.check_csrf(&form.csrf)?;
    sign_out_others(db, &user.0, &client).await?;
    Ok(Redirect::to(uri!("/sessions")))
}

// ---- mobile / JSON API ------------------------------------------------------------------------

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct ApiLogin {
    #[schema(example = "bob")]
    username: String,
    #[schema(example = "password")]
    password: String,
    /// The `device_token` of an earlier sign-in on this device: its attempts are then counted
    /// apart from strangers', so they can never lock this device out.
    #[serde(default)]
    device_token: Option<String>,
}

/// A completed sign-in: the bearer token and what it is worth.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SignedInBody {
    /// Send as `Authorization: Bearer <token>`.
    token: String,
    #[schema(example = "Bearer")]
    token_type: &'static str,
    /// RFC 3339: the absolute end of the session (it also ends after `idle_timeout_secs` unused).
    expires_at: String,
    idle_timeout_secs: u64,
    user: UserView,
    /// Keep it and send it with the next sign-in on this device (`device_token`).
    device_token: String,
    /// Authenticator assurance level: 1 (password) or 2 (two factors or a passkey).
    aal: u8,
    amr: Vec<Amr>,
}

/// A correct password of a user with a second factor: no session yet. Finish with
/// `POST /api/v1/login/totp` or `/api/v1/login/recovery` and the `mfa_token`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SecondFactorRequired {
    mfa_required: bool,
    mfa_token: String,
    /// What the user has: `totp`, `passkey`, `recovery`.
    methods: Vec<&'static str>,
    /// Seconds the `mfa_token` is valid.
    expires_in: u64,
}

/// Every factor is in, but the owner reported the password compromised ("this wasn't me"): a
/// code was e-mailed; finish with `POST /api/v1/login/renew`, the `renew_token`, that code and a
/// new password.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct NewPasswordRequired {
    password_change_required: bool,
    email_code_required: bool,
    renew_token: String,
    /// Seconds the `renew_token` is valid.
    expires_in: u64,
}

impl NewPasswordRequired {
    pub fn new(token: &crate::auth::model::SessionToken) -> Self {
        NewPasswordRequired {
            password_change_required: true,
            email_code_required: true,
            renew_token: token.as_str().to_owned(),
            expires_in: crate::auth::signin::preauth::TTL_SECS,
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum LoginAnswer {
    SignedIn(SignedInBody),
    SecondFactor(SecondFactorRequired),
    NewPassword(NewPasswordRequired),
}

impl LoginAnswer {
    /// The answer to a sign-in that needs no more factors: signed in, or a new password first.
    pub fn finished(config: &Config, outcome: Outcome) -> LoginAnswer {
        match outcome {
            Outcome::SignedIn(signed_in) => LoginAnswer::SignedIn(login_json(config, &signed_in)),
            Outcome::NewPassword { token } => {
                LoginAnswer::NewPassword(NewPasswordRequired::new(&token))
            }
            Outcome::SecondFactor { token, methods } => {
                LoginAnswer::SecondFactor(SecondFactorRequired {
                    mfa_required: true,
                    mfa_token: token.as_str().to_owned(),
                    methods,
                    expires_in: crate::auth::signin::preauth::TTL_SECS,
                })
            }
        }
    }
}

/// Signs in with a username and password (a mobile session, bearer token). A user with a second
/// factor gets an `mfa_token` instead of a session; a password the owner reported compromised
/// gets a `renew_token` (and an e-mailed code) instead.
#[utoipa::path(
    tag = "session",
    security(()),
    request_body = ApiLogin,
    responses(
        (status = 200, description = "Signed in, or a second factor or a new password is needed", body = LoginAnswer),
        (status = 401, description = "Wrong username or password (one message for both)", body = ApiError),
        (status = 429, description = "Too many attempts for this account or address", body = ApiError),
    )
)]
#[post("/api/v1/login", data = "<body>")]
pub async fn api_login(
    body: SecretJson<ApiLogin>,
    client: ClientInfo,
    db: &State<Db>,
    config: &State<Config>,
    passwords: &State<Arc<Passwords>>,
) -> Result<Json<LoginAnswer>> {
    let body = body.0;
    let attempt = Attempt { username: &body.username, password: &body.password, ip: &client.ip };
    let device = body.device_token.as_deref().and_then(DeviceToken::parse).into_iter().collect();
    let kind = SessionKind::Mobile;
    let outcome = login::with_password(db, config, passwords, attempt, device, kind, &client);
    Ok(Json(LoginAnswer::finished(config, outcome.await?)))
}

/// The API's answer to a completed sign-in (password, code or passkey).
pub fn login_json(config: &Config, signed_in: &SignedIn) -> SignedInBody {
    let doc = &signed_in.session.doc;
    SignedInBody {
        token: signed_in.token.as_str().to_owned(),
        token_type: "Bearer",
        expires_at: rfc3339_ms(doc.expires_at(config)),
        idle_timeout_secs: config.session.idle_secs,
        user: doc.user_view(),
        device_token: signed_in.device.as_str().to_owned(),
        aal: doc.assurance.aal,
        amr: doc.assurance.amr.clone(),
    }
}

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
pub async fn api_refresh(
    user: ApiUser,
    db: &State<Db>,
    config: &State<Config>,
) -> Result<Json<Refreshed>> {
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
pub async fn api_logout(
    user: ApiUser,
    jar: &CookieJar<'_>,
    db: &State<Db>,
    config: &State<Config>,
) -> Result<Json<SignedOut>> {
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
pub async fn api_revoke_others(
    user: ApiUser,
    client: ClientInfo,
    db: &State<Db>,
) -> Result<Json<SignedOutCount>> {
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
pub async fn api_revoke(
    id: &str,
    user: ApiUser,
    client: ClientInfo,
    db: &State<Db>,
) -> Result<Status> {
    revoke(db, &user.session, id, &client).await?;
    Ok(Status::NoContent)
}
