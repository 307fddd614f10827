//! One error type for the whole app and the one responder that turns it into a page or JSON.
//!
//! Browser routes get an HTML error page (templates/error/*), API routes (`/api/…`, the seed's
//! `/transaction/…`, or a client asking for JSON) get `{"error": "…"}`. Internal details are
//! logged, never shown: the client sees a short, stable message.

use std::io::Cursor;

use rocket::http::{ContentType, Header, Status};
use rocket::request::Request;
use rocket::response::{self, Redirect, Responder, Response};
use rocket_dyn_templates::{Template, context};
use serde::Serialize;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Redis did not answer in time, refused the connection, or the pool had none to give.
    #[error("Redis unavailable: {0}")]
    Unavailable(String),
    /// Any other Redis failure; classified by [`Error::status`] (I/O problems are 503, the rest 500).
    #[error(transparent)]
    Redis(#[from] redis::RedisError),
    /// The client sent something we cannot use; the message is shown to the client.
    #[error("{0}")]
    BadRequest(String),
    /// A field of the request breaks a rule (422): the API names the field next to the message.
    #[error("{message}")]
    Invalid { field: &'static str, message: String },
    /// What the request names is over (an expired pending transfer): 410.
    #[error("{0}")]
    Gone(String),
    /// Wrong username or password — deliberately one message for both (no user enumeration).
    #[error("Invalid username or password")]
    InvalidCredentials,
    /// No valid session or token. Pages redirect to the login form, the API answers 401.
    #[error("Please sign in.")]
    Unauthorized,
    /// A wrong, reused or expired one-time code or passkey assertion completing a sign-in.
    #[error("That code is not valid. Please try again.")]
    InvalidCode,
    /// A signed-in user's confirmation (a step-up, or the code that turns a factor on) was wrong:
    /// 422, so a client can tell it from a session that ended (401). The message is shown.
    #[error("{0}")]
    NotConfirmed(String),
    /// The sign-in waiting for its second factor expired, was used, or never existed.
    #[error("Your sign-in has expired. Please sign in again.")]
    SignInExpired,
    /// A sensitive action needs a recent strong sign-in (RFC 9470): the API answers 401 with
    /// the `insufficient_user_authentication` challenge, pages go through `/login/verify`.
    #[error("Please confirm it is you to continue.")]
    StepUpRequired,
    /// Authenticated, but this is not yours; the message is shown to the client.
    #[error("{0}")]
    Forbidden(String),
    #[error("not found")]
    NotFound,
    /// The request conflicts with the current state (e.g. a factor already set up); the
    /// message says what to do.
    #[error("{0}")]
    Conflict(String),
    /// Throttled; `retry_after` seconds go into the `Retry-After` header.
    #[error("too many attempts, try again in {retry_after} s")]
    TooManyRequests { retry_after: u64 },
    /// More work queued than we will make anyone wait for (the login hashing queue): 503 with
    /// `Retry-After` at once, instead of a wait without limit.
    #[error("too busy, try again in {retry_after} s")]
    Overloaded { retry_after: u64 },
    /// The mail server refused a message or did not answer (the reason is logged, the client is
    /// asked to try again): 503.
    #[error("mail not sent: {0}")]
    MailUnavailable(String),
    /// A bug or broken invariant; logged with detail, shown as a plain 500.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<rocket_db_pools::deadpool_redis::PoolError> for Error {
    fn from(e: rocket_db_pools::deadpool_redis::PoolError) -> Self {
        use rocket_db_pools::deadpool_redis::PoolError;
        match e {
            PoolError::Backend(e) => Error::Redis(e),
            other => Error::Unavailable(other.to_string()),
        }
    }
}

impl Error {
    pub fn status(&self) -> Status {
        match self {
            Error::Unavailable(_) | Error::Overloaded { .. } | Error::MailUnavailable(_) => {
                Status::ServiceUnavailable
            }
            Error::Redis(e) if is_outage(e) => Status::ServiceUnavailable,
            Error::Redis(_) | Error::Internal(_) => Status::InternalServerError,
            Error::BadRequest(_) => Status::BadRequest,
            Error::NotConfirmed(_) | Error::Invalid { .. } => Status::UnprocessableEntity,
            Error::Gone(_) => Status::Gone,
            Error::Unauthorized
            | Error::InvalidCredentials
            | Error::InvalidCode
            | Error::SignInExpired
            | Error::StepUpRequired => Status::Unauthorized,
            Error::Forbidden(_) => Status::Forbidden,
            Error::NotFound => Status::NotFound,
            Error::Conflict(_) => Status::Conflict,
            Error::TooManyRequests { .. } => Status::TooManyRequests,
        }
    }

    /// True when the cause is Redis being unreachable, frozen or overloaded (a 503).
    pub fn is_outage(&self) -> bool {
        self.status() == Status::ServiceUnavailable
    }

    /// Logs a failure on our side (500 as an error, 503 as a warning) with where it happened;
    /// client errors are the client's business and are not logged.
    pub(crate) fn log(&self, context: &dyn std::fmt::Display) {
        match self.status().code {
            500 => rocket::error!("{context}: {self}"),
            503 => rocket::warn!("{context}: {self}"),
            _ => {}
        }
    }

    /// Seconds for `Retry-After`: the throttle's wait, or 1 s when the service is unavailable.
    pub(crate) fn retry_after(&self) -> Option<u64> {
        match self {
            Error::TooManyRequests { retry_after } | Error::Overloaded { retry_after } => {
                Some(*retry_after)
            }
            _ if self.is_outage() => Some(1),
            _ => None,
        }
    }

    /// What the client may read: never internal detail.
    pub(crate) fn public_message(&self) -> String {
        if let Error::Overloaded { retry_after } = self {
            return format!("Too many sign-ins at once. Please try again in {retry_after} s.");
        }
        if let Error::MailUnavailable(_) = self {
            return "We could not send you an e-mail just now. Please try again in a moment."
                .into();
        }
        match self.status().code {
            500 => "Something went wrong on our side. Please try again.".into(),
            503 => "The service is temporarily unavailable. Please retry in a moment.".into(),
            _ => self.to_string(),
        }
    }
}

/// Failures that mean "Redis is not there right now" rather than "we sent something wrong" —
/// including a primary that refuses writes while no replica is in sync (`NOREPLICAS`, with
/// `min-replicas-to-write`) and the moments of a failover when the sentinels name no primary.
fn is_outage(e: &redis::RedisError) -> bool {
    use redis::ErrorKind::*;
    e.code() == Some("NOREPLICAS")
        || e.is_io_error()
        || e.is_connection_refusal()
        || e.is_connection_dropped()
        || e.is_timeout()
        || matches!(
            e.kind(),
            BusyLoadingError
                | TryAgain
                | ClusterDown
                | MasterDown
                | ReadOnly
                | MasterNameNotFoundBySentinel
                | NoValidReplicasFoundBySentinel
        )
}

/// The body of every JSON error, as the OpenAPI document describes it: `error` always; `field`
/// names the offending request field of a 422; a step-up challenge (401) adds what RFC 9470's
/// `WWW-Authenticate` says, with `error` = `step_up_required`.
#[derive(Debug, Default, Serialize, utoipa::ToSchema)]
pub struct ApiError {
    /// A short message for people (or `step_up_required`).
    #[schema(example = "Please sign in.")]
    pub error: String,
    /// The request field a 422 is about.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<&'static str>,
    /// The step-up challenge's message for people.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The step-up challenge: how recent (seconds) the strong sign-in must be.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_age: Option<i64>,
    /// The step-up challenge: the assurance level wanted (`aal2`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acr_values: Option<&'static str>,
}

impl ApiError {
    fn body(&self) -> String {
        // A struct of strings and numbers always serializes.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Requests answered with JSON errors: the API, the seed-compatible endpoints, or an explicit ask.
pub fn wants_json(req: &Request<'_>) -> bool {
    let path = req.uri().path();
    path.starts_with("/api/")
        || path.starts_with("/transaction/")
        || path == "/healthz"
        || path == "/events"
        || req.accept().is_some_and(|a| a.preferred().media_type().is_json())
}

/// `Retry-After` (seconds) on a response — the one place it is set.
pub fn set_retry_after(response: &mut Response<'_>, seconds: u64) {
    response.set_header(Header::new("Retry-After", seconds.to_string()));
}

/// Renders an error for `status`: JSON or an HTML page, 401 on a page becomes a redirect to login.
/// `retry_after` defaults to 1 s for a 503.
pub fn render(
    req: &Request<'_>,
    status: Status,
    message: &str,
    retry_after: Option<u64>,
) -> response::Result<'static> {
    let mut response = if wants_json(req) {
        let body = ApiError { error: message.to_owned(), ..ApiError::default() }.body();
        Response::build()
            .header(ContentType::JSON)
            .sized_body(body.len(), Cursor::new(body))
            .finalize()
    } else if status == Status::Unauthorized {
        return Redirect::to("/login").respond_to(req);
    } else {
        let name = match status.code {
            404 => "error/404",
            500 => "error/500",
            503 => "error/503",
            _ => "error/default",
        };
        let page = Template::render(
            name,
            context! { code: status.code, reason: status.reason_lossy(), message },
        );
        match page.respond_to(req) {
            Ok(response) => response,
            // The template engine itself failed: still answer with the right status.
            Err(_) => {
                let body = format!("{} {}\n{message}\n", status.code, status.reason_lossy());
                Response::build()
                    .header(ContentType::Plain)
                    .sized_body(body.len(), Cursor::new(body))
                    .finalize()
            }
        }
    };
    response.set_status(status);
    let retry_after = retry_after.or((status == Status::ServiceUnavailable).then_some(1));
    if let Some(seconds) = retry_after {
        set_retry_after(&mut response, seconds);
    }
    Ok(response)
}

/// The message of a request guard's refusal, for the catcher that renders its status (guards
/// cannot hand an error to catchers; without it the client would read a generic message).
#[derive(Debug, Clone)]
pub struct GuardMessage(pub Option<String>);

/// A guard's refusal with `message` shown to the client.
pub fn refuse<T>(
    req: &Request<'_>,
    status: Status,
    message: &str,
) -> rocket::request::Outcome<T, Error> {
    req.local_cache(|| GuardMessage(Some(message.to_owned())));
    let error = match status.code {
        403 => Error::Forbidden(message.to_owned()),
        _ => Error::BadRequest(message.to_owned()),
    };
    rocket::outcome::Outcome::Error((status, error))
}

/// Set by a request guard that refused for want of a recent strong sign-in, so the catcher that
/// renders its 401 answers with the step-up challenge (guards cannot hand an error to catchers).
#[derive(Debug, Clone, Copy)]
pub struct StepUpWanted(pub bool);

/// The step-up challenge: for the API, 401 `{"error": "step_up_required", …}` with RFC 9470's
/// `WWW-Authenticate`; for a page, a redirect through `/login/verify` and back (to the page
/// itself for a GET, to `/security` — where sensitive forms live — after a form post).
pub fn step_up_challenge(req: &Request<'_>) -> response::Result<'static> {
    if !wants_json(req) {
        let back = match (req.method(), req.uri().query()) {
            (rocket::http::Method::Get, Some(q)) => format!("{}?{}", req.uri().path(), q),
            (rocket::http::Method::Get, None) => req.uri().path().to_string(),
            _ => "/security".to_owned(),
        };
        let next = rocket::http::RawStr::new(&back).percent_encode().to_string();
        return Redirect::to(format!("/login/verify?next={next}")).respond_to(req);
    }
    // How recent the strong sign-in must be (`step_up_max_age_secs`; its default without state).
    let max_age = req
        .rocket()
        .state::<crate::config::Config>()
        .map_or(300, |c| c.session.step_up_max_age_secs);
    let body = ApiError {
        error: "step_up_required".into(),
        message: Some(Error::StepUpRequired.to_string()),
        max_age: Some(max_age as i64),
        acr_values: Some("aal2"),
        field: None,
    }
    .body();
    let challenge = format!(
        "Bearer error=\"insufficient_user_authentication\", max_age={max_age}, \
         acr_values=\"aal2\""
    );
    Ok(Response::build()
        .status(Status::Unauthorized)
        .header(ContentType::JSON)
        .header(Header::new("WWW-Authenticate", challenge))
        .sized_body(body.len(), Cursor::new(body))
        .finalize())
}

/// An error page for a bare status (used by the catchers), rendered like [`Error`].
pub struct ErrorPage {
    pub status: Status,
    pub message: &'static str,
}

impl<'r> Responder<'r, 'static> for ErrorPage {
    fn respond_to(self, req: &'r Request<'_>) -> response::Result<'static> {
        if self.status == Status::Unauthorized && req.local_cache(|| StepUpWanted(false)).0 {
            return step_up_challenge(req);
        }
        if let Some(message) = &req.local_cache(|| GuardMessage(None)).0 {
            return render(req, self.status, message, None);
        }
        render(req, self.status, self.message, None)
    }
}

impl<'r> Responder<'r, 'static> for Error {
    fn respond_to(self, req: &'r Request<'_>) -> response::Result<'static> {
        self.log(&format_args!("{} {}", req.method(), req.uri().path()));
        if let Error::StepUpRequired = self {
            return step_up_challenge(req);
        }
        if let (Error::Invalid { field, message }, true) = (&self, wants_json(req)) {
            let body =
                ApiError { error: message.clone(), field: Some(field), ..ApiError::default() }
                    .body();
            return Response::build()
                .status(Status::UnprocessableEntity)
                .header(ContentType::JSON)
                .sized_body(body.len(), Cursor::new(body))
                .ok();
        }
        render(req, self.status(), &self.public_message(), self.retry_after())
    }
}
