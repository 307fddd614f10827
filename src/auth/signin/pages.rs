//! The browser's sign-in pages: the login form and where a correct password leads, passkey
//! sign-in from `/login`, and `/login/renew` (a new password after "this wasn't me"). The second
//! step is in [`verify`](crate::auth::step_up::verify).

use rocket::form::FromForm;
use rocket::http::{CookieJar, Status};
use rocket::response::Redirect;
use rocket::serde::json::{Json, Value, serde_json::json};
use rocket::{State, get, post, uri};
use rocket_dyn_templates::{Template, context};

use crate::auth::context::AuthApp;
use crate::auth::credential::Presented;
use crate::auth::csrf::{LoginCsrf, SameOrigin};
use crate::auth::factors::passkey;
use crate::auth::factors::passkey::Purpose;
use crate::auth::guard::{
    MaybeUser, PreAuthCookie, PresentedDevice, Via, device_cookie, pre_auth_removal_cookie,
    removal_cookie, session_cookie,
};
use crate::auth::model::SessionKind;
use crate::auth::signin::routes::INVALID_CREDENTIALS;
use crate::auth::signin::service::{Attempt, Outcome, SignedIn, sign_in_with_passkey};
use crate::auth::signin::{preauth, service as login};
use crate::auth::{csrf, store};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::redis::Db;
use crate::web::SecretForm;
use crate::web::page::{Page, Reply};

#[derive(Debug, FromForm)]
pub struct LoginForm {
    #[field(default = String::new())]
    username: String,
    #[field(default = String::new())]
    password: String,
    #[field(default = String::new())]
    csrf: String,
}

fn login_page(
    jar: &CookieJar<'_>,
    config: &Config,
    status: Status,
    error: Option<&str>,
    username: &str,
) -> Page {
    let csrf = csrf::login_token(jar, config);
    let demo = config.demo_users;
    let signup = config.registration_open();
    let page = Template::render("session/login", context! { csrf, error, username, demo, signup });
    Page::new(status, page)
}

#[get("/login")]
pub fn login_form(user: MaybeUser, jar: &CookieJar<'_>, config: &State<Config>) -> Reply {
    // A Redis outage is a 503 here, not "not signed in" (MaybeUser passes errors through).
    match user.0 {
        Some(_) => Reply::Done(Redirect::to(uri!("/dashboard"))),
        None => Reply::Page(login_page(jar, config, Status::Ok, None, "")),
    }
}

