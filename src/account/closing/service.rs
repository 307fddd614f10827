//! A customer's own data: a copy of all of it to take away (GDPR Art. 15 and 20), and closing the
//! account (Art. 17).
//!
//! **The copy** is one JSON document: the profile, the account and its balance, the sessions,
//! the remembered devices, the factors (names and dates, never a secret), the security activity,
//! every stored transaction and every transfer the customer started.
//!
//! **Closing** needs a recent step-up and an empty account: money still in it is paid out first
//! to an account the customer names, by a transfer like any other (`payout.rs`), and the
//! account closes once that is carried out. Only a customer's own account closes — the demo's
//! and the operators' come from the configuration. Then every session and device ends, and the
//! personal data goes: the user document, the address, the factors, the activity, the devices.
//! The ledger stays for `transaction_retention_days` under a pseudonym: the account keeps its
//! number (it is no one's name) with the holder [`PSEUDONYM`], marked closed so no transfer
//! reaches it (one already debited comes back to its sender), and its own transactions and
//! transfers name it so; its live feed (stream, newest-100 list, chart, spenders, payees) goes.
//! What other customers' statements say of it is theirs, and stays. The address gets a last mail
//! saying it is done.

use rocket::futures::future::BoxFuture;
use rocket::serde::Serialize;

use crate::audit::{self, ClientInfo};
use crate::auth::factors::passkey::{self, PasskeyView};
use crate::auth::factors::store as factors;
use crate::auth::model::{Session, User};
use crate::auth::security::routes::{ActivityView, DeviceView, FactorsView};
use crate::auth::sessions::service::{self as sessions, SessionRow};
use crate::auth::throttle;
use crate::auth::{store, users};
use crate::bank::model::Transaction;
use crate::bank::{search, store as bank};
use crate::clock::{now_ms, rfc3339_ms};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::money::Cents;
use crate::redis::Db;
use crate::redis::lua::lua;
use crate::transfer::model::Transfer;

/// What a closed account's ledger calls its holder.
pub const PSEUDONYM: &str = "Closed account";

