//! Security's "Your data": the download of everything kept, and closing the account (with a
//! payout of what is left in it, confirmed on the transfer's own page when it needs a passkey).

use rocket::form::FromForm;
use rocket::http::Status;
use rocket::response::Redirect;
use rocket::serde::json::Json;
use rocket::{State, get, post, uri};
use rocket_dyn_templates::{Template, context};

use super::payout::{self, Closing};
use super::service::{self as closing, Export};
use crate::auth::context::AuthApp;
use crate::auth::guard::{CsrfChecked, CurrentUser};
use crate::auth::step_up::SteppedUp;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::redis::Db;
use crate::web::Attachment;
use crate::web::page::{Page, Reply};

/// Security's "Download my data" (after a recent step-up): the document of
/// `GET /api/v1/account/export`, to save.
#[post("/security/export", data = "<_csrf>")]
pub async fn export_download(
    user: SteppedUp<CurrentUser>,
    _csrf: CsrfChecked,
    db: &State<Db>,
) -> Result<Attachment<Json<Export>>> {
    let session = &user.0.0;
    let export = closing::export(db, session).await?;
    Ok(Attachment { filename: closing::export_filename(session), body: Json(export) })
}

#[derive(Debug, FromForm)]
pub struct CloseForm {
    #[field(default = String::new())]
    csrf: String,
    /// The box "I understand this cannot be undone".
    #[field(default = false)]
    understood: bool,
    /// Where the balance goes, while there is one.
    #[field(default = String::new())]
    payout_to: String,
}

fn closed_page(config: &Config) -> Page {
    let page =
        context! { days: config.bank.transaction_retention_days, pseudonym: closing::PSEUDONYM };
    Page::new(Status::Ok, Template::render("account/closed", page))
}

/// Security's "Close my account" (after a recent step-up, with the box ticked): the page that
/// says it is done, this session having ended with the others; or, for a payout that needs a
/// passkey, the transfer's page to confirm it on.
#[post("/security/close", data = "<form>")]
pub async fn close_submit(
    user: SteppedUp<CurrentUser>,
    form: rocket::form::Form<CloseForm>,
    app: AuthApp<'_>,
) -> Result<Reply> {
    let AuthApp { db, config, client, .. } = app;
    let me = &user.0;
    me.check_csrf(&form.csrf)?;
    if !form.understood {
        return Err(Error::Invalid {
            field: "understood",
            message: "Tick the box to say you understand that closing cannot be undone.".into(),
        });
    }
    let payout_to = Some(form.payout_to.as_str());
    match payout::close_paying_out(db, config, (&me.0, &client), payout_to).await? {
        Closing::Closed => Ok(Reply::Page(closed_page(config))),
        Closing::Pending(t) => {
            Ok(Reply::Done(Redirect::to(uri!(crate::transfer::routes::transfer_page(id = &t.id)))))
        }
    }
}

/// Where a browser goes once the passkey confirmation of a closing's payout closed the account
/// (its session is gone; the page names no one).
#[get("/closed")]
pub fn closed(config: &State<Config>) -> Page {
    closed_page(config)
}
