//! [`App`]: what nearly every handler needs from the application's state (the Redis handle and
//! the configuration) as one request guard, instead of two `&State<…>` arguments each. Both are
//! put in place at ignition by the stages that need them (see `stage::needs`), and the guard is
//! a Rocket sentinel: an application with a route that takes it but without either stops at
//! launch, naming `App`, so the guard does not fail in a launched application.

use rocket::http::Status;
use rocket::request::{FromRequest, Outcome, Request};
use rocket::{Ignite, Rocket, Sentinel};

use crate::config::Config;
use crate::error::Error;
use crate::redis::Db;

#[derive(Clone, Copy)]
pub struct App<'r> {
    pub db: &'r Db,
    pub config: &'r Config,
}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for App<'r> {
    type Error = Error;

    async fn from_request(req: &'r Request<'_>) -> Outcome<Self, Error> {
        match (req.rocket().state::<Db>(), req.rocket().state::<Config>()) {
            (Some(db), Some(config)) => Outcome::Success(App { db, config }),
            _ => {
                let e = Error::Internal("the application state is not in place".into());
                Outcome::Error((Status::InternalServerError, e))
            }
        }
    }
}

impl Sentinel for App<'_> {
    fn abort(rocket: &Rocket<Ignite>) -> bool {
        rocket.state::<Db>().is_none() || rocket.state::<Config>().is_none()
    }
}
