//! The two-step ledger: no script touches two accounts, so a transfer works when the sender's and
//! the payee's keys live on different Redis Cluster shards.
//!
//! 1. **Debit**, one script on the sender's slot: the transfer must be `executing`; the daily
//!    limit and the balance are checked; the debit is recorded like any transaction (document,
//!    stream, recent list, chart, live event); a durable *credit owed* record is written; the
//!    transfer becomes `debited`.
//! 2. **Credit**, one script on the payee's slot, idempotent by transfer id (a marker with the
//!    transaction retention): the credit is recorded like any transaction — unless the payee's
//!    account closed since the debit: then the money goes back to the sender the same way (a
//!    credit on the sender's slot, idempotent by its own marker).
//! 3. **Finish**, one script on the sender's slot: the owed record goes, the transfer is
//!    `completed` (or `failed`, saying the payee's account closed).
//!
//! A crash between 1 and 2 leaves the owed record: the recovery task ([`super::recovery`]) runs 2
//! and 3 for every one it finds, and the marker makes a credit land exactly once however often it
//! is tried.

use std::sync::LazyLock;

use redis::Value;
use serde::{Deserialize, Serialize};

use super::model::Transfer;
use crate::bank::model::Transaction;
use crate::bank::store::{self as bank, RecordScript, Recorded};
use crate::clock::{now_ms, rfc3339_ms};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::money::Cents;
use crate::redis::Db;
use crate::redis::doc::to_json;
use crate::redis::lua::lua;

/// Attempts when the balance moved between read and write (the generator, other transfers of the
/// same account), each after a short random pause so racing writers spread out.
const ATTEMPTS: usize = 64;

async fn pause() {
    use rand::Rng;
    let micros = rand::thread_rng().gen_range(200..3000);
    tokio::time::sleep(std::time::Duration::from_micros(micros)).await;
}

static DEBIT: LazyLock<RecordScript> = LazyLock::new(|| {
    RecordScript::new(
        r#"
local status = redis.call('JSON.GET', KEYS[9], '$.status')
if not status then return redis.error_reply('GONE transfer') end
if status ~= '["executing"]' then return redis.error_reply('STATE ' .. status) end
local sent = tonumber(redis.call('GET', KEYS[10]) or '0')
if sent - tonumber(ARGV[3]) > tonumber(ARGV[17]) then return redis.error_reply('LIMIT daily') end
"#,
        r#"
redis.call('INCRBY', KEYS[10], -amount)
redis.call('EXPIRE', KEYS[10], 172800)
redis.call('HSET', KEYS[11], ARGV[18], ARGV[19])
redis.call('JSON.SET', KEYS[9], '$.status', '"debited"')
redis.call('JSON.SET', KEYS[9], '$.debit_tx', ARGV[20])
redis.call('ZADD', KEYS[12], ARGV[7], ARGV[21])
redis.call('ZREMRANGEBYRANK', KEYS[12], 0, -11)
redis.call('ZREM', KEYS[13], ARGV[18])
return {new, sid, msg}
"#,
    )
});

/// KEYS[9]: the credit's marker (it landed already: -1); KEYS[10]: the credited account's
/// document (closed: -2, nothing written).
static CREDIT: LazyLock<RecordScript> = LazyLock::new(|| {
    RecordScript::new(
        "if redis.call('EXISTS', KEYS[9]) == 1 then return {-1, ''} end\n\
         if redis.call('JSON.GET', KEYS[10], '$.closed') == '[true]' then return {-2, ''} end",
        "redis.call('SET', KEYS[9], '1', 'EX', ARGV[5])\nreturn {new, sid, msg}",
    )
});

/// What the reference of money sent back says.
const RETURNED: &str = "Returned: the payee's account is closed";

/// How a credit ended.
enum Landing {
    /// Recorded now, as this transaction id.
    Landed(u64),
    /// Its marker says it landed before.
    Already,
    /// The account closed: nothing was written.
    Closed,
}

/// What the payee is owed: everything the credit needs, written with the debit.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreditOwed {
    pub transfer: String,
    pub from_account: String,
    pub from_name: String,
    pub to_account: String,
    pub payee_name: String,
    pub amount: Cents,
    pub reference: String,
    pub debited_at: i64,
}

impl CreditOwed {
    /// What `t`'s payee is owed, as of now.
    pub fn of(t: &Transfer) -> Self {
        CreditOwed {
            transfer: t.id.clone(),
            from_account: t.from_account.clone(),
            from_name: t.from_name.clone(),
            to_account: t.to_account.clone(),
            payee_name: t.payee_name.clone(),
            amount: t.amount,
            reference: t.reference.clone(),
            debited_at: now_ms(),
        }
    }
}

