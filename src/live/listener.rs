//! The stream listener: a second, minimal HTTP/1.1 server in the same process that serves only
//! `GET /events`, for deployments with many open dashboards (a proxy routes `/events` to it).
//!
//! Why it exists: through Rocket 0.5 (hyper 0.14) every open stream keeps about 38 KiB of
//! per-connection state — 8 KiB read and write buffers, the request, a 4 KiB body pump — and wakes
//! two tasks per event. Here a stream is one task that writes the shared, pre-framed event bytes
//! straight to its socket. Same endpoint as Rocket's `/events` ([`super::feed`]: caller, resume
//! point, limits, refusals); this file only moves bytes.
//!
//! Why not hyper 1.x (a maintained HTTP stack) instead of this code: measured with 10,000 open
//! streams on one machine (same broadcast source, client in another process), hyper 1.12's HTTP/1
//! server cost 11.5–12.0 KiB of RSS per stream with every public setting tried (`writev`,
//! `max_buf_size`, `half_close`, body types, hyper-util's `auto`) against 1.27 KiB for a
//! hand-written writer: it allocates an 8 KiB read buffer and an 8 KiB header write buffer per
//! connection that no setting shrinks. The bar was 2×; hyper is 9×.
//!
//! The protocol is deliberately small: one request per connection; the head must arrive within
//! [`HEAD_TIMEOUT`] and fit in [`MAX_HEAD`] (it is read incrementally: each byte is scanned once
//! for the blank line that ends it, then parsed once); an HTTP/1.1 request needs exactly one
//! `Host` (RFC 9112 §3.2); the response carries `Date` and is close-delimited (`Connection:
//! close`, no chunking), so the stream ends when the socket does. A client has nothing to send
//! after its request: pipelined requests are not answered — the first one is, then the connection
//! closes, however the bytes were split into segments — and any later byte, EOF or error ends the
//! stream, as does a write that cannot complete within one heartbeat interval (a client that
//! stopped reading) or, on Linux, data left unacknowledged for two (`TCP_USER_TIMEOUT`: a client
//! that vanished without closing; elsewhere the write timeout alone finds those).
//!
//! At most [`MAX_HANDSHAKES`] connections are between accept and their first event byte, and at
//! most [`MAX_HANDSHAKES_PER_ADDRESS`] of them from one client address (IPv4, or IPv6 /64; not
//! behind a proxy, where every connection comes from the proxy and it bounds its clients): a
//! connection beyond either is closed as soon as it is accepted, so a flood of silent
//! connections from a few addresses holds a few slots, costs no file descriptors, and never
//! makes another address's request wait. A connection whose head does not arrive within
//! [`HEAD_TIMEOUT`] gives its slot back before its 408 is sent.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rocket::Shutdown;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::bridge::Hub;
use super::feed::{self, Feed, Holder};
pub use super::wire::{HEAD_TIMEOUT, MAX_HEAD};
use super::wire::{Refusal, Seen, Trusted, push_common_headers, read_head, refusal_bytes};
use crate::access;
use crate::config::Config;
use crate::redis::Db;

/// Connections at most in the handshake (reading the head, looking up the session).
pub const MAX_HANDSHAKES: usize = 512;
/// Of those, at most this many from one client address (without a proxy in front).
pub const MAX_HANDSHAKES_PER_ADDRESS: usize = 16;
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
    /// Rocket's `ip_header`: behind a proxy, the client address comes from this header (the
    /// per-address stream limit would otherwise count the proxy).
    pub ip_header: Option<String>,
}

/// The handshake slots: all of them, and those each client address holds.
struct Slots {
    all: Arc<Semaphore>,
    per_address: std::sync::Mutex<std::collections::HashMap<String, usize>>,
    /// 0: no per-address share (behind a proxy every connection comes from the proxy).
    share: usize,
}

/// A connection's handshake slot, given back when dropped.
struct Slot {
    _permit: OwnedSemaphorePermit,
    slots: Arc<Slots>,
    address: String,
}

impl Slots {
    /// A slot for a connection from `address`, if there is one free for it.
    fn take(self: &Arc<Self>, address: String) -> Option<Slot> {
        let permit = self.all.clone().try_acquire_owned().ok()?;
        if self.share > 0 {
            let mut held = self.per_address.lock().unwrap_or_else(|e| e.into_inner());
            let count = held.entry(address.clone()).or_insert(0);
            if *count >= self.share {
                return None;
            }
            *count += 1;
        }
        Some(Slot { _permit: permit, slots: self.clone(), address })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if self.slots.share == 0 {
            return;
        }
        let mut held = self.slots.per_address.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = held.get_mut(&self.address) {
            *count -= 1;
            if *count == 0 {
                held.remove(&self.address);
            }
        }
    }
}

