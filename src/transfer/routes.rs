//! Transfers over the JSON API and the pages (`/transfer`): one service ([`super::service`]) under
//! both, with the CSRF rules of each.

use rocket::form::{Form, FromForm};
use rocket::http::Status;
use rocket::request::{FromRequest, Request};
use rocket::response::Redirect;
use rocket::serde::json::{Json, Value, serde_json::json};
use rocket::{State, get, post, request, uri};
use rocket_dyn_templates::{Template, context};
use serde::{Deserialize, Serialize};

use super::ClosesAccount;
use super::model::{Confirmation, Status as TransferStatus, Transfer, parse_amount};
use super::service::Request as TransferRequest;
use super::{idempotency, service};
use crate::auth::context::AuthApp;
use crate::auth::factors::store as factors;
use crate::auth::guard::{ApiUser, CurrentUser};
use crate::bank::store as bank;
use crate::clock::{display_ms, rfc3339_ms};
use crate::config::Config;
use crate::error::{ApiError, Error, Result};
use crate::money::Cents;
use crate::redis::Db;
use crate::secret::random_token;
use crate::web::SecretJson;
use crate::web::app::App;
use crate::web::page::{Page, Reply};

/// The `Idempotency-Key` header, when there is exactly one (1–255 visible ASCII characters).
pub struct IdempotencyKey(Option<String>);

#[rocket::async_trait]
impl<'r> FromRequest<'r> for IdempotencyKey {
    type Error = std::convert::Infallible;

    async fn from_request(req: &'r Request<'_>) -> request::Outcome<Self, Self::Error> {
        let mut values = req.headers().get("Idempotency-Key");
        let key = match (values.next(), values.next()) {
            (Some(v), None)
                if (1..=255).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_graphic()) =>
            {
                Some(v.to_owned())
            }
            _ => None,
        };
        request::Outcome::Success(IdempotencyKey(key))
    }
}

/// How the sender can confirm, in the API's words: a passkey, while it waits for one.
async fn methods(db: &Db, t: &Transfer) -> Result<Vec<&'static str>> {
    if t.status != TransferStatus::ConfirmationRequired || t.expired() {
        return Ok(Vec::new());
    }
    let owned = factors::factors(db, &t.user).await?;
    Ok(if owned.passkeys > 0 { service::CONFIRMED_WITH.to_vec() } else { Vec::new() })
}

/// Where a transfer is, as the API shows it.
#[derive(Debug, Clone, Copy, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Shown {
    /// Waiting for the sender's strong confirmation (see `methods`).
    ConfirmationRequired,
    Executing,
    /// The sender was debited and the payee's credit is under way.
    Debited,
    Completed,
    /// Refused when carried out (`failure` says why).
    Failed,
    /// Not confirmed in time: nothing moved.
    Expired,
}

/// A transfer as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TransferView {
    id: String,
    status: Shown,
    amount: Cents,
    #[schema(example = "USD")]
    currency: String,
    from_account: String,
    to_account: String,
    payee_name: String,
    reference: String,
    created_at: String,
    /// When a transfer waiting for its confirmation expires.
    expires_at: String,
    completed_at: Option<String>,
    confirmed_by: Option<Confirmation>,
    failure: Option<String>,
    /// How the sender can confirm it now: `passkey` (empty unless it waits for that).
    methods: Vec<&'static str>,
    /// Why those, while it waits (PSD2 dynamic linking).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    why: Option<&'static str>,
    /// With replicas to wait for (`min_replicas_ack`), in the answer that moved money:
    /// `confirmed` (a replica has it), or `pending` (answered 202: done on the primary, no
    /// replica confirmed it in time; `GET` it again later).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    replication: Option<&'static str>,
    /// A closing's payout: the sender's account closes once it is carried out, and with it
    /// every session (this one too).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    closes_account: bool,
}

/// The answer to a request that may have moved money: `ok`, or 202 with `replication: pending`
/// when no replica confirmed it in time (never reported as done and then lost in a failover).
/// `since`: [`Db::generation`] before the request wrote anything. A transfer still waiting for
/// its confirmation moved nothing: no wait.
async fn acknowledged(
    db: &Db,
    config: &Config,
    since: u64,
    ok: Status,
    mut view: TransferView,
) -> Result<(Status, Json<TransferView>)> {
    if config.redis.replicas_to_ack() == 0 || matches!(view.status, Shown::ConfirmationRequired) {
        return Ok((ok, Json(view)));
    }
    let confirmed = db.replicated(config, since).await;
    view.replication = Some(if confirmed { "confirmed" } else { "pending" });
    Ok((if confirmed { ok } else { Status::Accepted }, Json(view)))
}

