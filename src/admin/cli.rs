//! `redbank admin totp`: the operator's first factor, set up on the machine.
//!
//! The console needs two factors, and a password alone must never add the first (docs/SECURITY.md
//! G.34), so the admin's authenticator app is enrolled here, by someone who can run the binary
//! with the server's configuration — the machine is the root of trust, as for the bootstrap
//! admins of identity servers. It prints the `otpauth://` URI, a QR code for the terminal, the
//! key and ten recovery codes, and exits 0. `--replace` swaps an existing app for a new one and
//! ends the admin's sessions (whoever held the old one is out).

use std::process::ExitCode;

use rocket::figment::Figment;

use crate::audit;
use crate::audit::{Activity, ClientInfo};
use crate::auth::factors::totp::{ISSUER, qr_text, step_of};
use crate::auth::factors::{recovery, store as factors};
use crate::auth::notice::Notice;
use crate::auth::{notice, store as sessions};
use crate::clock::now_ms;
use crate::config::Config;
use crate::redis::Db;

/// The admin's username (see `demo::DEMO_USERS`).
const ADMIN: &str = "admin";

/// Runs `redbank admin totp-rekey`: re-seals every TOTP secret with the first of `totp_keys`
/// (the step between adding a new key first and dropping the old one).
pub async fn totp_rekey(figment: Figment) -> ExitCode {
    let result = async {
        let (db, _) = connect(figment).await?;
        let (resealed, unreadable) =
            factors::reseal_all(&db).await.map_err(|e| format!("Redis: {e}"))?;
        println!("re-sealed {resealed} TOTP secret(s) with the first of totp_keys");
        if unreadable > 0 {
            return Err(format!(
                "{unreadable} secret(s) open with none of totp_keys: keep the key they were \
                 sealed with until they are re-sealed"
            ));
        }
        Ok(())
    };
    match result.await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("redbank admin totp-rekey: {message}");
            ExitCode::FAILURE
        }
    }
}

/// The configuration and Redis of `figment`: no routes, no background tasks, no port.
async fn connect(figment: Figment) -> Result<(Db, Config), String> {
    let figment = figment.merge(("log_level", "off"));
    let rocket = rocket::custom(figment)
        .attach(crate::config::stage())
        .attach(crate::redis::stage())
        .ignite()
        .await
        .map_err(|e| format!("configuration or Redis: {e}"))?;
    match (rocket.state::<Db>(), rocket.state::<Config>()) {
        (Some(db), Some(config)) => Ok((db.clone(), config.clone())),
        _ => Err("configuration or Redis state missing".into()),
    }
}

/// Runs `redbank admin totp [--replace]` against the Redis `figment` configures.
pub async fn totp(figment: Figment, replace: bool) -> ExitCode {
    match enrol(figment, replace).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("redbank admin totp: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn enrol(figment: Figment, replace: bool) -> Result<(), String> {
    let (db, config) = connect(figment).await?;
    let (db, config) = (&db, &config);
    let failed = |e: crate::error::Error| format!("Redis ({}): {e}", config.key_prefix);
    if crate::auth::users::get_user(db, ADMIN).await.map_err(failed)?.is_none() {
        return Err("there is no admin user: set admin_password and start redbank once".into());
    }
    let owned = factors::factors(db, ADMIN).await.map_err(failed)?;
    if owned.totp && !replace {
        return Err("the admin already has an authenticator app; `redbank admin totp --replace` \
                    replaces it (the old one stops working and the admin's sessions end)"
            .into());
    }
    let pending = factors::begin_totp(db, ADMIN).await.map_err(failed)?;
    let codes = recovery::generate();
    let digests: Vec<String> = codes.iter().filter_map(|c| recovery::digest(c)).collect();
    // Every code of the current window works at once: none counts as used yet.
    let before_now = step_of(now_ms() / 1000) - 2;
    if !factors::confirm_totp(db, ADMIN, &pending, before_now, &digests).await.map_err(failed)? {
        return Err("another enrolment replaced this one meanwhile; run it again".into());
    }
    let ended =
        if replace { sessions::destroy_others(db, ADMIN, None).await.map_err(failed)? } else { 0 };
    let client = ClientInfo { ip: "server".into(), user_agent: "redbank admin totp".into() };
    let added = Activity::FactorAdded { factor: "totp".into(), name: Some("server".into()) };
    audit::record(db, ADMIN, &client, added).await;
    // Mailed to `admin_email` (through the outbox: a running instance sends it).
    let notice = Notice::FactorChanged { added: true, factor: "totp".into(), name: None };
    notice::factors_changed(db, config, ADMIN, &client, notice).await;

    let secret = &pending.secret;
    let uri = secret.otpauth_uri(ISSUER, ADMIN);
    println!("The admin's authenticator app is set up. Scan the code, or add the key by hand.\n");
    if let Some(qr) = qr_text(&uri) {
        println!("{qr}");
    }
    println!("{uri}\n");
    println!("Key: {}\n", secret.base32());
    println!("Recovery codes (each works once; keep them offline):");
    for code in &codes {
        println!("  {code}");
    }
    if ended > 0 {
        println!("\n{ended} session(s) of the admin were ended.");
    }
    Ok(())
}
