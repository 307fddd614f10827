//! Step-up guards: a sensitive action (removing a factor, new recovery codes, a transfer) runs
//! only for a session whose user authenticated within `step_up_max_age_secs` — with a second
//! factor when the user has one, with the password when they have none (AAL1, as recorded).
//! Otherwise the request fails with 401 and the step-up challenge (see `error::step_up_challenge`).
//!
//! Adding a factor is the one action a password alone never unlocks: the first factor also needs
//! a code e-mailed to the account (`email_code`), an operator's first one is set up on the
//! machine (`redbank admin totp`), and every later one needs a step-up with an existing factor.

pub mod routes;
pub mod service;
pub mod verify;

use rocket::http::Status;
use rocket::outcome::Outcome;
use rocket::request::{self, FromRequest, Request};

use crate::auth::factors::store::{self as factors, Factors};
use crate::auth::guard::{ApiUser, CurrentUser};
use crate::auth::model::Session;
use crate::clock::now_ms;
use crate::config::Config;
use crate::error::{Error, StepUpWanted, refuse};
use crate::redis::Db;

/// Whether `session` may do something sensitive now, given the user's factors.
pub fn is_recent(config: &Config, session: &Session, factors: &Factors, now: i64) -> bool {
    let assurance = &session.doc.assurance;
    let fresh = now - assurance.auth_time <= config.session.step_up_max_age_secs as i64 * 1000;
    fresh && (assurance.aal >= 2 || !factors.any())
}

/// Which sessions pass.
#[derive(Clone, Copy)]
enum Policy {
    /// Only a recent enough one.
    Recent,
    /// One who may add a factor: with no factor yet, a customer (who must then also give the
    /// code e-mailed to them: see [`Enrolment::First`]) but never an operator; with one, a
    /// recent one (a stolen session must not add the thief's factor).
    AddFactor,
    /// One whose account has no second factor (the action asks for the password itself), or
    /// who used it recently.
    FactorIfAny,
}

/// What adding a factor takes besides the guard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enrolment {
    /// The user's first factor: the code e-mailed to the account must confirm it
    /// (`email_code`).
    First,
    /// One more, after a recent step-up with an existing factor: nothing more.
    More,
}

/// The message an operator without a factor reads: their first one comes from the machine.
pub const OPERATOR_FIRST_FACTOR: &str = "An operator's first factor is set up on the server, not \
     over the web: run `redbank admin totp` there, add the key to your authenticator app, then \
     sign in with it.";

async fn check<T>(
    req: &Request<'_>,
    session: &Session,
    policy: Policy,
    ok: impl FnOnce(Enrolment) -> T,
) -> request::Outcome<T, Error> {
    let (Some(db), Some(config)) = (req.rocket().state::<Db>(), req.rocket().state::<Config>())
    else {
        return Outcome::Error((Status::InternalServerError, Error::Internal("no Db".into())));
    };
    let owned = match factors::factors(db, &session.doc.user).await {
        Ok(owned) => owned,
        Err(e) => return Outcome::Error((e.status(), e)),
    };
    let recent = is_recent(config, session, &owned, now_ms());
    match policy {
        Policy::AddFactor if !owned.any() && session.doc.is_admin() => {
            refuse(req, Status::Forbidden, OPERATOR_FIRST_FACTOR)
        }
        Policy::AddFactor if !owned.any() => Outcome::Success(ok(Enrolment::First)),
        Policy::FactorIfAny if !owned.any() => Outcome::Success(ok(Enrolment::More)),
        _ if recent => Outcome::Success(ok(Enrolment::More)),
        _ => {
            req.local_cache(|| StepUpWanted(true));
            Outcome::Error((Status::Unauthorized, Error::StepUpRequired))
        }
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

impl<U: Signed> Signed for SteppedUp<U> {
    fn session(&self) -> &Session {
        self.0.session()
    }
}

/// `FromRequest` for `$wrapper<U>`: the caller `U`, admitted by `$policy`, wrapped by `$wrap`.
macro_rules! policy_guard {
    ($wrapper:ident, $policy:expr, $wrap:expr) => {
        #[rocket::async_trait]
        impl<'r, U> FromRequest<'r> for $wrapper<U>
        where
            U: FromRequest<'r, Error = Error> + Signed + Send,
        {
            type Error = Error;

            async fn from_request(req: &'r Request<'_>) -> request::Outcome<Self, Error> {
                guarded(req, $policy, $wrap).await
            }
        }
    };
}

async fn guarded<'r, U, T>(
    req: &'r Request<'_>,
    policy: Policy,
    wrap: impl FnOnce(U, Enrolment) -> T,
) -> request::Outcome<T, Error>
where
    U: FromRequest<'r, Error = Error> + Signed,
{
    let user = rocket::outcome::try_outcome!(U::from_request(req).await);
    let session = user.session().clone();
    check(req, &session, policy, |enrolment| wrap(user, enrolment)).await
}

/// A caller (`ApiUser` or `CurrentUser`) who authenticated recently enough for a sensitive
/// action.
#[derive(Debug, Clone)]
pub struct SteppedUp<U>(pub U);

policy_guard!(SteppedUp, Policy::Recent, |user, _| SteppedUp(user));

/// A caller who may add a second factor: a customer's first one with the code e-mailed to them
/// ([`Enrolment::First`]), any later one after a step-up.
#[derive(Debug, Clone)]
pub struct FactorAdder<U>(pub U, pub Enrolment);

policy_guard!(FactorAdder, Policy::AddFactor, FactorAdder);

/// A caller for an action that takes the password in its own request (changing it): a recent
/// second factor as well, where the account has one.
#[derive(Debug, Clone)]
pub struct SecondFactorIfAny<U>(pub U);

policy_guard!(SecondFactorIfAny, Policy::FactorIfAny, |user, _| SecondFactorIfAny(user));
