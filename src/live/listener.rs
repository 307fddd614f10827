//! The stream listener: a second, minimal HTTP/1.1 server in the same process that serves only
//! `GET /events`, for deployments with many open dashboards (a proxy routes `/events` to it).
//!
//! Why it exists: through Rocket 0.5 (hyper 0.14) every open stream keeps about 38 KiB of
//! per-connection state — 8 KiB read and write buffers, the request, a 4 KiB body pump — and wakes
//! two tasks per event. Here a stream is one task that writes the shared, pre-framed event bytes
//! straight to its socket. Same [`Feed`], same session cookie, same limits as Rocket's `/events`.
//!
//! The protocol is deliberately small: one request per connection; the head must arrive within
//! [`HEAD_TIMEOUT`] and fit in [`MAX_HEAD`]; the response is close-delimited (`Connection: close`,
//! no chunking), so the stream ends when the socket does. A client has nothing to send after its
//! request: any byte, EOF or error ends the stream, and so does a write that cannot complete within
//! one heartbeat interval (a client that stopped reading) or data left unacknowledged for two
//! (`TCP_USER_TIMEOUT`: a client that vanished without closing).
//!
//! At most [`MAX_HANDSHAKES`] connections are between accept and their first event byte; beyond
//! that the listener stops accepting (new connections wait in the kernel's backlog), so a flood of
//! idle connections cannot take the file descriptors Rocket and the Redis pool need.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rocket::Shutdown;
use rocket::serde::json::serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::bridge::Hub;
use super::event::StreamId;
use super::feed::{self, Feed};
use crate::config::Config;
use crate::error::Error;
use crate::redis::Db;
use crate::session::guard::session_from_cookie_headers;
use crate::web::SECURITY_HEADERS;

/// Time a client has to send its request head.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest accepted request head (request line + headers), like nginx's default 4 × 8 KiB.
pub const MAX_HEAD: usize = 32 * 1024;
const MAX_HEADERS: usize = 100;
/// Connections at most in the handshake (reading the head, looking up the session).
pub const MAX_HANDSHAKES: usize = 512;
/// After a refusal, what is still read (and dropped) before closing, so the client gets the
/// response instead of a reset caused by its own unread bytes.
const LINGER_BYTES: usize = 64 * 1024;

/// Binds the listener (at ignite, so a taken port stops the launch with a clear error).
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    // Like Rocket's own listener: a restart may rebind while old connections sit in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// What every connection needs.
pub struct Context {
    pub db: Db,
    pub hub: Arc<Hub>,
    pub config: Config,
}

