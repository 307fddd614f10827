//! The transaction generator: every `generator_interval_ms`, one random card transaction per
//! account — run by exactly one app instance among all those sharing the Redis (a leader lease
//! with expiry, renewed every tick; if the leader dies another takes over when the lease lapses,
//! within ~3 intervals).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use rand::distributions::{Distribution, WeightedIndex};
use rocket::Shutdown;
use sha2::{Digest, Sha256};

use super::model::{Account, Transaction, Vendor};
use super::store;
use crate::clock::{now_ms, rfc3339_ms};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::money::Cents;
use crate::redis::{Db, Lease};

/// The merchants and payers, written for redbank (see `vendors.json`).
pub fn vendors() -> Result<Vec<Vendor>> {
    let vendors: Vec<Vendor> = serde_json::from_str(include_str!("vendors.json"))
        .map_err(|e| Error::Internal(format!("vendors.json: {e}")))?;
    let valid =
        vendors.iter().all(|v| 0 < v.min_cents && v.min_cents <= v.max_cents && v.weight > 0);
    if vendors.len() < 30 || !valid || !vendors.iter().any(Vendor::is_credit) {
        return Err(Error::Internal(
            "vendors.json: need ≥ 30 valid vendors including credits".into(),
        ));
    }
    Ok(vendors)
}

/// Makes random transactions for the accounts.
pub struct Generator {
    db: Db,
    config: Config,
    vendors: Arc<Vec<Vendor>>,
    weights: WeightedIndex<u32>,
    /// Only the holder of this lease generates.
    lease: Lease,
    accounts: HashMap<String, Account>,
}

impl Generator {
    pub fn new(db: Db, config: Config, vendors: Arc<Vec<Vendor>>) -> Result<Self> {
        let weights = WeightedIndex::new(vendors.iter().map(|v| v.weight))
            .map_err(|e| Error::Internal(format!("vendor weights: {e}")))?;
        let lease = Lease::new(db.keys.generator_leader());
        Ok(Generator { db, config, vendors, weights, lease, accounts: HashMap::new() })
    }

