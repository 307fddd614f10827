//! Closing an account that still holds money: the whole balance goes to an account the customer
//! names, and the account closes once that is carried out.
//!
//! The payout is a transfer like any other — the payee must exist and be open, the low-value
//! exemption or a passkey bound to its exact amount and payee (and to the closing) confirms it,
//! and the two-step ledger carries it out — with one difference: it is the whole balance,
//! whatever the daily limit (a closing already needs a recent step-up). A small payout is made
//! and the account closed in the same request; a larger one waits for its passkey confirmation
//! (`transfer::service::confirm`), which then closes the account through
//! [`closing::close_after_payout`], handed to transfers as their `ClosesAccount`.
//!
//! Money that arrives between the payout and the closing keeps the account open: the closing is
//! refused with the new balance, and the customer closes again to pay that out too.

use super::service as closing;
use crate::audit::ClientInfo;
use crate::auth::model::Session;
use crate::bank::store as bank;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::redis::Db;
use crate::transfer::model::{Status, Transfer};
use crate::transfer::service::{self, Request};

/// What the payee's statement reads.
pub const REFERENCE: &str = "Account closing";

/// Where a closing stands.
#[derive(Debug)]
pub enum Closing {
    /// Closed (after the payout that emptied it, if there was money in it).
    Closed,
    /// The payout waits for its passkey confirmation; the account closes with it.
    Pending(Box<Transfer>),
}

/// Closes the signed-in customer's account, paying its balance out to `payout_to` first.
/// Without `payout_to`, an account with money in it is refused (409), as by
/// [`closing::close`].
pub async fn close_paying_out(
    db: &Db,
    config: &Config,
    (session, client): (&Session, &ClientInfo),
    payout_to: Option<&str>,
) -> Result<Closing> {
    // The account must close here before any money leaves for a closing.
    let user = closing::closing_user(db, session).await?;
    let balance = bank::balance(db, &session.doc.account).await?;
    let payout_to = payout_to.map(str::trim).filter(|to| !to.is_empty());
    let Some(to_account) = payout_to.filter(|_| balance.0 > 0) else {
        closing::close_as(db, config, &user, session, client).await?;
        return Ok(Closing::Closed);
    };
    let req = Request {
        to_account: to_account.to_owned(),
        amount: balance,
        reference: REFERENCE.into(),
        closes_account: true,
    };
    let t = match service::create_with_id(db, config, session, &req, service::new_id()).await {
        // The request's field is `payout_to`, not a transfer's `to_account`.
        Err(Error::Invalid { field: "to_account", message }) => {
            return Err(Error::Invalid { field: "payout_to", message });
        }
        other => other?,
    };
    if t.status == Status::ConfirmationRequired {
        return Ok(Closing::Pending(Box::new(t)));
    }
    closing::close_after_payout(db, config, (session, client), &t).await?;
    Ok(Closing::Closed)
}
