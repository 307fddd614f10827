//! Step-up guards: a sensitive action (removing a factor, new recovery codes, a transfer) runs
//! only for a session whose user authenticated within [`STEP_UP_MAX_AGE_SECS`] — with a second
//! factor when the user has one, with the password when they have none (AAL1, as recorded).
//! Otherwise the request fails with 401 and the step-up challenge (see `error::step_up_challenge`).

use rocket::http::Status;
use rocket::outcome::Outcome;
use rocket::request::{self, FromRequest, Request};

use super::store::{self as factors, Factors};
use crate::clock::now_ms;
use crate::error::{Error, STEP_UP_MAX_AGE_SECS, StepUpWanted};
use crate::redis::Db;
use crate::session::guard::{ApiUser, CurrentUser};
use crate::session::model::Session;

/// Whether `session` may do something sensitive now, given the user's factors.
pub fn is_recent(session: &Session, factors: &Factors, now: i64) -> bool {
    let assurance = &session.doc.assurance;
    let fresh = now - assurance.auth_time <= STEP_UP_MAX_AGE_SECS * 1000;
    fresh && (assurance.aal >= 2 || !factors.any())
}

/// Which sessions pass.
#[derive(Clone, Copy)]
enum Policy {
    /// Only a recent enough one.
    Recent,
    /// Any, while the user has no second factor (adding the first one is protective and never
    /// waits); a recent one otherwise (a stolen session must not add the thief's factor).
    AddFactor,
}

async fn check<T>(
    req: &Request<'_>,
    session: &Session,
    policy: Policy,
    ok: T,
) -> request::Outcome<T, Error> {
    let Some(db) = req.rocket().state::<Db>() else {
        return Outcome::Error((Status::InternalServerError, Error::Internal("no Db".into())));
    };
    let passes = |owned: &Factors| match policy {
        Policy::Recent => is_recent(session, owned, now_ms()),
        Policy::AddFactor => !owned.any() || is_recent(session, owned, now_ms()),
    };
    match factors::factors(db, &session.doc.user).await {
        Ok(owned) if passes(&owned) => Outcome::Success(ok),
        Ok(_) => {
            req.local_cache(|| StepUpWanted(true));
            Outcome::Error((Status::Unauthorized, Error::StepUpRequired))
        }
        Err(e) => Outcome::Error((e.status(), e)),
    }
}

/// The signed-in callers the step-up guards wrap.
pub trait Signed {
    fn session(&self) -> &Session;
}

impl Signed for ApiUser {
    fn session(&self) -> &Session {
        &self.session
    }
}

impl Signed for CurrentUser {
    fn session(&self) -> &Session {
        &self.0
    }
}

async fn guarded<'r, U, T>(
    req: &'r Request<'_>,
    policy: Policy,
    wrap: impl FnOnce(U) -> T,
) -> request::Outcome<T, Error>
where
    U: FromRequest<'r, Error = Error> + Signed,
{
    let user = match U::from_request(req).await {
        Outcome::Success(user) => user,
        Outcome::Forward(status) => return Outcome::Forward(status),
        Outcome::Error(e) => return Outcome::Error(e),
    };
    let session = user.session().clone();
    check(req, &session, policy, wrap(user)).await
}

/// A caller (`ApiUser` or `CurrentUser`) who authenticated recently enough for a sensitive
/// action.
#[derive(Debug, Clone)]
pub struct SteppedUp<U>(pub U);

#[rocket::async_trait]
impl<'r, U> FromRequest<'r> for SteppedUp<U>
where
    U: FromRequest<'r, Error = Error> + Signed + Send,
{
    type Error = Error;

    async fn from_request(req: &'r Request<'_>) -> request::Outcome<Self, Error> {
        guarded(req, Policy::Recent, SteppedUp).await
    }
}

/// A caller who may add a second factor: at once for the first one, after a step-up when the
/// user already has one.
#[derive(Debug, Clone)]
pub struct FactorAdder<U>(pub U);

#[rocket::async_trait]
impl<'r, U> FromRequest<'r> for FactorAdder<U>
where
    U: FromRequest<'r, Error = Error> + Signed + Send,
{
    type Error = Error;

    async fn from_request(req: &'r Request<'_>) -> request::Outcome<Self, Error> {
        guarded(req, Policy::AddFactor, FactorAdder).await
    }
}
