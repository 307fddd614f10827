//! The browser's session pages: the home redirect, sign-out, and "your active sessions" with
//! revoking one or all others.

use rocket::response::Redirect;
use rocket::{get, post, uri};
use rocket_dyn_templates::{Template, context};

use crate::auth::context::AuthApp;
use crate::auth::guard::CsrfChecked;
use crate::auth::guard::{CurrentUser, removal_cookie};
use crate::auth::sessions::service::{revoke, rows, sign_out_others};
use crate::auth::store;
use crate::error::Result;
use crate::web::app::App;

#[post("/logout", data = "<_csrf>")]
pub async fn logout(user: CurrentUser, _csrf: CsrfChecked, app: AuthApp<'_>) -> Result<Redirect> {
    let AuthApp { db, config, jar, .. } = app;
    store::destroy(db, &user.0.id).await?;
    jar.add(removal_cookie(config));
    Ok(Redirect::to(uri!("/login")))
}

#[get("/")]
pub fn index(_user: CurrentUser) -> Redirect {
    Redirect::to(uri!("/dashboard"))
}

#[get("/sessions")]
pub async fn sessions_page(user: CurrentUser, app: App<'_>) -> Result<Template> {
    let App { db, config } = app;
    let me = &user.0;
    // Only the caller's own, an admin's too: every user's sessions are the console's (AAL2,
    // audited), in one place behind one guard.
    let list = store::list_sessions(db, Some(&me.doc.user)).await?;
    // Each device by name, the whole User-Agent behind a disclosure.
    let names: Vec<String> = list.iter().map(|s| s.doc.device_name()).collect();
    let sessions: Vec<serde_json::Value> = rows(list, &me.id)
        .into_iter()
        .zip(names)
        .map(|(row, device)| {
            let mut row = serde_json::to_value(row).unwrap_or_default();
            row["device"] = serde_json::Value::String(device);
            row
        })
        .collect();
    Ok(Template::render(
        "session/sessions",
        context! { user: me.doc.page_user(config), csrf: me.csrf(), sessions },
    ))
}

#[post("/sessions/<id>/revoke", data = "<_csrf>")]
pub async fn revoke_form(
    id: &str,
    user: CurrentUser,
    _csrf: CsrfChecked,
    app: AuthApp<'_>,
) -> Result<Redirect> {
    let AuthApp { db, config, client, jar, .. } = app;
    if revoke(db, &user.0, id, &client).await? {
        jar.add(removal_cookie(config));
        return Ok(Redirect::to(uri!("/login")));
    }
    Ok(Redirect::to(uri!("/sessions")))
}

#[post("/sessions/revoke-others", data = "<_csrf>")]
pub async fn revoke_others_form(
    user: CurrentUser,
    _csrf: CsrfChecked,
    app: AuthApp<'_>,
) -> Result<Redirect> {
    let AuthApp { db, client, .. } = app;
    sign_out_others(db, &user.0, &client).await?;
    Ok(Redirect::to(uri!("/sessions")))
}
