//! The JSON API of step-up: a signed-in user confirms it is them again (authenticator app,
//! recovery code, password or passkey) before a sensitive action.

use rocket::http::CookieJar;
use rocket::post;
use rocket::serde::json::{Json, Value};
use serde::{Deserialize, Serialize};

use super::service::step_up_with_password;
use crate::audit;
use crate::audit::Activity;
use crate::auth::context::AuthApp;
use crate::auth::factors::passkey;
use crate::auth::factors::passkey::Purpose;
use crate::auth::guard::{ApiUser, Via, session_cookie};
use crate::auth::model::{Amr, Assurance};
use crate::auth::signin::code;
use crate::auth::signin::code::CodeKind;
use crate::auth::store as sessions;
use crate::clock::rfc3339_ms;
use crate::config::Config;
use crate::error::{ApiError, Error, Result};
use crate::redis::Db;
use crate::web::SecretJson;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct Code {
    code: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct Password {
    password: String,
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

/// What a step-up with a code answers (the same for both kinds of code).
#[derive(utoipa::IntoResponses)]
pub enum CodeAnswers {
    #[response(status = 200, description = "Stepped up")]
    SteppedUp(SteppedUpBody),
    #[response(status = 422, description = "Wrong or used code")]
    Wrong(ApiError),
    #[response(status = 429, description = "Too many codes tried")]
    TooMany(ApiError),
}

/// Steps up with a code from the authenticator app: the session is at AAL2 for the next few minutes.
#[utoipa::path(tag = "step-up", request_body = Code, responses(CodeAnswers))]
#[post("/api/v1/step-up/totp", data = "<body>")]
pub async fn step_up_totp(
    body: SecretJson<Code>,
    user: ApiUser,
    app: AuthApp<'_>,
) -> Result<Json<SteppedUpBody>> {
    let AuthApp { db, config, client, jar, .. } = app;
    let kind = CodeKind::Totp;
    let assurance = code::step_up(db, config, &user.session, &client, kind, &body.0.code).await?;
    apply_step_up(db, config, jar, &user, assurance).await
}

/// Steps up with a recovery code (each works once): the session is at AAL2 for the next few minutes.
#[utoipa::path(tag = "step-up", request_body = Code, responses(CodeAnswers))]
#[post("/api/v1/step-up/recovery", data = "<body>")]
pub async fn step_up_recovery(
    body: SecretJson<Code>,
    user: ApiUser,
    app: AuthApp<'_>,
) -> Result<Json<SteppedUpBody>> {
    let AuthApp { db, config, client, jar, .. } = app;
    let kind = CodeKind::Recovery;
    let assurance = code::step_up(db, config, &user.session, &client, kind, &body.0.code).await?;
    apply_step_up(db, config, jar, &user, assurance).await
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
pub async fn step_up_password(
    body: SecretJson<Password>,
    user: ApiUser,
    app: AuthApp<'_>,
) -> Result<Json<SteppedUpBody>> {
    let AuthApp { db, config, passwords, client, jar, .. } = app;
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
pub async fn step_up_passkey_options(user: ApiUser, app: AuthApp<'_>) -> Result<Json<Value>> {
    let AuthApp { db, rp, client, .. } = app;
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
pub async fn step_up_passkey(
    answer: Json<Value>,
    user: ApiUser,
    app: AuthApp<'_>,
) -> Result<Json<SteppedUpBody>> {
    let AuthApp { db, config, rp, client, jar, .. } = app;
    let verified =
        passkey::finish_authentication(db, rp, &answer).await.map_err(passkey::for_signed_in)?;
    let expected = Purpose::StepUp {
        user: user.session.doc.user.clone(),
        session: user.session.id.as_str().to_owned(),
    };
    // The passkey must be this user's, answering a ceremony this session started.
    if verified.purpose != expected || verified.user != user.session.doc.user {
        return Err(passkey::for_signed_in(Error::InvalidCode));
    }
    let username = &user.session.doc.user;
    audit::record(db, username, &client, Activity::StepUp { method: "passkey".into(), aal: 2 })
        .await;
    let assurance = code::stepped_up(&user.session, 2, &[Amr::Hwk, Amr::User]);
    apply_step_up(db, config, jar, &user, assurance).await
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
            body.csrf_token = Some(session.csrf().to_owned());
        }
    }
    Ok(Json(body))
}
