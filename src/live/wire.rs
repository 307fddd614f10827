//! The stream listener's wire format: reading and checking a request head (incrementally, each
//! byte scanned once, within [`MAX_HEAD`]), and the bytes of a refusal. Kept apart from the
//! listener's connection handling so the protocol rules and their tests read on their own.

use std::net::IpAddr;
use std::time::Duration;

use rocket::serde::json::serde_json::json;
use rocket::time::OffsetDateTime;
use rocket::time::macros::format_description;
use tokio::io::{AsyncRead, AsyncReadExt};

use super::event::StreamId;
use super::feed::{self};
use crate::access;
use crate::error::Error;
use crate::web::SECURITY_HEADERS;
/// Time a client has to send its request head.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest accepted request head (request line + headers), like nginx's default 4 × 8 KiB.
pub const MAX_HEAD: usize = 32 * 1024;

pub(super) const MAX_HEADERS: usize = 100;

/// The parts of a request head the stream needs.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Head {
    pub(super) cookies: Vec<String>,
    pub(super) authorization: Vec<String>,
    pub(super) resume: Option<StreamId>,
    /// The client address from `ip_header`, when configured and present.
    pub(super) forwarded_for: Option<IpAddr>,
    /// More bytes followed the head (a pipelined request): answer this one, then close.
    pub(super) pipelined: bool,
}

/// What the access log and the response say about a connection's request, learnt as soon as
/// the head parses — before it is checked, so a refused request is logged as what it was.
#[derive(Debug)]
pub(super) struct Seen {
    pub(super) method: String,
    pub(super) path: String,
    /// The trusted proxy's id ([`access::from_proxy`]), else one made here.
    pub(super) id: String,
}

impl Seen {
    pub(super) fn new() -> Seen {
        Seen { method: "-".into(), path: "-".into(), id: access::generate() }
    }
}

/// Headers only a trusted proxy sets, when configured: the client address and the request id.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Trusted<'a> {
    pub(super) ip_header: Option<&'a str>,
    pub(super) id_header: Option<&'a str>,
}

/// A refusal before the stream starts: status, message for the client, `Retry-After`.
#[derive(Debug, PartialEq)]
pub(super) struct Refusal(pub(super) u16, pub(super) String, pub(super) Option<u64>);

impl Refusal {
    pub(super) fn new(status: u16, message: &str) -> Self {
        Refusal(status, message.to_owned(), None)
    }
}

impl From<Error> for Refusal {
    fn from(e: Error) -> Self {
        e.log(&"GET /events (stream listener)");
        Refusal(e.status().code, e.public_message(), e.retry_after())
    }
}

/// Reads one request head. `Ok(None)` when the client closed before sending a whole one.
///
/// The buffer never grows past [`MAX_HEAD`], each read's new bytes are scanned once for the end of
/// the head (a head sent a byte at a time costs linear, not quadratic, work), and the head is
/// parsed once, when complete.
pub(super) async fn read_head(
    socket: &mut (impl AsyncRead + Unpin),
    trusted: Trusted<'_>,
    seen: &mut Seen,
) -> Result<Option<Head>, Refusal> {
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    let mut scan = HeadScan::default();
    loop {
        if let Some(end) = scan.end(&buf) {
            return parse_head(&buf[..end], buf.len() > end, trusted, seen).map(Some);
        }
        if buf.len() >= MAX_HEAD {
            return Err(Refusal::new(431, "The request headers are too large."));
        }
        let filled = buf.len();
        buf.resize(filled + (MAX_HEAD - filled).min(4096), 0);
        match socket.read(&mut buf[filled..]).await {
            Ok(0) | Err(_) => return Ok(None),
            Ok(n) => buf.truncate(filled + n),
        }
    }
}

/// Finds the blank line that ends a request head, looking at each byte once across reads.
#[derive(Debug, Default)]
pub(super) struct HeadScan {
    /// Bytes of the buffer already looked at.
    scanned: usize,
    /// Bytes looked at in all, overlaps included (≤ length + 2 per read).
    examined: usize,
}

