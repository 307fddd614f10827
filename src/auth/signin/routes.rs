//! The JSON API of signing in beyond the password: completing a sign-in with a second factor
//! (`mfa_token` + code), renewing a password reported compromised, and signing in with a passkey.

use rocket::post;
use rocket::serde::json::{Json, Value};
use serde::{Deserialize, Serialize};

use super::service::sign_in_with_passkey;
use crate::auth::context::AuthApp;
use crate::auth::factors::passkey;
use crate::auth::factors::passkey::Purpose;
use crate::auth::model::{Amr, DeviceToken, SessionKind, UserView};
use crate::auth::signin::code::CodeKind;
use crate::auth::signin::service::{Attempt, Outcome, SignedIn};
use crate::auth::signin::{code, service as login};
use crate::clock::rfc3339_ms;
use crate::config::Config;
use crate::error::{ApiError, Result};
use crate::web::SecretJson;
use crate::web::app::App;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct MfaCode {
    mfa_token: String,
    code: String,
}

/// What the second step of a sign-in answers (the same for both kinds of code).
#[derive(utoipa::IntoResponses)]
pub enum CodeAnswers {
    #[response(status = 200, description = "Signed in, or a new password is needed")]
    SignedIn(LoginAnswer),
    #[response(status = 401, description = "Wrong or used code, or the sign-in expired")]
    Wrong(ApiError),
    #[response(status = 429, description = "Too many codes tried")]
    TooMany(ApiError),
}

/// Completes a sign-in with the `mfa_token` and a code from the authenticator app.
#[utoipa::path(tag = "sign-in", security(()), request_body = MfaCode, responses(CodeAnswers))]
#[post("/api/v1/login/totp", data = "<body>")]
pub async fn login_totp(body: SecretJson<MfaCode>, app: App<'_>) -> Result<Json<LoginAnswer>> {
    second_step(app, body.0, CodeKind::Totp).await
}

/// Completes a sign-in with the `mfa_token` and a recovery code (each works once).
#[utoipa::path(tag = "sign-in", security(()), request_body = MfaCode, responses(CodeAnswers))]
#[post("/api/v1/login/recovery", data = "<body>")]
pub async fn login_recovery(body: SecretJson<MfaCode>, app: App<'_>) -> Result<Json<LoginAnswer>> {
    second_step(app, body.0, CodeKind::Recovery).await
}

/// The second step of a mobile sign-in with a code of `kind`.
async fn second_step(app: App<'_>, body: MfaCode, kind: CodeKind) -> Result<Json<LoginAnswer>> {
    let App { db, config } = app;
    let mobile = SessionKind::Mobile;
    let done = code::finish_sign_in(db, config, &body.mfa_token, mobile, kind, &body.code).await?;
    Ok(Json(LoginAnswer::finished(config, done)))
}

/// The e-mailed code and a new password, after "this wasn't me".
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct Renew {
    /// From the sign-in's answer.
    renew_token: String,
    email_code: String,
    /// At least 15 characters while it is the account's only factor, 8 with a second one; not
    /// the old one, not containing the username or address.
    new_password: String,
}

/// Completes a sign-in whose password the owner reported compromised ("this wasn't me"): the
/// code e-mailed for it and a new password. The old password stops working.
#[utoipa::path(
    tag = "sign-in",
    security(()),
    request_body = Renew,
    responses(
        (status = 200, description = "Signed in with the new password", body = SignedInBody),
        (status = 401, description = "The sign-in expired or was used", body = ApiError),
        (status = 422, description = "A wrong `email_code`, or a `password` that breaks a rule", body = ApiError),
    )
)]
#[post("/api/v1/login/renew", data = "<body>")]
pub async fn login_renew(body: SecretJson<Renew>, app: AuthApp<'_>) -> Result<Json<SignedInBody>> {
    let AuthApp { db, config, passwords, .. } = app;
    let Renew { renew_token, email_code, new_password } = body.0;
    let kind = SessionKind::Mobile;
    let done = login::renew_password(
        db,
        config,
        passwords,
        &renew_token,
        kind,
        &email_code,
        &new_password,
    );
    Ok(Json(login_json(config, &done.await?)))
}

/// Starts a passkey sign-in: WebAuthn `PublicKeyCredentialRequestOptions` (as
/// `{"publicKey": …}`) for `navigator.credentials.get` or a platform authenticator.
#[utoipa::path(
    tag = "sign-in",
    security(()),
    responses(
        (status = 200, description = "WebAuthn request options", body = Object),
        (status = 429, description = "Too many ceremonies from this address", body = ApiError),
    )
)]
#[post("/api/v1/login/passkey/options")]
pub async fn login_passkey_options(app: AuthApp<'_>) -> Result<Json<Value>> {
    let AuthApp { db, rp, client, .. } = app;
    Ok(Json(passkey::start_authentication(db, rp, Purpose::SignIn, &client.ip).await?))
}

/// Signs in with a passkey's assertion (the WebAuthn `PublicKeyCredential`, as JSON): two
/// factors at once, no password.
#[utoipa::path(
    tag = "sign-in",
    security(()),
    request_body(content = Object, description = "The WebAuthn assertion (`PublicKeyCredential` JSON)"),
    responses(
        (status = 200, description = "Signed in", body = SignedInBody),
        (status = 401, description = "The assertion did not verify", body = ApiError),
        (status = 429, description = "Too many attempts", body = ApiError),
    )
)]
#[post("/api/v1/login/passkey", data = "<answer>")]
pub async fn login_passkey(answer: Json<Value>, app: AuthApp<'_>) -> Result<Json<SignedInBody>> {
    let AuthApp { db, config, rp, client, .. } = app;
    let kind = SessionKind::Mobile;
    let signed_in = sign_in_with_passkey(db, config, rp, &answer, kind, &client, Vec::new());
    Ok(Json(login_json(config, &signed_in.await?)))
}

pub const INVALID_CREDENTIALS: &str = "Invalid username or password";

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
pub async fn api_login(body: SecretJson<ApiLogin>, app: AuthApp<'_>) -> Result<Json<LoginAnswer>> {
    let AuthApp { db, config, passwords, client, .. } = app;
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
