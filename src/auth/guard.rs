//! Request guards: where Rocket's routes read sessions (only `/events` reads its own, through
//! `live::feed::caller`, the one rule for both of its servers).
//!
//! The session is resolved once per request by the one credential rule ([`credential`]: bearer
//! token first, else the single session cookie; each token only through its own channel) and cached.
//! No session forwards with 401 (pages → login redirect, API → JSON 401 via the catchers); Redis
//! trouble is an error with 503 — never "logged out".

use rocket::data::{Data, FromData};
use rocket::form::Form;
use rocket::http::{Cookie, SameSite, Status};
use rocket::outcome::Outcome;
use rocket::request::{FromRequest, Request};
use rocket::{data, request};

use super::credential::Presented;
pub use super::credential::Via;
use super::csrf::CsrfForm;
use super::model::{DeviceToken, Session, SessionToken};
use super::{credential, csrf};
use crate::audit::ClientInfo;
use crate::config::Config;
use crate::error::Error;
use crate::redis::Db;

/// Name of the session cookie: `__Host-` prefixed (so it is host-only, `Path=/`, `Secure`) when
/// cookies are marked Secure.
pub fn cookie_name(config: &Config) -> &'static str {
    if config.session.cookie_secure { "__Host-redbank" } else { "redbank" }
}

/// The browser session cookie: HttpOnly, SameSite=Lax, Path=/, no Expires (dies with the
/// browser; the server enforces the real lifetime).
pub fn session_cookie(config: &Config, token: &SessionToken) -> Cookie<'static> {
    let value = token.as_str().to_owned();
    our_cookie(config, cookie_name(config), value, SameSite::Lax, None)
}

/// Name of the device cookie (see [`DeviceToken`]), `__Host-` prefixed like the session cookie.
pub fn device_cookie_name(config: &Config) -> &'static str {
    if config.session.cookie_secure { "__Host-redbank_device" } else { "redbank_device" }
}

/// The device cookie: long-lived (`device_trust_days`), HttpOnly, sent only with same-site
/// requests (it is only read by the login form's POST).
pub fn device_cookie(config: &Config, device: &DeviceToken) -> Cookie<'static> {
    let max_age = rocket::time::Duration::days(config.sign_in.device_trust_days as i64);
    let value = device.as_str().to_owned();
    our_cookie(config, device_cookie_name(config), value, SameSite::Strict, Some(max_age))
}

/// Name of the pre-auth cookie: a browser's sign-in waiting for its second factor.
pub fn pre_auth_cookie_name(config: &Config) -> &'static str {
    if config.session.cookie_secure { "__Host-redbank_mfa" } else { "redbank_mfa" }
}

/// Drops the pre-auth cookie (after the sign-in completed, or to start over).
pub fn pre_auth_removal_cookie(config: &Config) -> Cookie<'static> {
    expired_cookie(config, pre_auth_cookie_name(config), SameSite::Strict)
}

/// The pre-auth cookie's value (a browser's pending second factor), by the literal name only.
#[derive(Debug)]
pub struct PreAuthCookie(pub Option<String>);

#[rocket::async_trait]
impl<'r> FromRequest<'r> for PreAuthCookie {
    type Error = std::convert::Infallible;

    async fn from_request(req: &'r Request<'_>) -> request::Outcome<Self, Self::Error> {
        let name = req.rocket().state::<Config>().map_or("redbank_mfa", pre_auth_cookie_name);
        let value = match credential::cookie_value(name, req.headers().get("Cookie")) {
            credential::CookieValue::One(value) => Some(value),
            _ => None,
        };
        Outcome::Success(PreAuthCookie(value))
    }
}

/// An expired, empty session cookie that makes the browser drop its own. It must carry the same
/// attributes or browsers ignore it (`__Host-` needs Secure). Added to the jar (not `remove`d):
/// the jar only emits a removal for a cookie it parsed itself, and the session is found from the
/// raw header (see [`credential`]).
pub fn removal_cookie(config: &Config) -> Cookie<'static> {
    expired_cookie(config, cookie_name(config), SameSite::Lax)
}

