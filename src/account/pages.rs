//! The browser's password pages: "Forgot password?" (`/password/forgot`), the e-mailed link's
//! page (`/password/reset`), and changing the password from Security (`/security/password`).
//! Forms work without script; the strength meter (`static/js/password.js`) and a passkey as the
//! reset's second factor need it.

use rocket::form::FromForm;
use rocket::http::{CookieJar, Status};
use rocket::{State, get, post};
use rocket_dyn_templates::{Template, context};

use super::email;
use super::reset::{self, Proof};
use super::routes::{
    EMAIL_CHANGE_ANSWER, FORGOT_ANSWER, SIGNUP_ANSWER, SIGNUP_PASSKEY_ANSWER, signup_cookie_name,
};
use super::service::{change_password, confirm_address};
use super::signup::{self, Application};
use crate::auth::context::AuthApp;
use crate::auth::csrf::{self, SameOrigin};
use crate::auth::factors::store as factors;
use crate::auth::guard::CurrentUser;
use crate::auth::policy;
use crate::auth::signin::code::CodeKind;
use crate::auth::step_up::{SecondFactorIfAny, SteppedUp};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::redis::Db;
use crate::web::app::App;
use crate::web::page::Page;
use crate::web::{NoReferrer, SecretForm};

fn forgot_page(jar: &CookieJar<'_>, config: &Config, status: Status, sent: bool) -> Page {
    let csrf = csrf::login_token(jar, config);
    let message = sent.then_some(FORGOT_ANSWER);
    Page::new(status, Template::render("account/forgot", context! { csrf, message }))
}

#[get("/password/forgot")]
pub fn forgot_form(jar: &CookieJar<'_>, config: &State<Config>) -> Page {
    forgot_page(jar, config, Status::Ok, false)
}

#[derive(Debug, FromForm)]
pub struct ForgotForm {
    #[field(default = String::new())]
    csrf: String,
    #[field(default = String::new())]
    login: String,
}

#[post("/password/forgot", data = "<form>")]
pub async fn forgot_submit(
    _same_origin: SameOrigin,
    form: rocket::form::Form<ForgotForm>,
    app: AuthApp<'_>,
) -> Result<Page> {
    let AuthApp { db, config, client, jar, .. } = app;
    if !csrf::check_login_token(jar, config, &form.csrf) {
        return Err(Error::Forbidden("Your form has expired. Please try again.".into()));
    }
    reset::ask(db, config, &form.login, &client).await?;
    Ok(forgot_page(jar, config, Status::Ok, true))
}

/// The reset form for the link behind `token`, or the page that says it no longer works.
async fn reset_form(db: &Db, token: &str, status: Status, error: Option<&str>) -> Result<Page> {
    match reset::peek(db, token).await {
        Ok(view) => {
            let page = context! {
                token,
                error,
                name: &view.name,
                min_chars: view.min_password_chars,
                second_factor: view.second_factor_required,
                totp: view.methods.contains(&"totp"),
                passkey: view.methods.contains(&"passkey"),
                recovery: view.methods.contains(&"recovery"),
            };
            Ok(Page::new(status, Template::render("account/reset", page)))
        }
        Err(e @ Error::Gone(_)) => Ok(gone_page(&e)),
        Err(e) => Err(e),
    }
}

fn gone_page(e: &Error) -> Page {
    let page = Template::render("account/reset", context! { gone: e.public_message() });
    Page::new(e.status(), page)
}

/// The link's page: only a form (a mail scanner opening the link changes nothing). Its token is
/// kept from any `Referer`.
#[get("/password/reset?<token>")]
pub async fn reset_page(token: Option<&str>, db: &State<Db>) -> Result<NoReferrer<Page>> {
    Ok(NoReferrer(reset_form(db, token.unwrap_or_default(), Status::Ok, None).await?))
}

#[derive(Debug, FromForm)]
pub struct ResetForm {
    #[field(default = String::new())]
    token: String,
    #[field(default = String::new())]
    password: String,
    /// `totp`, `recovery` or `passkey`.
    #[field(default = String::new())]
    method: String,
    #[field(default = String::new())]
    code: String,
    /// The passkey's assertion (JSON), filled in by the page's script.
    #[field(default = String::new())]
    passkey: String,
}