/// A transfer as the API shows it (a pending one past its expiry reads `expired`).
pub(crate) async fn view(db: &Db, t: &Transfer) -> Result<TransferView> {
    let status = match t.status {
        _ if t.expired() => Shown::Expired,
        TransferStatus::ConfirmationRequired => Shown::ConfirmationRequired,
        TransferStatus::Executing => Shown::Executing,
        TransferStatus::Debited => Shown::Debited,
        TransferStatus::Completed => Shown::Completed,
        TransferStatus::Failed => Shown::Failed,
    };
    Ok(TransferView {
        id: t.id.clone(),
        status,
        amount: t.amount,
        currency: t.currency.clone(),
        from_account: t.from_account.clone(),
        to_account: t.to_account.clone(),
        payee_name: t.payee_name.clone(),
        reference: t.reference.clone(),
        created_at: rfc3339_ms(t.created_at),
        expires_at: rfc3339_ms(t.expires_at),
        completed_at: t.completed_at.map(rfc3339_ms),
        confirmed_by: t.confirmed_by,
        failure: t.failure.clone(),
        why: matches!(status, Shown::ConfirmationRequired).then_some(service::WHY_PASSKEY),
        methods: methods(db, t).await?,
        replication: None,
        closes_account: t.closes_account,
    })
}

/// In the API document: an amount is a number or a decimal string of dollars.
fn amount_schema() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
    OneOfBuilder::new()
        .item(ObjectBuilder::new().schema_type(Type::Number).exclusive_minimum(Some(0)))
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(r"^[0-9]{1,12}(\.[0-9]{1,2})?$")),
        )
        .description(Some("Dollars, at most two decimals, more than 0 (`12.5` or `\"12.50\"`)"))
        .examples([json!(12.5)])
        .into()
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct NewTransfer {
    /// The payee's account number.
    #[schema(pattern = "^[0-9]{6,20}$", example = "2734819056")]
    to_account: String,
    #[schema(schema_with = amount_schema)]
    amount: Value,
    /// Shown to both sides.
    #[serde(default)]
    #[schema(max_length = 140)]
    reference: String,
}

impl NewTransfer {
    fn request(&self) -> Result<TransferRequest> {
        Ok(TransferRequest {
            to_account: self.to_account.trim().to_owned(),
            amount: parse_amount(&self.amount)?,
            reference: self.reference.trim().to_owned(),
            closes_account: false,
        })
    }
}

/// Starts a transfer to another redbank account. A small one (the PSD2 low-value exemption)
/// completes at once; any other waits for the sender's confirmation with a passkey or a code,
/// bound to this amount and payee. Repeating a request with the same `Idempotency-Key` answers
/// the first one's transfer.
#[utoipa::path(
    tag = "transfers",
    operation_id = "create_transfer",
    params(("Idempotency-Key" = String, Header, description = "1-255 visible ASCII characters, unique per transfer")),
    request_body = NewTransfer,
    responses(
        (status = 202, description = "Completed on the primary, but no replica confirmed it in time (`replication`: `pending`)", body = TransferView),
        (status = 201, description = "Created: completed, or waiting for its confirmation", body = TransferView, links(
            ("Get" = (operation_id = "get_transfer", parameters(("id" = "$response.body#/id")))),
            ("PasskeyOptions" = (operation_id = "transfer_passkey_options", parameters(("id" = "$response.body#/id")))),
            ("Confirm" = (operation_id = "confirm_transfer", parameters(("id" = "$response.body#/id")))),
        )),
        (status = 400, description = "No usable Idempotency-Key", body = ApiError),
        (status = 403, description = "Above the exemption without a second factor to confirm it", body = ApiError),
        (status = 409, description = "The first request with this key is still running, or `max_pending_transfers` wait already", body = ApiError),
        (status = 410, description = "The key's transfer expired without a confirmation and was forgotten", body = ApiError),
        (status = 422, description = "A field breaks a rule (`field` names it), or the key was used for another transfer", body = ApiError),
        (status = 429, description = "Too many transfers started", body = ApiError),
    )
)]
#[post("/api/v1/transfers", data = "<body>")]
pub async fn api_create(
    body: SecretJson<NewTransfer>,
    key: IdempotencyKey,
    user: ApiUser,
    app: App<'_>,
) -> Result<(Status, Json<TransferView>)> {
    let App { db, config } = app;
    let Some(key) = key.0 else {
        return Err(Error::BadRequest(
            "An Idempotency-Key header (1-255 visible characters) is required.".into(),
        ));
    };
    let req = body.0.request()?;
    let since = db.generation();
    let t = idempotency::create_once(db, config, &user.session, &req, &key).await?;
    acknowledged(db, config, since, Status::Created, view(db, &t).await?).await
}

