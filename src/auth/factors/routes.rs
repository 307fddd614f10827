//! The JSON API of strong authentication: completing a sign-in with a second factor or a passkey,
//! enrolling and removing factors, stepping up, and the security activity.

use rocket::http::{CookieJar, Status};
use rocket::serde::json::{Json, Value};
use rocket::{State, delete, get, post};
use serde::{Deserialize, Serialize};

use super::email_code::{self, NewFactor};
use super::passkey::{self, PasskeyView, Purpose, RelyingParty};
use super::recovery;
use super::store::{self as factors, Factors};
use super::totp::qr_svg;
use crate::audit::{self, Activity};
use crate::auth::code::{self, CodeKind};
use crate::auth::guard::{ApiUser, Via, session_cookie};
use crate::auth::login::{self, Method};
use crate::auth::model::{Amr, Assurance, Session, SessionKind};
use crate::auth::notice::{self, Notice};
use crate::auth::password::{MAX_PASSWORD_BYTES, Passwords};
use crate::auth::routes::{LoginAnswer, SignedInBody, login_json};
use crate::auth::step_up::{Enrolment, FactorAdder, SteppedUp};
use crate::auth::store::{self as sessions, ClientInfo};
use crate::auth::throttle::Throttle;
use crate::clock::{now_ms, rfc3339_ms};
use crate::config::Config;
use crate::error::{ApiError, Error, Result};
use crate::mail::Mailer;
use crate::redis::Db;
use crate::web::SecretJson;

