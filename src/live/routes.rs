//! `GET /events`: the caller's account events as server-sent events.
//!
//! Subscribe first, then replay from `Last-Event-ID` (or `?after=`) out of the account stream, then
//! go live, dropping live events at or before the last one sent: no gap, no duplicate, in order.
//! Heartbeats are comments; they re-check (never extend) the session and end the stream when it
//! was revoked, logged out or expired.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rocket::http::ContentType;
use rocket::outcome::Outcome;
use rocket::request::{self, FromRequest, Request};
use rocket::response::stream::ByteStream;
use rocket::{Shutdown, State, get};
use tokio::sync::broadcast::error::RecvError;

use super::bridge::{Hub, Limit};
use super::event::{Frame, Msg, StreamId};
use crate::bank::model::Transaction;
use crate::bank::store as bank;
use crate::clock::now_ms;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::redis::Db;
use crate::session::guard::CurrentUser;
use crate::session::store as sessions;

/// Most entries one connection replays (the stream holds ≥ 24 h; a client away longer reloads).
const MAX_REPLAY: usize = 10_000;

/// The browser's `Last-Event-ID` header, when it is a well-formed stream id.
pub struct LastEventId(pub Option<StreamId>);

#[rocket::async_trait]
impl<'r> FromRequest<'r> for LastEventId {
    type Error = std::convert::Infallible;

    async fn from_request(req: &'r Request<'_>) -> request::Outcome<Self, Self::Error> {
        Outcome::Success(LastEventId(
            req.headers().get_one("Last-Event-ID").and_then(StreamId::parse),
        ))
    }
}

/// Frames after `from` from the account stream, oldest first; the last one also carries the
/// current spenders. `false` when the replay stopped at its cap with more to come.
async fn replay(db: &Db, account: &str, from: StreamId) -> Result<(Vec<Frame>, bool)> {
    let mut found: Vec<(StreamId, Transaction)> = Vec::new();
    let mut cursor = from.to_string();
    let mut complete = false;
    while found.len() < MAX_REPLAY {
        let entries = bank::entries_after(db, account, &cursor, 500).await?;
        let Some(last) = entries.last() else {
            complete = true;
            break;
        };
        cursor = last.stream_id.clone();
        let done = entries.len() < 500;
        for (entry, tx) in bank::transactions_for(db, account, &entries).await? {
            if let Some(id) = StreamId::parse(&entry.stream_id) {
                found.push((id, tx));
            }
        }
        if done {
            complete = true;
            break;
        }
    }
    let spenders = match found.is_empty() {
        true => None,
        false => Some(bank::spenders(db, account).await?),
    };
    let last = found.len().saturating_sub(1);
    let frames = found
        .iter()
        .enumerate()
        .map(|(i, (id, tx))| {
            Frame::from_transaction(*id, tx, if i == last { spenders.as_ref() } else { None })
        })
        .collect::<Result<Vec<Frame>>>()?;
    Ok((frames, complete))
}

/// Id of the newest entry of the account stream (`0-0` when empty).
async fn newest_id(db: &Db, account: &str) -> Result<StreamId> {
    let newest = bank::recent_entries(db, account, 1).await?;
    Ok(newest.first().and_then(|e| StreamId::parse(&e.stream_id)).unwrap_or(StreamId(0, 0)))
}

enum Step {
    Live(Arc<Frame>),
    CatchUp,
    Heartbeat,
    End,
}

#[get("/events?<after>")]
#[allow(clippy::too_many_arguments)]
pub async fn events(
    after: Option<&str>,
    user: CurrentUser,
    last_event_id: LastEventId,
    hub: &State<Arc<Hub>>,
    db: &State<Db>,
    config: &State<Config>,
    mut shutdown: Shutdown,
) -> Result<(ContentType, ByteStream<impl rocket::futures::Stream<Item = Bytes>>)> {
    let session = user.0;
    let slot = hub
        .open_stream(session.id.as_str(), config.sse_max_streams, config.sse_max_per_session)
        .map_err(|limit| match limit {
            Limit::Session => Error::TooManyRequests { retry_after: 5 },
            Limit::Global => Error::Unavailable("too many open event streams".into()),
        })?;
    let account = session.doc.account.clone();
    // Where to resume: the client's last id, else "now" — read *before* subscribing, so an event
    // published in between is caught by the catch-up below rather than lost.
    let start = match last_event_id.0.or_else(|| after.and_then(StreamId::parse)) {
        Some(id) => id,
        None => newest_id(db, &account).await?,
    };
    // Subscribe before replaying: an event published during the replay waits in the queue.
    let mut rx = hub.subscribe(&account);
    let db = db.inner().clone();
    let retry = Bytes::from(format!("retry:{}\n\n", config.sse_retry_ms));
    let heartbeat = Duration::from_secs(config.sse_heartbeat_secs);
    let deadline = session.doc.created_at + config.session_absolute_secs as i64 * 1000;

    // Every client of an account gets the same pre-framed bytes per transaction (one shared
    // buffer, one write); the rare paths (replay, session check) are boxed to keep each open
    // stream's state small.
    let stream = ByteStream! {
        let _slot = slot;
        yield retry;
        let mut last = Some(start);
        let mut catch_up = true;
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + heartbeat, heartbeat);
        loop {
            if catch_up {
                catch_up = false;
                if let Some(from) = last {
                    match Box::pin(replay(&db, &account, from)).await {
                        Ok((frames, complete)) => {
                            for frame in frames {
                                if last.is_some_and(|l| frame.id <= l) { continue; }
                                last = Some(frame.id);
                                yield frame.wire;
                            }
                            // More than one replay's worth behind: end here, so the browser
                            // reconnects from its Last-Event-ID instead of jumping a gap.
                            if !complete { break; }
                        }
                        // Redis is down: end; the browser reconnects with Last-Event-ID later.
                        Err(_) => break,
                    }
                }
            }
            let step = tokio::select! {
                msg = rx.recv() => match msg {
                    Ok(Msg::Event(frame)) => Step::Live(frame),
                    Ok(Msg::Resync) => Step::CatchUp,
                    // Too slow for the queue: disconnect; it resumes from its Last-Event-ID.
                    Err(RecvError::Lagged(_)) | Err(RecvError::Closed) => Step::End,
                },
                _ = ticker.tick() => Step::Heartbeat,
                _ = &mut shutdown => Step::End,
            };
            match step {
                Step::Live(frame) => {
                    if last.is_some_and(|l| frame.id <= l) { continue; }
                    last = Some(frame.id);
                    yield frame.wire.clone();
                }
                Step::CatchUp => catch_up = true,
                Step::Heartbeat => {
                    if now_ms() >= deadline { break; }
                    // A read, never a refresh: an open stream is not activity. If Redis cannot
                    // answer we keep the stream (nobody can revoke meanwhile either).
                    if let Ok(false) = Box::pin(sessions::session_exists(&db, &session.id)).await { break; }
                    yield Bytes::from_static(b": heartbeat\n\n");
                }
                Step::End => break,
            }
        }
    };
    Ok((ContentType::EventStream, stream))
}
