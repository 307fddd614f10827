//! The JSON API of a customer's password: judge a candidate, change it, and reset a forgotten
//! one through the e-mailed link.

use rocket::http::{CookieJar, Status};
use rocket::serde::json::{Json, Value};
use rocket::{State, post, put};
use serde::{Deserialize, Serialize};

use super::email;
use super::reset::{self, Proof, ResetView};
use super::service::{change_password, confirm_address};
use super::signup::{self, Application};
use crate::auth::context::AuthApp;
use crate::auth::csrf::SameOrigin;
use crate::auth::guard::ApiUser;
use crate::auth::policy::{self, Strength};
use crate::auth::signin::code::CodeKind;
use crate::auth::step_up::{SecondFactorIfAny, SteppedUp};
use crate::auth::throttle;
use crate::config::Config;
use crate::error::{ApiError, Error, Result};
use crate::redis::Db;
use crate::web::SecretJson;

/// Candidate passwords one client address group may have judged a minute (a meter asks about
/// once per pause in typing).
const CHECKS_PER_MINUTE: i64 = 120;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct PasswordCheck {
    password: String,
    /// Words the password should not contain: the name, username and e-mail address given on
    /// the same form.
    #[serde(default)]
    user_inputs: Vec<String>,
    /// Whether the account has (or will have) a second factor: 8 characters instead of 15.
    #[serde(default)]
    has_second_factor: bool,
}

/// Judges a candidate password by the rules every new password must meet (what the pages'
/// strength meter shows). Stores nothing and needs no sign-in.
#[utoipa::path(
    tag = "password",
    security(()),
    request_body = PasswordCheck,
    responses(
        (status = 200, description = "The verdict", body = Strength),
        (status = 429, description = "Too many checks from this address", body = ApiError),
    )
)]
#[post("/api/v1/password/check", data = "<body>")]
pub async fn password_check(
    _same_origin: SameOrigin,
    body: SecretJson<PasswordCheck>,
    app: AuthApp<'_>,
) -> Result<Json<Strength>> {
    let AuthApp { db, client, .. } = app;
    let group = throttle::address_group(&client.ip);
    let key = db.keys.throttle_password_check(&group);
    throttle::per_minute(db, &key, CHECKS_PER_MINUTE).await?;
    let PasswordCheck { password, mut user_inputs, has_second_factor } = body.0;
    user_inputs.truncate(8);
    user_inputs.retain(|w| w.chars().count() >= 3 && w.len() <= 254);
    let judged = tokio::task::spawn_blocking(move || {
        policy::judge(&password, has_second_factor, &user_inputs)
    });
    Ok(Json(judged.await.map_err(|e| Error::Internal(e.to_string()))?))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct PasswordChange {
    /// Not for an account opened with a passkey, which has none yet.
    #[serde(default)]
    current_password: String,
    /// At least 15 characters while the password is the account's only factor, 8 with a second
    /// one; not common, not containing the name or address.
    new_password: String,
}

/// Changes the password: the current one, and a recent second factor where the account has one
/// (otherwise 401 with the step-up challenge). An account opened with a passkey sets its first
/// password this way, without a current one. Every other session and remembered device ends;
/// the owner is told by e-mail.
#[utoipa::path(
    tag = "password",
    request_body = PasswordChange,
    responses(
        (status = 204, description = "Changed"),
        (status = 409, description = "The password was changed meanwhile", body = ApiError),
        (status = 422, description = "A wrong `current_password`, or a `new_password` that breaks a rule", body = ApiError),
        (status = 429, description = "Too many wrong passwords", body = ApiError),
    )
)]
#[put("/api/v1/password", data = "<body>")]
pub async fn password_change(
    body: SecretJson<PasswordChange>,
    user: SecondFactorIfAny<ApiUser>,
    app: AuthApp<'_>,
) -> Result<Status> {
    let AuthApp { db, config, passwords, client, .. } = app;
    let PasswordChange { current_password, new_password } = body.0;
    let session = &user.0.session;
    change_password(db, config, passwords, session, &client, &current_password, &new_password)
        .await?;
    Ok(Status::NoContent)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct Forgot {
    /// The username or the account's e-mail address.
    login: String,
}

/// The one answer to a reset request, whoever it names.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Accepted {
    message: &'static str,
}

pub const FORGOT_ANSWER: &str = "If an account with an e-mail address matches, we sent it a link \
     to reset the password. It works for 30 minutes.";