impl ResetForm {
    fn proof(&self) -> Result<Proof> {
        Ok(match self.method.as_str() {
            "passkey" if !self.passkey.is_empty() => {
                let answer = serde_json::from_str(&self.passkey).map_err(|_| Error::Invalid {
                    field: "code",
                    message: "The passkey answer was damaged. \
                         Please try again."
                        .into(),
                })?;
                Proof::Passkey(answer)
            }
            "recovery" if !self.code.is_empty() => {
                Proof::Code(CodeKind::Recovery, self.code.clone())
            }
            "totp" if !self.code.is_empty() => Proof::Code(CodeKind::Totp, self.code.clone()),
            _ => Proof::Nothing,
        })
    }
}

/// The link's button. No origin check: the page sends no `Referer` (so browsers post
/// `Origin: null`), and the single-use token is the credential.
#[post("/password/reset", data = "<form>")]
pub async fn reset_submit(
    form: SecretForm<ResetForm>,
    app: AuthApp<'_>,
) -> Result<NoReferrer<Page>> {
    let AuthApp { db, config, passwords, rp, client, .. } = app;
    let form = form.0;
    let done = match form.proof() {
        Ok(proof) => {
            let request = reset::Request { token: &form.token, password: &form.password, proof };
            reset::reset(db, config, passwords, rp, request, &client).await
        }
        Err(e) => Err(e),
    };
    let page = match done {
        Ok(_) => Page::new(Status::Ok, Template::render("account/reset", context! { done: true })),
        Err(e @ Error::Gone(_)) => gone_page(&e),
        Err(e @ (Error::Invalid { .. } | Error::TooManyRequests { .. })) => {
            let mut page =
                reset_form(db, &form.token, e.status(), Some(&e.public_message())).await?;
            if let Error::TooManyRequests { retry_after } = e {
                page.retry_after = Some(retry_after);
            }
            page
        }
        Err(e) => return Err(e),
    };
    Ok(NoReferrer(page))
}

/// The change form; without the current password's field for an account opened with a passkey
/// (it sets its first one).
async fn change_page(
    db: &Db,
    user: &CurrentUser,
    config: &Config,
    status: Status,
    error: Option<&str>,
) -> Result<Page> {
    let doc = &user.0.doc;
    let (owned, account) = tokio::try_join!(
        factors::factors(db, &doc.user),
        crate::auth::users::get_user(db, &doc.user)
    )?;
    let has_factor = owned.any();
    let page = context! {
        user: doc.page_user(config),
        csrf: user.0.csrf(),
        min_chars: policy::min_chars(has_factor),
        has_factor: has_factor,
        has_password: account.as_ref().is_some_and(|u| !u.password_hash.is_empty()),
        // What a password manager saves the password under: the address signs in too.
        login: account.and_then(|u| u.email),
        error,
    };
    Ok(Page::new(status, Template::render("account/change", page)))
}

#[get("/security/password")]
pub async fn change_form(user: SecondFactorIfAny<CurrentUser>, app: App<'_>) -> Result<Page> {
    let App { db, config } = app;
    change_page(db, &user.0, config, Status::Ok, None).await
}

#[derive(Debug, FromForm)]
pub struct ChangeForm {
    #[field(default = String::new())]
    csrf: String,
    #[field(default = String::new())]
    current_password: String,
    #[field(default = String::new())]
    new_password: String,
}

#[post("/security/password", data = "<form>")]
pub async fn change_submit(
    user: SecondFactorIfAny<CurrentUser>,
    form: SecretForm<ChangeForm>,
    app: AuthApp<'_>,
) -> Result<Page> {
    let AuthApp { db, config, passwords, client, .. } = app;
    let me = &user.0;
    let form = form.0;
    me.check_csrf(&form.csrf)?;
    let session = &me.0;
    let changed = change_password(
        db,
        config,
        passwords,
        session,
        &client,
        &form.current_password,
        &form.new_password,
    );
    match changed.await {
        Ok(signed_out) => {
            let doc = &session.doc;
            let page = context! {
                user: doc.page_user(config),
                csrf: session.csrf(),
                done: true,
                signed_out,
            };
            Ok(Page::new(Status::Ok, Template::render("account/change", page)))
        }
        Err(e @ Error::Invalid { .. }) => {
            let message = e.public_message();
            change_page(db, me, config, e.status(), Some(&message)).await
        }
        Err(e) => Err(e),
    }
}

