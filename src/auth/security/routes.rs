//! The JSON API of the factors: enrolling and removing them, recovery codes, "this wasn't me",
//! and the security activity.

use rocket::http::Status;
use rocket::serde::json::{Json, Value};
use rocket::{State, delete, get, post};
use serde::{Deserialize, Serialize};

use super::service::{
    begin_totp, confirm_totp, factor_added, remove_passkey, remove_totp, renew_recovery_codes,
};
use crate::audit;
use crate::audit::Activity;
use crate::auth::context::AuthApp;
use crate::auth::factors::email_code::NewFactor;
use crate::auth::factors::passkey::PasskeyView;
use crate::auth::factors::store::Factors;
use crate::auth::factors::totp::qr_svg;
use crate::auth::factors::{email_code, passkey, store as factors};
use crate::auth::guard::ApiUser;
use crate::auth::notice;
use crate::auth::step_up::{Enrolment, FactorAdder, SteppedUp};
use crate::clock::rfc3339_ms;
use crate::error::{ApiError, Error, Result};
use crate::mail::Mailer;
use crate::redis::Db;
use crate::web::SecretJson;

/// The code from the authenticator app that turns it on, and for a first factor the code
/// e-mailed to the account.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct TotpConfirm {
    code: String,
    /// Needed when `POST /api/v1/mfa/totp` answered `email_code_required`.
    #[serde(default)]
    email_code: Option<String>,
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub struct PasskeyName {
    #[serde(default)]
    name: Option<String>,
}

// ---- enrolment ------------------------------------------------------------------------------------

/// A TOTP set-up waiting for its first code.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TotpSetup {
    /// The key (base32) for typing into an app.
    secret: String,
    otpauth_uri: String,
    /// The `otpauth_uri` as a QR code (SVG), when one could be drawn.
    qr_svg: Option<String>,
    /// Seconds to confirm it with `POST /api/v1/mfa/totp/confirm`.
    expires_in: u64,
    /// True for a first factor: a code was e-mailed to the account, and the confirmation must
    /// carry it as `email_code`.
    email_code_required: bool,
}

/// Starts setting up an authenticator app. A first factor is confirmed with a code e-mailed to
/// the account (an operator's first comes from the server: 403); adding one more needs a
/// step-up.
#[utoipa::path(
    tag = "factors",
    responses(
        (status = 200, description = "A new secret, pending until confirmed", body = TotpSetup),
        (status = 403, description = "An operator's first factor is set up on the server", body = ApiError),
        (status = 409, description = "An authenticator app is already set up, or no e-mail address", body = ApiError),
        (status = 429, description = "Too many codes e-mailed lately", body = ApiError),
    )
)]
#[post("/api/v1/mfa/totp")]
pub async fn totp_begin(
    user: FactorAdder<ApiUser>,
    db: &State<Db>,
    mailer: &State<Mailer>,
) -> Result<Json<TotpSetup>> {
    let (secret, uri) = begin_totp(db, mailer, &user.0.session.doc.user, user.1).await?;
    Ok(Json(TotpSetup {
        secret,
        qr_svg: qr_svg(&uri),
        otpauth_uri: uri,
        expires_in: factors::PENDING_TOTP_SECS,
        email_code_required: user.1 == Enrolment::First,
    }))
}

/// New recovery codes: shown once, each works once.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RecoveryCodes {
    recovery_codes: Vec<String>,
}

/// Turns the pending authenticator app on with one of its codes (and a first factor with the
/// e-mailed `email_code`); answers the recovery codes.
#[utoipa::path(
    tag = "factors",
    request_body = TotpConfirm,
    responses(
        (status = 200, description = "On; the recovery codes, shown once", body = RecoveryCodes),
        (status = 409, description = "No set-up waiting, or it was replaced", body = ApiError),
        (status = 422, description = "Wrong code, or a missing or wrong `email_code`", body = ApiError),
    )
)]
#[post("/api/v1/mfa/totp/confirm", data = "<body>")]
pub async fn totp_confirm(
    body: SecretJson<TotpConfirm>,
    user: FactorAdder<ApiUser>,
    app: AuthApp<'_>,
) -> Result<Json<RecoveryCodes>> {
    let AuthApp { db, config, client, .. } = app;
    let TotpConfirm { code, email_code } = body.0;
    let session = &user.0.session;
    let confirmed =
        confirm_totp(db, config, session, &client, user.1, &code, email_code.as_deref());
    let codes = confirmed.await?;
    Ok(Json(RecoveryCodes { recovery_codes: codes }))
}

/// Removes the authenticator app (needs a recent step-up).
#[utoipa::path(
    tag = "factors",
    responses(
        (status = 204, description = "Removed"),
        (status = 404, description = "No authenticator app is set up", body = ApiError),
    )
)]
#[delete("/api/v1/mfa/totp")]
pub async fn totp_remove(user: SteppedUp<ApiUser>, app: AuthApp<'_>) -> Result<Status> {
    let AuthApp { db, config, client, .. } = app;
    remove_totp(db, config, &user.0.session.doc.user, &client).await?;
    Ok(Status::NoContent)
}