/// Accepts connections until `shutdown`; each open stream ends on `shutdown` too.
pub async fn serve(listener: TcpListener, context: Arc<Context>, mut shutdown: Shutdown) {
    let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    loop {
        let permit = tokio::select! {
            permit = handshakes.clone().acquire_owned() => permit,
            _ = &mut shutdown => return,
        };
        let Ok(permit) = permit else { return };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = &mut shutdown => return,
        };
        match accepted {
            Ok((socket, _)) => {
                tokio::spawn(connection(socket, context.clone(), shutdown.clone(), permit));
            }
            // Out of file descriptors or the like: back off instead of spinning.
            Err(e) => {
                rocket::warn!("stream listener: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// The parts of a request head the stream needs.
#[derive(Debug, Default, PartialEq)]
struct Head {
    cookies: Vec<String>,
    authorization: bool,
    resume: Option<StreamId>,
}

/// A refusal before the stream starts: status, message for the client, `Retry-After`.
#[derive(Debug, PartialEq)]
struct Refusal(u16, String, Option<u64>);

impl Refusal {
    fn new(status: u16, message: &str) -> Self {
        Refusal(status, message.to_owned(), None)
    }
}

impl From<Error> for Refusal {
    fn from(e: Error) -> Self {
        e.log(&"GET /events (stream listener)");
        Refusal(e.status().code, e.public_message(), e.retry_after())
    }
}

async fn connection(
    mut socket: TcpStream,
    context: Arc<Context>,
    shutdown: Shutdown,
    permit: OwnedSemaphorePermit,
) {
    let heartbeat = Duration::from_secs(context.config.sse_heartbeat_secs);
    // Events are single small writes that should leave at once.
    let _ = socket.set_nodelay(true);
    let _ = socket2::SockRef::from(&socket).set_tcp_user_timeout(Some(heartbeat * 2));
    // The handshake (head buffer, session lookup) is boxed: its memory is freed before the
    // stream starts instead of staying part of this task for the stream's whole life.
    let opened = Box::pin(handshake(&mut socket, &context, shutdown)).await;
    match opened {
        Ok(Some(feed)) => {
            drop(permit);
            stream(socket, feed, heartbeat).await;
        }
        Ok(None) => {}
        Err(refusal) => Box::pin(refuse(socket, &refusal)).await,
    }
}

/// Sends a refusal and closes gracefully: stop writing, then read (and drop) what the client is
/// still sending for a moment, so its unread bytes do not turn the close into a reset that would
/// destroy the response before the client reads it.
async fn refuse(mut socket: TcpStream, refusal: &Refusal) {
    let sent = tokio::time::timeout(HEAD_TIMEOUT, async {
        socket.write_all(&refusal_bytes(refusal)).await?;
        socket.shutdown().await
    })
    .await;
    if !matches!(sent, Ok(Ok(()))) {
        return;
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let mut sink = [0u8; 4096];
        let mut left = LINGER_BYTES;
        while left > 0 {
            match socket.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    })
    .await;
}

/// Reads and checks the request, authenticates, opens the feed. `Ok(None)`: the client went away.
async fn handshake(
    socket: &mut TcpStream,
    context: &Context,
    shutdown: Shutdown,
) -> Result<Option<Feed>, Refusal> {
    let head = match tokio::time::timeout(HEAD_TIMEOUT, read_head(socket)).await {
        Ok(head) => head?,
        Err(_) => return Err(Refusal::new(408, "The request took too long to arrive.")),
    };
    let Some(head) = head else { return Ok(None) };
    // Cookie only, like Rocket's `/events`: an Authorization header is a mobile client, which
    // has no event stream.
    if head.authorization {
        return Err(Refusal::new(401, "Please sign in."));
    }
    let session = session_from_cookie_headers(
        &context.db,
        &context.config,
        head.cookies.iter().map(String::as_str),
    )
    .await?
    .ok_or_else(|| Refusal::new(401, "Please sign in."))?;
    let feed =
        feed::open(&context.db, &context.hub, &context.config, &session, head.resume, shutdown)
            .await?;
    let mut ok = String::from(
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\n\
         X-Accel-Buffering: no\r\nConnection: close\r\n",
    );
    push_security_headers(&mut ok);
    ok.push_str("\r\n");
    match tokio::time::timeout(HEAD_TIMEOUT, socket.write_all(ok.as_bytes())).await {
        Ok(Ok(())) => Ok(Some(feed)),
        _ => Ok(None),
    }
}

/// Writes the feed until it or the client ends.
async fn stream(mut socket: TcpStream, mut feed: Feed, write_timeout: Duration) {
    let (mut reader, mut writer) = socket.split();
    let mut probe = [0u8; 1];
    loop {
        let bytes = tokio::select! {
            bytes = feed.next() => bytes,
            // Nothing more is expected from the client: EOF, an error or any byte ends it.
            _ = reader.read(&mut probe) => None,
        };
        let Some(bytes) = bytes else { break };
        match tokio::time::timeout(write_timeout, writer.write_all(&bytes)).await {
            Ok(Ok(())) => {}
            // Gone, or not reading: its kernel buffer is full. It resumes from Last-Event-ID.
            _ => break,
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), writer.shutdown()).await;
}

/// Reads one request head. `Ok(None)` when the client closed before sending a whole one.
async fn read_head(socket: &mut TcpStream) -> Result<Option<Head>, Refusal> {
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    loop {
        if buf.len() >= MAX_HEAD {
            return Err(Refusal::new(431, "The request headers are too large."));
        }
        buf.reserve(4096.min(MAX_HEAD - buf.len()));
        let read = socket.read_buf(&mut buf).await;
        match read {
            Ok(0) | Err(_) => return Ok(None),
            Ok(_) => {}
        }
        if let Some(head) = parse_head(&buf)? {
            return Ok(Some(head));
        }
    }
}

/// Parses and checks a request head; `Ok(None)` while it is incomplete.
fn parse_head(buf: &[u8]) -> Result<Option<Head>, Refusal> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let length = match request.parse(buf) {
        Ok(httparse::Status::Partial) => return Ok(None),
        Ok(httparse::Status::Complete(length)) => length,
        Err(httparse::Error::TooManyHeaders) => {
            return Err(Refusal::new(431, "The request has too many headers."));
        }
        Err(_) => return Err(Refusal::new(400, "The request could not be understood.")),
    };
    let (path, query) = match request.path.unwrap_or_default().split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (request.path.unwrap_or_default(), None),
    };
    if path != "/events" {
        return Err(Refusal::new(404, "There is nothing at this address."));
    }
    if request.method != Some("GET") {
        return Err(Refusal::new(405, "Only GET is allowed here."));
    }
    // A body or a pipelined request: nothing an event stream can use.
    if buf.len() > length {
        return Err(Refusal::new(400, "The request could not be understood."));
    }
    let mut head = Head::default();
    let mut last_event_id = None;
    for header in request.headers.iter() {
        let value = std::str::from_utf8(header.value).ok();
        if header.name.eq_ignore_ascii_case("cookie") {
            head.cookies.extend(value.map(str::to_owned));
        } else if header.name.eq_ignore_ascii_case("authorization") {
            head.authorization = true;
        } else if header.name.eq_ignore_ascii_case("last-event-id") {
            last_event_id = value.and_then(StreamId::parse);
        } else if header.name.eq_ignore_ascii_case("content-length")
            || header.name.eq_ignore_ascii_case("transfer-encoding")
        {
            return Err(Refusal::new(400, "The request could not be understood."));
        }
    }
    // As on Rocket's route: `Last-Event-ID` wins over `?after=`.
    let after = query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|pair| pair.strip_prefix("after="))
        .and_then(StreamId::parse);
    head.resume = last_event_id.or(after);
    Ok(Some(head))
}

fn push_security_headers(out: &mut String) {
    for (name, value) in SECURITY_HEADERS {
        out.push_str(name);
        out.push_str(": ");
        out.push_str(value);
        out.push_str("\r\n");
    }
}

/// A complete JSON error response, `{"error": "…"}` as everywhere else.
fn refusal_bytes(Refusal(status, message, retry_after): &Refusal) -> Vec<u8> {
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
    push_security_headers(&mut out);
    out.push_str("\r\n");
    out.push_str(&body);
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(raw: &str) -> u16 {
        match parse_head(raw.as_bytes()) {
            Err(Refusal(status, ..)) => status,
            Ok(Some(_)) => 200,
            Ok(None) => 0,
        }
    }

    #[test]
    fn heads_are_parsed_and_checked() {
        let head = parse_head(
            b"GET /events?after=5-1 HTTP/1.1\r\nHost: x\r\nCookie: a=1; redbank=t\r\n\
              last-event-id: 7-2\r\n\r\n",
        );
        assert_eq!(
            head,
            Ok(Some(Head {
                cookies: vec!["a=1; redbank=t".into()],
                authorization: false,
                resume: Some(StreamId(7, 2)),
            }))
        );
        let head = parse_head(b"GET /events?x=1&after=5-1 HTTP/1.1\r\nLast-Event-ID: junk\r\n\r\n");
        assert_eq!(head.map(|h| h.and_then(|h| h.resume)), Ok(Some(StreamId(5, 1))));
        assert_eq!(status("GET /events HTTP/1.1\r\nHost: x\r\n"), 0, "incomplete");
        assert_eq!(status("GET /events HTTP/1.1\r\n\r\n"), 200);
        assert_eq!(status("GET /eventsx HTTP/1.1\r\n\r\n"), 404);
        assert_eq!(status("GET /login HTTP/1.1\r\n\r\n"), 404);
        assert_eq!(status("POST /events HTTP/1.1\r\n\r\n"), 405);
        assert_eq!(status("GET /events HTTP/1.1\r\nContent-Length: 0\r\n\r\n"), 400);
        assert_eq!(status("GET /events HTTP/1.1\r\n\r\nGET /events HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status("NOT HTTP\r\n\r\n"), 400);
        let many: String = (0..MAX_HEADERS + 1).map(|i| format!("X-{i}: 1\r\n")).collect();
        assert_eq!(status(&format!("GET /events HTTP/1.1\r\n{many}\r\n")), 431);
        let bearer = parse_head(b"GET /events HTTP/1.1\r\nAuthorization: Bearer x\r\n\r\n");
        assert!(bearer.is_ok_and(|h| h.is_some_and(|h| h.authorization)));
    }

    #[test]
    fn refusals_are_complete_json_responses() {
        let bytes = refusal_bytes(&Refusal(429, "slow down".into(), Some(5)));
        let text = String::from_utf8(bytes).unwrap_or_default();
        assert!(text.starts_with("HTTP/1.1 429 Too Many Requests\r\n"), "{text}");
        assert!(text.contains("\r\nRetry-After: 5\r\n"), "{text}");
        assert!(text.contains("\r\nX-Content-Type-Options: nosniff\r\n"), "{text}");
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or_default();
        assert!(head.contains(&format!("Content-Length: {}", body.len())), "{text}");
        assert_eq!(body, r#"{"error":"slow down"}"#);
    }
}
