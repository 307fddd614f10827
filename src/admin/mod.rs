//! The operator console: every live session across users (RediSearch: by user, kind, address and
//! age; paginated), revoking one or all of a user's, recent failed sign-ins by account and by
//! address, and the live counts — as `/admin` and as JSON under `/api/v1/admin/*`.
//!
//! Only for users with the `admin` role, in a session signed in with two factors (AAL2): an
//! operator without a second factor is sent to set one up. Every action is written to the
//! affected user's security activity and to the operator audit stream.

pub mod cli;
pub mod routes;
pub mod store;

use rocket::http::Status;
use rocket::outcome::Outcome;
use rocket::request::{self, FromRequest, Request};
use rocket::routes;

use crate::auth::factors::store as factors;
use crate::auth::model::Session;
use crate::auth::step_up::{OPERATOR_FIRST_FACTOR, Signed, SteppedUp};
use crate::error::{Error, StepUpWanted, refuse};
use crate::redis::Db;

pub fn stage() -> rocket::fairing::AdHoc {
    rocket::fairing::AdHoc::on_ignite("Operator console", |rocket| async {
        rocket.mount(
            "/",
            routes![
                routes::api_sessions,
                routes::api_revoke,
                routes::api_revoke_user,
                routes::api_reset_factors,
                routes::reset_factors_form,
                routes::api_failed_sign_ins,
                routes::api_stats,
                routes::page,
                routes::revoke_form,
                routes::revoke_user_form,
            ],
        )
    })
}

/// An operator: a caller (`ApiUser` or `CurrentUser`) with the `admin` role in a session at
/// AAL2. Anyone else with a session gets 403; an operator at AAL1 gets the step-up challenge
/// (their next sign-in or step-up with their second factor reaches AAL2).
#[derive(Debug, Clone)]
pub struct Admin<U>(pub U);

impl<U: Signed> Signed for Admin<U> {
    fn session(&self) -> &Session {
        self.0.session()
    }
}

/// An operator whose two-factor authentication is recent (`step_up_max_age_secs`): what the
/// destructive console actions take (resetting a customer's factors, ending all their
/// sessions), as removing one's own factor does. The role is checked first, so a customer
/// is refused (403) rather than asked to step up.
pub type FreshAdmin<U> = SteppedUp<Admin<U>>;

#[rocket::async_trait]
impl<'r, U> FromRequest<'r> for Admin<U>
where
    U: FromRequest<'r, Error = Error> + Signed + Send,
{
    type Error = Error;

    async fn from_request(req: &'r Request<'_>) -> request::Outcome<Self, Error> {
        let user = rocket::outcome::try_outcome!(U::from_request(req).await);
        let session = user.session();
        if !session.doc.is_admin() {
            return refuse(req, Status::Forbidden, "This is for operators only.");
        }
        if session.doc.assurance.aal >= 2 {
            return Outcome::Success(Admin(user));
        }
        let Some(db) = req.rocket().state::<Db>() else {
            return Outcome::Error((Status::InternalServerError, Error::Internal("no Db".into())));
        };
        match factors::factors(db, &session.doc.user).await {
            Ok(owned) if owned.any() => {
                req.local_cache(|| StepUpWanted(true));
                Outcome::Error((Status::Unauthorized, Error::StepUpRequired))
            }
            Ok(_) => refuse(req, Status::Forbidden, OPERATOR_FIRST_FACTOR),
            Err(e) => Outcome::Error((e.status(), e)),
        }
    }
}