/// One of the caller's transfers.
#[utoipa::path(
    tag = "transfers",
    operation_id = "get_transfer",
    params(("id" = String, Path)),
    responses(
        (status = 200, body = TransferView),
        (status = 404, description = "No such transfer of yours", body = ApiError),
    )
)]
#[get("/api/v1/transfers/<id>")]
pub async fn api_get(id: &str, user: ApiUser, db: &State<Db>) -> Result<Json<TransferView>> {
    let t = service::load(db, &user.session.doc.account, id).await?;
    let t = t.filter(|t| t.user == user.session.doc.user).ok_or(Error::NotFound)?;
    Ok(Json(view(db, &t).await?))
}

/// WebAuthn request options for confirming this transfer with a passkey (the challenge is
/// bound to its amount and payee).
#[utoipa::path(
    tag = "transfers",
    operation_id = "transfer_passkey_options",
    params(("id" = String, Path)),
    responses(
        (status = 200, description = "WebAuthn request options, with what confirms the transfer (`accepts`) and `why`", body = Object),
        (status = 404, description = "No such transfer of yours", body = ApiError),
        (status = 409, description = "Not waiting for a confirmation", body = ApiError),
        (status = 410, description = "Expired", body = ApiError),
        (status = 429, description = "Too many ceremonies", body = ApiError),
    )
)]
#[post("/api/v1/transfers/<id>/options")]
pub async fn api_options(id: &str, user: ApiUser, app: AuthApp<'_>) -> Result<Json<Value>> {
    let AuthApp { db, rp, client, .. } = app;
    let mut options = service::passkey_options(db, rp, &user.session, &client, id).await?;
    options["accepts"] = serde_json::json!(service::CONFIRMED_WITH);
    options["why"] = Value::from(service::WHY_PASSKEY);
    Ok(Json(options))
}

/// Confirms a waiting transfer with the passkey's assertion (`PublicKeyCredential` JSON) for the
/// options of this transfer; it is then carried out. A code is refused (403): only a passkey
/// signs the amount and payee (PSD2 dynamic linking).
#[utoipa::path(
    tag = "transfers",
    operation_id = "confirm_transfer",
    params(("id" = String, Path)),
    request_body(content = Object, description = "The WebAuthn assertion for this transfer's options"),
    responses(
        (status = 200, description = "Confirmed and carried out (`completed` or `failed`)", body = TransferView),
        (status = 202, description = "Carried out on the primary, but no replica confirmed it in time (`replication`: `pending`)", body = TransferView),
        (status = 401, description = "The assertion did not verify, or was for another transfer", body = ApiError),
        (status = 403, description = "A code instead of a passkey", body = ApiError),
        (status = 404, description = "No such transfer of yours", body = ApiError),
        (status = 409, description = "Already confirmed", body = ApiError),
        (status = 410, description = "Expired", body = ApiError),
        (status = 422, description = "Refused when carried out (over the balance or the daily limit; `field` says which): it is now `failed`, nothing moved", body = ApiError),
    )
)]
#[post("/api/v1/transfers/<id>/confirm", data = "<body>")]
pub async fn api_confirm(
    id: &str,
    body: SecretJson<Value>,
    user: ApiUser,
    app: AuthApp<'_>,
    closes: &State<ClosesAccount>,
) -> Result<(Status, Json<TransferView>)> {
    let AuthApp { db, config, rp, client, .. } = app;
    // A code (any `code` field) confirms no payment: it is not tied to the amount and payee.
    if body.0.get("code").is_some() {
        return Err(Error::Forbidden(format!(
            "A code cannot confirm a transfer. {} Confirm it with your passkey.",
            service::WHY_PASSKEY
        )));
    }
    let since = db.generation();
    let who = (&user.session, &client);
    let t = service::confirm(db, config, rp, who, id, &body.0, closes).await?;
    acknowledged(db, config, since, Status::Ok, view(db, &t).await?).await
}

// ---- pages -----------------------------------------------------------------------------------

