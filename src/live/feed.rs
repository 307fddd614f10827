//! One browser's event stream, independent of the HTTP server that carries it (Rocket's `/events`
//! route or the dedicated stream listener).
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
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::time::{Instant, Interval, MissedTickBehavior};

use super::bridge::{Hub, Limit, StreamSlot};
use super::event::{Frame, Msg, StreamId};
use crate::bank::model::Transaction;
use crate::bank::store as bank;
use crate::clock::now_ms;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::redis::Db;
use crate::session::model::{Session, SessionId};
use crate::session::store as sessions;

/// Most entries one connection replays (the stream holds ≥ 24 h; a client away longer reloads).
const MAX_REPLAY: usize = 10_000;

const HEARTBEAT: &[u8] = b": heartbeat\n\n";

/// An open event stream: yields wire bytes until the client must go (see [`Feed::next`]).
pub struct Feed {
    db: Db,
    session: SessionId,
    account: String,
    rx: broadcast::Receiver<Msg>,
    /// The id of the last event sent, or the resume point before any.
    last: StreamId,
    catch_up: bool,
    /// Replayed frames not yet handed out.
    backlog: VecDeque<Bytes>,
    /// The replay hit its cap: hand out the backlog, then end.
    ending: bool,
    greeting: Option<Bytes>,
    ticker: Interval,
    /// The session's absolute expiry (ms): the stream ends there even without a logout.
    deadline: i64,
    shutdown: Shutdown,
    _slot: StreamSlot,
}

/// Opens a stream for `session`: takes a slot under the limits (429 per session, 503 globally),
/// fixes the resume point and subscribes — in that order, so nothing published in between is lost.
pub async fn open(
    db: &Db,
    hub: &Arc<Hub>,
    config: &Config,
    session: &Session,
    resume: Option<StreamId>,
    shutdown: Shutdown,
) -> Result<Feed> {
    let slot = hub
        .open_stream(session.id.as_str(), config.sse_max_streams, config.sse_max_per_session)
        .map_err(|limit| match limit {
            Limit::Session => Error::TooManyRequests { retry_after: 5 },
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
    let heartbeat = Duration::from_secs(config.sse_heartbeat_secs);
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
        backlog: VecDeque::new(),
        ending: false,
        greeting: Some(Bytes::from(format!("retry:{}\n\n", config.sse_retry_ms))),
        ticker,
        deadline: session.doc.created_at + config.session_absolute_secs as i64 * 1000,
        shutdown,
        _slot: slot,
    })
}

enum Step {
    Live(Arc<Frame>),
    CatchUp,
    Heartbeat,
    End,
}

impl Feed {
    /// The next bytes to write, or `None` when the stream must end: shutdown, session gone or
    /// expired, Redis down during a catch-up, too slow for the queue, or a replay at its cap (the
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
            if self.ending {
                return None;
            }
            if self.catch_up {
                let (frames, complete) =
                    match Box::pin(replay(&self.db, &self.account, self.last)).await {
                        Ok(replayed) => replayed,
                        // Redis is down: end; the browser reconnects with Last-Event-ID later.
                        Err(e) => {
                            rocket::warn!("event stream: catch-up failed, ending the stream: {e}");
                            return None;
                        }
                    };
                self.catch_up = false;
                for frame in frames {
                    if frame.id > self.last {
                        self.last = frame.id;
                        self.backlog.push_back(frame.wire);
                    }
                }
                // More than one replay's worth behind: end after it, so the browser reconnects
                // from its Last-Event-ID instead of jumping a gap.
                self.ending = !complete;
                continue;
            }
            let step = tokio::select! {
                msg = self.rx.recv() => match msg {
                    Ok(Msg::Event(frame)) => Step::Live(frame),
                    Ok(Msg::Resync) => Step::CatchUp,
                    // Too slow for the queue: disconnect; it resumes from its Last-Event-ID.
                    Err(RecvError::Lagged(_)) | Err(RecvError::Closed) => Step::End,
                },
                _ = self.ticker.tick() => Step::Heartbeat,
                _ = &mut self.shutdown => Step::End,
            };
            match step {
                Step::Live(frame) => {
                    if frame.id > self.last {
                        self.last = frame.id;
                        return Some(frame.wire.clone());
                    }
                }
                Step::CatchUp => self.catch_up = true,
                Step::Heartbeat => {
                    if now_ms() >= self.deadline {
                        return None;
                    }
                    // A read, never a refresh: an open stream is not activity. If Redis cannot
                    // answer we keep the stream (nobody can revoke meanwhile either).
                    if let Ok(false) =
                        Box::pin(sessions::session_exists(&self.db, &self.session)).await
                    {
                        return None;
                    }
                    return Some(Bytes::from_static(HEARTBEAT));
                }
                Step::End => return None,
            }
        }
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
    found
        .iter()
        .enumerate()
        .map(|(i, (id, tx))| {
            Frame::from_transaction(*id, tx, if i == last { spenders.as_ref() } else { None })
        })
        .collect::<Result<Vec<Frame>>>()
        .map(|frames| (frames, complete))
}

/// Id of the newest entry of the account stream (`0-0` when empty).
async fn newest_id(db: &Db, account: &str) -> Result<StreamId> {
    let newest = bank::recent_entries(db, account, 1).await?;
    Ok(newest.first().and_then(|e| StreamId::parse(&e.stream_id)).unwrap_or(StreamId(0, 0)))
}