/// New recovery codes; the old ones stop working (needs a recent step-up).
#[utoipa::path(
    tag = "factors",
    responses(
        (status = 200, description = "The new codes, shown once", body = RecoveryCodes),
        (status = 409, description = "No second factor to back up", body = ApiError),
    )
)]
#[post("/api/v1/mfa/recovery-codes")]
pub async fn recovery_renew(
    user: SteppedUp<ApiUser>,
    app: AuthApp<'_>,
) -> Result<Json<RecoveryCodes>> {
    let AuthApp { db, config, client, .. } = app;
    let codes = renew_recovery_codes(db, config, &user.0.session.doc.user, &client).await?;
    Ok(Json(RecoveryCodes { recovery_codes: codes }))
}

/// Starts adding a passkey: WebAuthn `PublicKeyCredentialCreationOptions` (as
/// `{"publicKey": …}`). For a first factor a code is e-mailed to the account
/// (`"email_code_required": true` in the answer) and the finish must carry it; an operator's
/// first factor comes from the server (403); adding one more needs a step-up.
#[utoipa::path(
    tag = "factors",
    request_body(content = Option<PasskeyName>, description = "A name for the passkey (default: the device)"),
    responses(
        (status = 200, description = "WebAuthn creation options, and `email_code_required`", body = Object),
        (status = 403, description = "An operator's first factor is set up on the server", body = ApiError),
        (status = 409, description = "Already 10 passkeys, or no e-mail address", body = ApiError),
        (status = 429, description = "Too many ceremonies, or codes e-mailed lately", body = ApiError),
    )
)]
#[post("/api/v1/passkeys/options", data = "<body>")]
pub async fn passkey_options(
    body: Option<Json<PasskeyName>>,
    user: FactorAdder<ApiUser>,
    mailer: &State<Mailer>,
    app: AuthApp<'_>,
) -> Result<Json<Value>> {
    let AuthApp { db, rp, client, .. } = app;
    let doc = &user.0.session.doc;
    let default_name = audit::describe_device(&client.user_agent);
    let name = body.and_then(|b| b.0.name).unwrap_or(default_name);
    let options =
        passkey::start_registration(db, rp, &doc.user, &doc.display_name, &name, &client.ip);
    let mut options = options.await?;
    let first = user.1 == Enrolment::First;
    if first {
        let challenge = passkey::challenge_of(&options)?;
        email_code::send(db, mailer, &doc.user, NewFactor::Passkey, &challenge).await?;
    }
    options["email_code_required"] = Value::Bool(first);
    Ok(Json(options))
}

/// Finishes adding a passkey with the authenticator's attestation (`PublicKeyCredential` JSON,
/// plus `email_code` when the options asked for it).
#[utoipa::path(
    tag = "factors",
    request_body(content = Object, description = "The WebAuthn attestation (`PublicKeyCredential` JSON), with `email_code` for a first factor"),
    responses(
        (status = 201, description = "Added", body = PasskeyView),
        (status = 409, description = "Already 10 passkeys", body = ApiError),
        (status = 422, description = "The attestation did not verify, or a missing or wrong `email_code`", body = ApiError),
    )
)]
#[post("/api/v1/passkeys", data = "<answer>")]
pub async fn passkey_add(
    answer: Json<Value>,
    user: FactorAdder<ApiUser>,
    app: AuthApp<'_>,
) -> Result<(Status, Json<PasskeyView>)> {
    let AuthApp { db, config, rp, client, .. } = app;
    let username = &user.0.session.doc.user;
    let mut answer = answer.into_inner();
    let email_code = answer.as_object_mut().and_then(|a| a.remove("email_code"));
    // The answer is checked before the code is spent, and the code before the ceremony: a
    // damaged answer or a mistyped code can be retried on the same options and the same mail.
    let new = passkey::verify_registration(db, rp, username, &answer)
        .await
        .map_err(passkey::for_signed_in)?;
    if user.1 == Enrolment::First {
        // The code answers the ceremony it was mailed for: the challenge inside the signed
        // client data.
        let challenge = passkey::answered_challenge(&answer)
            .ok_or_else(|| passkey::for_signed_in(Error::InvalidCode))?;
        let email_code = email_code.as_ref().and_then(Value::as_str);
        email_code::redeem(db, username, NewFactor::Passkey, &challenge, email_code).await?;
    }
    let view =
        passkey::store_registration(db, username, new).await.map_err(passkey::for_signed_in)?;
    factor_added(db, config, &user.0.session, &client, "passkey", Some(&view.name)).await;
    Ok((Status::Created, Json(view)))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PasskeyList {
    passkeys: Vec<PasskeyView>,
}

/// The caller's passkeys.
#[utoipa::path(tag = "factors", responses((status = 200, body = PasskeyList)))]
#[get("/api/v1/passkeys")]
pub async fn passkey_list(user: ApiUser, db: &State<Db>) -> Result<Json<PasskeyList>> {
    let passkeys = passkey::list(db, &user.session.doc.user).await?;
    Ok(Json(PasskeyList { passkeys }))
}

/// Removes one of the caller's passkeys (needs a recent step-up).
#[utoipa::path(
    tag = "factors",
    params(("id" = String, Path, description = "The passkey's id from `GET /api/v1/passkeys`")),
    responses(
        (status = 204, description = "Removed"),
        (status = 404, description = "No such passkey of yours", body = ApiError),
    )
)]
#[delete("/api/v1/passkeys/<id>")]
pub async fn passkey_remove(
    id: &str,
    user: SteppedUp<ApiUser>,
    app: AuthApp<'_>,
) -> Result<Status> {
    let AuthApp { db, config, client, .. } = app;
    remove_passkey(db, config, &user.0.session.doc.user, id, &client).await?;
    Ok(Status::NoContent)
}

