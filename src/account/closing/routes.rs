//! The API of a customer's own data: the export, and closing the account (with a payout of what
//! is left in it).

use rocket::http::Status;
use rocket::serde::json::Json;
use rocket::{State, delete, get};

use super::payout::{self, Closing};
use super::service::{self as closing, Export};
use crate::auth::context::AuthApp;
use crate::auth::guard::ApiUser;
use crate::auth::step_up::SteppedUp;
use crate::error::{ApiError, Result};
use crate::redis::Db;
use crate::transfer::routes::{TransferView, view};
use crate::web::Attachment;

/// A copy of everything redbank keeps about the caller (GDPR Art. 15 and 20), to save: the
/// profile, the account, sessions, remembered devices, factors (names and dates, never a
/// secret), the security activity, every stored transaction and every transfer the caller
/// started. After a recent step-up: it is the whole account in one answer.
#[utoipa::path(
    tag = "account",
    responses((status = 200, description = "The caller's data, as an attachment (`Content-Disposition`)", body = Export))
)]
#[get("/api/v1/account/export")]
pub async fn account_export(
    user: SteppedUp<ApiUser>,
    db: &State<Db>,
) -> Result<Attachment<Json<Export>>> {
    let session = &user.0.session;
    let export = closing::export(db, session).await?;
    Ok(Attachment { filename: closing::export_filename(session), body: Json(export) })
}

/// Closes the caller's account (GDPR Art. 17), after a recent step-up. Only a customer's own
/// account closes (the demo's and the operators' come from the configuration). Money still in
/// it goes to the account `payout_to` names, as a transfer of the whole balance (the daily limit
/// does not apply; above the low-value exemption it waits for a passkey confirmation bound to it,
/// `POST /api/v1/transfers/{id}/confirm`, which then closes the account). Every session and
/// device ends; the sign-in details, the address, the factors and the security activity are
/// erased; the transactions are kept for `transaction_retention_days` under the name "Closed
/// account", and nothing can be paid in. A last e-mail says so.
#[utoipa::path(
    tag = "account",
    params(("payout_to" = Option<String>, Query, description = "The account (6-20 digits) that receives the balance", pattern = "^[0-9]{6,20}$")),
    responses(
        (status = 202, description = "The payout waits for its passkey confirmation (`closes_account`); the account closes with it", body = TransferView),
        (status = 204, description = "Closed (after the payout, if there was money in it): this session has ended too"),
        (status = 403, description = "The demo's or an operator's account, which does not close here; or a payout above the exemption without a passkey", body = ApiError),
        (status = 409, description = "Money in the account and no `payout_to`, or a transfer still on its way", body = ApiError),
        (status = 422, description = "`payout_to` is no open account, or the caller's own", body = ApiError),
    )
)]
#[delete("/api/v1/account?<payout_to>")]
pub async fn account_close(
    payout_to: Option<&str>,
    user: SteppedUp<ApiUser>,
    app: AuthApp<'_>,
) -> Result<Closed> {
    let AuthApp { db, config, client, .. } = app;
    match payout::close_paying_out(db, config, (&user.0.session, &client), payout_to).await? {
        Closing::Closed => Ok(Closed::Done(Status::NoContent)),
        Closing::Pending(t) => {
            Ok(Closed::Waiting((Status::Accepted, Json(Box::new(view(db, &t).await?)))))
        }
    }
}

/// What closing answers: 204, or 202 with the payout to confirm.
#[derive(rocket::Responder)]
pub enum Closed {
    Done(Status),
    Waiting((Status, Json<Box<TransferView>>)),
}
