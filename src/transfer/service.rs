//! Transfers for both the API and the pages: the rules, the PSD2 low-value exemption, the strong
//! confirmation bound to the exact transfer (dynamic linking), idempotency, and carrying it out
//! through the two-step ledger.
//!
//! **Dynamic linking.** A passkey confirmation answers a ceremony started for one pending transfer
//! and stored with that transfer's binding (id, amount in cents, currency, payee account); the
//! binding is compared with the transfer at confirmation, and the ceremony is taken once. The
//! challenge itself stays random: `webauthn-rs` chooses it, and deriving it from the transfer would
//! mean leaving the library's safe API — the binding is server-side, which PSD2 accepts when the
//! authentication code is specific to the transaction and single-use. A TOTP code cannot be bound
//! to anything (it depends only on the time), so it never confirms a transfer outside the
//! low-value exemption: only a passkey does (a code is refused with 403, saying why).

use rand::RngCore;
use rand::rngs::OsRng;
use redis::Script;
use serde::{Deserialize, Serialize};

use super::ClosesAccount;
use super::ledger::{self, CreditOwed, Refusal};
use super::model::{
    Confirmation, MAX_REFERENCE_CHARS, PENDING_MARGIN_SECS, PENDING_SECS, Status, Transfer,
};
use crate::audit::ClientInfo;
use crate::auth::factors::passkey::{self, Purpose, RelyingParty};
use crate::auth::factors::store as factors;
use crate::auth::model::Session;
use crate::auth::throttle::per_minute;
use crate::bank::model::Account;
use crate::bank::store as bank;
use crate::clock::now_ms;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::money::Cents;
use crate::redis::Db;
use crate::redis::doc::{PutJson, to_json};
use crate::redis::lua::lua;

/// What the sender asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub to_account: String,
    pub amount: Cents,
    pub reference: String,
    /// A closing's payout (never from a client's body: only `account::closing::payout` sets it).
    #[serde(skip)]
    pub closes_account: bool,
}

pub(super) fn invalid(field: &'static str, message: impl Into<String>) -> Error {
    Error::Invalid { field, message: message.into() }
}

/// Checks what the request's form says: the payee's number is one and not the sender's own, the
/// reference fits.
fn check_form(session: &Session, req: &Request) -> Result<()> {
    let valid_number = (6..=20).contains(&req.to_account.len())
        && req.to_account.bytes().all(|b| b.is_ascii_digit());
    if !valid_number {
        return Err(invalid("to_account", "The payee's account number is 6 to 20 digits."));
    }
    if req.to_account == session.doc.account {
        return Err(invalid("to_account", "You cannot send money to your own account."));
    }
    if req.reference.chars().count() > MAX_REFERENCE_CHARS {
        return Err(invalid(
            "reference",
            format!("The reference has at most {MAX_REFERENCE_CHARS} characters."),
        ));
    }
    // The reference is shown on the payee's statement: only characters people can see.
    if !req.reference.chars().all(super::model::readable_char) {
        return Err(invalid(
            "reference",
            "The reference can hold letters, numbers, punctuation, symbols and spaces only (no \
             line breaks or invisible characters).",
        ));
    }
    Ok(())
}

/// Checks the amount against the balance and what was sent today (both checked again,
/// atomically, at the debit). A closing's payout is the whole balance, whatever the daily limit:
/// it needs a recent step-up, and above the exemption a passkey bound to it.
fn check_amount(config: &Config, req: &Request, balance: Cents, sent: Cents) -> Result<()> {
    let amount = req.amount;
    if amount > balance {
        return Err(invalid(
            "amount",
            format!("The amount is more than your balance ({balance})."),
        ));
    }
    if !req.closes_account && sent.0 + amount.0 > config.transfer.daily_transfer_limit.0 {
        let left = Cents((config.transfer.daily_transfer_limit.0 - sent.0).max(0));
        return Err(invalid(
            "amount",
            format!(
                "The amount is over your daily limit ({} a day; {left} left today).",
                config.transfer.daily_transfer_limit
            ),
        ));
    }
    Ok(())
}

async fn take_exemption(db: &Db, config: &Config, user: &str, amount: Cents) -> Result<bool> {
    if amount > config.transfer.exempt_amount {
        return Ok(false);
    }
    let key = db.keys.sca_tally(user);
    let taken: i64 = db
        .run(async |c| {
            lua!("transfer/lua/take_exemption")
                .key(&key)
                .arg(amount.0)
                .arg(config.transfer.exempt_count)
                .arg(config.transfer.exempt_total.0)
                .invoke_async(c)
                .await
        })
        .await?;
    Ok(taken == 1)
}