/// One side of a transfer: whose account, the counterparty, and the signed amount.
struct Leg<'a> {
    account: &'a str,
    own_name: &'a str,
    other_account: &'a str,
    other_name: &'a str,
    amount: Cents,
    reference: &'a str,
}

impl Leg<'_> {
    /// The leg as a transaction of its account.
    fn transaction(&self, id: u64, balance: Cents, date: i64) -> Transaction {
        let own = (self.account, self.own_name);
        let other = (self.other_account, self.other_name);
        let (from, to) = if self.amount.0 < 0 { (own, other) } else { (other, own) };
        Transaction {
            id,
            account_id: self.account.to_owned(),
            from_account: from.0.to_owned(),
            // The row's "vendor" column: the counterparty, as the search finds it.
            from_account_name: self.other_name.to_owned(),
            to_account: to.0.to_owned(),
            to_account_name: to.1.to_owned(),
            amount: self.amount,
            description: if self.reference.is_empty() {
                let way = if self.amount.0 < 0 { "to" } else { "from" };
                format!("Transfer {way} {}", self.other_name)
            } else {
                self.reference.to_owned()
            },
            transaction_date: rfc3339_ms(date),
            date,
            transaction_type: "transfer".into(),
            balance_after: Cents(balance.0 + self.amount.0),
        }
    }
}

/// Why a debit was refused, for the sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    InsufficientFunds,
    DailyLimit,
}

/// Step 1: debits the sender (the transfer must be `executing`). `Ok(Err(_))`: refused, nothing
/// written.
pub async fn debit(db: &Db, config: &Config, t: &Transfer) -> Result<Result<Recorded, Refusal>> {
    let owed = to_json(&CreditOwed::of(t))?;
    let keys = &db.keys;
    let day = day_of(now_ms());
    let extra_keys = [
        keys.transfer(&t.from_account, &t.id),
        keys.sent_on(&t.from_account, &day),
        keys.credits_owed(&t.from_account),
        keys.payees(&t.from_account),
        keys.executing(&t.from_account),
    ];
    for _ in 0..ATTEMPTS {
        let (balance, date, id) = balance_and_id(db, &t.from_account).await?;
        let leg = Leg {
            account: &t.from_account,
            own_name: &t.from_name,
            other_account: &t.to_account,
            other_name: &t.payee_name,
            amount: Cents(-t.amount.0),
            reference: &t.reference,
        };
        let tx = leg.transaction(id, balance, date);
        // A closing's payout is the whole balance, whatever the limit (see `service`).
        let limit =
            if t.closes_account { i64::MAX } else { config.transfer.daily_transfer_limit.0 };
        let extra_args =
            [limit.to_string(), t.id.clone(), owed.clone(), id.to_string(), t.to_account.clone()];
        let reply = bank::record_with(db, config, &DEBIT, balance, &tx, &extra_keys, &extra_args);
        match reply.await {
            Ok(reply) => return bank::recorded(&reply).map(Ok),
            Err(e) => match refusal(&e) {
                Some("CONFLICT") | Some("DUPLICATE") => pause().await,
                Some("INSUFFICIENT") => return Ok(Err(Refusal::InsufficientFunds)),
                Some("LIMIT") => return Ok(Err(Refusal::DailyLimit)),
                Some(_) => {
                    return Err(Error::Conflict("This transfer is no longer waiting.".into()));
                }
                None => return Err(e),
            },
        }
    }
    Err(Error::Unavailable("the sender's balance kept moving".into()))
}