impl HeadScan {
    /// The head's length (through `\n\n` or `\n\r\n`) once `buf` holds all of it.
    fn end(&mut self, buf: &[u8]) -> Option<usize> {
        // Two bytes back, so a terminator split across reads is still found.
        let from = self.scanned.saturating_sub(2);
        self.scanned = buf.len();
        for i in from..buf.len() {
            self.examined += 1;
            if buf[i] != b'\n' {
                continue;
            }
            let ends = matches!(buf.get(..i), Some([.., b'\n']) | Some([.., b'\n', b'\r']));
            if ends {
                return Some(i + 1);
            }
        }
        None
    }
}

/// Parses and checks a complete request head; `pipelined` when more bytes followed it.
pub(super) fn parse_head(
    buf: &[u8],
    pipelined: bool,
    trusted: Trusted<'_>,
    seen: &mut Seen,
) -> Result<Head, Refusal> {
    let bad = || Refusal::new(400, "The request could not be understood.");
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(buf) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(bad()),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(Refusal::new(431, "The request has too many headers."));
        }
        Err(_) => return Err(bad()),
    }
    let target = request.path.unwrap_or_default();
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    // The request as it was, for the log; never its query.
    seen.method = request.method.unwrap_or("-").to_owned();
    seen.path = path.to_owned();
    if let Some(name) = trusted.id_header {
        let values = request.headers.iter().filter(|h| h.name.eq_ignore_ascii_case(name));
        let values = values.filter_map(|h| std::str::from_utf8(h.value).ok());
        if let Some(id) = access::from_proxy(values) {
            seen.id = id.to_owned();
        }
    }
    let hosts = request.headers.iter().filter(|h| h.name.eq_ignore_ascii_case("host")).count();
    // RFC 9112 §3.2: 400 for an HTTP/1.1 request without Host, and for any request with two.
    if hosts > 1 || (hosts == 0 && request.version == Some(1)) {
        return Err(Refusal::new(400, "A request needs exactly one Host header."));
    }
    if path != "/events" {
        return Err(Refusal::new(404, "There is nothing at this address."));
    }
    if request.method != Some("GET") {
        return Err(Refusal::new(405, "Only GET is allowed here."));
    }
    let mut head = Head { pipelined, ..Head::default() };
    let mut last_event_ids = Vec::new();
    let mut forwarded = None;
    for header in request.headers.iter() {
        let name = header.name;
        if name.eq_ignore_ascii_case("content-length")
            || name.eq_ignore_ascii_case("transfer-encoding")
        {
            // A body: nothing an event stream can use.
            return Err(bad());
        }
        // Like Rocket, which drops header values that are not UTF-8.
        let Ok(value) = std::str::from_utf8(header.value) else { continue };
        if name.eq_ignore_ascii_case("cookie") {
            head.cookies.push(value.to_owned());
        } else if name.eq_ignore_ascii_case("authorization") {
            head.authorization.push(value.to_owned());
        } else if name.eq_ignore_ascii_case("last-event-id") {
            last_event_ids.push(value);
        } else if trusted.ip_header.is_some_and(|h| name.eq_ignore_ascii_case(h))
            && forwarded.is_none()
        {
            // The first one, as Rocket's `client_ip` reads it.
            forwarded = Some(value);
        }
    }
    head.forwarded_for = forwarded.and_then(|v| v.trim().parse().ok());
    head.resume = feed::resume_point(last_event_ids, Some(query))?;
    Ok(head)
}

/// `Date` (RFC 9110 §6.6.1, IMF-fixdate), the request id, then the security headers every
/// response carries.
pub(super) fn push_common_headers(out: &mut String, id: &str) {
    let date = format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    if let Ok(now) = OffsetDateTime::now_utc().format(&date) {
        out.push_str("Date: ");
        out.push_str(&now);
        out.push_str("\r\n");
    }
    out.push_str(access::HEADER);
    out.push_str(": ");
    out.push_str(id);
    out.push_str("\r\n");
    push_security_headers(out);
}

pub(super) fn push_security_headers(out: &mut String) {
    for (name, value) in SECURITY_HEADERS {
        out.push_str(name);
        out.push_str(": ");
        out.push_str(value);
        out.push_str("\r\n");
    }
}

