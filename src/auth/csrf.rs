//! Cross-site request forgery defences (docs/SECURITY.md D.18).
//!
//! Two layers: the browser's own `Sec-Fetch-Site` / `Origin` headers (a cross-site form post is
//! refused before anything else), and a synchronizer token — derived from the session token for
//! signed-in users, from a double-submit cookie on the login form (so an anonymous visitor creates
//! no key).

use rocket::form::FromForm;
use rocket::http::{Cookie, CookieJar, Method, SameSite, Status};
use rocket::request;
use rocket::request::{FromRequest, Request};

use crate::config::Config;
use crate::error::Error;
use crate::secret::random_token;

/// Safe methods never change state, so they need no token.
pub fn is_safe(method: Method) -> bool {
    matches!(method, Method::Get | Method::Head | Method::Options)
}

/// False when the browser says the request comes from another site, or its Origin is foreign.
///
/// `Sec-Fetch-Site` is set by the browser itself (scripts cannot forge it), so when present it
/// decides; older clients are judged by `Origin` (a `null` origin is refused).
pub fn same_origin(req: &Request<'_>) -> bool {
    if let Some(site) = req.headers().get_one("Sec-Fetch-Site") {
        return matches!(site, "same-origin" | "none");
    }
    match req.headers().get_one("Origin") {
        None => true,
        Some(origin) => {
            let host = req.headers().get_one("Host").unwrap_or_default();
            let origin_host = origin
                .strip_prefix("https://")
                .or_else(|| origin.strip_prefix("http://"))
                .unwrap_or("\u{0}");
            !host.is_empty() && origin_host.eq_ignore_ascii_case(host)
        }
    }
}

/// Whether a presented token equals the expected one, without leaking where they differ through
/// timing. An empty expected token (a session found by a search, not by its token) matches
/// nothing, not even an empty form field.
pub fn tokens_match(expected: &str, presented: &str) -> bool {
    !expected.is_empty()
        && expected.len() == presented.len()
        && expected.bytes().zip(presented.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn login_cookie_name(config: &Config) -> &'static str {
    if config.session.cookie_secure { "__Host-redbank_csrf" } else { "redbank_csrf" }
}

/// The login form's CSRF token: reuses the visitor's double-submit cookie or sets a new one.
pub fn login_token(jar: &CookieJar<'_>, config: &Config) -> String {
    // `get_pending`: a cookie [`CookieRule`] removed is absent (`get` would still see it).
    if let Some(token) = jar.get_pending(login_cookie_name(config)).map(|c| c.value().to_owned()) {
        if token.len() == 43 {
            return token;
        }
    }
    let token = random_token();
    jar.add(
        Cookie::build((login_cookie_name(config), token.clone()))
            .http_only(true)
            .same_site(SameSite::Strict)
            .path("/")
            .secure(config.session.cookie_secure),
    );
    token
}

/// True when the form's token equals the double-submit cookie.
pub fn check_login_token(jar: &CookieJar<'_>, config: &Config, form_token: &str) -> bool {
    jar.get_pending(login_cookie_name(config))
        .is_some_and(|c| c.value().len() == 43 && tokens_match(c.value(), form_token))
}

/// Makes Rocket's jar follow the cookie rule the session cookie follows (docs/SECURITY.md F.28,
/// `credential::cookie_value`) for the one cookie read through it, the login form's
/// double-submit cookie: the jar decodes names, so without this `redbank%5Fcsrf` — or
/// `%5F%5FHost-redbank_csrf`, which a sibling subdomain may set where it cannot set the
/// `__Host-` cookie — would stand in for it. An encoded alias or a second copy makes the cookie
/// absent (and the browser is told to drop it): the form then gets a fresh token.
pub struct CookieRule;

#[rocket::async_trait]
impl rocket::fairing::Fairing for CookieRule {
    fn info(&self) -> rocket::fairing::Info {
        rocket::fairing::Info { name: "Cookie rule", kind: rocket::fairing::Kind::Request }
    }

    async fn on_request(&self, req: &mut Request<'_>, _: &mut rocket::Data<'_>) {
        let Some(config) = req.rocket().state::<Config>() else { return };
        let name = login_cookie_name(config);
        let value = super::credential::cookie_value(name, req.headers().get("Cookie"));
        if let super::credential::CookieValue::Ambiguous = value {
            req.cookies().remove(Cookie::build(name).path("/"));
        }
    }
}

/// Request guard refusing cross-site requests (403) before any work — for the login form, which
/// has no session yet.
#[derive(Debug)]
pub struct SameOrigin;

#[rocket::async_trait]
impl<'r> rocket::request::FromRequest<'r> for SameOrigin {
    type Error = crate::error::Error;

    async fn from_request(req: &'r Request<'_>) -> rocket::request::Outcome<Self, Self::Error> {
        if same_origin(req) {
            rocket::outcome::Outcome::Success(SameOrigin)
        } else {
            let e = crate::error::Error::Forbidden("Cross-site request refused.".into());
            rocket::outcome::Outcome::Error((rocket::http::Status::Forbidden, e))
        }
    }
}

/// The login form's CSRF token in `X-CSRF-Token` (the passkey sign-in has no session yet; the
/// double-submit cookie binds it to this browser, against login CSRF).
pub struct LoginCsrf;

#[rocket::async_trait]
impl<'r> FromRequest<'r> for LoginCsrf {
    type Error = Error;

    async fn from_request(req: &'r Request<'_>) -> request::Outcome<Self, Error> {
        let (Some(config), token) =
            (req.rocket().state::<Config>(), req.headers().get_one("X-CSRF-Token"))
        else {
            return request::Outcome::Error((Status::Forbidden, Error::Forbidden("".into())));
        };
        if same_origin(req) && check_login_token(req.cookies(), config, token.unwrap_or_default()) {
            request::Outcome::Success(LoginCsrf)
        } else {
            let e = Error::Forbidden("Missing or wrong X-CSRF-Token.".into());
            request::Outcome::Error((Status::Forbidden, e))
        }
    }
}

#[derive(Debug, FromForm)]
pub struct CsrfForm {
    #[field(default = String::new())]
    pub csrf: String,
}

#[cfg(test)]
mod tests {
    use super::tokens_match;

    #[test]
    fn only_the_same_non_empty_token_matches() {
        assert!(tokens_match("abc", "abc"));
        for (expected, presented) in
            [("abc", "abd"), ("abc", "ab"), ("abc", ""), ("", ""), ("", "a")]
        {
            assert!(!tokens_match(expected, presented), "{expected:?} vs {presented:?}");
        }
    }
}