/// The issuer authenticator apps show next to the account.
pub const ISSUER: &str = "redbank";

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct MfaCode {
    mfa_token: String,
    code: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct Code {
    code: String,
}

/// The code from the authenticator app that turns it on, and for a first factor the code
/// e-mailed to the account.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct TotpConfirm {
    code: String,
    /// Needed when `POST /api/v1/mfa/totp` answered `email_code_required`.
    #[serde(default)]
    email_code: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct Password {
    password: String,
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub struct PasskeyName {
    #[serde(default)]
    name: Option<String>,
}

// ---- completing a sign-in -----------------------------------------------------------------------

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

/// Signs in with a passkey assertion alone (it counts as two factors): shared by the API and
/// the browser's `/login/passkey`.
pub async fn sign_in_with_passkey(
    db: &Db,
    config: &Config,
    rp: &RelyingParty,
    answer: &Value,
    kind: SessionKind,
    client: &ClientInfo,
    devices: Vec<crate::auth::model::DeviceToken>,
) -> Result<login::SignedIn> {
    let verified = passkey::finish_authentication(db, rp, answer).await?;
    if verified.purpose != Purpose::SignIn {
        return Err(Error::InvalidCode);
    }
    let user = sessions::get_user(db, &verified.user).await?.ok_or(Error::InvalidCode)?;
    let throttle = Throttle::new(db, &user.username, &client.ip, devices).await?;
    let assurance = Assurance::passkey(now_ms());
    login::complete(db, config, &user, &throttle, kind, client, assurance, Method::Passkey).await
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

// ---- enrolment ------------------------------------------------------------------------------------

/// Starts TOTP enrolment: a new secret (pending until a code confirms it); for a first factor
/// also mails the code that must come with that confirmation.
pub async fn begin_totp(
    db: &Db,
    mailer: &Mailer,
    username: &str,
    enrolment: Enrolment,
) -> Result<(String, String)> {
    if factors::factors(db, username).await?.totp {
        return Err(Error::Conflict(
            "An authenticator app is already set up. Remove it first to set up another.".into(),
        ));
    }
    let secret = factors::begin_totp(db, username).await?.secret;
    if enrolment == Enrolment::First {
        email_code::send(db, mailer, username, NewFactor::Totp, &secret.base32()).await?;
    }
    let uri = secret.otpauth_uri(ISSUER, username);
    Ok((secret.base32(), uri))
}

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

/// Records a factor `session` added, tells the user's other open dashboards and mails the
/// owner (forgetting the remembered devices).
async fn factor_added(
    db: &Db,
    config: &Config,
    session: &Session,
    client: &ClientInfo,
    factor: &str,
    name: Option<&str>,
) {
    let (factor, name) = (factor.to_owned(), name.map(str::to_owned));
    let added = Activity::FactorAdded { factor: factor.clone(), name: name.clone() };
    audit::record(db, &session.doc.user, client, added).await;
    audit::announce_factor(db, session, &factor, name.as_deref()).await;
    let notice = Notice::FactorAdded { factor, name };
    notice::factors_changed(db, config, &session.doc.user, client, notice).await;
}

/// Records a removed factor and mails the owner (forgetting the remembered devices).
async fn factor_removed(
    db: &Db,
    config: &Config,
    username: &str,
    client: &ClientInfo,
    factor: &str,
    name: Option<String>,
) {
    let removed = Activity::FactorRemoved { factor: factor.into(), name: name.clone() };
    audit::record(db, username, client, removed).await;
    let notice = Notice::FactorRemoved { factor: factor.into(), name };
    notice::factors_changed(db, config, username, client, notice).await;
}

/// Confirms TOTP enrolment with a code from the app (and, for a first factor, the e-mailed
/// code, spent only once the app's code is right); the new recovery codes, shown once.
pub async fn confirm_totp(
    db: &Db,
    config: &Config,
    session: &Session,
    client: &ClientInfo,
    enrolment: Enrolment,
    code: &str,
    email_code: Option<&str>,
) -> Result<Vec<String>> {
    let username = &session.doc.user;
    let Some(pending) = factors::pending_totp(db, username).await? else {
        return Err(Error::Conflict("There is no set-up waiting for a code. Start again.".into()));
    };
    let Some(step) = pending.secret.matching_step(code, now_ms() / 1000) else {
        return Err(code::wrong_code());
    };
    if enrolment == Enrolment::First {
        let enrolment = pending.secret.base32();
        email_code::redeem(db, username, NewFactor::Totp, &enrolment, email_code).await?;
    }
    let codes = recovery::generate();
    let digests: Vec<String> = codes.iter().filter_map(|c| recovery::digest(c)).collect();
    if !factors::confirm_totp(db, username, &pending, step, &digests).await? {
        return Err(Error::Conflict("The set-up was replaced or expired. Start again.".into()));
    }
    factor_added(db, config, session, client, "totp", None).await;
    Ok(codes)
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
    client: ClientInfo,
    db: &State<Db>,
    config: &State<Config>,
) -> Result<Json<RecoveryCodes>> {
    let TotpConfirm { code, email_code } = body.0;
    let session = &user.0.session;
    let confirmed =
        confirm_totp(db, config, session, &client, user.1, &code, email_code.as_deref());
    let codes = confirmed.await?;
    Ok(Json(RecoveryCodes { recovery_codes: codes }))
}

/// Removes a factor's recovery codes when the user has no second factor left.
async fn drop_orphan_codes(db: &Db, username: &str) -> Result<()> {
    if !factors::factors(db, username).await?.any() {
        factors::replace_recovery_codes(db, username, &[]).await?;
    }
    Ok(())
}

pub async fn remove_totp(
    db: &Db,
    config: &Config,
    username: &str,
    client: &ClientInfo,
) -> Result<()> {
    if !factors::remove_totp(db, username).await? {
        return Err(Error::NotFound);
    }
    drop_orphan_codes(db, username).await?;
    factor_removed(db, config, username, client, "totp", None).await;
    Ok(())
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
pub async fn totp_remove(
    user: SteppedUp<ApiUser>,
    client: ClientInfo,
    db: &State<Db>,
    config: &State<Config>,
) -> Result<Status> {
    remove_totp(db, config, &user.0.session.doc.user, &client).await?;
    Ok(Status::NoContent)
}

/// New recovery codes (the old ones stop working); only with a second factor to back up.
pub async fn renew_recovery_codes(
    db: &Db,
    config: &Config,
    username: &str,
    client: &ClientInfo,
) -> Result<Vec<String>> {
    if !factors::factors(db, username).await?.any() {
        return Err(Error::Conflict("Set up a second factor first.".into()));
    }
    let codes = recovery::generate();
    let digests: Vec<String> = codes.iter().filter_map(|c| recovery::digest(c)).collect();
    factors::replace_recovery_codes(db, username, &digests).await?;
    let added = Activity::FactorAdded { factor: "recovery_codes".into(), name: None };
    audit::record(db, username, client, added).await;
    let notice = Notice::FactorAdded { factor: "recovery_codes".into(), name: None };
    notice::factors_changed(db, config, username, client, notice).await;
    Ok(codes)
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
    client: ClientInfo,
    db: &State<Db>,
    config: &State<Config>,
) -> Result<Json<RecoveryCodes>> {
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
    client: ClientInfo,
    db: &State<Db>,
    rp: &State<RelyingParty>,
    mailer: &State<Mailer>,
) -> Result<Json<Value>> {
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
    client: ClientInfo,
    db: &State<Db>,
    config: &State<Config>,
    rp: &State<RelyingParty>,
) -> Result<(Status, Json<PasskeyView>)> {
    let username = &user.0.session.doc.user;
    let mut answer = answer.into_inner();
    let email_code = answer.as_object_mut().and_then(|a| a.remove("email_code"));
    // The answer is checked before the code is spent, and the code before the ceremony: a
    // damaged answer or a mistyped code can be retried on the same options and the same mail.
    let new = passkey::verify_registration(db, rp, username, &answer).await.map_err(signed_in)?;
    if user.1 == Enrolment::First {
        // The code answers the ceremony it was mailed for: the challenge inside the signed
        // client data.
        let challenge =
            passkey::answered_challenge(&answer).ok_or_else(|| signed_in(Error::InvalidCode))?;
        let email_code = email_code.as_ref().and_then(Value::as_str);
        email_code::redeem(db, username, NewFactor::Passkey, &challenge, email_code).await?;
    }
    let view = passkey::store_registration(db, username, new).await.map_err(signed_in)?;
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

pub async fn remove_passkey(
    db: &Db,
    config: &Config,
    username: &str,
    id: &str,
    client: &ClientInfo,
) -> Result<()> {
    let id = passkey::parse_id(id).ok_or(Error::NotFound)?;
    let name = passkey::remove(db, username, &id).await?.ok_or(Error::NotFound)?;
    drop_orphan_codes(db, username).await?;
    factor_removed(db, config, username, client, "passkey", Some(name)).await;
    Ok(())
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
    client: ClientInfo,
    db: &State<Db>,
    config: &State<Config>,
) -> Result<Status> {
    remove_passkey(db, config, &user.0.session.doc.user, id, &client).await?;
    Ok(Status::NoContent)
}

// ---- step-up -------------------------------------------------------------------------------------

/// A passkey answer that failed for a signed-in user: 422 (their session is fine), not the 401 of
/// a failed sign-in.
fn signed_in(e: Error) -> Error {
    match e {
        Error::InvalidCode => {
            Error::NotConfirmed("The passkey could not be confirmed. Please try again.".into())
        }
        e => e,
    }
}

/// Stores a step-up: on a bearer session by JSON path; a browser session gets a new token (and
/// CSRF token) with it, so a token seen before the step-up is worth nothing after it.
async fn apply_step_up(
    db: &Db,
    config: &Config,
    jar: &CookieJar<'_>,
    user: &ApiUser,
    assurance: Assurance,
) -> Result<Json<SteppedUpBody>> {
    let mut body = SteppedUpBody {
        aal: assurance.aal,
        amr: assurance.amr.clone(),
        auth_time: rfc3339_ms(assurance.auth_time),
        csrf_token: None,
    };
    match user.via {
        Via::Bearer => {
            if !sessions::set_assurance(db, &user.session.id, &assurance).await? {
                return Err(Error::Unauthorized);
            }
        }
        Via::Cookie => {
            let (token, session) = sessions::rotate(db, config, &user.session, assurance).await?;
            jar.add(session_cookie(config, &token));
            body.csrf_token = Some(session.doc.csrf_token);
        }
    }
    Ok(Json(body))
}

/// The session's new assurance after a step-up.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SteppedUpBody {
    aal: u8,
    amr: Vec<Amr>,
    auth_time: String,
    /// A browser session's new CSRF token (its cookie was renewed too); absent for bearer.
    #[serde(skip_serializing_if = "Option::is_none")]
    csrf_token: Option<String>,
}

/// Steps up with a code from the authenticator app: the session is at AAL2 for the next few minutes.
#[utoipa::path(
    tag = "step-up",
    request_body = Code,
    responses(
        (status = 200, description = "Stepped up", body = SteppedUpBody),
        (status = 422, description = "Wrong or used code", body = ApiError),
        (status = 429, description = "Too many codes tried", body = ApiError),
    )
)]
#[post("/api/v1/step-up/totp", data = "<body>")]
pub async fn step_up_totp(
    body: SecretJson<Code>,
    user: ApiUser,
    client: ClientInfo,
    jar: &CookieJar<'_>,
    db: &State<Db>,
    config: &State<Config>,
) -> Result<Json<SteppedUpBody>> {
    let kind = CodeKind::Totp;
    let assurance = code::step_up(db, config, &user.session, &client, kind, &body.0.code).await?;
    apply_step_up(db, config, jar, &user, assurance).await
}

/// Steps up with a recovery code (each works once): the session is at AAL2 for the next few minutes.
#[utoipa::path(
    tag = "step-up",
    request_body = Code,
    responses(
        (status = 200, description = "Stepped up", body = SteppedUpBody),
        (status = 422, description = "Wrong or used code", body = ApiError),
        (status = 429, description = "Too many codes tried", body = ApiError),
    )
)]
#[post("/api/v1/step-up/recovery", data = "<body>")]
pub async fn step_up_recovery(
    body: SecretJson<Code>,
    user: ApiUser,
    client: ClientInfo,
    jar: &CookieJar<'_>,
    db: &State<Db>,
    config: &State<Config>,
) -> Result<Json<SteppedUpBody>> {
    let kind = CodeKind::Recovery;
    let assurance = code::step_up(db, config, &user.session, &client, kind, &body.0.code).await?;
    apply_step_up(db, config, jar, &user, assurance).await
}

