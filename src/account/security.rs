//! The browser's `/security` page: everything that protects the customer's account in one place
//! — the factors (an authenticator app, recovery codes, passkeys), the remembered devices, the
//! recent security activity, the address, and closing the account. Its forms post to the
//! factors' pages (`auth::security::pages`), the password and address pages, and closing's.

use rocket::get;
use rocket::serde::json::{Value, serde_json::json};
use rocket_dyn_templates::{Template, context};

use super::closing;
use crate::audit::{self, Entry};
use crate::auth::factors::{passkey, store as factors};
use crate::auth::guard::CurrentUser;
use crate::auth::throttle;
use crate::auth::users;
use crate::clock::display_ms;
use crate::error::Result;
use crate::web::app::App;

/// An activity entry as the page shows it.
fn activity_rows(entries: Vec<Entry>) -> Vec<Value> {
    entries
        .into_iter()
        .map(|e| {
            let mut row = json!(e);
            row["when"] = json!(display_ms(e.at));
            row["device"] = json!(audit::describe_device(&e.user_agent));
            row
        })
        .collect()
}

#[get("/security")]
pub async fn security_page(user: CurrentUser, app: App<'_>) -> Result<Template> {
    let App { db, config } = app;
    let doc = &user.0.doc;
    let owned = factors::factors(db, &doc.user).await?;
    // Times as the other pages show them (the API keeps RFC 3339).
    let passkeys: Vec<Value> = passkey::list(db, &doc.user)
        .await?
        .into_iter()
        .map(|p| {
            let mut row = json!(p);
            row["added"] = json!(display_ms(p.created_ms));
            row["used"] = json!(p.last_used_ms.map(display_ms));
            row
        })
        .collect();
    let entries = audit::newest(db, &doc.user, 50).await?;
    let account_user = users::get_user(db, &doc.user).await?;
    let closing = match &account_user {
        Some(u) => closing::service::closes_here(db, u).await?,
        None => None,
    };
    let email = account_user.and_then(|u| u.email);
    let devices: Vec<Value> = throttle::devices(db, &doc.user)
        .await?
        .into_iter()
        .map(|d| {
            json!({
                "device": audit::describe_device(&d.user_agent),
                "user_agent": d.user_agent,
                "ip": d.ip,
                "first_at": crate::clock::rfc3339_ms(d.created_at),
                "first": display_ms(d.created_at),
                "last_at": crate::clock::rfc3339_ms(d.last_used_at),
                "last": display_ms(d.last_used_at),
            })
        })
        .collect();
    Ok(Template::render(
        "mfa/security",
        context! {
            devices,
            user: doc.page_user(config),
            csrf: user.0.csrf(),
            totp: owned.totp,
            recovery_left: owned.recovery_codes,
            has_factor: owned.any(),
            passkeys,
            activity: activity_rows(entries),
            aal: doc.assurance.aal,
            email,
            closable: closing.is_some(),
            closing_balance: closing.filter(|b| b.0 != 0).map(|b| b.to_string()),
        },
    ))
}
