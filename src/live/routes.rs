//! `GET /events` on Rocket's own port: the caller's account events as server-sent events (see
//! [`super::feed`] for what a stream sends and when it ends).

use std::sync::Arc;

use bytes::Bytes;
use rocket::http::ContentType;
use rocket::outcome::Outcome;
use rocket::request::{self, FromRequest, Request};
use rocket::response::stream::ByteStream;
use rocket::{Shutdown, State, get};

use super::bridge::Hub;
use super::event::StreamId;
use super::feed;
use crate::config::Config;
use crate::error::Result;
use crate::redis::Db;
use crate::session::guard::CurrentUser;

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

#[get("/events?<after>")]
#[allow(clippy::too_many_arguments)]
pub async fn events(
    after: Option<&str>,
    user: CurrentUser,
    last_event_id: LastEventId,
    hub: &State<Arc<Hub>>,
    db: &State<Db>,
    config: &State<Config>,
    shutdown: Shutdown,
) -> Result<(ContentType, ByteStream<impl rocket::futures::Stream<Item = Bytes>>)> {
    let resume = last_event_id.0.or_else(|| after.and_then(StreamId::parse));
    let mut feed = feed::open(db, hub, config, &user.0, resume, shutdown).await?;
    let stream = ByteStream! {
        while let Some(bytes) = feed.next().await {
            yield bytes;
        }
    };
    Ok((ContentType::EventStream, stream))
}
