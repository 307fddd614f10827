//! `/login/verify`: the second step of a browser sign-in (a code or a passkey after the password),
//! and the page a sensitive action sends a signed-in user through to step up. Forms work without
//! script; passkeys need `static/js/passkey.js`.

use rocket::form::FromForm;
use rocket::http::{CookieJar, Status};
use rocket::response::Redirect;
use rocket::{get, post, uri};
use rocket_dyn_templates::{Template, context};

use crate::auth::context::AuthApp;
use crate::auth::credential::Presented;
use crate::auth::csrf::SameOrigin;
use crate::auth::factors::store as factors;
use crate::auth::guard::{
    CurrentUser, MaybeUser, PreAuthCookie, pre_auth_removal_cookie, session_cookie,
};
use crate::auth::model::SessionKind;
use crate::auth::signin::code::CodeKind;
use crate::auth::signin::pages::sign_in_browser;
use crate::auth::signin::{code, preauth, service as login};
use crate::auth::step_up::service::step_up_with_password;
use crate::auth::{csrf, store as sessions};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::redis::Db;
use crate::web::SecretForm;
use crate::web::page::{Page, Reply};

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
            user.0.csrf().to_owned(),
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
    app: AuthApp<'_>,
) -> Result<Reply> {
    let AuthApp { db, config, jar, .. } = app;
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
pub async fn verify_submit(
    _same_origin: SameOrigin,
    form: SecretForm<VerifyForm>,
    user: MaybeUser,
    pre: PreAuthCookie,
    presented: Presented,
    app: AuthApp<'_>,
) -> Result<Reply> {
    let AuthApp { db, config, passwords, client, jar, .. } = app;
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
                    jar.add(preauth::pre_auth_cookie(config, &token));
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
