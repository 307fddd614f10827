//! Which session a request presents — the one rule shared by Rocket's request guards and the event
//! stream endpoint (`live::feed::caller`, for both of its servers), so they can never disagree
//! about who the caller is (docs/SECURITY.md F.28–F.29).
//!
//! It reads the raw `Cookie` and `Authorization` headers, not Rocket's cookie jar: the jar keeps
//! one cookie per name (the last), and it percent-decodes names, so `redbank=A; r%65dbank=B` reads
//! as B there. Here every cookie whose name is the session cookie's name, literally or after
//! percent-decoding, is counted: two or more mean no session (someone planted one next to the real
//! one, e.g. with a narrower `Path` from a sibling subdomain), and an encoded alias alone is never
//! taken as the session either (a browser sends our cookie under the literal name we set; an alias
//! of `__Host-redbank` is exactly what a sibling subdomain can set although the prefix forbids it).

use rocket::http::RawStr;

use super::model::{Session, SessionKind, SessionToken};
use super::store;
use crate::config::Config;
use crate::error::Result;
use crate::redis::Db;

/// How a session token was presented; each session kind has exactly one channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// The browser session cookie (sessions of kind `browser`).
    Cookie,
    /// `Authorization: Bearer` (sessions of kind `mobile`).
    Bearer,
}

impl Via {
    fn kind(self) -> SessionKind {
        match self {
            Via::Cookie => SessionKind::Browser,
            Via::Bearer => SessionKind::Mobile,
        }
    }
}

/// What a request presents as its session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Presented {
    /// No session cookie and no `Authorization` header.
    Nothing,
    /// A credential that names no session without a lookup: a malformed token, a scheme other
    /// than Bearer, or a cookie that should be cleared.
    Malformed(Via),
    /// Two or more session cookies, an encoded alias of its name, or two `Authorization` headers:
    /// nobody can tell which one the user meant, so none is used (and none is cleared).
    Ambiguous,
    /// One well-formed token.
    Token(SessionToken, Via),
}

/// The cookies called `name` in raw `Cookie` header values, as Rocket's jar would read them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CookieValue {
    Absent,
    /// Exactly one, under its literal name.
    One(String),
    /// More than one, or one under an encoded alias of the name.
    Ambiguous,
}

/// Looks up cookie `name` in raw `Cookie` header values (see the module docs for the rule).
pub fn cookie_value<'a>(name: &str, headers: impl IntoIterator<Item = &'a str>) -> CookieValue {
    let mut found = CookieValue::Absent;
    for (raw_name, value) in cookie_pairs(headers) {
        let literal = raw_name == name;
        if !literal && RawStr::new(raw_name).percent_decode_lossy() != name {
            continue;
        }
        found = match found {
            CookieValue::Absent if literal => CookieValue::One(value.to_owned()),
            _ => CookieValue::Ambiguous,
        };
    }
    found
}

/// The (raw name, value) pairs of raw `Cookie` header values, split like Rocket's jar splits
/// them: pairs separated by `;`, surrounding whitespace ignored, a pair without `=` has no value.
fn cookie_pairs<'a>(
    headers: impl IntoIterator<Item = &'a str>,
) -> impl Iterator<Item = (&'a str, &'a str)> {
    headers
        .into_iter()
        .flat_map(|header| header.split(';'))
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (name.trim(), value.trim())
        })
}

/// Every value of cookies literally named `name`, at most `max` (for the device cookie: a device
/// token authenticates nothing, so each candidate can be tried — a planted duplicate must not
/// make the owner's own token unusable).
pub fn literal_cookie_values<'a>(
    name: &str,
    headers: impl IntoIterator<Item = &'a str>,
    max: usize,
) -> Vec<String> {
    cookie_pairs(headers)
        .filter(|(raw_name, _)| *raw_name == name)
        .map(|(_, value)| value.to_owned())
        .take(max)
        .collect()
}