/// A cookie of ours: HttpOnly, `Path=/`, `Secure` unless configured off (for plain-HTTP
/// development); without a `max_age` it dies with the browser.
pub(crate) fn our_cookie(
    config: &Config,
    name: &'static str,
    value: String,
    same_site: SameSite,
    max_age: Option<rocket::time::Duration>,
) -> Cookie<'static> {
    let mut cookie = Cookie::build((name, value))
        .http_only(true)
        .same_site(same_site)
        .path("/")
        .secure(config.session.cookie_secure)
        .build();
    if let Some(max_age) = max_age {
        cookie.set_max_age(max_age);
    }
    cookie
}

/// The cookie that makes a browser drop `name`: expired, with the attributes it was set with
/// (browsers ignore a removal whose attributes differ).
fn expired_cookie(config: &Config, name: &'static str, same_site: SameSite) -> Cookie<'static> {
    let mut cookie = our_cookie(config, name, String::new(), same_site, None);
    cookie.set_max_age(rocket::time::Duration::ZERO);
    cookie.set_expires(rocket::time::OffsetDateTime::UNIX_EPOCH);
    cookie
}

#[derive(Debug, Clone)]
enum Resolved {
    Anonymous,
    Live(Box<Session>, Via),
    Failed(Status),
}

/// The request's credential by the one rule of [`credential::presented`].
fn presented_by(req: &Request<'_>, config: &Config) -> Presented {
    credential::presented(
        cookie_name(config),
        req.headers().get("Cookie"),
        req.headers().get("Authorization"),
    )
}

async fn resolve<'r>(req: &'r Request<'_>) -> &'r Resolved {
    req.local_cache_async(async {
        let (Some(db), Some(config)) = (req.rocket().state::<Db>(), req.rocket().state::<Config>())
        else {
            return Resolved::Failed(Status::InternalServerError);
        };
        let (token, via) = match presented_by(req, config) {
            Presented::Token(token, via) => (token, via),
            Presented::Malformed(via) => {
                forget_cookie(req, config, via);
                return Resolved::Anonymous;
            }
            Presented::Nothing | Presented::Ambiguous => return Resolved::Anonymous,
        };
        match credential::authenticate(db, config, &token, via).await {
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

/// What the request presents as its session, before any lookup (the login form destroys the
/// session a browser had, whatever state it is in).
#[rocket::async_trait]
impl<'r> FromRequest<'r> for Presented {
    type Error = std::convert::Infallible;

    async fn from_request(req: &'r Request<'_>) -> request::Outcome<Self, Self::Error> {
        match req.rocket().state::<Config>() {
            Some(config) => Outcome::Success(presented_by(req, config)),
            None => Outcome::Success(Presented::Nothing),
        }
    }
}

/// A cookie that names no session is cleared so the browser stops sending it.
fn forget_cookie(req: &Request<'_>, config: &Config, via: Via) {
    if via == Via::Cookie {
        req.cookies().add(removal_cookie(config));
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

/// The device cookies of earlier sign-ins in this browser (well-formed ones under the literal
/// name, at most four: a sibling subdomain may have planted more).
#[derive(Debug)]
pub struct PresentedDevice(pub Vec<DeviceToken>);

#[rocket::async_trait]
impl<'r> FromRequest<'r> for PresentedDevice {
    type Error = std::convert::Infallible;

    async fn from_request(req: &'r Request<'_>) -> request::Outcome<Self, Self::Error> {
        let name = req.rocket().state::<Config>().map_or("redbank_device", device_cookie_name);
        let tokens = credential::literal_cookie_values(name, req.headers().get("Cookie"), 4)
            .iter()
            .filter_map(|value| DeviceToken::parse(value))
            .collect();
        Outcome::Success(PresentedDevice(tokens))
    }
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

/// A signed-in browser, or nobody: [`CurrentUser`], with "no session" as `None` instead of a
/// forward, for a page that serves both (the login form redirects a signed-in browser). Redis
/// trouble is still an error (503), never "nobody".
#[derive(Debug, Clone)]
pub struct MaybeUser(pub Option<CurrentUser>);

#[rocket::async_trait]
impl<'r> FromRequest<'r> for MaybeUser {
    type Error = Error;

    async fn from_request(req: &'r Request<'_>) -> request::Outcome<Self, Error> {
        match CurrentUser::from_request(req).await {
            Outcome::Success(user) => Outcome::Success(MaybeUser(Some(user))),
            Outcome::Forward(_) => Outcome::Success(MaybeUser(None)),
            Outcome::Error(e) => Outcome::Error(e),
        }
    }
}

impl CurrentUser {
    /// The form's synchronizer token must equal the session's.
    pub fn check_csrf(&self, form_token: &str) -> Result<(), Error> {
        if csrf::tokens_match(self.0.csrf(), form_token) {
            Ok(())
        } else {
            Err(Error::Forbidden(
                "Your form has expired. Please reload the page and try again.".into(),
            ))
        }
    }
}

/// A browser form that carries nothing but the synchronizer token, checked against the signed-in
/// session's: the CSRF check as a data guard, so a handler cannot forget it. A wrong or missing
/// token is a 403; the session is the one [`CurrentUser`] resolved for this request (cached, so
/// it is not read twice). Handlers of forms with more fields check the token themselves
/// ([`CurrentUser::check_csrf`]).
pub struct CsrfChecked;

#[rocket::async_trait]
impl<'r> FromData<'r> for CsrfChecked {
    type Error = Error;

    async fn from_data(req: &'r Request<'_>, data: Data<'r>) -> data::Outcome<'r, Self> {
        let form = match Form::<CsrfForm>::from_data(req, data).await {
            data::Outcome::Success(form) => form.into_inner(),
            data::Outcome::Forward(forward) => return data::Outcome::Forward(forward),
            data::Outcome::Error((status, _)) => {
                let e = Error::BadRequest("The form could not be understood.".into());
                return data::Outcome::Error((status, e));
            }
        };
        match req.guard::<CurrentUser>().await {
            Outcome::Success(user) => match user.check_csrf(&form.csrf) {
                Ok(()) => data::Outcome::Success(CsrfChecked),
                Err(e) => {
                    // The catcher that renders the 403 shows this, not its generic text.
                    req.local_cache(|| crate::error::GuardMessage(Some(e.public_message())));
                    data::Outcome::Error((Status::Forbidden, e))
                }
            },
            Outcome::Error(failed) => data::Outcome::Error(failed),
            Outcome::Forward(status) => {
                data::Outcome::Error((status, Error::Forbidden("Please sign in again.".into())))
            }
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
                    if !csrf::same_origin(req) || !csrf::tokens_match(session.csrf(), token) {
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

/// Who is calling, as recorded in a new session. The IP is the socket peer unless Rocket's
/// `ip_header` is configured (only do that behind a proxy that sets it).
#[rocket::async_trait]
impl<'r> FromRequest<'r> for ClientInfo {
    type Error = std::convert::Infallible;

    async fn from_request(req: &'r Request<'_>) -> request::Outcome<Self, Self::Error> {
        Outcome::Success(client_info(req))
    }
}

/// The [`ClientInfo`] of a request (the guard's, for guards that bundle it).
pub fn client_info(req: &Request<'_>) -> ClientInfo {
    ClientInfo {
        ip: req.client_ip().map(|ip| ip.to_string()).unwrap_or_else(|| "unknown".into()),
        user_agent: req
            .headers()
            .get_one("User-Agent")
            .unwrap_or_default()
            .chars()
            .take(256)
            .collect(),
    }
}