/// A strong confirmation starts the exemption count again.
async fn reset_exemption(db: &Db, user: &str) -> Result<()> {
    let key = db.keys.sca_tally(user);
    db.query::<()>(redis::cmd("DEL").arg(&key)).await
}

pub fn new_id() -> String {
    let mut bytes = [0u8; 16];
    OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// How long a transfer document is kept: one waiting for its confirmation until its expiry and a
/// margin, any other (a receipt) as long as transactions.
fn kept_secs(config: &Config, status: Status) -> u64 {
    if status == Status::ConfirmationRequired {
        (PENDING_SECS + PENDING_MARGIN_SECS).unsigned_abs()
    } else {
        config.bank.transaction_retention_days * 86_400
    }
}

/// Stores a transfer waiting for its confirmation, counted against `max_pending_transfers`
/// (one script on the sender's slot).
async fn save_pending(db: &Db, config: &Config, t: &Transfer) -> Result<()> {
    let (queue, key) =
        (db.keys.pending_transfers(&t.from_account), db.keys.transfer(&t.from_account, &t.id));
    let doc = to_json(t)?;
    let stored: i64 = db
        .run(async |c| {
            lua!("transfer/lua/save_pending")
                .key(&queue)
                .key(&key)
                .key(db.keys.transfers_of(&t.from_account))
                .arg(t.created_at)
                .arg(config.transfer.max_pending_transfers)
                .arg(t.expires_at)
                .arg(&t.id)
                .arg(&doc)
                .arg(kept_secs(config, t.status) * 1000)
                .arg(t.created_at - kept_secs(config, Status::Completed) as i64 * 1000)
                .arg(kept_secs(config, Status::Completed) * 1000)
                .invoke_async(c)
                .await
        })
        .await?;
    if stored == 0 {
        return Err(Error::Conflict(format!(
            "You already have {} transfers waiting for your confirmation. Confirm one, or let it \
             expire ({} minutes after you started it), before you start another.",
            config.transfer.max_pending_transfers,
            PENDING_SECS / 60
        )));
    }
    Ok(())
}

/// Stores the transfer document (kept as long as its status asks) and names it in the sender's
/// transfers, whose entries older than a receipt is kept go at the same time.
async fn save(db: &Db, config: &Config, t: &Transfer) -> Result<()> {
    let (key, index) =
        (db.keys.transfer(&t.from_account, &t.id), db.keys.transfers_of(&t.from_account));
    let doc = to_json(t)?;
    let kept_ms = kept_secs(config, t.status) as i64 * 1000;
    let oldest = t.created_at - kept_secs(config, Status::Completed) as i64 * 1000;
    db.query::<()>(
        redis::pipe()
            .atomic()
            .put_json(&key, &doc, kept_ms)
            .cmd("ZADD")
            .arg(&index)
            .arg(t.created_at)
            .arg(&t.id)
            .ignore()
            .cmd("ZREMRANGEBYSCORE")
            .arg(&index)
            .arg("-inf")
            .arg(format!("({oldest}"))
            .ignore()
            .cmd("PEXPIRE")
            .arg(&index)
            .arg(kept_secs(config, Status::Completed) * 1000)
            .ignore(),
    )
    .await
}

/// The accounts the customer of `account` sent money to most recently (five at most, newest
/// first), as the transfer form offers them.
pub async fn recent_payees(db: &Db, account: &str) -> Result<Vec<Account>> {
    let key = db.keys.payees(account);
    let recent: Vec<String> = db.query(redis::cmd("ZREVRANGE").arg(&key).arg(0).arg(4)).await?;
    bank::get_accounts(db, &recent).await
}

/// The sender's transfer `id` (None: no such transfer of this account).
pub async fn load(db: &Db, account: &str, id: &str) -> Result<Option<Transfer>> {
    if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(None);
    }
    let key = db.keys.transfer(account, id);
    let raw: Option<String> = db.query(redis::cmd("JSON.GET").arg(&key)).await?;
    raw.map(|raw| serde_json::from_str(&raw).map_err(|e| Error::Internal(format!("{key}: {e}"))))
        .transpose()
}

/// Transfers a user may start per minute: enough for anyone, too few to walk the account numbers
/// (an unknown number is a 422, a known one shows its holder's name).
pub const STARTS_PER_MINUTE: i64 = 30;

