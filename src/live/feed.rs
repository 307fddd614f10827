//! One browser's event stream, independent of the HTTP server that carries it (Rocket's `/events`
//! route or the stream listener, which only move bytes): who may stream ([`caller`]), where it
//! resumes ([`resume_point`]), the limits and the [`Error`] that refuses it are decided here, once.
//!
//! Subscribe first, then replay from the resume point out of the account stream, then go live,
//! dropping live events at or before the last one sent: no gap, no duplicate, in order.
//! Heartbeats are comments; they re-check (never extend) the session and end the stream when it
//! was revoked, logged out or expired.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rocket::Shutdown;
use rocket::http::RawStr;
use tokio::sync::broadcast::error::RecvError;
use tokio::time::{Instant, Interval, MissedTickBehavior};

use super::bridge::{Hub, Limit, Owner, StreamSlot, Subscription};
use super::event::{Frame, Msg, Notice, StreamId};
use crate::auth::credential::Presented;
use crate::auth::guard::cookie_name;
use crate::auth::model::{Session, SessionId};
use crate::auth::throttle::address_group;
use crate::auth::{credential, store as sessions};
use crate::bank::history;
use crate::bank::model::Transaction;
use crate::clock::now_ms;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::metrics::OpenStream;
use crate::redis::Db;

/// Entries replayed per read: a client that is far behind is replayed page by page as it reads,
/// so one connection never holds more than a page of frames.
pub const REPLAY_PAGE: usize = 100;

const HEARTBEAT: &[u8] = b": heartbeat\n\n";

/// An open event stream: yields wire bytes until the client must go (see [`Feed::next`]).
pub struct Feed {
    db: Db,
    session: SessionId,
    account: String,
    rx: Subscription,
    /// The id of the last event sent, or the resume point before any.
    last: StreamId,
    /// Replaying from the account stream (page by page) instead of passing on live events…
    catch_up: bool,
    /// …from this entry on (an entry whose document has expired sends nothing but is passed).
    cursor: StreamId,
    /// …up to this entry, when the replay fills a gap an announcement revealed (else to the end).
    until: Option<StreamId>,
    /// Replayed frames of the current page not yet handed out.
    backlog: VecDeque<Bytes>,
    greeting: Option<Bytes>,
    ticker: Interval,
    /// The session's absolute expiry (ms): the stream ends there even without a logout.
    deadline: i64,
    /// How long transactions are kept (ms): a replay leaves out older ones, whose documents have
    /// expired (an idle account's stream entries can outlive them).
    retention_ms: i64,
    shutdown: Shutdown,
    _slot: StreamSlot,
    _counted: OpenStream,
}

/// Where a stream resumes: the `Last-Event-ID` header (what a browser sends on reconnecting),
/// else the raw query's `after`. A value that is not a stream id (or an id no stream can follow,
/// like `18446744073709551615-18446744073709551615`), or two `Last-Event-ID` headers, is a 400
/// that never reaches Redis; both servers judge it before the session.
pub fn resume_point<'a>(
    last_event_ids: impl IntoIterator<Item = &'a str>,
    query: Option<&'a str>,
) -> Result<Option<StreamId>> {
    let invalid = || Error::BadRequest("The event id to resume from is not valid.".into());
    // The first `after` field, names and values percent-decoded as Rocket decodes them (a bare
    // `after` is an empty value).
    let decode = |s: &'a str| RawStr::new(s).url_decode_lossy();
    let mut fields = query.unwrap_or_default().split('&').filter(|f| !f.is_empty());
    let mut headers = last_event_ids.into_iter();
    let raw = match (headers.next(), headers.next()) {
        (Some(_), Some(_)) => return Err(invalid()),
        (Some(header), None) => Some(header.into()),
        (None, _) => fields.find_map(|field| {
            let (name, value) = field.split_once('=').unwrap_or((field, ""));
            (decode(name) == "after").then(|| decode(value))
        }),
    };
    raw.map(|raw| StreamId::parse(&raw).filter(StreamId::can_resume).ok_or_else(invalid))
        .transpose()
}