/// A complete JSON error response, `{"error": "…"}` as everywhere else.
pub(super) fn refusal_bytes(Refusal(status, message, retry_after): &Refusal, id: &str) -> Vec<u8> {
    let reason = rocket::http::Status::from_code(*status).map_or("Error", |s| s.reason_lossy());
    let body = json!({ "error": message }).to_string();
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n",
        body.len()
    );
    if let Some(seconds) = retry_after {
        out.push_str(&format!("Retry-After: {seconds}\r\n"));
    }
    if *status == 405 {
        out.push_str("Allow: GET\r\n");
    }
    push_common_headers(&mut out, id);
    out.push_str("\r\n");
    out.push_str(&body);
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(raw: &str) -> u16 {
        match parse_head(raw.as_bytes(), false, Trusted::default(), &mut Seen::new()) {
            Err(Refusal(status, ..)) => status,
            Ok(_) => 200,
        }
    }

    #[test]
    fn heads_are_parsed_and_checked() {
        let head = parse_head(
            b"GET /events?after=5-1 HTTP/1.1\r\nHost: x\r\nCookie: a=1; redbank=t\r\n\
              last-event-id: 7-2\r\nX-Real-IP: 10.0.0.7\r\n\r\n",
            false,
            Trusted { ip_header: Some("X-Real-IP"), id_header: None },
            &mut Seen::new(),
        );
        assert_eq!(
            head,
            Ok(Head {
                cookies: vec!["a=1; redbank=t".into()],
                authorization: vec![],
                resume: Some(StreamId(7, 2)),
                forwarded_for: "10.0.0.7".parse().ok(),
                pipelined: false,
            })
        );
        let head = parse_head(
            b"GET /events?x=1&after=%35-1 HTTP/1.1\r\nHost: x\r\n\r\n",
            true,
            Trusted::default(),
            &mut Seen::new(),
        );
        assert_eq!(head.map(|h| (h.resume, h.pipelined)), Ok((Some(StreamId(5, 1)), true)));
        assert_eq!(status("GET /events HTTP/1.1\r\nHost: x\r\n\r\n"), 200);
        assert_eq!(status("GET /events HTTP/1.0\r\n\r\n"), 200, "HTTP/1.0 needs no Host");
        assert_eq!(status("GET /events HTTP/1.1\r\n\r\n"), 400, "no Host");
        assert_eq!(status("GET /events HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status("GET /events?after=+1-0 HTTP/1.1\r\nHost: x\r\n\r\n"), 400);
        assert_eq!(status("GET /events HTTP/1.1\r\nHost: x\r\nLast-Event-ID: junk\r\n\r\n"), 400);
        assert_eq!(status("GET /eventsx HTTP/1.1\r\nHost: x\r\n\r\n"), 404);
        assert_eq!(status("GET /events/ HTTP/1.1\r\nHost: x\r\n\r\n"), 404);
        assert_eq!(status("POST /events HTTP/1.1\r\nHost: x\r\n\r\n"), 405);
        assert_eq!(status("GET /events HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"), 400);
        assert_eq!(status("NOT HTTP\r\n\r\n"), 400);
        let many: String = (0..MAX_HEADERS + 1).map(|i| format!("X-{i}: 1\r\n")).collect();
        assert_eq!(status(&format!("GET /events HTTP/1.1\r\n{many}\r\n")), 431);
        let bearer = parse_head(
            b"GET /events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer x\r\n\r\n",
            false,
            Trusted::default(),
            &mut Seen::new(),
        );
        assert_eq!(bearer.map(|h| h.authorization), Ok(vec!["Bearer x".to_owned()]));
        // The request line and id are learnt before the head is checked; an id only from the
        // configured header, only one, and only a plain short one.
        let seen = |raw: &str, id_header| {
            let mut seen = Seen::new();
            let trusted = Trusted { ip_header: None, id_header };
            let status = match parse_head(raw.as_bytes(), false, trusted, &mut seen) {
                Ok(_) => 200,
                Err(Refusal(status, ..)) => status,
            };
            (status, seen.method, seen.path, seen.id)
        };
        let one = "GET /events?after=1-0 HTTP/1.1\r\nHost: x\r\nX-Request-Id: abc-1\r\n\r\n";
        let (status, method, path, id) = seen(one, Some("x-request-id"));
        assert_eq!(
            (status, method.as_str(), path.as_str(), id.as_str()),
            (200, "GET", "/events", "abc-1")
        );
        assert_ne!(seen(one, None).3, "abc-1", "an untrusted header");
        let refused = "POST /x?q=secret HTTP/1.1\r\nX-Request-Id: r-2\r\n\r\n";
        let (status, method, path, id) = seen(refused, Some("X-Request-Id"));
        assert_eq!(
            (status, method.as_str(), path.as_str(), id.as_str()),
            (400, "POST", "/x", "r-2")
        );
        let two =
            "GET /events HTTP/1.1\r\nHost: x\r\nX-Request-Id: mine\r\nX-Request-Id: p\r\n\r\n";
        assert!(!["mine", "p"].contains(&seen(two, Some("X-Request-Id")).3.as_str()));
        let spaced = "GET /events HTTP/1.1\r\nHost: x\r\nX-Request-Id: a b\r\n\r\n";
        assert_ne!(seen(spaced, Some("X-Request-Id")).3, "a b");
    }

    /// Yields its bytes one per read, like a client sending a byte per segment.
    struct Trickle(Vec<u8>, usize);

    impl AsyncRead for Trickle {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            if let Some(&byte) = self.0.get(self.1) {
                buf.put_slice(&[byte]);
                self.1 += 1;
            }
            std::task::Poll::Ready(Ok(()))
        }
    }

    #[test]
    fn a_head_is_scanned_once_however_it_is_split() {
        let head =
            format!("GET /events HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\n\r\n", "a".repeat(30_000));
        let mut scan = HeadScan::default();
        let bytes = head.as_bytes();
        let mut found = None;
        for n in 1..=bytes.len() {
            found = scan.end(&bytes[..n]);
            assert!(found.is_none() || n == bytes.len(), "ended early at {n}");
        }
        assert_eq!(found, Some(bytes.len()));
        // Linear work: each byte once, plus the two-byte overlap per read.
        assert!(scan.examined <= 3 * bytes.len(), "{} bytes examined", scan.examined);
        // Bare LF line ends (which httparse accepts) end a head too; a split terminator is found.
        let mut scan = HeadScan::default();
        assert_eq!(scan.end(b"GET / HTTP/1.1\nHost: x\n"), None);
        assert_eq!(scan.end(b"GET / HTTP/1.1\nHost: x\n\n"), Some(24));
    }

    #[tokio::test]
    async fn heads_are_read_incrementally_and_never_past_the_maximum() {
        let request = b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
        let head = read_head(&mut Trickle(request, 0), Trusted::default(), &mut Seen::new()).await;
        assert!(matches!(head, Ok(Some(_))), "{head:?}");
        // A head one byte over the maximum, sent at once, is refused without reading further.
        let mut big =
            format!("GET /events HTTP/1.1\r\nHost: x\r\nX: {}", "a".repeat(MAX_HEAD)).into_bytes();
        big.extend_from_slice(b"\r\n\r\n");
        let mut reader = &big[..];
        let refused = read_head(&mut reader, Trusted::default(), &mut Seen::new()).await;
        assert!(matches!(refused, Err(Refusal(431, ..))), "{refused:?}");
        assert_eq!(big.len() - reader.len(), MAX_HEAD, "read past the maximum");
    }

    #[test]
    fn refusals_are_complete_json_responses() {
        let bytes = refusal_bytes(&Refusal(429, "slow down".into(), Some(5)), "id-1");
        let text = String::from_utf8(bytes).unwrap_or_default();
        assert!(text.starts_with("HTTP/1.1 429 Too Many Requests\r\n"), "{text}");
        assert!(text.contains("\r\nRetry-After: 5\r\n"), "{text}");
        assert!(text.contains("\r\nX-Content-Type-Options: nosniff\r\n"), "{text}");
        assert!(text.contains("\r\nDate: "), "{text}");
        assert!(text.contains("\r\nX-Request-Id: id-1\r\n"), "{text}");
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or_default();
        assert!(head.contains(&format!("Content-Length: {}", body.len())), "{text}");
        assert_eq!(body, r#"{"error":"slow down"}"#);
    }
}
