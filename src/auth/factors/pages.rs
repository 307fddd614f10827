//! The browser's side of strong authentication: `/login/verify` (the second step of a sign-in,
//! and the step-up page a sensitive action sends a signed-in user through), passkey sign-in from
//! `/login`, and `/security` (factors, recovery codes, activity). Forms work without script;
//! passkeys need `static/js/passkey.js` (WebAuthn is a script API).

use std::sync::Arc;

use rocket::form::{Form, FromForm};
use rocket::http::{CookieJar, Status};
use rocket::request::{self, FromRequest, Request};
use rocket::response::Redirect;
use rocket::serde::json::{Json, Value, serde_json::json};
use rocket::{State, get, post, uri};
use rocket_dyn_templates::{Template, context};

use super::passkey::{self, Purpose, RelyingParty};
use super::service;
use super::store as factors;
use super::totp::qr_svg;
use crate::audit::ClientInfo;
use crate::audit::{self, Entry};
use crate::auth::credential::Presented;
use crate::auth::csrf::{self, SameOrigin};
use crate::auth::guard::{
    CurrentUser, MaybeUser, PreAuthCookie, PresentedDevice, pre_auth_cookie,
    pre_auth_removal_cookie, session_cookie,
};
use crate::auth::model::SessionKind;
use crate::auth::notice;
use crate::auth::password::Passwords;
use crate::auth::signin::code::{self, CodeKind};
use crate::auth::signin::pages::CsrfForm;
use crate::auth::signin::pages::sign_in_browser;
use crate::auth::signin::preauth;
use crate::auth::signin::service as login;
use crate::auth::signin::service::sign_in_with_passkey;
use crate::auth::step_up::service::step_up_with_password;
use crate::auth::step_up::{Enrolment, FactorAdder, SteppedUp};
use crate::auth::store as sessions;
use crate::clock::display_ms;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::mail::Mailer;
use crate::redis::Db;
use crate::web::page::{Page, Reply};
use crate::web::{NoReferrer, SecretForm};

/// Where to go after a step-up: a path on this site, or `/security`. Printable ASCII only — a
/// browser drops tabs and line breaks from a URL (`/\t/evil.example` is `//evil.example` to it)
/// and reads `\` as `/` — and a valid origin-form URI, so the redirect itself cannot fail.
fn safe_next(next: Option<&str>) -> String {
    let local = |n: &str| {
        n.starts_with('/')
            && !n.starts_with("//")
            && n.bytes().all(|b| b.is_ascii_graphic() && b != b'\\')
            && rocket::http::uri::Origin::parse(n).is_ok()
    };
    match next {
        Some(n) if local(n) => n.to_owned(),
        _ => "/security".to_owned(),
    }
}