/// Creates transfer `id`: carried out at once when exempt, otherwise pending its confirmation.
pub async fn create_with_id(
    db: &Db,
    config: &Config,
    session: &Session,
    req: &Request,
    id: String,
) -> Result<Transfer> {
    let from = &session.doc.account;
    let now = now_ms();
    let throttle = db.keys.throttle_transfers(&session.doc.user);
    let counted = per_minute(db, &throttle, STARTS_PER_MINUTE);
    // Everything the rules read, together with the count (one round trip); nothing is read for a
    // request whose form breaks a rule.
    let read = async {
        check_form(session, req)?;
        tokio::try_join!(
            bank::get_account(db, &req.to_account),
            bank::balance(db, from),
            ledger::sent_today(db, from, now),
            factors::factors(db, &session.doc.user),
        )
    };
    let (counted, read) = tokio::join!(counted, read);
    counted?;
    let (payee, balance, sent, owned) = read?;
    let Some(payee) = payee else {
        return Err(invalid("to_account", "There is no account with this number."));
    };
    if payee.closed {
        return Err(invalid("to_account", "This account is closed."));
    }
    check_amount(config, req, balance, sent)?;
    let exempt = take_exemption(db, config, &session.doc.user, req.amount).await?;
    if !exempt && owned.passkeys == 0 {
        return Err(Error::Forbidden(format!(
            "Transfers over {} (or more than {} small ones in a row) are confirmed with a \
             passkey. {WHY_PASSKEY} Add a passkey under Security.",
            config.transfer.exempt_amount, config.transfer.exempt_count
        )));
    }
    let mut t = Transfer {
        id,
        status: if exempt { Status::Executing } else { Status::ConfirmationRequired },
        user: session.doc.user.clone(),
        from_account: from.clone(),
        from_name: session.doc.display_name.clone(),
        to_account: req.to_account.clone(),
        payee_name: payee.holder,
        amount: req.amount,
        currency: "USD".into(),
        reference: req.reference.trim().to_owned(),
        created_at: now,
        expires_at: now + PENDING_SECS * 1000,
        confirmed_by: exempt.then_some(Confirmation::Exempt),
        completed_at: None,
        failure: None,
        debit_tx: None,
        credit_tx: None,
        closes_account: req.closes_account,
    };
    if !exempt {
        save_pending(db, config, &t).await?;
        return Ok(t);
    }
    save(db, config, &t).await?;
    executing(db, &t).await?;
    if let Err(e) = execute(db, config, &mut t).await {
        if t.status == Status::Failed {
            give_back_exemption(db, &t.user, t.amount).await?;
        }
        return Err(e);
    }
    Ok(t)
}

/// Notes an `executing` transfer where the recovery task finds it should this process stop
/// before its debit (the debit script removes it).
async fn executing(db: &Db, t: &Transfer) -> Result<()> {
    let key = db.keys.executing(&t.from_account);
    db.query::<()>(redis::cmd("ZADD").arg(&key).arg(now_ms()).arg(&t.id)).await
}

/// An exempt transfer whose debit was refused does not count against the exemption.
async fn give_back_exemption(db: &Db, user: &str, amount: Cents) -> Result<()> {
    let key = db.keys.sca_tally(user);
    db.run(async |c| {
        Script::new(
            "if redis.call('EXISTS', KEYS[1]) == 1 then \
             redis.call('HINCRBY', KEYS[1], 'count', -1) \
             redis.call('HINCRBY', KEYS[1], 'cents', -tonumber(ARGV[1])) end return 1",
        )
        .key(&key)
        .arg(amount.0)
        .invoke_async::<_, i64>(c)
        .await
    })
    .await?;
    Ok(())
}

/// Why a payment needs a passkey, in the customer's words (PSD2 RTS Art. 5, dynamic linking).
pub const WHY_PASSKEY: &str = "A passkey signs this transfer's amount and payee, so a \
     confirmation cannot be reused for another; a code from an authenticator app is not tied to \
     them.";

/// What confirms a pending transfer: a passkey (`passkey`), and only that.
pub const CONFIRMED_WITH: [&str; 1] = ["passkey"];