/// Steps 2 and 3: credits the payee (once, however often it is called) and completes the
/// transfer; the transfer as it then stands (None: its document is gone).
pub async fn credit(db: &Db, config: &Config, owed: &CreditOwed) -> Result<Option<Transfer>> {
    let keys = &db.keys;
    let to_payee = Leg {
        account: &owed.to_account,
        own_name: &owed.payee_name,
        other_account: &owed.from_account,
        other_name: &owed.from_name,
        amount: owed.amount,
        reference: &owed.reference,
    };
    let marker = keys.credited(&owed.to_account, &owed.transfer);
    let (status, failure, credit_tx) = match land(db, config, &to_payee, marker).await? {
        Landing::Landed(id) => ("completed", "", id),
        Landing::Already => ("completed", "", 0),
        Landing::Closed => {
            let back = Leg {
                account: &owed.from_account,
                own_name: &owed.from_name,
                other_account: &owed.to_account,
                other_name: &owed.payee_name,
                amount: owed.amount,
                reference: RETURNED,
            };
            let marker = keys.credited(&owed.from_account, &format!("{}:returned", owed.transfer));
            let id = match land(db, config, &back, marker).await? {
                Landing::Landed(id) => id,
                Landing::Already | Landing::Closed => 0,
            };
            let why = "The payee's account closed before the money arrived: it came back to you.";
            ("failed", why, id)
        }
    };
    let (doc, owed_key) =
        (keys.transfer(&owed.from_account, &owed.transfer), keys.credits_owed(&owed.from_account));
    let done: Option<String> = db
        .run(async |c| {
            lua!("transfer/lua/finish")
                .key(&doc)
                .key(&owed_key)
                .arg(&owed.transfer)
                .arg(now_ms())
                .arg(credit_tx)
                .arg(status)
                .arg(failure)
                .invoke_async(c)
                .await
        })
        .await?;
    done.map(|raw| serde_json::from_str(&raw).map_err(|e| Error::Internal(format!("{doc}: {e}"))))
        .transpose()
}

/// Records `leg` (a credit) once: `marker` says it landed; a closed account takes nothing.
async fn land(db: &Db, config: &Config, leg: &Leg<'_>, marker: String) -> Result<Landing> {
    let extra_keys = [marker, db.keys.account(leg.account)];
    for _ in 0..ATTEMPTS {
        let (balance, date, id) = balance_and_id(db, leg.account).await?;
        let tx = leg.transaction(id, balance, date);
        match bank::record_with(db, config, &CREDIT, balance, &tx, &extra_keys, &[]).await {
            Ok(reply) => {
                return Ok(match reply.first() {
                    Some(Value::Int(-1)) => Landing::Already,
                    Some(Value::Int(-2)) => Landing::Closed,
                    _ => Landing::Landed(id),
                });
            }
            Err(e) if matches!(refusal(&e), Some("CONFLICT") | Some("DUPLICATE")) => pause().await,
            Err(e) => return Err(e),
        }
    }
    Err(Error::Unavailable("the credited balance kept moving".into()))
}

/// The account's balance, now, and a transaction id for now.
async fn balance_and_id(db: &Db, account: &str) -> Result<(Cents, i64, u64)> {
    let balance = bank::balance(db, account).await?;
    let date = now_ms();
    Ok((balance, date, bank::next_transaction_id(date)))
}

/// The credits `account` owes, oldest first.
pub async fn owed_by(db: &Db, account: &str) -> Result<Vec<CreditOwed>> {
    let key = db.keys.credits_owed(account);
    let all: Vec<String> = db.query(redis::cmd("HVALS").arg(&key)).await?;
    let mut owed: Vec<CreditOwed> = all
        .iter()
        .filter_map(|json| match serde_json::from_str(json) {
            Ok(owed) => Some(owed),
            Err(e) => {
                // Money is waiting here: say so loudly, never skip it silently.
                rocket::error!("transfers: an owed credit of {account} does not parse: {e}");
                None
            }
        })
        .collect();
    owed.sort_by_key(|o| o.debited_at);
    Ok(owed)
}

/// What the sender sent on the UTC day of `now` (for the daily limit).
pub async fn sent_today(db: &Db, account: &str, now: i64) -> Result<Cents> {
    let key = db.keys.sent_on(account, &day_of(now));
    let sent: Option<i64> = db.query(redis::cmd("GET").arg(&key)).await?;
    Ok(Cents(sent.unwrap_or(0)))
}

/// `YYYYMMDD` of a UTC instant (ms).
fn day_of(ms: i64) -> String {
    rfc3339_ms(ms).get(..10).unwrap_or_default().replace('-', "")
}

/// The marker word of a script's refusal (`CONFLICT balance moved` → `CONFLICT`).
fn refusal(e: &Error) -> Option<&'static str> {
    let Error::Redis(e) = e else { return None };
    let text = format!("{} {}", e.code().unwrap_or_default(), e.detail().unwrap_or_default());
    ["CONFLICT", "DUPLICATE", "INSUFFICIENT", "LIMIT", "GONE", "STATE"]
        .into_iter()
        .find(|word| text.contains(word))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_daily_limit_counts_per_utc_day() {
        assert_eq!(day_of(0), "19700101");
        assert_eq!(day_of(1_700_000_000_000), "20231114");
        // The last millisecond of a day and the first of the next are two days.
        assert_eq!(day_of(86_400_000 - 1), "19700101");
        assert_eq!(day_of(86_400_000), "19700102");
    }
}
