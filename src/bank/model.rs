//! Accounts and transactions as stored and as the API shows them (amounts in [`Cents`]).

use serde::{Deserialize, Serialize};

use crate::money::Cents;

/// Opening balance of every account: $100,000.00.
pub const OPENING_BALANCE: Cents = Cents(10_000_000);

/// A checking account, stored as JSON at `<prefix>{acct:<number>}:account`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Account {
    pub number: String,
    pub username: String,
    pub holder: String,
    pub city: String,
    /// Closed by its holder: the ledger is kept under a pseudonym; transfers to it are refused.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub closed: bool,
}

/// One card transaction, as stored in RedisJSON and returned by the API (the seed's fields plus
/// `accountId` and the numeric `date` the index sorts on).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Transaction {
    pub id: u64,
    pub account_id: String,
    pub from_account: String,
    pub from_account_name: String,
    pub to_account: String,
    pub to_account_name: String,
    pub amount: Cents,
    pub description: String,
    /// RFC 3339 UTC with milliseconds (sorts as text).
    pub transaction_date: String,
    /// Same instant in ms since the epoch (indexed NUMERIC SORTABLE).
    pub date: i64,
    pub transaction_type: String,
    pub balance_after: Cents,
}

/// A merchant or payer from `vendors.json`.
#[derive(Debug, Clone, Deserialize)]
pub struct Vendor {
    pub name: String,
    pub description: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub min_cents: i64,
    pub max_cents: i64,
    pub weight: u32,
}

/// Transaction types that bring money in; everything else is spending.
pub const CREDIT_TYPES: [&str; 3] = ["salary", "refund", "transfer in"];

impl Vendor {
    pub fn is_credit(&self) -> bool {
        CREDIT_TYPES.contains(&self.kind.as_str())
    }
}

/// A point of the balance chart: `x` ms since epoch, `y` balance in dollars.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BalancePoint {
    pub x: i64,
    pub y: Cents,
}

/// The biggest-spenders donut: vendor names and dollars spent, descending.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Spenders {
    pub labels: Vec<String>,
    pub series: Vec<Cents>,
}