/// Steps up with the password — only for a user without a second factor (recorded as AAL1).
pub async fn step_up_with_password(
    db: &Db,
    config: &Config,
    passwords: &Passwords,
    session: &Session,
    client: &ClientInfo,
    password: &str,
) -> Result<Assurance> {
    let user = &session.doc.user;
    if factors::factors(db, user).await?.any() {
        return Err(Error::Forbidden(
            "Confirm with your second factor (authenticator app or passkey).".into(),
        ));
    }
    // As at sign-in: checked before queueing, then checked again, hashed and counted under one
    // hashing slot, so parallel guesses see each other's failures.
    let throttle = Throttle::new(db, user, &client.ip, Vec::new()).await?;
    throttle.check(db, config).await?;
    let stored = sessions::get_user(db, user).await?.ok_or(Error::Unauthorized)?;
    let max_wait = std::time::Duration::from_millis(config.sign_in.queue_max_ms);
    let slot = passwords.login_slot(max_wait, false).await?;
    throttle.check(db, config).await?;
    let ok = password.len() <= MAX_PASSWORD_BYTES
        && passwords.verify(&slot, password, Some(&stored.password_hash)).await?;
    if !ok {
        throttle.failed(db, config).await?;
        drop(slot);
        let failed = Activity::FailedSignIn { method: Method::Password.as_str().into() };
        audit::record(db, user, client, failed).await;
        return Err(Error::NotConfirmed("That password is not right. Please try again.".into()));
    }
    drop(slot);
    audit::record(db, user, client, Activity::StepUp { method: "password".into(), aal: 1 }).await;
    Ok(code::stepped_up(session, 1, &[Amr::Pwd]))
}

