//! The rules of the factors, for the API and the pages alike: enrolling TOTP (with the e-mailed
//! code for a first factor), removing factors, new recovery codes, and what every change of
//! factors sets off (activity, notices, devices forgotten).

use crate::audit::ClientInfo;
use crate::audit::{self, Activity};
use crate::auth::factors::email_code::{self, NewFactor};
use crate::auth::factors::passkey;
use crate::auth::factors::recovery;
use crate::auth::factors::store as factors;
use crate::auth::factors::totp::ISSUER;
use crate::auth::model::Session;
use crate::auth::notice::{self, Notice};
use crate::auth::signin::code;
use crate::auth::step_up::Enrolment;
use crate::clock::now_ms;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::mail::Mailer;
use crate::redis::Db;

/// Starts TOTP enrolment: a new secret (pending until a code confirms it); for a first factor
/// also mails the code that must come with that confirmation.
pub async fn begin_totp(
    db: &Db,
    mailer: &Mailer,
    username: &str,
    enrolment: Enrolment,
) -> Result<(String, String)> {
    if factors::factors(db, username).await?.totp {
        return Err(Error::Conflict(
            "An authenticator app is already set up. Remove it first to set up another.".into(),
        ));
    }
    let secret = factors::begin_totp(db, username).await?.secret;
    if enrolment == Enrolment::First {
        email_code::send(db, mailer, username, NewFactor::Totp, &secret.base32()).await?;
    }
    let uri = secret.otpauth_uri(ISSUER, username);
    Ok((secret.base32(), uri))
}

/// Records a factor `session` added, tells the user's other open dashboards and mails the
/// owner (forgetting the remembered devices).
pub async fn factor_added(
    db: &Db,
    config: &Config,
    session: &Session,
    client: &ClientInfo,
    factor: &str,
    name: Option<&str>,
) {
    let (factor, name) = (factor.to_owned(), name.map(str::to_owned));
    let added = Activity::FactorAdded { factor: factor.clone(), name: name.clone() };
    audit::record(db, &session.doc.user, client, added).await;
    audit::announce_factor(db, session.announcer(), &factor, name.as_deref()).await;
    let notice = Notice::FactorChanged { added: true, factor, name };
    notice::factors_changed(db, config, &session.doc.user, client, notice).await;
}

/// Records a removed factor and mails the owner (forgetting the remembered devices).
pub async fn factor_removed(
    db: &Db,
    config: &Config,
    username: &str,
    client: &ClientInfo,
    factor: &str,
    name: Option<String>,
) {
    let removed = Activity::FactorRemoved { factor: factor.into(), name: name.clone() };
    audit::record(db, username, client, removed).await;
    let notice = Notice::FactorChanged { added: false, factor: factor.into(), name };
    notice::factors_changed(db, config, username, client, notice).await;
}

/// Confirms TOTP enrolment with a code from the app (and, for a first factor, the e-mailed
/// code, spent only once the app's code is right); the new recovery codes, shown once.
pub async fn confirm_totp(
    db: &Db,
    config: &Config,
    session: &Session,
    client: &ClientInfo,
    enrolment: Enrolment,
    code: &str,
    email_code: Option<&str>,
) -> Result<Vec<String>> {
    let username = &session.doc.user;
    let Some(pending) = factors::pending_totp(db, username).await? else {
        return Err(Error::Conflict("There is no set-up waiting for a code. Start again.".into()));
    };
    let Some(step) = pending.secret.matching_step(code, now_ms() / 1000) else {
        return Err(code::wrong_code());
    };
    if enrolment == Enrolment::First {
        let enrolment = pending.secret.base32();
        email_code::redeem(db, username, NewFactor::Totp, &enrolment, email_code).await?;
    }
    let codes = recovery::generate();
    let digests: Vec<String> = codes.iter().filter_map(|c| recovery::digest(c)).collect();
    if !factors::confirm_totp(db, username, &pending, step, &digests).await? {
        return Err(Error::Conflict("The set-up was replaced or expired. Start again.".into()));
    }
    factor_added(db, config, session, client, "totp", None).await;
    Ok(codes)
}

/// Removes a factor's recovery codes when the user has no second factor left.
async fn drop_orphan_codes(db: &Db, username: &str) -> Result<()> {
    if !factors::factors(db, username).await?.any() {
        factors::replace_recovery_codes(db, username, &[]).await?;
    }
    Ok(())
}

pub async fn remove_totp(
    db: &Db,
    config: &Config,
    username: &str,
    client: &ClientInfo,
) -> Result<()> {
    if !factors::remove_totp(db, username).await? {
        return Err(Error::NotFound);
    }
    drop_orphan_codes(db, username).await?;
    factor_removed(db, config, username, client, "totp", None).await;
    Ok(())
}

/// New recovery codes (the old ones stop working); only with a second factor to back up.
pub async fn renew_recovery_codes(
    db: &Db,
    config: &Config,
    username: &str,
    client: &ClientInfo,
) -> Result<Vec<String>> {
    if !factors::factors(db, username).await?.any() {
        return Err(Error::Conflict("Set up a second factor first.".into()));
    }
    let codes = recovery::generate();
    let digests: Vec<String> = codes.iter().filter_map(|c| recovery::digest(c)).collect();
    factors::replace_recovery_codes(db, username, &digests).await?;
    let added = Activity::FactorAdded { factor: "recovery_codes".into(), name: None };
    audit::record(db, username, client, added).await;
    let notice = Notice::FactorChanged { added: true, factor: "recovery_codes".into(), name: None };
    notice::factors_changed(db, config, username, client, notice).await;
    Ok(codes)
}

pub async fn remove_passkey(
    db: &Db,
    config: &Config,
    username: &str,
    id: &str,
    client: &ClientInfo,
) -> Result<()> {
    let id = passkey::parse_id(id).ok_or(Error::NotFound)?;
    let name = passkey::remove(db, username, &id).await?.ok_or(Error::NotFound)?;
    drop_orphan_codes(db, username).await?;
    factor_removed(db, config, username, client, "passkey", Some(name)).await;
    Ok(())
}
