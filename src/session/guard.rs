//! Request guards: the only place sessions are read.
//!
//! The session is resolved once per request (bearer token first, else the cookie) and cached.
//! No session forwards with 401 (pages → login redirect, API → JSON 401 via the catchers); Redis
//! trouble is an error with 503 — never "logged out".

use rocket::http::{Cookie, Status};
use rocket::outcome::Outcome;
use rocket::request::{self, FromRequest, Request};

use super::csrf;
use super::model::{Session, SessionToken};
use super::store::{self, ClientInfo};
use crate::config::Config;
use crate::error::Error;
use crate::redis::Db;

/// Name of the session cookie: `__Host-` prefixed (so it is host-only, `Path=/`, `Secure`) when
/// cookies are marked Secure.
pub fn cookie_name(config: &Config) -> &'static str {
    if config.cookie_secure { "__Host-redbank" } else { "redbank" }
}

/// The browser session cookie: HttpOnly, SameSite=Lax, Path=/, no Expires (dies with the
/// browser; the server enforces the real lifetime).
pub fn session_cookie(config: &Config, token: &SessionToken) -> Cookie<'static> {
    Cookie::build((cookie_name(config), token.as_str().to_owned()))
        .http_only(true)
        .same_site(rocket::http::SameSite::Lax)
        .path("/")
        .secure(config.cookie_secure)
        .build()
}

/// The removal cookie must carry the same attributes or browsers ignore it (`__Host-` needs Secure).
pub fn removal_cookie(config: &Config) -> Cookie<'static> {
    Cookie::build(cookie_name(config)).path("/").secure(config.cookie_secure).build()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Cookie,
    Bearer,
}

#[derive(Debug, Clone)]
enum Resolved {
    Anonymous,
    Live(Box<Session>, Via),
    Failed(Status),
}

async fn resolve<'r>(req: &'r Request<'_>) -> &'r Resolved {
    req.local_cache_async(async {
        let (Some(db), Some(config)) = (req.rocket().state::<Db>(), req.rocket().state::<Config>())
        else {
            return Resolved::Failed(Status::InternalServerError);
        };
        let (raw, via) = match req.headers().get_one("Authorization") {
            Some(auth) => (auth.strip_prefix("Bearer ").map(str::trim), Via::Bearer),
            // The jar keeps one cookie per name; a planted duplicate is only visible in the raw
            // headers, and voids both (see `session_cookie_value`).
            None if session_cookie_count(config, req.headers().get("Cookie")) > 1 => {
                return Resolved::Anonymous;
            }
            None => (req.cookies().get(cookie_name(config)).map(|c| c.value()), Via::Cookie),
        };
        let Some(raw) = raw else { return Resolved::Anonymous };
        let Some(token) = SessionToken::parse(raw) else {
            forget_cookie(req, config, via);
            return Resolved::Anonymous;
        };
        match store::load_session(db, config, &token).await {
            Ok(Some(session)) => Resolved::Live(Box::new(session), via),
            Ok(None) => {
                forget_cookie(req, config, via);
                Resolved::Anonymous
            }
            Err(e) => {
                if !e.is_outage() {
                    rocket::error!("loading a session: {e}");
                }
                Resolved::Failed(e.status())
            }
        }
    })
    .await
}

/// The session cookie's value from raw `Cookie` header values — `None` when it is missing or sent
/// more than once. A duplicate means someone planted a second cookie of that name (e.g. with a
/// narrower `Path`, which browsers send first); picking either one could put another person's
/// session in this browser, so neither is used.
pub fn session_cookie_value<'a>(
    config: &Config,
    headers: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    let mut found = session_cookies(config, headers);
    let first = found.next()?;
    found.next().is_none().then_some(first)
}

fn session_cookie_count<'a>(config: &Config, headers: impl IntoIterator<Item = &'a str>) -> usize {
    session_cookies(config, headers).count()
}

fn session_cookies<'a>(
    config: &Config,
    headers: impl IntoIterator<Item = &'a str>,
) -> impl Iterator<Item = String> {
    let name = cookie_name(config);
    headers
        .into_iter()
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .filter(move |c| c.name() == name)
        .map(|c| c.value().to_owned())
}

/// The browser session named by raw `Cookie` header values: the cookie lookup of the guards, for
/// the stream listener (which is not Rocket and has no request guards). `Ok(None)` when no valid
/// session cookie is present.
pub async fn session_from_cookie_headers<'a>(
    db: &Db,
    config: &Config,
    headers: impl IntoIterator<Item = &'a str>,
) -> Result<Option<Session>, Error> {
    match session_cookie_value(config, headers).as_deref().and_then(SessionToken::parse) {
        Some(token) => store::load_session(db, config, &token).await,
        None => Ok(None),
    }
}

