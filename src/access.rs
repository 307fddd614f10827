//! Request ids and the access log. Every response carries an `X-Request-Id` — the one a trusted
//! proxy set, when `request_id_header` names its header, else one made here — and every request is
//! logged once, with that id, when its response is ready: what an operator needs to find one
//! customer's failed request in the proxy's log and the app's.
//!
//! The log line holds the method, the path without its query (queries carry search terms), the
//! status, the time to the response head and the id — never headers, cookies or bodies.

use std::time::Instant;

use rand::Rng;
use rocket::fairing::{AdHoc, Fairing, Info, Kind};
use rocket::{Data, Request, Response};

use crate::config::Config;

/// The response header that carries the id.
pub const HEADER: &str = "X-Request-Id";

/// Longest id accepted from a proxy (a UUID is 36 characters, a W3C trace id 32).
const MAX_LEN: usize = 128;

/// The id of the request being served, and when it arrived.
#[derive(Debug, Clone)]
pub struct RequestId {
    pub id: String,
    at: Instant,
}

/// 128 random bits as 32 hex digits. Not a secret: a label to find a request by, made with the
/// thread's fast generator rather than the OS.
pub(crate) fn generate() -> String {
    format!("{:032x}", rand::thread_rng().r#gen::<u128>())
}

/// What a proxy may hand us as an id: short, and only characters that cannot break a log line or a
/// header (letters, digits, `-`, `_`, `.`, `:`). Anything else is replaced, not trusted.
pub(crate) fn acceptable(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_LEN
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// The id a trusted proxy sent in its header's values: exactly one, and acceptable. Two or more
/// mean the client sent its own and the proxy appended instead of replacing: none is trusted.
pub(crate) fn from_proxy<'a>(values: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let mut values = values.into_iter();
    match (values.next(), values.next()) {
        (Some(id), None) if acceptable(id) => Some(id),
        _ => None,
    }
}

pub fn stage() -> AdHoc {
    AdHoc::on_ignite("Access log", |rocket| async { rocket.attach(AccessLog) })
}

struct AccessLog;

#[rocket::async_trait]
impl Fairing for AccessLog {
    fn info(&self) -> Info {
        Info { name: "Request ids and access log", kind: Kind::Request | Kind::Response }
    }

    async fn on_request(&self, req: &mut Request<'_>, _: &mut Data<'_>) {
        let trusted =
            req.rocket().state::<Config>().and_then(|c| c.web.request_id_header.as_deref());
        let from_proxy =
            trusted.and_then(|name| from_proxy(req.headers().get(name))).map(str::to_owned);
        let id = from_proxy.unwrap_or_else(generate);
        req.local_cache(|| RequestId { id, at: Instant::now() });
    }

    async fn on_response<'r>(&self, req: &'r Request<'_>, res: &mut Response<'r>) {
        // Set by `on_request`, which runs for every request that reaches a response fairing.
        let RequestId { id, at } =
            req.local_cache(|| RequestId { id: generate(), at: Instant::now() });
        res.set_raw_header(HEADER, id.clone());
        record(req.method().as_str(), req.uri().path().as_str(), res.status().code, *at, id);
    }
}

/// Logs one request (also the stream listener's, which is not Rocket's): the time is to the
/// response head.
pub(crate) fn record(method: &str, path: &str, status: u16, since: Instant, id: &str) {
    let ms = (since.elapsed().as_secs_f64() * 100_000.0).round() / 100.0;
    log::info!(
        target: "redbank::access",
        method = method, path = path, status = status, ms = ms, request_id = id;
        "request"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_short_plain_ids_are_taken_from_a_proxy() {
        assert!(acceptable("4bf92f3577b34da6a3ce929d0e0e4736"));
        assert!(acceptable("req-1.2:3_x"));
        for bad in ["", "a b", "a\r\nSet-Cookie: x", "ü", "a/b", &"x".repeat(MAX_LEN + 1)] {
            assert!(!acceptable(bad), "{bad:?}");
        }
        assert_eq!(from_proxy(["abc"]), Some("abc"));
        assert_eq!(from_proxy(["mine", "proxy"]), None, "a client's value next to the proxy's");
        assert_eq!(from_proxy(["a b"]), None);
        assert_eq!(from_proxy([]), None);
        let made = generate();
        assert!(made.len() == 32 && acceptable(&made), "{made}");
        assert_ne!(generate(), made);
    }
}