/// Accepts connections until `shutdown`; each open stream ends on `shutdown` too.
pub async fn serve(listener: TcpListener, context: Arc<Context>, mut shutdown: Shutdown) {
    let share = if context.ip_header.is_some() { 0 } else { MAX_HANDSHAKES_PER_ADDRESS };
    let slots = Arc::new(Slots {
        all: Arc::new(Semaphore::new(MAX_HANDSHAKES)),
        per_address: Default::default(),
        share,
    });
    let mut backoff = Duration::from_millis(10);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = &mut shutdown => return,
        };
        match accepted {
            Ok((socket, peer)) => {
                backoff = Duration::from_millis(10);
                let address = crate::auth::throttle::address_group(&peer.ip().to_string());
                // No slot for it: closed at once (dropped), holding nothing.
                if let Some(slot) = slots.take(address) {
                    let (context, shutdown) = (context.clone(), shutdown.clone());
                    tokio::spawn(connection(socket, peer, context, shutdown, slot));
                }
            }
            // Out of file descriptors or the like: back off instead of spinning.
            Err(e) => {
                rocket::warn!("stream listener: accept failed: {e}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

async fn connection(
    mut socket: TcpStream,
    peer: SocketAddr,
    context: Arc<Context>,
    shutdown: Shutdown,
    slot: Slot,
) {
    let heartbeat = Duration::from_secs(context.config.live.heartbeat_secs);
    // Events are single small writes that should leave at once.
    let _ = socket.set_nodelay(true);
    set_user_timeout(&socket, heartbeat * 2);
    // The handshake (head buffer, session lookup) is boxed: its memory is freed before the
    // stream starts instead of staying part of this task for the stream's whole life.
    let (started, mut seen) = (Instant::now(), Seen::new());
    let opened = Box::pin(handshake(&mut socket, peer, &context, shutdown, &mut seen)).await;
    let Seen { method, path, id } = &seen;
    match opened {
        Ok(Some((feed, pipelined))) => {
            access::record(method, path, 200, started, id);
            drop(slot);
            stream(socket, feed, heartbeat, pipelined).await;
        }
        Ok(None) => {}
        Err(refusal) => {
            access::record(method, path, refusal.0, started, id);
            // The handshake is over: the refusal (bounded in time itself) holds no slot.
            drop(slot);
            Box::pin(refuse(socket, &refusal, id)).await;
        }
    }
}

/// Data left unacknowledged this long ends the connection (`TCP_USER_TIMEOUT`, Linux-only in
/// socket2); elsewhere the stream's write timeout alone detects clients that vanished.
#[cfg(any(target_os = "linux", target_os = "android", target_os = "fuchsia"))]
fn set_user_timeout(socket: &TcpStream, timeout: Duration) {
    let _ = socket2::SockRef::from(socket).set_tcp_user_timeout(Some(timeout));
}

#[cfg(not(any(target_os = "linux", target_os = "android", target_os = "fuchsia")))]
fn set_user_timeout(_socket: &TcpStream, _timeout: Duration) {}

/// Sends a refusal and closes gracefully: stop writing, then read (and drop) what the client is
/// still sending for a moment, so its unread bytes do not turn the close into a reset that would
/// destroy the response before the client reads it.
async fn refuse(mut socket: TcpStream, refusal: &Refusal, id: &str) {
    let sent = tokio::time::timeout(HEAD_TIMEOUT, async {
        socket.write_all(&refusal_bytes(refusal, id)).await?;
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

/// Reads and checks the request, authenticates, opens the feed (and says whether the request was
/// pipelined). `Ok(None)`: the client went away. `seen` learns the request line and its id.
async fn handshake(
    socket: &mut TcpStream,
    peer: SocketAddr,
    context: &Context,
    shutdown: Shutdown,
    seen: &mut Seen,
) -> Result<Option<(Feed, bool)>, Refusal> {
    let trusted = Trusted {
        ip_header: context.ip_header.as_deref(),
        id_header: context.config.web.request_id_header.as_deref(),
    };
    let head = match tokio::time::timeout(HEAD_TIMEOUT, read_head(socket, trusted, seen)).await {
        Ok(head) => head?,
        Err(_) => return Err(Refusal::new(408, "The request took too long to arrive.")),
    };
    let Some(head) = head else { return Ok(None) };
    let cookies = head.cookies.iter().map(String::as_str);
    let authorization = head.authorization.iter().map(String::as_str);
    let session = feed::caller(&context.db, &context.config, cookies, authorization).await?;
    let ip = head.forwarded_for.unwrap_or(peer.ip()).to_string();
    let holder = Holder { session: &session, ip: &ip, transport: "listener" };
    let feed =
        feed::open(&context.db, &context.hub, &context.config, holder, head.resume, shutdown)
            .await?;
    let mut ok = String::from(
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\n\
         X-Accel-Buffering: no\r\nConnection: close\r\n",
    );
    push_common_headers(&mut ok, &seen.id);
    ok.push_str("\r\n");
    match tokio::time::timeout(HEAD_TIMEOUT, socket.write_all(ok.as_bytes())).await {
        Ok(Ok(())) => Ok(Some((feed, head.pipelined))),
        _ => Ok(None),
    }
}

/// Writes the feed until it or the client ends; a pipelined request gets its first bytes (the
/// `retry:` greeting), then the close.
async fn stream(mut socket: TcpStream, mut feed: Feed, write_timeout: Duration, pipelined: bool) {
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
            Ok(Ok(())) if !pipelined => {}
            // Gone, or not reading: its kernel buffer is full. It resumes from Last-Event-ID.
            _ => break,
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), writer.shutdown()).await;
}
