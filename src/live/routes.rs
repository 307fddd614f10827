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
use super::feed::{self, Holder};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::redis::Db;
use crate::session::guard::MaybeUser;
use crate::session::store::ClientInfo;

/// The resume point of a request (see [`feed::resume_point`]); an invalid one is answered 400 by
/// the route, with the error's own message, before it looks at the session (as the stream
/// listener does).
pub struct Resume(pub Result<Option<StreamId>>);

#[rocket::async_trait]
impl<'r> FromRequest<'r> for Resume {
    type Error = std::convert::Infallible;

    async fn from_request(req: &'r Request<'_>) -> request::Outcome<Self, Self::Error> {
        let after = req.query_value::<&str>("after").and_then(|v| v.ok());
        Outcome::Success(Resume(feed::resume_point(req.headers().get("Last-Event-ID"), after)))
    }
}

#[get("/events")]
pub async fn events(
    resume: Resume,
    user: MaybeUser,
    client: ClientInfo,
    hub: &State<Arc<Hub>>,
    db: &State<Db>,
    config: &State<Config>,
    shutdown: Shutdown,
) -> Result<(ContentType, ByteStream<impl rocket::futures::Stream<Item = Bytes>>)> {
    let resume = resume.0?;
    let user = user.0.ok_or(Error::Unauthorized)?;
    let holder = Holder { session: &user.0, ip: &client.ip };
    let mut feed = feed::open(db, hub, config, holder, resume, shutdown).await?;
    let stream = ByteStream! {
        while let Some(bytes) = feed.next().await {
            yield bytes;
        }
    };
    Ok((ContentType::EventStream, stream))
}