/// Steps up with the password: only for a user without a second factor (the session stays at
/// AAL1, with a fresh authentication time).
#[utoipa::path(
    tag = "step-up",
    request_body = Password,
    responses(
        (status = 200, description = "Stepped up", body = SteppedUpBody),
        (status = 403, description = "The user has a second factor: use it", body = ApiError),
        (status = 422, description = "Wrong password", body = ApiError),
        (status = 429, description = "Too many attempts", body = ApiError),
    )
)]
#[post("/api/v1/step-up/password", data = "<body>")]
#[allow(clippy::too_many_arguments)] // one per request guard: what Rocket routes look like
pub async fn step_up_password(
    body: SecretJson<Password>,
    user: ApiUser,
    client: ClientInfo,
    jar: &CookieJar<'_>,
    db: &State<Db>,
    config: &State<Config>,
    passwords: &State<std::sync::Arc<Passwords>>,
) -> Result<Json<SteppedUpBody>> {
    let assurance =
        step_up_with_password(db, config, passwords, &user.session, &client, &body.0.password)
            .await?;
    apply_step_up(db, config, jar, &user, assurance).await
}

/// Starts a passkey step-up: WebAuthn request options bound to this session.
#[utoipa::path(
    tag = "step-up",
    responses(
        (status = 200, description = "WebAuthn request options", body = Object),
        (status = 429, description = "Too many ceremonies", body = ApiError),
    )
)]
#[post("/api/v1/step-up/passkey/options")]
pub async fn step_up_passkey_options(
    user: ApiUser,
    client: ClientInfo,
    db: &State<Db>,
    rp: &State<RelyingParty>,
) -> Result<Json<Value>> {
    let purpose = Purpose::StepUp {
        user: user.session.doc.user.clone(),
        session: user.session.id.as_str().to_owned(),
    };
    Ok(Json(passkey::start_authentication(db, rp, purpose, &client.ip).await?))
}