/// Who may stream, from the raw `Cookie` and `Authorization` values, by the one credential rule
/// ([`credential::presented`]): a browser with its session cookie, a mobile client with its bearer
/// token — each only through the channel its session was issued for, and never a token in the
/// URL. Anyone else is [`Error::Unauthorized`]; Redis trouble is an error.
pub async fn caller<'a>(
    db: &Db,
    config: &Config,
    cookies: impl IntoIterator<Item = &'a str>,
    authorization: impl IntoIterator<Item = &'a str>,
) -> Result<Session> {
    let presented = credential::presented(cookie_name(config), cookies, authorization);
    let Presented::Token(token, via) = presented else { return Err(Error::Unauthorized) };
    credential::authenticate(db, config, &token, via).await?.ok_or(Error::Unauthorized)
}

/// Who holds a stream, for the per-session, per-user and per-address limits.
#[derive(Debug, Clone, Copy)]
pub struct Holder<'a> {
    pub session: &'a Session,
    /// The client address (socket peer, or `ip_header` behind a proxy).
    pub ip: &'a str,
    /// Which server carries it (`rocket`, `listener`), for the open-streams metric.
    pub transport: &'static str,
}

/// Opens a stream: takes a slot under the limits (429 per session, user or client address, 503
/// for the process), fixes the resume point and subscribes — in that order, so nothing published
/// in between is lost.
pub async fn open(
    db: &Db,
    hub: &Arc<Hub>,
    config: &Config,
    holder: Holder<'_>,
    resume: Option<StreamId>,
    shutdown: Shutdown,
) -> Result<Feed> {
    let session = holder.session;
    let address = address_group(holder.ip);
    let owner = Owner { session: session.id.as_str(), user: &session.doc.user, address: &address };
    let slot = hub.open_stream(owner, config).map_err(|limit| match limit {
        Limit::Session | Limit::User | Limit::Address => Error::TooManyRequests { retry_after: 5 },
        Limit::Global => Error::Unavailable("too many open event streams".into()),
    })?;
    let account = session.doc.account.clone();
    // Without a client id, resume from "now" — read *before* subscribing, so an event published
    // in between is caught by the first catch-up rather than lost.
    let last = match resume {
        Some(id) => id,
        None => newest_id(db, &account).await?,
    };
    let rx = hub.subscribe(&account);
    let heartbeat = Duration::from_secs(config.live.heartbeat_secs);
    let mut ticker = tokio::time::interval_at(Instant::now() + heartbeat, heartbeat);
    // After a stall, one heartbeat (and one session check), not a burst of them.
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    Ok(Feed {
        db: db.clone(),
        session: session.id.clone(),
        account,
        rx,
        last,
        catch_up: true,
        cursor: last,
        until: None,
        backlog: VecDeque::new(),
        greeting: Some(Bytes::from(format!("retry:{}\n\n", config.live.retry_ms))),
        ticker,
        deadline: session.doc.expires_at(config),
        retention_ms: config.bank.transaction_retention_ms(),
        shutdown,
        _slot: slot,
        _counted: OpenStream::new(&db.metrics, holder.transport),
    })
}

enum Step {
    Live(Arc<Frame>),
    Notice(Arc<Notice>),
    CatchUp,
    Heartbeat,
    End,
}

