//! The account side: dashboard and (later) transactions, generator and search.

use rocket::fairing::AdHoc;
use rocket::{get, routes};
use rocket_dyn_templates::{Template, context};

use crate::session::guard::CurrentUser;

pub fn stage() -> AdHoc {
    AdHoc::on_ignite("Bank", |rocket| async { rocket.mount("/", routes![dashboard]) })
}

#[get("/dashboard")]
fn dashboard(user: CurrentUser) -> Template {
    let doc = &user.0.doc;
    Template::render("bank/dashboard", context! { user: doc.user_view(), csrf: &doc.csrf_token })
}