/// The session credential of a request from its raw `Cookie` and `Authorization` header values.
/// An `Authorization` header wins over cookies (a mobile client may carry cookies it ignores).
pub fn presented<'a>(
    cookie_name: &str,
    cookies: impl IntoIterator<Item = &'a str>,
    authorization: impl IntoIterator<Item = &'a str>,
) -> Presented {
    let mut authorization = authorization.into_iter();
    if let Some(value) = authorization.next() {
        if authorization.next().is_some() {
            return Presented::Ambiguous;
        }
        let token = value
            .trim()
            .split_once(' ')
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .and_then(|(_, token)| SessionToken::parse(token.trim()));
        return match token {
            Some(token) => Presented::Token(token, Via::Bearer),
            None => Presented::Malformed(Via::Bearer),
        };
    }
    match cookie_value(cookie_name, cookies) {
        CookieValue::Absent => Presented::Nothing,
        CookieValue::Ambiguous => Presented::Ambiguous,
        CookieValue::One(value) => match SessionToken::parse(&value) {
            Some(token) => Presented::Token(token, Via::Cookie),
            None => Presented::Malformed(Via::Cookie),
        },
    }
}

/// The live session behind `token`, only when it was presented through the channel its kind was
/// issued for: a mobile token in a cookie, or a browser cookie's token as a bearer token, is no
/// session (`Ok(None)`). Redis trouble is an error, never "no session".
pub async fn authenticate(
    db: &Db,
    config: &Config,
    token: &SessionToken,
    via: Via,
) -> Result<Option<Session>> {
    store::load_session(db, config, token, via.kind()).await
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &str = "Tug02__6NzmhBEQVRCOkPE3DC0K0V3EdWdTIcUTNh6c";
    const U: &str = "Z65RchKBwjN7M2Ul35X0YQXARnOr4GoCL7SotiQVhTo";

    fn token(raw: &str) -> SessionToken {
        SessionToken::parse(raw).unwrap_or_else(|| panic!("{raw} is a token"))
    }

    #[test]
    fn one_literal_session_cookie_is_the_session() {
        let cookie = format!("a=1; redbank={T}; b=2");
        assert_eq!(
            presented("redbank", [cookie.as_str()], []),
            Presented::Token(token(T), Via::Cookie)
        );
        let split = ["a=1".to_owned(), format!("redbank={T}")];
        assert_eq!(
            presented("redbank", split.iter().map(String::as_str), []),
            Presented::Token(token(T), Via::Cookie)
        );
        assert_eq!(presented("redbank", ["a=1", "redbank_csrf=x"], []), Presented::Nothing);
        assert_eq!(presented("redbank", ["redbank=short"], []), Presented::Malformed(Via::Cookie));
    }

    #[test]
    fn duplicates_and_encoded_aliases_are_no_session() {
        for cookies in [
            vec![format!("redbank={T}; r%65dbank={U}")],
            vec![format!("%72edbank={U}; redbank={T}")],
            vec![format!("redbank={T}"), format!("redbank={U}")],
            vec![format!("redbank={T}; redbank={T}")],
            vec![format!("r%65dbank={U}")],
        ] {
            let got = presented("redbank", cookies.iter().map(String::as_str), []);
            assert_eq!(got, Presented::Ambiguous, "{cookies:?}");
        }
        let host = format!("%5F%5FHost-redbank={U}");
        assert_eq!(presented("__Host-redbank", [host.as_str()], []), Presented::Ambiguous);
    }

    #[test]
    fn authorization_is_one_bearer_token() {
        let bearer = format!("Bearer {T}");
        let lower = format!("bearer  {T} ");
        let cookie = format!("redbank={U}");
        assert_eq!(
            presented("redbank", [cookie.as_str()], [bearer.as_str()]),
            Presented::Token(token(T), Via::Bearer)
        );
        assert_eq!(
            presented("redbank", [], [lower.as_str()]),
            Presented::Token(token(T), Via::Bearer)
        );
        assert_eq!(
            presented("redbank", [], ["Basic Ym9iOmZvbw=="]),
            Presented::Malformed(Via::Bearer)
        );
        assert_eq!(
            presented("redbank", [], [bearer.as_str(), bearer.as_str()]),
            Presented::Ambiguous
        );
    }
}
