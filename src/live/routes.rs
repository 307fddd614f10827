//! `GET /events`: the caller's account events as server-sent events.
//!
//! Subscribe first, then replay from `Last-Event-ID` (or `?after=`) out of the account stream, then
//! go live, dropping live events at or before the last one sent: no gap, no duplicate, in order.
//! Heartbeats are comments; they re-check (never extend) the session and end the stream when it
//! was revoked, logged out or expired.

use std::sync::Arc;
use std::time::Duration;

use rocket::outcome::Outcome;
use rocket::request::{self, FromRequest, Request};
use rocket::response::stream::{Event, EventStream};
use rocket::{Shutdown, State, get};
use tokio::sync::broadcast::error::RecvError;

use super::bridge::{Hub, Limit};
use super::event::{Frame, Msg, StreamId};
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

fn events_of(frame: &Frame) -> Vec<Event> {
    let id = frame.id.to_string();
    let mut out = vec![
        Event::data(frame.transaction.clone()).event("transaction").id(id.clone()),
        Event::data(frame.balance.clone()).event("balance").id(id.clone()),
    ];
    if let Some(spenders) = &frame.spenders {
        out.push(Event::data(spenders.clone()).event("spenders").id(id));
    }
    out
}

/// Frames after `from` from the account stream, oldest first, plus the current spenders.
async fn replay(db: &Db, account: &str, from: StreamId) -> Result<Vec<Frame>> {
    let mut frames: Vec<Frame> = Vec::new();
    let mut cursor = from.to_string();
    while frames.len() < MAX_REPLAY {
        let entries = bank::entries_after(db, account, &cursor, 500).await?;
        let Some(last) = entries.last() else { break };
        cursor = last.stream_id.clone();
        let done = entries.len() < 500;
        for (entry, tx) in bank::transactions_for(db, account, &entries).await? {
            if let Some(id) = StreamId::parse(&entry.stream_id) {
                frames.push(Frame::from_transaction(id, &tx)?);
            }
        }
        if done {
            break;
        }
    }
    if let Some(last) = frames.last_mut() {
        let spenders = bank::spenders(db, account).await?;
        last.spenders =
            Some(serde_json::to_string(&spenders).map_err(|e| Error::Internal(e.to_string()))?);
    }
    Ok(frames)
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
) -> Result<EventStream<impl rocket::futures::Stream<Item = Event>>> {
    let session = user.0;
    let slot = hub
        .open_stream(session.id.as_str(), config.sse_max_streams, config.sse_max_per_session)
        .map_err(|limit| match limit {
            Limit::Session => Error::TooManyRequests { retry_after: 5 },
            Limit::Global => Error::Unavailable("too many open event streams".into()),
        })?;
    let account = session.doc.account.clone();
    // Subscribe before replaying: an event published during the replay waits in the queue.
    let mut rx = hub.subscribe(&account);
    let start = last_event_id.0.or_else(|| after.and_then(StreamId::parse));
    let db = db.inner().clone();
    let retry = Duration::from_millis(config.sse_retry_ms);
    let heartbeat = Duration::from_secs(config.sse_heartbeat_secs);
    let deadline = session.doc.created_at + config.session_absolute_secs as i64 * 1000;

    let stream = EventStream! {
        let _slot = slot;
        yield Event::retry(retry);
        let mut last = start;
        let mut catch_up = start.is_some();
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + heartbeat, heartbeat);
        loop {
            if catch_up {
                catch_up = false;
                if let Some(from) = last {
                    match replay(&db, &account, from).await {
                        Ok(frames) => for frame in frames {
                            if last.is_some_and(|l| frame.id <= l) { continue; }
                            last = Some(frame.id);
                            for event in events_of(&frame) { yield event; }
                        },
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
                    for event in events_of(&frame) { yield event; }
                }
                Step::CatchUp => catch_up = true,
                Step::Heartbeat => {
                    if now_ms() >= deadline { break; }
                    // A read, never a refresh: an open stream is not activity. If Redis cannot
                    // answer we keep the stream (nobody can revoke meanwhile either).
                    if let Ok(false) = sessions::session_exists(&db, &session.id).await { break; }
                    yield Event::comment("heartbeat");
                }
                Step::End => break,
            }
        }
    };
    Ok(stream.heartbeat(None))
}