// ---- opening an account ---------------------------------------------------------------------

fn signup_page(
    jar: &CookieJar<'_>,
    config: &Config,
    status: Status,
    form: &SignupForm,
    error: Option<(&str, String)>,
) -> Page {
    let csrf = csrf::login_token(jar, config);
    let (field, error) = error.map_or((None, None), |(f, e)| (Some(f.to_owned()), Some(e)));
    let page = context! {
        csrf,
        name: &form.name,
        email: &form.email,
        field,
        error,
        min_chars: policy::min_chars(false),
    };
    Page::new(status, Template::render("account/signup", page))
}

#[derive(Debug, Default, FromForm)]
pub struct SignupForm {
    #[field(default = String::new())]
    csrf: String,
    #[field(default = String::new())]
    name: String,
    #[field(default = String::new())]
    email: String,
    #[field(default = String::new())]
    password: String,
    /// `passkey`: the second button, "Open it with a passkey instead" (no password).
    #[field(default = String::new())]
    with: String,
}

#[get("/signup")]
pub fn signup_form(jar: &CookieJar<'_>, config: &State<Config>) -> Result<Page> {
    if !config.registration_open() {
        return Err(Error::NotFound);
    }
    Ok(signup_page(jar, config, Status::Ok, &<SignupForm as Default>::default(), None))
}

#[post("/signup", data = "<form>")]
pub async fn signup_submit(
    _same_origin: SameOrigin,
    form: SecretForm<SignupForm>,
    app: AuthApp<'_>,
) -> Result<Page> {
    let AuthApp { db, config, passwords, client, jar, .. } = app;
    let form = form.0;
    if !csrf::check_login_token(jar, config, &form.csrf) {
        return Err(Error::Forbidden("Your form has expired. Please try again.".into()));
    }
    let passkey = form.with == "passkey";
    let password = (!passkey).then_some(form.password.as_str());
    let application = Application { name: &form.name, email: &form.email, password };
    match signup::apply(db, config, passwords, application, &client).await {
        Ok(secret) => {
            // The secret stays in this browser: the link opens the account only here.
            if let Some(secret) = secret {
                jar.add(
                    rocket::http::Cookie::build((signup_cookie_name(config), secret))
                        .http_only(true)
                        .same_site(rocket::http::SameSite::Strict)
                        .path("/")
                        .secure(config.session.cookie_secure)
                        .max_age(rocket::time::Duration::seconds(signup::APPLICATION_SECS as i64)),
                );
            }
            let message = if passkey { SIGNUP_PASSKEY_ANSWER } else { SIGNUP_ANSWER };
            let page = context! { sent: true, message, passkey, email: form.email.trim() };
            Ok(Page::new(Status::Created, Template::render("account/signup", page)))
        }
        Err(Error::Invalid { field, message }) => {
            Ok(signup_page(jar, config, Status::UnprocessableEntity, &form, Some((field, message))))
        }
        Err(e) => Err(e),
    }
}

/// The confirmation link's page: a button (a mail scanner opening the link confirms nothing).
#[get("/email/verify?<token>")]
pub async fn verify_page(token: Option<&str>, db: &State<Db>) -> Result<NoReferrer<Page>> {
    Ok(NoReferrer(verify_form(db, token.unwrap_or_default(), Status::Ok, None).await?))
}

/// The confirmation form for the link behind `token`: an application's (asking for its
/// password), or a change of address's (a button), or the page that says it no longer works.
async fn verify_form(db: &Db, token: &str, status: Status, error: Option<&str>) -> Result<Page> {
    let peeked = match signup::peek(db, token).await {
        Ok((name, passkey)) => Ok((name, true, passkey)),
        Err(Error::Gone(_)) => email::peek(db, token).await.map(|name| (name, false, false)),
        Err(e) => Err(e),
    };
    Ok(match peeked {
        Ok((name, application, passkey)) => {
            let page = context! { name, token, application, passkey, error };
            Page::new(status, Template::render("account/verify", page))
        }
        Err(e @ Error::Gone(_)) => verify_gone(&e),
        Err(e) => return Err(e),
    })
}