#[derive(Debug, Default, FromForm)]
pub struct TransferForm {
    #[field(default = String::new())]
    csrf: String,
    #[field(default = String::new())]
    idempotency_key: String,
    #[field(default = String::new())]
    to_account: String,
    #[field(default = String::new())]
    amount: String,
    #[field(default = String::new())]
    reference: String,
}

async fn form_page(
    db: &Db,
    config: &Config,
    user: &CurrentUser,
    form: &TransferForm,
    status: Status,
    error: Option<(&str, String)>,
) -> Result<Page> {
    let doc = &user.0.doc;
    let payees: Vec<Value> = service::recent_payees(db, &doc.account)
        .await?
        .into_iter()
        .map(|account| json!({ "number": account.number, "holder": account.holder }))
        .collect();
    let owned = factors::factors(db, &doc.user).await?;
    let (field, error) = error.map_or((None, None), |(f, e)| (Some(f), Some(e)));
    let page = Template::render(
        "transfer/form",
        context! {
            user: doc.page_user(config),
            csrf: user.0.csrf(),
            // A new key per form: a double-clicked submit sends the same one twice.
            idempotency_key: if form.idempotency_key.is_empty() { random_token() } else { form.idempotency_key.clone() },
            to_account: &form.to_account,
            amount: &form.amount,
            reference: &form.reference,
            payees,
            has_passkey: owned.passkeys > 0,
            why_passkey: service::WHY_PASSKEY,
            exempt: config.transfer.exempt_amount.to_string(),
            limit: config.transfer.daily_transfer_limit.to_string(),
            balance: bank::balance(db, &doc.account).await?.to_string(),
            error, field,
        },
    );
    Ok(Page::new(status, page))
}

#[get("/transfer")]
pub async fn form(user: CurrentUser, db: &State<Db>, config: &State<Config>) -> Result<Page> {
    form_page(db, config, &user, &<TransferForm as Default>::default(), Status::Ok, None).await
}

#[post("/transfer", data = "<form>")]
pub async fn submit(user: CurrentUser, form: Form<TransferForm>, app: App<'_>) -> Result<Reply> {
    let App { db, config } = app;
    user.check_csrf(&form.csrf)?;
    let req = parse_amount(&Value::String(form.amount.clone())).map(|amount| TransferRequest {
        to_account: form.to_account.trim().to_owned(),
        amount,
        reference: form.reference.trim().to_owned(),
        closes_account: false,
    });
    let key =
        if form.idempotency_key.is_empty() { random_token() } else { form.idempotency_key.clone() };
    let outcome = match req {
        Ok(req) => idempotency::create_once(db, config, &user.0, &req, &key).await,
        Err(e) => Err(e),
    };
    match outcome {
        Ok(t) => Ok(Reply::Done(Redirect::to(uri!(transfer_page(&t.id))))),
        Err(Error::Invalid { field, message }) => {
            // The form comes back with a new key: the corrected request is a new one.
            let mut form = form.into_inner();
            form.idempotency_key = String::new();
            let error = Some((field, message));
            let page = form_page(db, config, &user, &form, Status::UnprocessableEntity, error);
            Ok(Reply::Page(page.await?))
        }
        Err(Error::Forbidden(message)) => {
            let page =
                form_page(db, config, &user, &form, Status::Forbidden, Some(("amount", message)));
            Ok(Reply::Page(page.await?))
        }
        Err(e) => Err(e),
    }
}

async fn transfer_view(
    db: &Db,
    config: &Config,
    user: &CurrentUser,
    t: &Transfer,
    status: Status,
    error: Option<String>,
) -> Result<Page> {
    let doc = &user.0.doc;
    let template = match t.status {
        TransferStatus::ConfirmationRequired if !t.expired() => "transfer/review",
        _ => "transfer/receipt",
    };
    let page = Template::render(
        template,
        context! {
            user: doc.page_user(config),
            csrf: user.0.csrf(),
            t: view(db, t).await?,
            amount: t.amount.to_string(),
            created: display_ms(t.created_at),
            expires: display_ms(t.expires_at),
            completed: t.completed_at.map(display_ms),
            error,
        },
    );
    Ok(Page::new(status, page))
}

#[get("/transfer/<id>")]
pub async fn transfer_page(id: &str, user: CurrentUser, app: App<'_>) -> Result<Page> {
    let App { db, config } = app;
    let t = service::load(db, &user.0.doc.account, id).await?;
    let t = t.filter(|t| t.user == user.0.doc.user).ok_or(Error::NotFound)?;
    transfer_view(db, config, &user, &t, Status::Ok, None).await
}
