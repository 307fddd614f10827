//! A transfer between two customers' accounts, as stored (JSON on the sender's slot) and shown.

use serde::{Deserialize, Serialize};

use crate::bank::model::Cents;
use crate::error::{Error, Result};

/// Longest reference, in characters.
pub const MAX_REFERENCE_CHARS: usize = 140;
/// A transfer waiting for its confirmation expires after this.
pub const PENDING_SECS: i64 = 300;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Waiting for the sender's strong confirmation.
    ConfirmationRequired,
    /// Confirmed (or exempt) and being carried out: no confirmation can start it again.
    Executing,
    /// The sender was debited; the payee's credit is owed (the recovery task completes it).
    Debited,
    Completed,
    /// Refused when carried out (the balance or the daily limit no longer allowed it).
    Failed,
}

/// How a transfer was confirmed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Confirmation {
    /// Low value: the PSD2 exemption applied.
    Exempt,
    Passkey,
    Totp,
}

/// A transfer document (`transfer:{acct:<from>}:<id>`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transfer {
    pub id: String,
    pub status: Status,
    /// The sender's username and account.
    pub user: String,
    pub from_account: String,
    pub from_name: String,
    pub to_account: String,
    pub payee_name: String,
    pub amount: Cents,
    pub currency: String,
    pub reference: String,
    /// ms since epoch.
    pub created_at: i64,
    pub expires_at: i64,
    #[serde(default)]
    pub confirmed_by: Option<Confirmation>,
    #[serde(default)]
    pub completed_at: Option<i64>,
    /// Why a transfer failed, for the sender.
    #[serde(default)]
    pub failure: Option<String>,
    /// The sender's and the payee's transaction ids.
    #[serde(default)]
    pub debit_tx: Option<u64>,
    #[serde(default)]
    pub credit_tx: Option<u64>,
}

impl Transfer {
    /// What a confirmation is bound to (PSD2 dynamic linking): the transfer, the exact amount,
    /// the currency and the payee. A confirmation given for one of these is no confirmation for
    /// any other.
    pub fn binding(&self) -> String {
        format!("{}|{}|{}|{}", self.id, self.amount.0, self.currency, self.to_account)
    }
}

/// An amount as a customer types or a client sends it: a positive decimal with at most two
/// decimals (`42`, `42.5`, `42.50`), as a JSON number or string.
pub fn parse_amount(raw: &serde_json::Value) -> Result<Cents> {
    let text = match raw {
        serde_json::Value::Number(n) => n.to_string(),
        serde_json::Value::String(s) => s.trim().to_owned(),
        _ => return Err(invalid_amount()),
    };
    let (whole, fraction) = text.split_once('.').unwrap_or((&text, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty()
        || whole.len() > 12
        || !digits(whole)
        || fraction.len() > 2
        || !digits(fraction)
    {
        return Err(invalid_amount());
    }
    let whole: i64 = whole.parse().map_err(|_| invalid_amount())?;
    let cents: i64 = format!("{fraction:0<2}").parse().map_err(|_| invalid_amount())?;
    let total = whole * 100 + cents;
    if total <= 0 {
        return Err(invalid_amount());
    }
    Ok(Cents(total))
}

fn invalid_amount() -> Error {
    Error::Invalid {
        field: "amount",
        message: "The amount must be more than 0 with at most two decimals, e.g. 42.50.".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn amounts_are_positive_with_two_decimals_at_most() {
        for (raw, cents) in [
            (json!(42), 4200),
            (json!(42.5), 4250),
            (json!("42.50"), 4250),
            (json!("0.01"), 1),
            (json!(" 7.1 "), 710),
        ] {
            assert_eq!(parse_amount(&raw).ok(), Some(Cents(cents)), "{raw}");
        }
        for raw in [
            json!(0),
            json!(-1),
            json!(42.123),
            json!("1e3"),
            json!("4,2"),
            json!(""),
            json!(null),
            json!("9999999999999.00"),
            json!("-0.5"),
            json!(".5"),
        ] {
            assert!(parse_amount(&raw).is_err(), "{raw}");
        }
    }
}