impl Feed {
    /// The next bytes to write, or `None` when the stream must end: shutdown, session gone or
    /// expired, Redis down during a catch-up or a session check, or too slow for the queue (the
    /// browser then resumes from its `Last-Event-ID`).
    ///
    /// Each transaction is one pre-framed buffer shared by every client of the account; the rare
    /// paths (replay, session check) are boxed so an idle stream's state stays small.
    pub async fn next(&mut self) -> Option<Bytes> {
        if let Some(greeting) = self.greeting.take() {
            return Some(greeting);
        }
        loop {
            if let Some(bytes) = self.backlog.pop_front() {
                return Some(bytes);
            }
            if self.catch_up {
                // One page at a time, read only when the previous one was handed out.
                let oldest = now_ms() - self.retention_ms;
                let (frames, cursor, complete) =
                    match Box::pin(replay(&self.db, &self.account, self.cursor, oldest)).await {
                        Ok(replayed) => replayed,
                        // Redis is down: end; the browser reconnects with Last-Event-ID later.
                        Err(e) => {
                            rocket::warn!("event stream: catch-up failed, ending the stream: {e}");
                            return None;
                        }
                    };
                self.catch_up = !complete;
                self.cursor = cursor;
                for frame in frames {
                    // A gap read stops at the announcement that revealed it: what follows may
                    // not be on a replica yet (its own announcement comes when it is).
                    if self.until.is_some_and(|until| frame.id > until) {
                        self.catch_up = false;
                        break;
                    }
                    if frame.id > self.last {
                        self.last = frame.id;
                        self.backlog.push_back(frame.wire);
                    }
                }
                if !self.catch_up {
                    self.until = None;
                }
                continue;
            }
            let step = tokio::select! {
                msg = self.rx.recv() => match msg {
                    Ok(Msg::Event(frame)) => Step::Live(frame),
                    Ok(Msg::Security(notice)) => Step::Notice(notice),
                    Ok(Msg::Resync) => Step::CatchUp,
                    // Too slow for the queue: disconnect; it resumes from its Last-Event-ID.
                    Err(RecvError::Lagged(_)) => {
                        self.db.metrics.slow_clients_dropped.inc();
                        Step::End
                    }
                    Err(RecvError::Closed) => Step::End,
                },
                _ = self.ticker.tick() => Step::Heartbeat,
                _ = &mut self.shutdown => Step::End,
            };
            match step {
                Step::Live(frame) => match frame.prev {
                    // An entry between what this stream saw last and this one was announced
                    // late, or not at all: read the stream up to this one, in order.
                    Some(prev) if frame.id > self.last && prev > self.last => {
                        self.catch_up = true;
                        self.cursor = self.last;
                        self.until = Some(frame.id);
                    }
                    _ if frame.id > self.last => {
                        self.last = frame.id;
                        return Some(frame.wire.clone());
                    }
                    _ => {}
                },
                Step::Notice(notice) => {
                    if notice.session != self.session.as_str() {
                        return Some(notice.wire.clone());
                    }
                }
                Step::CatchUp => {
                    self.catch_up = true;
                    self.cursor = self.last;
                    self.until = None;
                }
                Step::Heartbeat => {
                    if now_ms() >= self.deadline {
                        return None;
                    }
                    // A read, never a refresh: an open stream is not activity. Fails closed:
                    // when Redis cannot say the session still exists, the stream ends (it may
                    // have been revoked meanwhile); the browser resumes from Last-Event-ID.
                    match Box::pin(sessions::session_exists(&self.db, &self.session)).await {
                        Ok(true) => return Some(Bytes::from_static(HEARTBEAT)),
                        Ok(false) => return None,
                        Err(e) => {
                            rocket::warn!("event stream: session check failed, ending it: {e}");
                            return None;
                        }
                    }
                }
                Step::End => return None,
            }
        }
    }
}

/// The next page (at most [`REPLAY_PAGE`] frames) after `from` from the account stream, oldest
/// first, the id of the last entry read, and whether it was the last page; the last frame of the
/// last page also carries the current spenders.
async fn replay(
    db: &Db,
    account: &str,
    from: StreamId,
    oldest: i64,
) -> Result<(Vec<Frame>, StreamId, bool)> {
    let page = history::entries_after(db, account, &from.to_string(), REPLAY_PAGE).await?;
    let (entries, complete) = (page.entries, page.last_page);
    let cursor = page.last_id.as_deref().and_then(StreamId::parse).unwrap_or(from);
    let mut found: Vec<(StreamId, Transaction)> = Vec::with_capacity(entries.len());
    for (stream_id, tx) in history::transactions_for(db, account, entries, oldest).await? {
        if let Some(id) = StreamId::parse(&stream_id) {
            found.push((id, tx));
        }
    }
    let spenders = match complete && !found.is_empty() {
        true => Some(history::spenders(db, account).await?),
        false => None,
    };
    let last = found.len().saturating_sub(1);
    found
        .iter()
        .enumerate()
        .map(|(i, (id, tx))| {
            Frame::from_transaction(*id, tx, if i == last { spenders.as_ref() } else { None })
        })
        .collect::<Result<Vec<Frame>>>()
        .map(|frames| (frames, cursor, complete))
}

/// Id of the newest entry of the account stream (`0-0` when empty).
async fn newest_id(db: &Db, account: &str) -> Result<StreamId> {
    let newest = history::recent_entries(db, account, 1).await?;
    Ok(newest.first().and_then(|e| StreamId::parse(&e.stream_id)).unwrap_or(StreamId(0, 0)))
}