/// Steps up with a passkey's assertion (`PublicKeyCredential` JSON).
#[utoipa::path(
    tag = "step-up",
    request_body(content = Object, description = "The WebAuthn assertion (`PublicKeyCredential` JSON)"),
    responses(
        (status = 200, description = "Stepped up", body = SteppedUpBody),
        (status = 422, description = "The assertion did not verify", body = ApiError),
    )
)]
#[post("/api/v1/step-up/passkey", data = "<answer>")]
#[allow(clippy::too_many_arguments)] // one per request guard: what Rocket routes look like
pub async fn step_up_passkey(
    answer: Json<Value>,
    user: ApiUser,
    client: ClientInfo,
    jar: &CookieJar<'_>,
    db: &State<Db>,
    config: &State<Config>,
    rp: &State<RelyingParty>,
) -> Result<Json<SteppedUpBody>> {
    let verified = passkey::finish_authentication(db, rp, &answer).await.map_err(signed_in)?;
    let expected = Purpose::StepUp {
        user: user.session.doc.user.clone(),
        session: user.session.id.as_str().to_owned(),
    };
    // The passkey must be this user's, answering a ceremony this session started.
    if verified.purpose != expected || verified.user != user.session.doc.user {
        return Err(signed_in(Error::InvalidCode));
    }
    let username = &user.session.doc.user;
    audit::record(db, username, &client, Activity::StepUp { method: "passkey".into(), aal: 2 })
        .await;
    let assurance = code::stepped_up(&user.session, 2, &[Amr::Hwk, Amr::User]);
    apply_step_up(db, config, jar, &user, assurance).await
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
    client: ClientInfo,
    db: &State<Db>,
) -> Result<Json<notice::Undone>> {
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
    let activity = entries
        .into_iter()
        .map(|e| ActivityView {
            at: rfc3339_ms(e.at),
            ip: e.ip,
            user_agent: e.user_agent,
            activity: e.activity,
        })
        .collect();
    let devices = crate::auth::throttle::devices(db, username).await?;
    let devices = devices.iter().map(DeviceView::from).collect();
    Ok(Json(SecurityActivity { factors: FactorsView::from(&owned), activity, devices }))
}