#[post("/login", data = "<form>")]
pub async fn login_submit(
    _same_origin: SameOrigin,
    form: SecretForm<LoginForm>,
    presented: Presented,
    device: PresentedDevice,
    app: AuthApp<'_>,
) -> Result<Reply> {
    let AuthApp { db, config, passwords, client, jar, .. } = app;
    let form = form.0;
    if !csrf::check_login_token(jar, config, &form.csrf) {
        let msg = "Your sign-in form expired. Please try again.";
        return Ok(Reply::Page(login_page(
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
            Ok(Reply::Done(Redirect::to(uri!("/dashboard"))))
        }
        Ok(Outcome::SecondFactor { token, .. }) => {
            next_step(db, config, jar, presented, &token, "/login/verify").await
        }
        Ok(Outcome::NewPassword { token }) => {
            next_step(db, config, jar, presented, &token, "/login/renew").await
        }
        Err(Error::InvalidCredentials) => Ok(Reply::Page(login_page(
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
            Ok(Reply::Page(page))
        }
        Err(Error::Overloaded { retry_after }) => {
            let msg = format!("Too many sign-ins right now. Try again in {retry_after} s.");
            let mut page =
                login_page(jar, config, Status::ServiceUnavailable, Some(&msg), username);
            page.retry_after = Some(retry_after);
            Ok(Reply::Page(page))
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
) -> Result<Reply> {
    if let Presented::Token(old, Via::Cookie) = presented {
        store::destroy(db, &old.id()).await?;
        jar.add(removal_cookie(config));
    }
    jar.add(preauth::pre_auth_cookie(config, token));
    Ok(Reply::Done(Redirect::to(next)))
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

#[post("/login/passkey/options")]
pub async fn passkey_options(_csrf: LoginCsrf, app: AuthApp<'_>) -> Result<Json<Value>> {
    let AuthApp { db, rp, client, .. } = app;
    Ok(Json(passkey::start_authentication(db, rp, Purpose::SignIn, &client.ip).await?))
}

#[post("/login/passkey", data = "<answer>")]
pub async fn passkey_sign_in(
    _csrf: LoginCsrf,
    answer: Json<Value>,
    presented: Presented,
    device: PresentedDevice,
    app: AuthApp<'_>,
) -> Result<Json<Value>> {
    let AuthApp { db, config, rp, client, jar, .. } = app;
    let kind = SessionKind::Browser;
    let signed_in = sign_in_with_passkey(db, config, rp, &answer, kind, &client, device.0).await?;
    sign_in_browser(db, config, jar, presented, &signed_in).await?;
    Ok(Json(json!({ "redirect": "/dashboard" })))
}

/// The renewal state the browser's pre-auth cookie names, if it is one.
async fn renewal_of(db: &Db, pre: &PreAuthCookie) -> Result<Option<String>> {
    let Some(token) = pre.0.as_deref() else { return Ok(None) };
    let state = preauth::load(db, token).await?;
    let waiting = state.is_some_and(|s| s.kind == SessionKind::Browser && s.renewal.is_some());
    Ok(waiting.then(|| token.to_owned()))
}

fn renew_form(jar: &CookieJar<'_>, config: &Config, status: Status, error: Option<&str>) -> Page {
    let csrf = csrf::login_token(jar, config);
    let min_chars = crate::auth::policy::min_chars(false);
    let page = Template::render("mfa/renew", context! { csrf, error, min_chars });
    Page::new(status, page)
}

#[get("/login/renew")]
pub async fn renew_page(pre: PreAuthCookie, app: AuthApp<'_>) -> Result<Reply> {
    let AuthApp { db, config, jar, .. } = app;
    match renewal_of(db, &pre).await? {
        Some(_) => Ok(Reply::Page(renew_form(jar, config, Status::Ok, None))),
        None => Ok(Reply::Done(Redirect::to(uri!("/login")))),
    }
}

#[derive(Debug, FromForm)]
pub struct RenewForm {
    #[field(default = String::new())]
    csrf: String,
    #[field(default = String::new())]
    email_code: String,
    #[field(default = String::new())]
    password: String,
}

#[post("/login/renew", data = "<form>")]
pub async fn renew_submit(
    _same_origin: SameOrigin,
    form: SecretForm<RenewForm>,
    pre: PreAuthCookie,
    presented: Presented,
    app: AuthApp<'_>,
) -> Result<Reply> {
    let AuthApp { db, config, passwords, jar, .. } = app;
    let form = form.0;
    if !csrf::check_login_token(jar, config, &form.csrf) {
        return Err(Error::Forbidden("Your form has expired. Please try again.".into()));
    }
    let Some(token) = renewal_of(db, &pre).await? else {
        return Ok(Reply::Done(Redirect::to(uri!("/login"))));
    };
    let browser = SessionKind::Browser;
    let renewed = login::renew_password(
        db,
        config,
        passwords,
        &token,
        browser,
        &form.email_code,
        &form.password,
    );
    match renewed.await {
        Ok(signed_in) => {
            sign_in_browser(db, config, jar, presented, &signed_in).await?;
            Ok(Reply::Done(Redirect::to(uri!("/dashboard"))))
        }
        Err(Error::SignInExpired) => {
            jar.add(pre_auth_removal_cookie(config));
            Ok(Reply::Done(Redirect::to(uri!("/login"))))
        }
        Err(e @ (Error::Invalid { .. } | Error::TooManyRequests { .. })) => {
            let message = e.public_message();
            Ok(Reply::Page(renew_form(jar, config, e.status(), Some(&message))))
        }
        Err(e) => Err(e),
    }
}