    /// Runs until `shutdown`; releases the lease on the way out so another instance takes over at once.
    pub async fn run(mut self, mut shutdown: Shutdown) {
        let interval = Duration::from_millis(self.config.bank.generator_interval_ms);
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut was_leader = false;
        let mut failing = false;
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                _ = ticker.tick() => {}
            }
            let outcome = match self.lead().await {
                Ok(true) => self.tick_inner(true).await.map(|_| true),
                other => other,
            };
            match outcome {
                Ok(leader) => {
                    if leader != was_leader {
                        rocket::info!(
                            "generator: this instance {} the leader",
                            if leader { "is now" } else { "is no longer" }
                        );
                        was_leader = leader;
                    }
                    failing = false;
                }
                Err(e) if !failing => {
                    rocket::warn!("generator: {e}; retrying every interval");
                    failing = true;
                }
                Err(_) => {}
            }
        }
        self.lease.release(&self.db).await;
    }

    /// Takes or renews the lease (2.5 intervals); true while this instance holds it.
    async fn lead(&self) -> Result<bool> {
        let ttl = Duration::from_millis(self.config.bank.generator_interval_ms * 5 / 2);
        self.lease.hold(&self.db, ttl.max(Duration::from_millis(50))).await
    }

    /// One transaction for every account (no lease: for tools and tests).
    pub async fn tick(&mut self) -> Result<()> {
        self.tick_inner(false).await
    }

    /// One transaction per account; with `leased`, the lease is renewed before each one and
    /// the tick stops as soon as it is lost.
    async fn tick_inner(&mut self, leased: bool) -> Result<()> {
        let mut numbers = store::account_numbers(&self.db).await?;
        let configured: std::collections::HashSet<String> = numbers.iter().cloned().collect();
        // In demo mode, also the customers' accounts someone is watching now, up to the cap.
        if self.config.demo_users {
            let max = self.config.bank.generator_watched_max;
            let watched = store::watched_accounts(&self.db, now_ms(), max).await?;
            numbers.extend(watched.into_iter().filter(|n| !configured.contains(n)));
        }
        for number in numbers {
            // A configured account is read once; a customer's afresh every tick (its holder may
            // have closed it) and not kept.
            let account = match self.accounts.get(&number) {
                Some(account) if configured.contains(&number) => account.clone(),
                _ => match store::get_account(&self.db, &number).await? {
                    Some(account) => {
                        if configured.contains(&number) {
                            self.accounts.insert(number.clone(), account.clone());
                        }
                        account
                    }
                    None => continue,
                },
            };
            if account.closed {
                continue;
            }
            // Renew the lease per account, so a long tick never outlives it while another
            // instance takes over (the balance check would refuse the double write anyway).
            if leased && !self.lead().await? {
                break;
            }
            // A transfer may move the balance between the read and the write (or, rarely, another
            // process take the id): try again, a few times, rather than give up the rest of the
            // tick.
            for attempt in 1.. {
                match self.one(&account).await {
                    Ok(_) => break,
                    Err(e)
                        if attempt < 5
                            && ["CONFLICT", "DUPLICATE"]
                                .iter()
                                .any(|w| e.to_string().contains(w)) =>
                    {
                        continue;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }

    /// Creates one transaction for `account` and returns it with its stream id.
    pub async fn one(&self, account: &Account) -> Result<(Transaction, store::Recorded)> {
        let balance = store::balance(&self.db, &account.number).await?;
        let date = now_ms();
        let id = store::next_transaction_id(date);
        let tx = self.random_transaction(account, balance, id, date);
        let recorded = store::record(&self.db, &self.config, balance, &tx).await?;
        self.db.metrics.generator_transactions.inc();
        Ok((tx, recorded))
    }

    /// Mostly small debits, occasionally a credit; a debit the balance cannot cover becomes a credit.
    fn random_transaction(
        &self,
        account: &Account,
        balance: Cents,
        id: u64,
        date: i64,
    ) -> Transaction {
        let mut rng = rand::thread_rng();
        let mut vendor = &self.vendors[self.weights.sample(&mut rng)];
        let mut cents = rng.gen_range(vendor.min_cents..=vendor.max_cents);
        if !vendor.is_credit() && cents > balance.0 {
            // Never below zero: pay in instead (the largest credit source, e.g. the salary).
            vendor = self
                .vendors
                .iter()
                .filter(|v| v.is_credit())
                .max_by_key(|v| v.max_cents)
                .unwrap_or(vendor);
            cents = rng.gen_range(vendor.min_cents..=vendor.max_cents);
        }
        let amount = if vendor.is_credit() { Cents(cents) } else { Cents(-cents) };
        Transaction {
            id,
            account_id: account.number.clone(),
            from_account: vendor_account(&vendor.name),
            from_account_name: vendor.name.clone(),
            to_account: account.number.clone(),
            to_account_name: account.holder.clone(),
            amount,
            description: vendor.description.clone(),
            transaction_date: rfc3339_ms(date),
            date,
            transaction_type: vendor.kind.clone(),
            balance_after: Cents(balance.0 + amount.0),
        }
    }
}

/// A new account's first days, in demo mode: `count` random transactions spread over the last
/// `days` days, oldest first, each written like any other (so the dashboard, the chart and the
/// search have something to show from the first sign-in).
pub async fn sample_history(
    db: &Db,
    config: &Config,
    account: &Account,
    count: usize,
    days: i64,
) -> Result<()> {
    let generator = Generator::new(db.clone(), config.clone(), Arc::new(vendors()?))?;
    let now = now_ms();
    let step = days * 86_400_000 / count.max(1) as i64;
    let mut balance = store::balance(db, &account.number).await?;
    for i in 0..count {
        let date = now - (count - i) as i64 * step;
        let tx =
            generator.random_transaction(account, balance, store::next_transaction_id(date), date);
        balance = store::record(db, config, balance, &tx).await?.balance;
    }
    Ok(())
}

/// A stable 10-digit account number for a vendor.
fn vendor_account(name: &str) -> String {
    let digest = Sha256::digest(name.as_bytes());
    let n = u64::from_be_bytes(digest[..8].try_into().unwrap_or([0; 8]));
    format!("{:010}", n % 10_000_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vendor_list_is_valid_and_varied() {
        let vendors = vendors().expect("vendors.json");
        assert!(vendors.len() >= 30);
        let kinds: std::collections::HashSet<&str> =
            vendors.iter().map(|v| v.kind.as_str()).collect();
        for kind in ["card payment", "contactless", "online", "direct debit", "salary", "refund"] {
            assert!(kinds.contains(kind), "no {kind} vendor");
        }
        assert_eq!(vendor_account("Starbucks"), vendor_account("Starbucks"));
        assert_eq!(vendor_account("Starbucks").len(), 10);
    }
}
