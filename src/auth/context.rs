//! [`AuthApp`]: what a sign-in, account, factor or step-up handler works with besides its own
//! input and its user — the Redis handle and the configuration (as [`App`] gives every handler),
//! the password hasher, the passkey relying party, who is calling, and the cookie jar — as one
//! request guard. Before it, such a handler took up to six arguments for these, and three needed
//! `allow(clippy::too_many_arguments)`. Every field is a borrow of state the stages put in place
//! at ignition (or of the request), so building it costs one `ClientInfo`; and it is a Rocket
//! sentinel, so an application whose routes take it without that state (the sessions stage's
//! hasher, the strong-authentication stage's relying party) stops at launch instead of answering
//! 500s.

use std::sync::Arc;

use rocket::http::{CookieJar, Status};
use rocket::request::{FromRequest, Outcome, Request};
use rocket::{Ignite, Rocket, Sentinel};

use super::factors::passkey::RelyingParty;
use super::guard::client_info;
use super::password::Passwords;
use crate::audit::ClientInfo;
use crate::config::Config;
use crate::error::Error;
use crate::redis::Db;
use crate::web::app::App;

pub struct AuthApp<'r> {
    pub db: &'r Db,
    pub config: &'r Config,
    pub passwords: &'r Arc<Passwords>,
    pub rp: &'r RelyingParty,
    pub client: ClientInfo,
    pub jar: &'r CookieJar<'r>,
}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for AuthApp<'r> {
    type Error = Error;

    async fn from_request(req: &'r Request<'_>) -> Outcome<Self, Error> {
        let app = rocket::outcome::try_outcome!(req.guard::<App<'r>>().await);
        let state = req.rocket();
        let (Some(passwords), Some(rp)) = (state.state::<Arc<Passwords>>(), state.state()) else {
            let e = Error::Internal("the authentication state is not in place".into());
            return Outcome::Error((Status::InternalServerError, e));
        };
        let client = client_info(req);
        let App { db, config } = app;
        Outcome::Success(AuthApp { db, config, passwords, rp, client, jar: req.cookies() })
    }
}

impl Sentinel for AuthApp<'_> {
    fn abort(rocket: &Rocket<Ignite>) -> bool {
        let missing = rocket.state::<Arc<Passwords>>().is_none();
        missing || rocket.state::<RelyingParty>().is_none() || App::abort(rocket)
    }
}