/// What `/login/verify` is for: finishing a sign-in, or a step-up of the signed-in user.
enum Verify {
    SignIn { token: String, methods: Vec<&'static str> },
    StepUp(Box<CurrentUser>, Vec<&'static str>, bool),
}

async fn what_to_verify(db: &Db, user: MaybeUser, pre: &PreAuthCookie) -> Result<Option<Verify>> {
    if let Some(user) = user.0 {
        let owned = factors::factors(db, &user.0.doc.user).await?;
        let password_only = !owned.any();
        return Ok(Some(Verify::StepUp(Box::new(user), owned.methods(), password_only)));
    }
    let Some(token) = pre.0.as_deref() else { return Ok(None) };
    let Some(state) = preauth::load(db, token).await? else { return Ok(None) };
    if state.kind != SessionKind::Browser {
        return Ok(None);
    }
    let methods = factors::factors(db, &state.user).await?.methods();
    Ok(Some(Verify::SignIn { token: token.to_owned(), methods }))
}

fn render_verify(
    jar: &CookieJar<'_>,
    config: &Config,
    verify: &Verify,
    next: &str,
    status: Status,
    error: Option<&str>,
) -> Page {
    let (step_up, methods, password_only, csrf, user) = match verify {
        Verify::SignIn { methods, .. } => {
            (false, methods.clone(), false, csrf::login_token(jar, config), None)
        }
        Verify::StepUp(user, methods, password_only) => (
            true,
            methods.clone(),
            *password_only,
            user.0.doc.csrf_token.clone(),
            Some(user.0.doc.page_user(config)),
        ),
    };
    let page = Template::render(
        "mfa/verify",
        context! {
            step_up, password_only, csrf, next, error, user,
            totp: methods.contains(&"totp"),
            passkey: methods.contains(&"passkey"),
            recovery: methods.contains(&"recovery"),
        },
    );
    Page::new(status, page)
}

#[get("/login/verify?<next>")]
pub async fn verify_page(
    // Decoded (a `String`), so the check sees what a browser would make of it.
    next: Option<String>,
    user: MaybeUser,
    pre: PreAuthCookie,
    jar: &CookieJar<'_>,
    db: &State<Db>,
    config: &State<Config>,
) -> Result<Reply> {
    match what_to_verify(db, user, &pre).await? {
        None => Ok(Reply::Done(Redirect::to(uri!("/login")))),
        Some(verify) => {
            let next = safe_next(next.as_deref());
            let page = render_verify(jar, config, &verify, &next, Status::Ok, None);
            Ok(Reply::Page(page))
        }
    }
}

#[derive(Debug, FromForm)]
pub struct VerifyForm {
    #[field(default = String::new())]
    csrf: String,
    #[field(default = String::new())]
    method: String,
    #[field(default = String::new())]
    code: String,
    #[field(default = String::new())]
    password: String,
    #[field(default = String::new())]
    next: String,
}

#[post("/login/verify", data = "<form>")]
#[allow(clippy::too_many_arguments)] // one per request guard: what Rocket routes look like
pub async fn verify_submit(
    _same_origin: SameOrigin,
    form: SecretForm<VerifyForm>,
    user: MaybeUser,
    pre: PreAuthCookie,
    presented: Presented,
    client: ClientInfo,
    jar: &CookieJar<'_>,
    db: &State<Db>,
    config: &State<Config>,
    passwords: &State<Arc<Passwords>>,
) -> Result<Reply> {
    let form = form.0;
    let next = safe_next(Some(&form.next));
    let Some(verify) = what_to_verify(db, user, &pre).await? else {
        return Ok(Reply::Done(Redirect::to(uri!("/login"))));
    };
    let kind = match form.method.as_str() {
        "totp" => Some(CodeKind::Totp),
        "recovery" => Some(CodeKind::Recovery),
        _ => None,
    };
    let outcome = match &verify {
        Verify::SignIn { token, .. } => {
            if !csrf::check_login_token(jar, config, &form.csrf) {
                return Err(Error::Forbidden("Your form has expired. Please try again.".into()));
            }
            let kind = kind.ok_or_else(|| Error::BadRequest("Choose how to confirm.".into()))?;
            let browser = SessionKind::Browser;
            match code::finish_sign_in(db, config, token, browser, kind, &form.code).await {
                Ok(login::Outcome::SignedIn(signed_in)) => {
                    sign_in_browser(db, config, jar, presented, &signed_in).await?;
                    return Ok(Reply::Done(Redirect::to(uri!("/dashboard"))));
                }
                Ok(login::Outcome::NewPassword { token }) => {
                    jar.add(pre_auth_cookie(config, &token));
                    return Ok(Reply::Done(Redirect::to(uri!("/login/renew"))));
                }
                Ok(login::Outcome::SecondFactor { .. }) => {
                    return Err(Error::Internal("a second factor after the second factor".into()));
                }
                Err(e) => e,
            }
        }
        Verify::StepUp(user, ..) => {
            user.check_csrf(&form.csrf)?;
            let session = &user.0;
            let assurance = match (form.method.as_str(), kind) {
                ("password", _) => {
                    step_up_with_password(db, config, passwords, session, &client, &form.password)
                        .await
                }
                (_, Some(kind)) => {
                    code::step_up(db, config, session, &client, kind, &form.code).await
                }
                _ => Err(Error::BadRequest("Choose how to confirm.".into())),
            };
            match assurance {
                Ok(assurance) => {
                    let (token, _) = sessions::rotate(db, config, session, assurance).await?;
                    jar.add(session_cookie(config, &token));
                    return Ok(Reply::Done(Redirect::to(next)));
                }
                Err(e) => e,
            }
        }
    };
    // A wrong code shows the page again with the reason; a finished or expired sign-in starts over.
    match outcome {
        Error::SignInExpired => {
            jar.add(pre_auth_removal_cookie(config));
            Ok(Reply::Done(Redirect::to(uri!("/login"))))
        }
        e @ (Error::InvalidCode
        | Error::NotConfirmed(_)
        | Error::TooManyRequests { .. }
        | Error::BadRequest(_)
        | Error::Forbidden(_)) => {
            let message = e.public_message();
            Ok(Reply::Page(render_verify(jar, config, &verify, &next, e.status(), Some(&message))))
        }
        e => Err(e),
    }
}

/// The login form's CSRF token in `X-CSRF-Token` (the passkey sign-in has no session yet; the
/// double-submit cookie binds it to this browser, against login CSRF).
pub struct LoginCsrf;

#[rocket::async_trait]
impl<'r> FromRequest<'r> for LoginCsrf {
    type Error = Error;

    async fn from_request(req: &'r Request<'_>) -> request::Outcome<Self, Error> {
        let (Some(config), token) =
            (req.rocket().state::<Config>(), req.headers().get_one("X-CSRF-Token"))
        else {
            return request::Outcome::Error((Status::Forbidden, Error::Forbidden("".into())));
        };
        if csrf::same_origin(req)
            && csrf::check_login_token(req.cookies(), config, token.unwrap_or_default())
        {
            request::Outcome::Success(LoginCsrf)
        } else {
            let e = Error::Forbidden("Missing or wrong X-CSRF-Token.".into());
            request::Outcome::Error((Status::Forbidden, e))
        }
    }
}

#[post("/login/passkey/options")]
pub async fn passkey_options(
    _csrf: LoginCsrf,
    client: ClientInfo,
    db: &State<Db>,
    rp: &State<RelyingParty>,
) -> Result<Json<Value>> {
    Ok(Json(passkey::start_authentication(db, rp, Purpose::SignIn, &client.ip).await?))
}

#[post("/login/passkey", data = "<answer>")]
#[allow(clippy::too_many_arguments)] // one per request guard: what Rocket routes look like
pub async fn passkey_sign_in(
    _csrf: LoginCsrf,
    answer: Json<Value>,
    presented: Presented,
    device: PresentedDevice,
    client: ClientInfo,
    jar: &CookieJar<'_>,
    db: &State<Db>,
    config: &State<Config>,
    rp: &State<RelyingParty>,
) -> Result<Json<Value>> {
    let kind = SessionKind::Browser;
    let signed_in = sign_in_with_passkey(db, config, rp, &answer, kind, &client, device.0).await?;
    sign_in_browser(db, config, jar, presented, &signed_in).await?;
    Ok(Json(json!({ "redirect": "/dashboard" })))
}

/// An activity entry as the page shows it.
fn activity_rows(entries: Vec<Entry>) -> Vec<Value> {
    entries
        .into_iter()
        .map(|e| {
            let mut row = json!(e);
            row["when"] = json!(display_ms(e.at));
            row["device"] = json!(audit::describe_device(&e.user_agent));
            row
        })
        .collect()
}

#[get("/security")]
pub async fn security_page(
    user: CurrentUser,
    db: &State<Db>,
    config: &State<Config>,
) -> Result<Template> {
    let doc = &user.0.doc;
    let owned = factors::factors(db, &doc.user).await?;
    // Times as the other pages show them (the API keeps RFC 3339).
    let passkeys: Vec<Value> = passkey::list(db, &doc.user)
        .await?
        .into_iter()
        .map(|p| {
            let mut row = json!(p);
            row["added"] = json!(display_ms(p.created_ms));
            row["used"] = json!(p.last_used_ms.map(display_ms));
            row
        })
        .collect();
    let entries = audit::newest(db, &doc.user, 50).await?;
    let devices: Vec<Value> = crate::auth::signin::throttle::devices(db, &doc.user)
        .await?
        .into_iter()
        .map(|d| {
            json!({
                "device": audit::describe_device(&d.user_agent),
                "user_agent": d.user_agent,
                "ip": d.ip,
                "first_at": crate::clock::rfc3339_ms(d.created_at),
                "first": display_ms(d.created_at),
                "last_at": crate::clock::rfc3339_ms(d.last_used_at),
                "last": display_ms(d.last_used_at),
            })
        })
        .collect();
    Ok(Template::render(
        "mfa/security",
        context! {
            devices,
            user: doc.page_user(config),
            csrf: &doc.csrf_token,
            totp: owned.totp,
            recovery_left: owned.recovery_codes,
            has_factor: owned.any(),
            passkeys,
            activity: activity_rows(entries),
            aal: doc.assurance.aal,
        },
    ))
}

#[post("/security/totp", data = "<form>")]
pub async fn totp_begin(
    user: FactorAdder<CurrentUser>,
    form: Form<CsrfForm>,
    db: &State<Db>,
    config: &State<Config>,
    mailer: &State<Mailer>,
) -> Result<Template> {
    let FactorAdder(me, enrolment) = &user;
    me.check_csrf(&form.csrf)?;
    let (secret, uri) = service::begin_totp(db, mailer, &me.0.doc.user, *enrolment).await?;
    Ok(totp_page(config, me, *enrolment, &secret, &uri, None))
}

fn totp_page(
    config: &Config,
    user: &CurrentUser,
    enrolment: Enrolment,
    secret: &str,
    uri: &str,
    error: Option<&str>,
) -> Template {
    // Groups of four, as apps ask for it.
    let grouped: Vec<String> =
        secret.as_bytes().chunks(4).map(|c| String::from_utf8_lossy(c).into_owned()).collect();
    Template::render(
        "mfa/totp",
        context! {
            user: user.0.doc.page_user(config),
            csrf: &user.0.doc.csrf_token,
            secret: grouped.join(" "),
            qr: qr_svg(uri),
            email_code_required: enrolment == Enrolment::First,
            error,
        },
    )
}

#[derive(Debug, FromForm)]
pub struct TotpForm {
    #[field(default = String::new())]
    csrf: String,
    #[field(default = String::new())]
    code: String,
    #[field(default = String::new())]
    email_code: String,
}

#[post("/security/totp/confirm", data = "<form>")]
pub async fn totp_confirm(
    user: FactorAdder<CurrentUser>,
    form: SecretForm<TotpForm>,
    client: ClientInfo,
    db: &State<Db>,
    config: &State<Config>,
) -> Result<Reply> {
    let FactorAdder(me, enrolment) = &user;
    let form = &form.0;
    me.check_csrf(&form.csrf)?;
    let username = &me.0.doc.user;
    let email_code = Some(form.email_code.as_str());
    let message =
        match service::confirm_totp(db, config, &me.0, &client, *enrolment, &form.code, email_code)
            .await
        {
            Ok(codes) => return Ok(Reply::Page(codes_page(config, me, codes))),
            Err(Error::NotConfirmed(_)) => {
                "That code is not valid. Check the time on your phone and try again.".to_owned()
            }
            Err(Error::Invalid { message, .. }) => message,
            Err(e) => return Err(e),
        };
    let Some(factors::Pending { secret, .. }) = factors::pending_totp(db, username).await? else {
        return Ok(Reply::Done(Redirect::to(uri!("/security"))));
    };
    let uri = secret.otpauth_uri(service::ISSUER, username);
    let page = totp_page(config, me, *enrolment, &secret.base32(), &uri, Some(&message));
    Ok(Reply::Page(Page::new(Status::UnprocessableEntity, page)))
}

fn codes_page(config: &Config, user: &CurrentUser, codes: Vec<String>) -> Page {
    let page = Template::render(
        "mfa/codes",
        context! { user: user.0.doc.page_user(config), csrf: &user.0.doc.csrf_token, codes },
    );
    Page::new(Status::Ok, page)
}

#[post("/security/totp/remove", data = "<form>")]
pub async fn totp_remove(
    user: SteppedUp<CurrentUser>,
    form: Form<CsrfForm>,
    client: ClientInfo,
    db: &State<Db>,
    config: &State<Config>,
) -> Result<Redirect> {
    let me = &user.0;
    me.check_csrf(&form.csrf)?;
    service::remove_totp(db, config, &me.0.doc.user, &client).await?;
    Ok(Redirect::to(uri!("/security")))
}

#[post("/security/recovery-codes", data = "<form>")]
pub async fn recovery_renew(
    user: SteppedUp<CurrentUser>,
    form: Form<CsrfForm>,
    client: ClientInfo,
    db: &State<Db>,
    config: &State<Config>,
) -> Result<Page> {
    let me = &user.0;
    me.check_csrf(&form.csrf)?;
    let codes = service::renew_recovery_codes(db, config, &me.0.doc.user, &client).await?;
    Ok(codes_page(config, me, codes))
}

#[post("/security/passkeys/<id>/remove", data = "<form>")]
pub async fn passkey_remove(
    id: &str,
    user: SteppedUp<CurrentUser>,
    form: Form<CsrfForm>,
    client: ClientInfo,
    db: &State<Db>,
    config: &State<Config>,
) -> Result<Redirect> {
    let me = &user.0;
    me.check_csrf(&form.csrf)?;
    service::remove_passkey(db, config, &me.0.doc.user, id, &client).await?;
    Ok(Redirect::to(uri!("/security")))
}

// ---- "this wasn't me" ---------------------------------------------------------------------------

/// The page a notice's link opens: it only shows what the button will do (mail scanners and
/// previews open links), and names the account. No session needed; the token in its URL is
/// kept from any `Referer`.
#[get("/not-me?<token>")]
pub async fn not_me_page(token: Option<&str>, db: &State<Db>) -> Result<NoReferrer<Page>> {
    let token = token.unwrap_or_default();
    let page = match notice::peek(db, token).await {
        Ok(link) => {
            let page = Template::render("mfa/not_me", context! { link, token, user: None::<()> });
            Page::new(Status::Ok, page)
        }
        Err(e @ Error::Gone(_)) => not_me_gone(&e),
        Err(e) => return Err(e),
    };
    Ok(NoReferrer(page))
}

fn not_me_gone(e: &Error) -> Page {
    let page = Template::render("mfa/not_me", context! { error: e.public_message() });
    Page::new(e.status(), page)
}

#[derive(Debug, FromForm)]
pub struct NotMeForm {
    #[field(default = String::new())]
    token: String,
}

/// The link's button: secures the account (see `notice::undo`). No origin check: the page sends
/// no `Referer` (so browsers post `Origin: null`), and the unguessable single-use token is the
/// credential — a forged post would need it, and could only do what the owner asks here.
#[post("/not-me", data = "<form>")]
pub async fn not_me_submit(
    form: SecretForm<NotMeForm>,
    client: ClientInfo,
    db: &State<Db>,
) -> Result<NoReferrer<Page>> {
    let page = match notice::undo(db, &form.0.token, &client).await {
        Ok(undone) => {
            let page = Template::render("mfa/not_me", context! { undone });
            Page::new(Status::Ok, page)
        }
        Err(e @ Error::Gone(_)) => not_me_gone(&e),
        Err(e) => return Err(e),
    };
    Ok(NoReferrer(page))
}

// ---- a new password after "this wasn't me" -----------------------------------------------------

/// The renewal state the browser's pre-auth cookie names, if it is one.
async fn renewal_of(db: &Db, pre: &PreAuthCookie) -> Result<Option<String>> {
    let Some(token) = pre.0.as_deref() else { return Ok(None) };
    let state = preauth::load(db, token).await?;
    let waiting = state.is_some_and(|s| s.kind == SessionKind::Browser && s.renewal.is_some());
    Ok(waiting.then(|| token.to_owned()))
}

fn renew_form(jar: &CookieJar<'_>, config: &Config, status: Status, error: Option<&str>) -> Page {
    let csrf = csrf::login_token(jar, config);
    let min_chars = login::min_password_chars(false);
    let page = Template::render("mfa/renew", context! { csrf, error, min_chars });
    Page::new(status, page)
}

#[get("/login/renew")]
pub async fn renew_page(
    pre: PreAuthCookie,
    jar: &CookieJar<'_>,
    db: &State<Db>,
    config: &State<Config>,
) -> Result<Reply> {
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
#[allow(clippy::too_many_arguments)] // one per request guard: what Rocket routes look like
pub async fn renew_submit(
    _same_origin: SameOrigin,
    form: SecretForm<RenewForm>,
    pre: PreAuthCookie,
    presented: Presented,
    jar: &CookieJar<'_>,
    db: &State<Db>,
    config: &State<Config>,
    passwords: &State<Arc<Passwords>>,
) -> Result<Reply> {
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
