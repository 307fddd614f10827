//! `GET /events` on Rocket's own port: hands the raw request to [`super::feed`] (which decides who
//! may stream, from where, what a stream sends and when it ends) and moves its bytes.

use std::sync::Arc;

use bytes::Bytes;
use rocket::http::uri::Origin;
use rocket::http::{ContentType, HeaderMap};
use rocket::outcome::Outcome;
use rocket::request::{FromRequest, Request};
use rocket::response::stream::ByteStream;
use rocket::{Shutdown, State, get, request};

use super::bridge::Hub;
use super::feed;
use super::feed::Holder;
use crate::audit::ClientInfo;
use crate::error::Result;
use crate::web::app::App;

/// The request's raw header values, judged by the endpoint as the stream listener reads them.
pub struct RawHeaders<'r>(&'r HeaderMap<'r>);

#[rocket::async_trait]
impl<'r> FromRequest<'r> for RawHeaders<'r> {
    type Error = std::convert::Infallible;

    async fn from_request(req: &'r Request<'_>) -> request::Outcome<Self, Self::Error> {
        Outcome::Success(RawHeaders(req.headers()))
    }
}

#[get("/events")]
pub async fn events(
    headers: RawHeaders<'_>,
    uri: &Origin<'_>,
    client: ClientInfo,
    hub: &State<Arc<Hub>>,
    app: App<'_>,
    shutdown: Shutdown,
) -> Result<(ContentType, ByteStream<impl rocket::futures::Stream<Item = Bytes>>)> {
    let App { db, config } = app;
    let (headers, query) = (headers.0, uri.query().map(|q| q.as_str()));
    // In the listener's order: an invalid resume point is a 400 before any session lookup.
    let resume = feed::resume_point(headers.get("Last-Event-ID"), query)?;
    let session =
        feed::caller(db, config, headers.get("Cookie"), headers.get("Authorization")).await?;
    let holder = Holder { session: &session, ip: &client.ip, transport: "rocket" };
    let mut feed = feed::open(db, hub, config, holder, resume, shutdown).await?;
    let stream = ByteStream! {
        while let Some(bytes) = feed.next().await {
            yield bytes;
        }
    };
    Ok((ContentType::EventStream, stream))
}