/// Asks for a password reset link. The answer is the same for any input, so it reveals nobody's
/// account; the link goes only to the account's own address.
#[utoipa::path(
    tag = "password",
    security(()),
    request_body = Forgot,
    responses(
        (status = 202, description = "Sent if the account exists", body = Accepted),
        (status = 429, description = "Too many requests from this address", body = ApiError),
    )
)]
#[post("/api/v1/password/forgot", data = "<body>")]
pub async fn password_forgot(
    _same_origin: SameOrigin,
    body: Json<Forgot>,
    app: AuthApp<'_>,
) -> Result<(Status, Json<Accepted>)> {
    let AuthApp { db, config, client, .. } = app;
    reset::ask(db, config, &body.login, &client).await?;
    Ok((Status::Accepted, Json(Accepted { message: FORGOT_ANSWER })))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct LinkToken {
    /// The `token` of the e-mailed link (a reset link, or a confirmation link).
    token: String,
}

/// What a reset link will ask for (whose account, which second factors), without using it.
#[utoipa::path(
    tag = "password",
    security(()),
    request_body = LinkToken,
    responses(
        (status = 200, description = "The link works", body = ResetView),
        (status = 410, description = "The link was used, has expired or was replaced", body = ApiError),
    )
)]
#[post("/api/v1/password/reset/options", data = "<body>")]
pub async fn password_reset_options(
    body: SecretJson<LinkToken>,
    db: &State<Db>,
) -> Result<Json<ResetView>> {
    Ok(Json(reset::peek(db, &body.0.token).await?))
}

/// Starts a passkey ceremony that proves the second factor of a reset: WebAuthn request options
/// for `navigator.credentials.get`; send the answer as `passkey` with the reset.
#[utoipa::path(
    tag = "password",
    security(()),
    request_body = LinkToken,
    responses(
        (status = 200, description = "WebAuthn request options", body = Object),
        (status = 410, description = "The link was used, has expired or was replaced", body = ApiError),
        (status = 429, description = "Too many ceremonies from this address", body = ApiError),
    )
)]
#[post("/api/v1/password/reset/passkey", data = "<body>")]
pub async fn password_reset_passkey(
    body: SecretJson<LinkToken>,
    app: AuthApp<'_>,
) -> Result<Json<Value>> {
    let AuthApp { db, rp, client, .. } = app;
    Ok(Json(reset::passkey_options(db, rp, &body.0.token, &client).await?))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct PasswordReset {
    token: String,
    /// The new password (the same rules as any other).
    password: String,
    /// For an account with a second factor, one of: a code from the authenticator app,
    #[serde(default)]
    code: Option<String>,
    /// a recovery code,
    #[serde(default)]
    recovery_code: Option<String>,
    /// or a passkey's assertion (answering `/api/v1/password/reset/passkey`).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    passkey: Option<Value>,
}

impl PasswordReset {
    fn proof(&mut self) -> Proof {
        if let Some(answer) = self.passkey.take() {
            Proof::Passkey(answer)
        } else if let Some(code) = self.recovery_code.take() {
            Proof::Code(CodeKind::Recovery, code)
        } else if let Some(code) = self.code.take() {
            Proof::Code(CodeKind::Totp, code)
        } else {
            Proof::Nothing
        }
    }
}

/// Resets a forgotten password with the e-mailed link's token (and the account's second
/// factor, where it has one). Every session and remembered device ends.
#[utoipa::path(
    tag = "password",
    security(()),
    request_body = PasswordReset,
    responses(
        (status = 204, description = "Reset: sign in with the new password"),
        (status = 410, description = "The link was used, has expired or was replaced", body = ApiError),
        (status = 422, description = "A `password` that breaks a rule, or a missing or wrong second factor (`code`)", body = ApiError),
        (status = 429, description = "Too many wrong codes", body = ApiError),
    )
)]
#[post("/api/v1/password/reset", data = "<body>")]
pub async fn password_reset(
    _same_origin: SameOrigin,
    body: SecretJson<PasswordReset>,
    app: AuthApp<'_>,
) -> Result<Status> {
    let AuthApp { db, config, passwords, rp, client, .. } = app;
    let mut body = body.0;
    let proof = body.proof();
    let request = reset::Request { token: &body.token, password: &body.password, proof };
    reset::reset(db, config, passwords, rp, request, &client).await?;
    Ok(Status::NoContent)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct Signup {
    /// The customer's name, as the bank addresses them (letters, spaces, hyphens, apostrophes).
    #[schema(example = "Ada Lovelace")]
    name: String,
    /// Where the confirmation link goes; the customer then signs in with it.
    #[schema(example = "ada@example.com")]
    email: String,
    /// At least 15 characters, not common, not containing the name or address. Left out (or
    /// null), the account opens with a passkey instead and never has a password.
    #[serde(default)]
    password: Option<String>,
}

/// The answer to an application.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Applied {
    message: &'static str,
    /// Without a password: the secret to send back with the link's token (to
    /// `/api/v1/signup/passkey/options` and `/api/v1/email/verify`) — only the applicant can
    /// open the account, not whoever reads the mailbox.
    #[serde(skip_serializing_if = "Option::is_none")]
    application: Option<String>,
}

