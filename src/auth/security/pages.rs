//! What the browser's `/security` page does with the user's factors (adding and removing an
//! authenticator app, recovery codes, passkeys; the page itself is `account::security`'s), and
//! the "this wasn't me" page a notice links to. Forms work without script; passkeys need
//! `static/js/passkey.js` (WebAuthn is a script API).

use rocket::form::FromForm;
use rocket::http::Status;
use rocket::response::Redirect;
use rocket::{State, get, post, uri};
use rocket_dyn_templates::{Template, context};

use super::service;
use crate::auth::context::AuthApp;
use crate::auth::factors::store as factors;
use crate::auth::factors::totp::{ISSUER, qr_svg};
use crate::auth::guard::CsrfChecked;
use crate::auth::guard::CurrentUser;
use crate::auth::notice;
use crate::auth::step_up::{Enrolment, FactorAdder, SteppedUp};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::mail::Mailer;
use crate::redis::Db;
use crate::web::app::App;
use crate::web::page::{Page, Reply};
use crate::web::{NoReferrer, SecretForm};

#[post("/security/totp", data = "<_csrf>")]
pub async fn totp_begin(
    user: FactorAdder<CurrentUser>,
    _csrf: CsrfChecked,
    app: App<'_>,
    mailer: &State<Mailer>,
) -> Result<Template> {
    let App { db, config } = app;
    let FactorAdder(me, enrolment) = &user;
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
            csrf: user.0.csrf(),
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
    app: AuthApp<'_>,
) -> Result<Reply> {
    let AuthApp { db, config, client, .. } = app;
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
    let uri = secret.otpauth_uri(ISSUER, username);
    let page = totp_page(config, me, *enrolment, &secret.base32(), &uri, Some(&message));
    Ok(Reply::Page(Page::new(Status::UnprocessableEntity, page)))
}

fn codes_page(config: &Config, user: &CurrentUser, codes: Vec<String>) -> Page {
    let page = Template::render(
        "mfa/codes",
        context! { user: user.0.doc.page_user(config), csrf: user.0.csrf(), codes },
    );
    Page::new(Status::Ok, page)
}

#[post("/security/totp/remove", data = "<_csrf>")]
pub async fn totp_remove(
    user: SteppedUp<CurrentUser>,
    _csrf: CsrfChecked,
    app: AuthApp<'_>,
) -> Result<Redirect> {
    let AuthApp { db, config, client, .. } = app;
    let me = &user.0;
    service::remove_totp(db, config, &me.0.doc.user, &client).await?;
    Ok(Redirect::to(uri!("/security")))
}

#[post("/security/recovery-codes", data = "<_csrf>")]
pub async fn recovery_renew(
    user: SteppedUp<CurrentUser>,
    _csrf: CsrfChecked,
    app: AuthApp<'_>,
) -> Result<Page> {
    let AuthApp { db, config, client, .. } = app;
    let me = &user.0;
    let codes = service::renew_recovery_codes(db, config, &me.0.doc.user, &client).await?;
    Ok(codes_page(config, me, codes))
}

#[post("/security/passkeys/<id>/remove", data = "<_csrf>")]
pub async fn passkey_remove(
    id: &str,
    user: SteppedUp<CurrentUser>,
    _csrf: CsrfChecked,
    app: AuthApp<'_>,
) -> Result<Redirect> {
    let AuthApp { db, config, client, .. } = app;
    let me = &user.0;
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
    app: AuthApp<'_>,
) -> Result<NoReferrer<Page>> {
    let AuthApp { db, client, .. } = app;
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