fn verify_gone(e: &Error) -> Page {
    Page::new(e.status(), Template::render("account/verify", context! { gone: e.public_message() }))
}

#[derive(Debug, FromForm)]
pub struct VerifyForm {
    #[field(default = String::new())]
    token: String,
    /// An application's password (a change of address needs none).
    #[field(default = String::new())]
    password: String,
}

/// The link's button. No origin check, as for a reset: the single-use token is the credential.
#[post("/email/verify", data = "<form>")]
pub async fn verify_submit(
    form: SecretForm<VerifyForm>,
    app: AuthApp<'_>,
) -> Result<NoReferrer<Page>> {
    let AuthApp { db, config, passwords, client, .. } = app;
    let VerifyForm { token, password } = &form.0;
    let password = Some(password.as_str());
    let page = match confirm_address(db, config, passwords, token, password, &client).await {
        Ok(opened) => {
            let page = context! { done: true, opened };
            Page::new(Status::Ok, Template::render("account/verify", page))
        }
        Err(e @ (Error::Gone(_) | Error::Conflict(_))) => verify_gone(&e),
        Err(e @ (Error::Invalid { .. } | Error::TooManyRequests { .. })) => {
            verify_form(db, token, e.status(), Some(&e.public_message())).await?
        }
        Err(e) => return Err(e),
    };
    Ok(NoReferrer(page))
}

// ---- changing the address ----------------------------------------------------------------------

#[derive(Debug, FromForm)]
pub struct EmailForm {
    #[field(default = String::new())]
    csrf: String,
    #[field(default = String::new())]
    email: String,
}

/// Security's "change the address" form (after a recent step-up).
#[post("/security/email", data = "<form>")]
pub async fn email_change_submit(
    user: SteppedUp<CurrentUser>,
    form: SecretForm<EmailForm>,
    app: AuthApp<'_>,
) -> Result<Page> {
    let AuthApp { db, config, client, .. } = app;
    let me = &user.0;
    me.check_csrf(&form.0.csrf)?;
    let doc = &me.0.doc;
    let asked = email::request(db, config, &doc.user, &client, &form.0.email).await;
    let (status, message, error) = match asked {
        Ok(()) => (Status::Accepted, Some(EMAIL_CHANGE_ANSWER), None),
        Err(e @ (Error::Invalid { .. } | Error::Conflict(_))) => {
            (e.status(), None, Some(e.public_message()))
        }
        Err(e) => return Err(e),
    };
    let page = context! {
        user: doc.page_user(config), csrf: me.0.csrf(), change: true, message, error,
    };
    Ok(Page::new(status, Template::render("account/verify", page)))
}

/// The old address's undo link: a button.
#[get("/email/undo?<token>")]
pub async fn undo_page(token: Option<&str>, db: &State<Db>) -> Result<NoReferrer<Page>> {
    let token = token.unwrap_or_default();
    let page = match email::peek_undo(db, token).await {
        Ok(name) => {
            let page = context! { name, token, undo: true };
            Page::new(Status::Ok, Template::render("account/verify", page))
        }
        Err(e @ Error::Gone(_)) => verify_gone(&e),
        Err(e) => return Err(e),
    };
    Ok(NoReferrer(page))
}

/// The undo link's button: the single-use token is the credential (no sign-in, no origin).
#[post("/email/undo", data = "<form>")]
pub async fn undo_submit(
    form: SecretForm<VerifyForm>,
    app: AuthApp<'_>,
) -> Result<NoReferrer<Page>> {
    let AuthApp { db, client, .. } = app;
    let page = match email::undo(db, &form.0.token, &client).await {
        Ok(()) => {
            Page::new(Status::Ok, Template::render("account/verify", context! { undone: true }))
        }
        Err(e @ (Error::Gone(_) | Error::Conflict(_))) => verify_gone(&e),
        Err(e) => return Err(e),
    };
    Ok(NoReferrer(page))
}