/// The customer's data, as `GET /api/v1/account/export` answers it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Export {
    /// RFC 3339.
    exported_at: String,
    profile: Profile,
    account: ExportedAccount,
    /// The sessions signed in now.
    sessions: Vec<SessionRow>,
    /// Devices that signed in and are remembered.
    devices: Vec<DeviceView>,
    factors: ExportedFactors,
    /// Newest first.
    activity: Vec<ActivityView>,
    /// Every stored transaction, newest first (kept `transaction_retention_days`).
    transactions: Vec<Transaction>,
    /// Every transfer the customer started that is still kept, newest first.
    #[schema(value_type = Vec<Object>)]
    transfers: Vec<Transfer>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Profile {
    username: String,
    display_name: String,
    email: Option<String>,
    city: String,
    roles: Vec<crate::auth::model::Role>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ExportedAccount {
    number: String,
    holder: String,
    /// Dollars.
    balance: Cents,
    currency: &'static str,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ExportedFactors {
    #[serde(flatten)]
    summary: FactorsView,
    /// Names and dates only.
    passkey_list: Vec<PasskeyView>,
}

/// Everything redbank keeps about the signed-in customer.
pub async fn export(db: &Db, session: &Session) -> Result<Export> {
    let username = &session.doc.user;
    let user = users::get_user(db, username).await?.ok_or(Error::NotFound)?;
    let number = &user.account;
    let (account, balance, owned, passkeys) = tokio::try_join!(
        bank::get_account(db, number),
        bank::balance(db, number),
        factors::factors(db, username),
        passkey::list(db, username),
    )?;
    let (listed, devices, activity, transactions, transfers) = tokio::try_join!(
        store::list_sessions(db, Some(username)),
        throttle::devices(db, username),
        audit::newest(db, username, audit::MAX_ENTRIES),
        search::every_transaction(db, number),
        transfers_of(db, number),
    )?;
    Ok(Export {
        exported_at: rfc3339_ms(now_ms()),
        profile: Profile {
            username: user.username.clone(),
            display_name: user.display_name.clone(),
            email: user.email.clone(),
            city: user.city.clone(),
            roles: user.roles.clone(),
        },
        account: ExportedAccount {
            number: number.clone(),
            holder: account.map_or_else(|| user.display_name.clone(), |a| a.holder),
            balance,
            currency: "USD",
        },
        sessions: sessions::rows(listed, &session.id),
        devices: devices.iter().map(DeviceView::from).collect(),
        factors: ExportedFactors { summary: FactorsView::from(&owned), passkey_list: passkeys },
        activity: activity.into_iter().map(ActivityView::from).collect(),
        transactions: transactions.into_iter().map(|(_, tx)| tx).collect(),
        transfers,
    })
}

/// The name the export is saved under: the account and the day (`redbank-<number>-<date>.json`).
pub fn export_filename(session: &Session) -> String {
    let day = rfc3339_ms(now_ms());
    format!("redbank-{}-{}.json", session.doc.account, day.get(..10).unwrap_or(""))
}

/// The ids of the transfers `number`'s holder started that are still kept, newest first.
async fn transfer_ids(db: &Db, number: &str) -> Result<Vec<String>> {
    let index = db.keys.transfers_of(number);
    db.query(redis::cmd("ZRANGE").arg(&index).arg(0).arg(-1).arg("REV")).await
}

/// The transfers `number`'s holder started that are still kept, newest first.
async fn transfers_of(db: &Db, number: &str) -> Result<Vec<Transfer>> {
    let ids = transfer_ids(db, number).await?;
    let mut all = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(100) {
        let keys: Vec<String> = chunk.iter().map(|id| db.keys.transfer(number, id)).collect();
        let mut pipe = redis::pipe();
        for key in &keys {
            pipe.cmd("JSON.GET").arg(key);
        }
        let docs: Vec<Option<String>> = db.query(&pipe).await?;
        // A transfer that waited for its confirmation and was forgotten has no document left.
        all.extend(docs.into_iter().flatten().filter_map(|doc| serde_json::from_str(&doc).ok()));
    }
    Ok(all)
}

/// Whether `user` may close their account here: a customer who opened it (the demo's accounts
/// and the operators' come from the configuration, and would only come back).
async fn closable(db: &Db, user: &User) -> Result<()> {
    if user.roles.contains(&crate::auth::model::Role::Admin) {
        return Err(Error::Forbidden(
            "An operator's account is closed by removing it from the configuration.".into(),
        ));
    }
    let opened = db.keys.accounts_opened();
    let own: bool = db.query(redis::cmd("SISMEMBER").arg(&opened).arg(&user.account)).await?;
    if !own {
        return Err(Error::Forbidden(
            "The demo's accounts cannot be closed. Open an account of your own to try this.".into(),
        ));
    }
    Ok(())
}

/// Whether `user`'s account closes here, and then its balance (Security shows the form only
/// then, with a payout field while money is in it).
pub async fn closes_here(db: &Db, user: &User) -> Result<Option<Cents>> {
    match closable(db, user).await {
        Ok(()) => Ok(Some(bank::balance(db, &user.account).await?)),
        Err(Error::Forbidden(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The signed-in customer, when their account closes here (403 otherwise): checked before any
/// money is paid out for a closing.
pub async fn closing_user(db: &Db, session: &Session) -> Result<User> {
    let user = users::get_user(db, &session.doc.user).await?.ok_or(Error::NotFound)?;
    closable(db, &user).await?;
    Ok(user)
}

/// Closes the signed-in customer's account (see the module's header). Refused, changing
/// nothing, with money in it (409) or for an account that does not close here (403).
pub async fn close(db: &Db, config: &Config, session: &Session, client: &ClientInfo) -> Result<()> {
    let user = closing_user(db, session).await?;
    close_as(db, config, &user, session, client).await
}

/// [`close`] for the user [`closing_user`] already answered for `session`.
pub async fn close_as(
    db: &Db,
    config: &Config,
    user: &User,
    session: &Session,
    client: &ClientInfo,
) -> Result<()> {
    let username = &session.doc.user;
    let number = &user.account;
    let keys = &db.keys;
    // One script on the account's slot: empty, nothing owed to anyone, then closed — from here
    // no transfer can be paid into it.
    let shut: String = db
        .run(async |c| {
            lua!("account/lua/close_account")
                .key(keys.account(number))
                .key(keys.balance(number))
                .key(keys.credits_owed(number))
                .arg(PSEUDONYM)
                .arg(crate::bank::model::OPENING_BALANCE.0)
                .invoke_async(c)
                .await
        })
        .await?;
    match shut.as_str() {
        "closed" => {}
        "owed" => {
            return Err(Error::Conflict(
                "A transfer you made is still on its way to its payee. Try again in a minute."
                    .into(),
            ));
        }
        cents => {
            let balance = Cents(cents.parse().unwrap_or_default());
            return Err(Error::Conflict(format!(
                "Your balance is {balance}. An account closes empty: name the account to pay it \
                 out to, and it closes once that is sent."
            )));
        }
    }
    // Until the sessions end, every step can simply run again: a closing that failed half-way
    // is finished by the customer's next try (the script above marks an empty account closed
    // again, and the account stays the customer's own until the very end).
    pseudonymise_ledger(db, user).await?;
    if let Some(address) = &user.email {
        let text = format!(
            "Hello {name},\n\n\
             your redbank account {number} is closed, as you asked on {when} from {ip}.\n\n\
             We signed you out everywhere and erased your sign-in details, your address and your \
             security history. Your transactions are kept for {days} days, as the law asks of a \
             bank, under the name \"{PSEUDONYM}\" instead of yours.\n\n\
             This is the last e-mail you get from us.\n",
            name = user.display_name,
            when = rfc3339_ms(now_ms()),
            ip = client.ip,
            days = config.bank.transaction_retention_days,
        );
        if let Err(e) =
            crate::mail::queue(db, address, "Your redbank account is closed", &text).await
        {
            rocket::warn!("the closing mail to account {number} was not queued: {e}");
        }
    }
    store::destroy_others(db, username, None).await?;
    erase_personal_data(db, user).await?;
    // Last: no longer a customer's own account (nor, for the generator, one to write for).
    let opened = keys.accounts_opened();
    db.query::<()>(redis::cmd("SREM").arg(&opened).arg(number)).await?;
    rocket::info!("account {number} closed by its holder");
    Ok(())
}

/// Closes the account once its payout `t` (a transfer of the whole balance) is carried out.
/// Refused (409) when money arrived in the meantime, saying the payout went.
/// It is also what transfers run after confirming a payout (`transfer::ClosesAccount`),
/// hence its shape.
pub fn close_after_payout<'a>(
    db: &'a Db,
    config: &'a Config,
    (session, client): (&'a Session, &'a ClientInfo),
    t: &'a Transfer,
) -> BoxFuture<'a, Result<()>> {
    Box::pin(async move {
        match close(db, config, session, client).await {
            Err(Error::Conflict(why)) => Err(Error::Conflict(format!(
                "{} was paid out to {}, but the account is still open. {why}",
                t.amount, t.payee_name
            ))),
            other => other,
        }
    })
}

/// The user document, the address, the factors, the activity and the devices.
async fn erase_personal_data(db: &Db, user: &User) -> Result<()> {
    let keys = &db.keys;
    let name = &user.username;
    // Every factor, the passkey handle and the activity, as for a user the configuration drops.
    factors::forget_user(db, name).await?;
    throttle::forget_devices(db, name).await?;
    let mut gone = vec![
        keys.sca_tally(name),
        keys.throttle_codes(name),
        keys.codes_lock_announced(name),
        keys.throttle_mail(name),
    ];
    if let Some(address) = &user.email {
        gone.push(keys.email_owner(&address.to_lowercase()));
    }
    db.delete_each(&gone).await?;
    // The user document last: while it exists, a retry of a failed closing finds the rest.
    users::delete_user(db, name).await?;
    Ok(())
}

/// The account's own transactions and transfers name [`PSEUDONYM`] instead of the holder; its
/// live feed goes.
async fn pseudonymise_ledger(db: &Db, user: &User) -> Result<()> {
    let keys = &db.keys;
    let number = &user.account;
    // The names the ledger may hold: the holder's (the account was opened under the user's
    // name; the script above renamed the account itself), and the username a transfer records as
    // its owner.
    let names = [user.display_name.as_str(), user.username.as_str()];
    let transactions = search::every_transaction(db, number).await?;
    let transfer_ids = transfer_ids(db, number).await?;
    let mut docs: Vec<String> = transactions.into_iter().map(|(key, _)| key).collect();
    docs.extend(transfer_ids.iter().map(|id| keys.transfer(number, id)));
    for chunk in docs.chunks(200) {
        for name in &names {
            db.run(async |c| {
                let mut call = lua!("account/lua/pseudonymise").prepare_invoke();
                for key in chunk {
                    call.key(key);
                }
                call.arg(*name).arg(PSEUDONYM).invoke_async::<_, i64>(c).await
            })
            .await?;
        }
    }
    let live = [
        keys.stream(number),
        keys.recent(number),
        keys.spenders(number),
        keys.payees(number),
        keys.balance_series(number, bank::SERIES[0].name),
        keys.balance_series(number, bank::SERIES[1].name),
        keys.balance_series(number, bank::SERIES[2].name),
    ];
    db.query::<()>(redis::cmd("DEL").arg(&live[..])).await?;
    Ok(())
}
