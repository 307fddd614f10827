//! A transfer between two customers' accounts, as stored (JSON on the sender's slot) and shown.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::money::Cents;

/// Whether `c` may appear in text another person reads (a payment reference): letters, marks,
/// numbers, punctuation, symbols and the ordinary space — an allow-list, so every invisible,
/// line-breaking or reordering character is out, including the ones no deny-list names
/// (docs/SECURITY.md G.39). Default-ignorable code points are out even where their category is
/// allowed (U+3164 HANGUL FILLER is a letter that renders as nothing), except the variation
/// selectors that choose an emoji's presentation.
pub fn readable_char(c: char) -> bool {
    use unicode_general_category::GeneralCategory::*;
    if c == ' ' {
        return true;
    }
    let category = unicode_general_category::get_general_category(c);
    let allowed = matches!(
        category,
        UppercaseLetter
            | LowercaseLetter
            | TitlecaseLetter
            | ModifierLetter
            | OtherLetter
            | NonspacingMark
            | SpacingMark
            | EnclosingMark
            | DecimalNumber
            | LetterNumber
            | OtherNumber
            | ConnectorPunctuation
            | DashPunctuation
            | OpenPunctuation
            | ClosePunctuation
            | InitialPunctuation
            | FinalPunctuation
            | OtherPunctuation
            | MathSymbol
            | CurrencySymbol
            | ModifierSymbol
            | OtherSymbol
    );
    // Unicode's Default_Ignorable_Code_Point outside the categories refused above, but for
    // U+FE00..U+FE0F (emoji presentation).
    let ignorable = matches!(
        c,
        '\u{034F}'
            | '\u{115F}'..='\u{1160}'
            | '\u{17B4}'..='\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{3164}'
            | '\u{FFA0}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0100}'..='\u{E01EF}'
    );
    allowed && !ignorable
}

/// Longest reference, in characters.
pub const MAX_REFERENCE_CHARS: usize = 140;
/// A transfer waiting for its confirmation expires after this.
pub const PENDING_SECS: i64 = 300;
/// A transfer that never got its confirmation is kept this long past its expiry (so "expired"
/// can still be told apart from "unknown"), then forgotten.
pub const PENDING_MARGIN_SECS: i64 = 600;

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
    /// The sender's and the payee's transaction ids (for a `failed` transfer whose money came back
    /// from a closed account, `credit_tx` is the sender's return).
    #[serde(default)]
    pub debit_tx: Option<u64>,
    #[serde(default)]
    pub credit_tx: Option<u64>,
    /// A closing's payout (`super::payout`): the whole balance, not held to the daily limit, and
    /// the sender's account closes once it is carried out.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub closes_account: bool,
}

impl Transfer {
    /// Whether it waited for its confirmation past its expiry: it can no longer be confirmed
    /// (and is forgotten soon after).
    pub fn expired(&self) -> bool {
        self.status == Status::ConfirmationRequired && crate::clock::now_ms() > self.expires_at
    }

    /// What a confirmation is bound to (PSD2 dynamic linking): the transfer, the exact amount,
    /// the currency and the payee, and whether it closes the account. A confirmation given for
    /// one of these is no confirmation for any other.
    pub fn binding(&self) -> String {
        let binding =
            format!("{}|{}|{}|{}", self.id, self.amount.0, self.currency, self.to_account);
        if self.closes_account { binding + "|close" } else { binding }
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
            // The longest whole part accepted: 12 digits.
            (json!("999999999999"), 99_999_999_999_900),
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

#[cfg(test)]
mod reference_tests {
    use super::readable_char;

    #[test]
    fn references_allow_what_people_write_and_nothing_unseen() {
        let fine = "Café 🍕 – № 5, (rent) ½ ¥100 \"ok\" 日本 عربى naïve ❤\u{FE0F} e\u{301}";
        assert!(fine.chars().all(readable_char), "{:?}", fine.chars().find(|c| !readable_char(*c)));
        for c in [
            '\n',
            '\t',
            '\u{0}',
            '\u{7F}',
            '\u{2028}',
            '\u{2029}',
            '\u{061C}',
            '\u{E0041}',
            '\u{00AD}',
            '\u{3164}',
            '\u{00A0}',
            '\u{200B}',
            '\u{202E}',
            '\u{2066}',
            '\u{FEFF}',
            '\u{FFA0}',
            '\u{115F}',
            '\u{E000}',
            '\u{3000}',
        ] {
            assert!(!readable_char(c), "U+{:04X} accepted", c as u32);
        }
    }
}