/// Confirms the sender's pending transfer `id` with a passkey's assertion for its options, and
/// carries it out; a closing's payout then closes the account through `closes`.
pub async fn confirm(
    db: &Db,
    config: &Config,
    rp: &RelyingParty,
    (session, client): (&Session, &ClientInfo),
    id: &str,
    answer: &serde_json::Value,
    closes: &ClosesAccount,
) -> Result<Transfer> {
    // Together (one round trip less): the transfer must be waiting — that answer comes first —
    // and the assertion must verify. A ceremony taken for a transfer that is not waiting is
    // spent all the same: it was single-use either way.
    let (t, verified) =
        tokio::join!(pending(db, session, id), passkey::finish_authentication(db, rp, answer));
    let (mut t, verified) = (t?, verified?);
    // The payee may have closed their account since the transfer was made.
    if bank::get_account(db, &t.to_account).await?.is_none_or(|payee| payee.closed) {
        return Err(invalid("to_account", "The payee's account is closed: nothing was sent."));
    }
    let expected = Purpose::Transfer { user: t.user.clone(), binding: t.binding() };
    if verified.purpose != expected || verified.user != t.user {
        return Err(Error::InvalidCode);
    }
    let method = Confirmation::Passkey;
    let key = db.keys.transfer(&t.from_account, &t.id);
    let queue = db.keys.executing(&t.from_account);
    let pending = db.keys.pending_transfers(&t.from_account);
    let how = to_json(&method)?;
    let receipt = kept_secs(config, Status::Executing);
    let claim = db.run(async |c| {
        lua!("transfer/lua/claim")
            .key(&key)
            .key(&queue)
            .key(&pending)
            .arg(now_ms())
            .arg(&how)
            .arg(&t.id)
            .arg(receipt)
            .invoke_async::<_, i64>(c)
            .await
    });
    // The passkey answered: the exemption count starts again whatever becomes of the claim.
    let (claimed, reset) = tokio::join!(claim, reset_exemption(db, &t.user));
    reset?;
    match claimed? {
        1 => {}
        -1 => return Err(Error::Gone("This transfer expired. Please start again.".into())),
        -2 => return Err(Error::NotFound),
        _ => return Err(Error::Conflict("This transfer was already confirmed.".into())),
    }
    t.status = Status::Executing;
    t.confirmed_by = Some(method);
    execute(db, config, &mut t).await?;
    if t.closes_account {
        (closes.0)(db, config, (session, client), &t).await?;
    }
    Ok(t)
}

/// The sender's transfer `id`, still waiting for its confirmation (404, 409, 410 otherwise).
pub async fn pending(db: &Db, session: &Session, id: &str) -> Result<Transfer> {
    let t = load(db, &session.doc.account, id).await?;
    let t = t.filter(|t| t.user == session.doc.user).ok_or(Error::NotFound)?;
    if t.status != Status::ConfirmationRequired {
        return Err(Error::Conflict("This transfer is not waiting for a confirmation.".into()));
    }
    if t.expired() {
        return Err(Error::Gone("This transfer expired. Please start again.".into()));
    }
    Ok(t)
}

/// The passkey options for confirming pending transfer `id`: a ceremony bound to it.
pub async fn passkey_options(
    db: &Db,
    rp: &RelyingParty,
    session: &Session,
    client: &ClientInfo,
    id: &str,
) -> Result<serde_json::Value> {
    let t = pending(db, session, id).await?;
    let purpose = Purpose::Transfer { user: t.user.clone(), binding: t.binding() };
    passkey::start_authentication(db, rp, purpose, &client.ip).await
}

/// The account's transfers left `executing` since before `before_ms`.
pub async fn executing_before(db: &Db, account: &str, before_ms: i64) -> Result<Vec<String>> {
    let key = db.keys.executing(account);
    db.query(redis::cmd("ZRANGEBYSCORE").arg(&key).arg("-inf").arg(before_ms)).await
}

/// Carries out transfer `id` of `account` if it is still `executing` (for the recovery task);
/// true when it was.
pub async fn resume(db: &Db, config: &Config, account: &str, id: &str) -> Result<bool> {
    let queue = db.keys.executing(account);
    let forget = async || db.query::<()>(redis::cmd("ZREM").arg(&queue).arg(id)).await;
    let Some(mut t) = load(db, account, id).await? else {
        forget().await?;
        return Ok(false);
    };
    if t.status != Status::Executing {
        forget().await?;
        return Ok(false);
    }
    match execute(db, config, &mut t).await {
        Ok(()) => Ok(true),
        // Refused by the balance or the limit: the transfer is marked failed.
        Err(Error::Invalid { .. }) => Ok(true),
        Err(e) => Err(e),
    }
}

/// Carries out an `executing` transfer: debit, then credit (or, under the test fault, stop
/// between them). A refused debit marks it failed and says why.
async fn execute(db: &Db, config: &Config, t: &mut Transfer) -> Result<()> {
    match ledger::debit(db, config, t).await? {
        Ok(_) => t.status = Status::Debited,
        Err(refusal) => {
            let (field, message) = match refusal {
                Refusal::InsufficientFunds => ("amount", "The amount is more than your balance."),
                Refusal::DailyLimit => ("amount", "The amount is over your daily limit."),
            };
            t.status = Status::Failed;
            t.failure = Some(message.into());
            save(db, config, t).await?;
            let queue = db.keys.executing(&t.from_account);
            db.query::<()>(redis::cmd("ZREM").arg(&queue).arg(&t.id)).await?;
            return Err(invalid(field, message));
        }
    }
    if config.transfer.fault_after_debit() {
        return Err(Error::Unavailable(
            "fault_after_debit: stopped between debit and credit".into(),
        ));
    }
    if let Some(done) = ledger::credit(db, config, &CreditOwed::of(t)).await? {
        *t = done;
    }
    Ok(())
}
