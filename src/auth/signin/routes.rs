//! The JSON API of signing in beyond the password: completing a sign-in with a second factor
//! (`mfa_token` + code), renewing a password reported compromised, and signing in with a passkey.

use super::service::sign_in_with_passkey;
use rocket::serde::json::{Json, Value};
use rocket::{State, post};
use serde::Deserialize;

use crate::auth::factors::passkey::{self, Purpose, RelyingParty};
use crate::auth::model::SessionKind;
use crate::auth::password::Passwords;
use crate::auth::routes::{LoginAnswer, SignedInBody, login_json};
use crate::auth::signin::code::{self, CodeKind};
use crate::auth::signin::service as login;
use crate::auth::store::ClientInfo;
use crate::config::Config;
use crate::error::{ApiError, Result};
use crate::redis::Db;
use crate::web::SecretJson;

/// The issuer authenticator apps show next to the account.
pub const ISSUER: &str = "redbank";

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct MfaCode {
    mfa_token: String,
    code: String,
}

/// Completes a sign-in with the `mfa_token` and a code from the authenticator app.
#[utoipa::path(
    tag = "sign-in",
    security(()),
    request_body = MfaCode,
    responses(
        (status = 200, description = "Signed in, or a new password is needed", body = LoginAnswer),
        (status = 401, description = "Wrong or used code, or the sign-in expired", body = ApiError),
        (status = 429, description = "Too many codes tried", body = ApiError),
    )
)]
#[post("/api/v1/login/totp", data = "<body>")]
pub async fn login_totp(
    body: SecretJson<MfaCode>,
    db: &State<Db>,
    config: &State<Config>,
) -> Result<Json<LoginAnswer>> {
    let kind = (SessionKind::Mobile, CodeKind::Totp);
    let done = code::finish_sign_in(db, config, &body.0.mfa_token, kind.0, kind.1, &body.0.code);
    Ok(Json(LoginAnswer::finished(config, done.await?)))
}

/// Completes a sign-in with the `mfa_token` and a recovery code (each works once).
#[utoipa::path(
    tag = "sign-in",
    security(()),
    request_body = MfaCode,
    responses(
        (status = 200, description = "Signed in, or a new password is needed", body = LoginAnswer),
        (status = 401, description = "Wrong or used code, or the sign-in expired", body = ApiError),
        (status = 429, description = "Too many codes tried", body = ApiError),
    )
)]
#[post("/api/v1/login/recovery", data = "<body>")]
pub async fn login_recovery(
    body: SecretJson<MfaCode>,
    db: &State<Db>,
    config: &State<Config>,
) -> Result<Json<LoginAnswer>> {
    let kind = (SessionKind::Mobile, CodeKind::Recovery);
    let done = code::finish_sign_in(db, config, &body.0.mfa_token, kind.0, kind.1, &body.0.code);
    Ok(Json(LoginAnswer::finished(config, done.await?)))
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
pub async fn login_renew(
    body: SecretJson<Renew>,
    db: &State<Db>,
    config: &State<Config>,
    passwords: &State<std::sync::Arc<Passwords>>,
) -> Result<Json<SignedInBody>> {
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
pub async fn login_passkey_options(
    client: ClientInfo,
    db: &State<Db>,
    rp: &State<RelyingParty>,
) -> Result<Json<Value>> {
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
pub async fn login_passkey(
    answer: Json<Value>,
    client: ClientInfo,
    db: &State<Db>,
    config: &State<Config>,
    rp: &State<RelyingParty>,
) -> Result<Json<SignedInBody>> {
    let kind = SessionKind::Mobile;
    let signed_in = sign_in_with_passkey(db, config, rp, &answer, kind, &client, Vec::new());
    Ok(Json(login_json(config, &signed_in.await?)))
}