// ---- "this wasn't me" -----------------------------------------------------------------------

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct NotMeToken {
    /// The `token` of a security notice's "this wasn't me" link.
    token: String,
}

/// "This wasn't me", from a security notice's link: removes factors added in the last 24 hours,
/// signs out every session and remembered device, and marks the password compromised (the next
/// password sign-in also needs an e-mailed code and a new password). No sign-in: the link's
/// single-use token is the credential.
#[utoipa::path(
    tag = "factors",
    security(()),
    request_body = NotMeToken,
    responses(
        (status = 200, description = "Secured", body = notice::Undone),
        (status = 410, description = "The link was used or has expired", body = ApiError),
    )
)]
#[post("/api/v1/not-me", data = "<body>")]
pub async fn not_me(
    body: SecretJson<NotMeToken>,
    app: AuthApp<'_>,
) -> Result<Json<notice::Undone>> {
    let AuthApp { db, client, .. } = app;
    Ok(Json(notice::undo(db, &body.0.token, &client).await?))
}

// ---- activity ------------------------------------------------------------------------------------

/// The user's factors as the API and `/security` show them.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FactorsView {
    totp: bool,
    passkeys: usize,
    recovery_codes_left: usize,
}

impl From<&Factors> for FactorsView {
    fn from(owned: &Factors) -> Self {
        FactorsView {
            totp: owned.totp,
            passkeys: owned.passkeys,
            recovery_codes_left: owned.recovery_codes,
        }
    }
}

/// One thing that happened to the account's security.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ActivityView {
    /// RFC 3339.
    at: String,
    ip: String,
    user_agent: String,
    #[serde(flatten)]
    activity: Activity,
}

impl From<audit::Entry> for ActivityView {
    fn from(e: audit::Entry) -> Self {
        ActivityView {
            at: rfc3339_ms(e.at),
            ip: e.ip,
            user_agent: e.user_agent,
            activity: e.activity,
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SecurityActivity {
    factors: FactorsView,
    /// Newest first, at most 100.
    activity: Vec<ActivityView>,
    /// Devices that signed in and are remembered (their wrong passwords are counted apart from
    /// strangers'), most recently used first; forgotten by "sign out everywhere" and by every
    /// change of factors.
    devices: Vec<DeviceView>,
}

/// A remembered device.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeviceView {
    /// "Chrome on Linux", from its user agent.
    device: String,
    user_agent: String,
    ip: String,
    /// RFC 3339.
    first_sign_in: String,
    last_sign_in: String,
}

impl From<&crate::auth::throttle::Device> for DeviceView {
    fn from(d: &crate::auth::throttle::Device) -> Self {
        DeviceView {
            device: audit::describe_device(&d.user_agent),
            user_agent: d.user_agent.clone(),
            ip: d.ip.clone(),
            first_sign_in: rfc3339_ms(d.created_at),
            last_sign_in: rfc3339_ms(d.last_used_at),
        }
    }
}

/// The caller's factors and security activity (sign-ins, factors added or removed, step-ups,
/// sessions ended).
#[utoipa::path(tag = "factors", responses((status = 200, body = SecurityActivity)))]
#[get("/api/v1/security/activity")]
pub async fn security_activity(user: ApiUser, db: &State<Db>) -> Result<Json<SecurityActivity>> {
    let username = &user.session.doc.user;
    let entries = audit::newest(db, username, 100).await?;
    let owned = factors::factors(db, username).await?;
    let activity = entries.into_iter().map(ActivityView::from).collect();
    let devices = crate::auth::throttle::devices(db, username).await?;
    let devices = devices.iter().map(DeviceView::from).collect();
    Ok(Json(SecurityActivity { factors: FactorsView::from(&owned), activity, devices }))
}