/// A cookie that names no session is cleared so the browser stops sending it.
fn forget_cookie(req: &Request<'_>, config: &Config, via: Via) {
    if via == Via::Cookie {
        req.cookies().remove(removal_cookie(config));
    }
}

fn failed<T>(status: Status) -> request::Outcome<T, Error> {
    let error = match status.code {
        503 => Error::Unavailable("session store unreachable".into()),
        _ => Error::Internal("session lookup failed".into()),
    };
    Outcome::Error((status, error))
}

fn forbidden<T>(why: &str) -> request::Outcome<T, Error> {
    Outcome::Error((Status::Forbidden, Error::Forbidden(why.into())))
}

/// A signed-in browser (session cookie). State-changing requests must be same-origin; the form's
/// synchronizer token is checked with [`CurrentUser::check_csrf`].
#[derive(Debug, Clone)]
pub struct CurrentUser(pub Session);

#[rocket::async_trait]
impl<'r> FromRequest<'r> for CurrentUser {
    type Error = Error;

    async fn from_request(req: &'r Request<'_>) -> request::Outcome<Self, Error> {
        match resolve(req).await {
            Resolved::Live(session, Via::Cookie) => {
                if !csrf::is_safe(req.method()) && !csrf::same_origin(req) {
                    return forbidden("Cross-site request refused.");
                }
                Outcome::Success(CurrentUser((**session).clone()))
            }
            Resolved::Live(_, Via::Bearer) | Resolved::Anonymous => {
                Outcome::Forward(Status::Unauthorized)
            }
            Resolved::Failed(status) => failed(*status),
        }
    }
}

impl CurrentUser {
    /// The form's synchronizer token must equal the session's.
    pub fn check_csrf(&self, form_token: &str) -> Result<(), Error> {
        if csrf::tokens_match(&self.0.doc.csrf_token, form_token) {
            Ok(())
        } else {
            Err(Error::Forbidden(
                "Your form has expired. Please reload the page and try again.".into(),
            ))
        }
    }
}

/// An API caller: bearer token (mobile) or session cookie (the dashboard's own JS). Cookie-borne
/// state changes must be same-origin and carry the session's token in `X-CSRF-Token`; bearer
/// requests are immune to CSRF and need neither.
#[derive(Debug, Clone)]
pub struct ApiUser {
    pub session: Session,
    pub via: Via,
}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for ApiUser {
    type Error = Error;

    async fn from_request(req: &'r Request<'_>) -> request::Outcome<Self, Error> {
        match resolve(req).await {
            Resolved::Live(session, via) => {
                if *via == Via::Cookie && !csrf::is_safe(req.method()) {
                    let token = req.headers().get_one("X-CSRF-Token").unwrap_or_default();
                    if !csrf::same_origin(req)
                        || !csrf::tokens_match(&session.doc.csrf_token, token)
                    {
                        return forbidden("Missing or wrong X-CSRF-Token.");
                    }
                }
                Outcome::Success(ApiUser { session: (**session).clone(), via: *via })
            }
            Resolved::Anonymous => Outcome::Forward(Status::Unauthorized),
            Resolved::Failed(status) => failed(*status),
        }
    }
}

/// A signed-in browser whose session carries the `admin` role.
#[derive(Debug, Clone)]
pub struct Admin(pub CurrentUser);

#[rocket::async_trait]
impl<'r> FromRequest<'r> for Admin {
    type Error = Error;

    async fn from_request(req: &'r Request<'_>) -> request::Outcome<Self, Error> {
        let user = rocket::outcome::try_outcome!(CurrentUser::from_request(req).await);
        if user.0.doc.is_admin() {
            Outcome::Success(Admin(user))
        } else {
            forbidden("Admins only.")
        }
    }
}

/// Who is calling, as recorded in a new session. The IP is the socket peer unless Rocket's
/// `ip_header` is configured (only do that behind a proxy that sets it).
#[rocket::async_trait]
impl<'r> FromRequest<'r> for ClientInfo {
    type Error = std::convert::Infallible;

    async fn from_request(req: &'r Request<'_>) -> request::Outcome<Self, Self::Error> {
        Outcome::Success(ClientInfo {
            ip: req.client_ip().map(|ip| ip.to_string()).unwrap_or_else(|| "unknown".into()),
            user_agent: req
                .headers()
                .get_one("User-Agent")
                .unwrap_or_default()
                .chars()
                .take(256)
                .collect(),
        })
    }
}