pub const SIGNUP_PASSKEY_ANSWER: &str = "Check your e-mail: we sent a link to confirm the \
     address. Your account opens when you follow it (within 24 hours, in this browser or app) and \
     create your passkey.";

/// The cookie that keeps a browser's application secret until its link is followed.
pub fn signup_cookie_name(config: &Config) -> &'static str {
    if config.session.cookie_secure { "__Host-redbank_signup" } else { "redbank_signup" }
}

/// The applicant's secret: the body's, else the browser's cookie.
fn applicant<'a>(
    given: Option<&'a str>,
    jar: &'a CookieJar<'_>,
    config: &Config,
) -> Option<String> {
    given
        .map(str::to_owned)
        .or_else(|| jar.get(signup_cookie_name(config)).map(|c| c.value().to_owned()))
}

pub const SIGNUP_ANSWER: &str = "Check your e-mail: we sent a link to confirm the address. Your \
     account opens when you follow it (within 24 hours) and enter your password again.";

/// Applies for an account (when `open_registration` is on) and mails a link to the address; the
/// account opens when the link is followed with the same password. An address that is already
/// registered gets the same answer (its mailbox is told), so the answer reveals nobody's
/// account, and nothing exists to sign in to before the confirmation.
#[utoipa::path(
    tag = "account",
    security(()),
    request_body = Signup,
    responses(
        (status = 201, description = "Applied, or the address was taken (the same answer)", body = Applied),
        (status = 403, description = "This bank does not open accounts online, or a cross-site request", body = ApiError),
        (status = 422, description = "A `name`, `email` or `password` that breaks a rule", body = ApiError),
        (status = 429, description = "Too many applications from this address", body = ApiError),
    )
)]
#[post("/api/v1/signup", data = "<body>")]
pub async fn open_account(
    _same_origin: SameOrigin,
    body: SecretJson<Signup>,
    app: AuthApp<'_>,
) -> Result<(Status, Json<Applied>)> {
    let AuthApp { db, config, passwords, client, .. } = app;
    let Signup { name, email, password } = &body.0;
    let application = Application { name, email, password: password.as_deref() };
    let secret = signup::apply(db, config, passwords, application, &client).await?;
    let message = if secret.is_some() { SIGNUP_PASSKEY_ANSWER } else { SIGNUP_ANSWER };
    Ok((Status::Created, Json(Applied { message, application: secret })))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct SignupPasskey {
    /// The `token` of the mailed link.
    token: String,
    /// The secret the application answered (a browser's cookie holds it otherwise).
    #[serde(default)]
    application: Option<String>,
}

/// The passkey creation options for an application made without a password: the passkey is
/// then sent with the link's token to `POST /api/v1/email/verify`.
#[utoipa::path(
    tag = "account",
    security(()),
    request_body = SignupPasskey,
    responses(
        (status = 200, description = "WebAuthn creation options", body = Object),
        (status = 410, description = "The link was used or has expired", body = ApiError),
        (status = 422, description = "Not the applicant's secret (`application`), or an application with a password", body = ApiError),
        (status = 429, description = "Too many passkey ceremonies from this address", body = ApiError),
    )
)]
#[post("/api/v1/signup/passkey/options", data = "<body>")]
pub async fn signup_passkey_options(
    _same_origin: SameOrigin,
    body: SecretJson<SignupPasskey>,
    app: AuthApp<'_>,
) -> Result<Json<Value>> {
    let AuthApp { db, config, rp, client, jar, .. } = app;
    let secret = applicant(body.0.application.as_deref(), jar, config);
    let options =
        signup::passkey_options(db, rp, &body.0.token, secret.as_deref(), &client.ip).await?;
    Ok(Json(options))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct Confirmation {
    /// The `token` of the mailed link.
    token: String,
    /// For a new account: the password chosen when applying (only the applicant can finish an
    /// application, not whoever reads the mailbox). Not needed to confirm a change of address.
    #[serde(default)]
    password: Option<String>,
    /// For a new account applied for without a password: the secret the application answered
    /// (a browser's cookie holds it otherwise)…
    #[serde(default)]
    application: Option<String>,
    /// …and the passkey's answer (`PublicKeyCredential` JSON) to
    /// `POST /api/v1/signup/passkey/options`.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    passkey: Option<Value>,
}

/// Confirms an e-mail address with the `token` of the link mailed to it: opens the account
/// applied for (with its `password`, or its applicant's secret and a new passkey), or makes a
/// change of address.
#[utoipa::path(
    tag = "account",
    security(()),
    request_body = Confirmation,
    responses(
        (status = 204, description = "Confirmed: the account is open, or the address changed"),
        (status = 409, description = "The address belongs to an account now", body = ApiError),
        (status = 410, description = "The link was used or has expired", body = ApiError),
        (status = 422, description = "A missing or wrong `password`, or for an account with a passkey a wrong `application` or a `passkey` that did not verify", body = ApiError),
        (status = 429, description = "Too many wrong passwords for this link", body = ApiError),
    )
)]
#[post("/api/v1/email/verify", data = "<body>")]
pub async fn email_verify(
    _same_origin: SameOrigin,
    body: SecretJson<Confirmation>,
    app: AuthApp<'_>,
) -> Result<Status> {
    let AuthApp { db, config, passwords, rp, client, jar } = app;
    let Confirmation { token, password, application, passkey } = &body.0;
    if let Some(answer) = passkey {
        let secret = applicant(application.as_deref(), jar, config);
        signup::confirm_with_passkey(db, config, rp, token, secret.as_deref(), answer, &client)
            .await?;
        jar.remove(rocket::http::Cookie::build(signup_cookie_name(config)).path("/"));
        return Ok(Status::NoContent);
    }
    let password = password.as_deref();
    confirm_address(db, config, passwords, token, password, &client).await?;
    Ok(Status::NoContent)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct NewEmail {
    #[schema(example = "ada@example.org")]
    email: String,
}

pub const EMAIL_CHANGE_ANSWER: &str = "Check the new address: we sent it a link. Your address \
     changes once you open it (within 24 hours); your current address was told.";

/// Moves the caller's address (after a recent step-up): the new address gets a link to confirm
/// (`POST /api/v1/email/verify`), the old one is told at once and, once the change is made,
/// gets a link that undoes it for 24 hours. An address of another account answers the same.
#[utoipa::path(
    tag = "account",
    request_body = NewEmail,
    responses(
        (status = 202, description = "Waiting for the new address to confirm", body = Accepted),
        (status = 409, description = "The current address is not confirmed yet", body = ApiError),
        (status = 422, description = "An `email` that is not an address, or the current one", body = ApiError),
        (status = 429, description = "Too many changes asked for", body = ApiError),
    )
)]
#[put("/api/v1/email", data = "<body>")]
pub async fn email_change(
    body: Json<NewEmail>,
    user: SteppedUp<ApiUser>,
    app: AuthApp<'_>,
) -> Result<(Status, Json<Accepted>)> {
    let AuthApp { db, config, client, .. } = app;
    email::request(db, config, &user.0.session.doc.user, &client, &body.email).await?;
    Ok((Status::Accepted, Json(Accepted { message: EMAIL_CHANGE_ANSWER })))
}

/// Undoes a change of address with the `token` of the link mailed to the old address: it is
/// back, and every session and device of the account is signed out.
#[utoipa::path(
    tag = "account",
    security(()),
    request_body = LinkToken,
    responses(
        (status = 204, description = "The old address is back"),
        (status = 409, description = "The old address belongs to another account now", body = ApiError),
        (status = 410, description = "The link was used, has expired, or the address changed since", body = ApiError),
    )
)]
#[post("/api/v1/email/undo", data = "<body>")]
pub async fn email_undo(body: SecretJson<LinkToken>, app: AuthApp<'_>) -> Result<Status> {
    let AuthApp { db, client, .. } = app;
    email::undo(db, &body.0.token, &client).await?;
    Ok(Status::NoContent)
}
