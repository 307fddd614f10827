//! Dashboard and transactions pages, the JSON API, and the seed-compatible `/transaction/*`
//! endpoints. Every route reads the caller's account from the session — never from the request —
//! so nobody sees another account's data.

use rocket::serde::json::Json;
use rocket::{State, get};
use rocket_dyn_templates::{Template, context};
use serde::Serialize;

use super::model::{Account, BalancePoint, Spenders, Transaction};
use super::search::{PAGE_SIZE, SearchPage};
use super::{history, search, store, view};
use crate::auth::guard::{ApiUser, CurrentUser};
use crate::auth::model::Session;
use crate::clock::now_ms;
use crate::error::{ApiError, Error, Result};
use crate::money::Cents;
use crate::redis::Db;
use crate::web::app::App;

/// Most points a balance series returns.
pub const MAX_POINTS: usize = 500;

async fn account_of(db: &Db, session: &Session) -> Result<Account> {
    store::get_account(db, &session.doc.account).await?.ok_or_else(|| {
        Error::Internal(format!("user {} has no account document", session.doc.user))
    })
}

/// The balance chart's windows; their names (serde's, which the API document shows too) are the
/// `window` query values.
#[derive(Debug, Clone, Copy, serde::Deserialize, utoipa::ToSchema)]
pub enum Window {
    #[serde(rename = "5m")]
    FiveMinutes,
    #[serde(rename = "1h")]
    OneHour,
    #[serde(rename = "24h")]
    OneDay,
}

impl Window {
    fn ms(self) -> i64 {
        match self {
            Window::FiveMinutes => 5 * 60_000,
            Window::OneHour => 3_600_000,
            Window::OneDay => 86_400_000,
        }
    }
}

fn window_ms(window: Option<&str>) -> Result<i64> {
    let Some(text) = window else { return Ok(Window::FiveMinutes.ms()) };
    serde_json::from_value::<Window>(serde_json::Value::String(text.to_owned()))
        .map(Window::ms)
        .map_err(|_| Error::BadRequest(format!("unknown window {text:?}: use 5m, 1h or 24h")))
}

fn parse_page(page: Option<&str>) -> Result<usize> {
    match page {
        None | Some("") => Ok(1),
        Some(p) => p
            .parse::<usize>()
            .ok()
            .filter(|p| (1..=search::MAX_PAGE).contains(p))
            .ok_or_else(|| {
                Error::BadRequest(format!("page must be a number from 1 to {}", search::MAX_PAGE))
            }),
    }
}

// ---- pages ------------------------------------------------------------------------------------

#[get("/dashboard")]
pub async fn dashboard(user: CurrentUser, app: App<'_>) -> Result<Template> {
    let App { db, config } = app;
    let doc = &user.0.doc;
    // Account, balance, the newest entries and their documents: one round trip.
    let oldest = config.bank.oldest_transaction(now_ms());
    let view = history::recent_view(db, &doc.account, 10, oldest, true).await?;
    let account = view
        .account
        .ok_or_else(|| Error::Internal(format!("user {} has no account document", doc.user)))?;
    let balance = view.balance;
    // The live stream resumes after the newest entry rendered here: nothing missed in between.
    let last_id = view.newest_id.unwrap_or_default();
    let (rows, no_rows) =
        (view::rows(view.recent.iter().map(|tx| (tx, None))), view.recent.is_empty());
    Ok(Template::render(
        "bank/dashboard",
        context! {
            user: doc.page_user(config), csrf: user.0.csrf(), account, balance: balance.display(),
            rows, no_rows, last_id,
        },
    ))
}

#[get("/transactions?<q>&<page>")]
pub async fn transactions_page(
    q: Option<&str>,
    page: Option<&str>,
    user: CurrentUser,
    app: App<'_>,
) -> Result<Template> {
    let App { db, config } = app;
    let doc = &user.0.doc;
    let q = q.unwrap_or("").trim();
    let page = parse_page(page)?;
    let found = search::search(db, &doc.account, q, page).await?;
    let rows = view::rows(found.results.iter().map(|hit| (&hit.tx, Some(&hit.highlight))));
    let no_rows = found.results.is_empty();
    let newest = history::recent_entries(db, &doc.account, 1).await?;
    let last_id = newest.first().map(|e| e.stream_id.clone()).unwrap_or_default();
    Ok(Template::render(
        "bank/transactions",
        context! {
            user: doc.page_user(config), csrf: user.0.csrf(), q, rows, no_rows,
            total: found.total, page: found.page, pages: found.pages, page_size: PAGE_SIZE,
            last_id, live: q.is_empty() && page == 1,
            prev: (page > 1).then(|| page - 1),
            next: (page < found.pages).then(|| page + 1),
        },
    ))
}

// ---- JSON API ---------------------------------------------------------------------------------

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AccountView {
    number: String,
    holder: String,
    city: String,
    #[schema(example = "USD")]
    currency: &'static str,
    balance: Cents,
}

/// The caller's account and its balance.
#[utoipa::path(tag = "account", responses((status = 200, body = AccountView)))]
#[get("/api/v1/account")]
pub async fn api_account(user: ApiUser, db: &State<Db>) -> Result<Json<AccountView>> {
    let account = account_of(db, &user.session).await?;
    let balance = store::balance(db, &account.number).await?;
    Ok(Json(AccountView {
        number: account.number,
        holder: account.holder,
        city: account.city,
        currency: "USD",
        balance,
    }))
}

/// The balance over a window (at most 500 points, oldest first).
#[utoipa::path(
    tag = "account",
    params(("window" = inline(Option<Window>), Query, description = "`5m` (default), `1h` or `24h`")),
    responses(
        (status = 200, body = Vec<BalancePoint>),
        (status = 400, description = "Unknown window", body = ApiError),
    )
)]
#[get("/api/v1/balance?<window>")]
pub async fn api_balance(
    window: Option<&str>,
    user: ApiUser,
    db: &State<Db>,
) -> Result<Json<Vec<BalancePoint>>> {
    let window = window_ms(window)?;
    Ok(Json(
        history::balance_history(db, &user.session.doc.account, now_ms(), window, MAX_POINTS)
            .await?,
    ))
}

/// Where the money went: merchants by amount spent, biggest first.
#[utoipa::path(tag = "account", responses((status = 200, body = Spenders)))]
#[get("/api/v1/spenders")]
pub async fn api_spenders(user: ApiUser, db: &State<Db>) -> Result<Json<Spenders>> {
    Ok(Json(history::spenders(db, &user.session.doc.account).await?))
}

/// The newest transactions, newest first.
#[utoipa::path(
    tag = "account",
    params(("limit" = Option<u32>, Query, minimum = 1, maximum = 100, description = "How many (default 10)")),
    responses(
        (status = 200, body = Vec<Transaction>),
        (status = 400, description = "`limit` is not a number from 1 to 100", body = ApiError),
    )
)]
#[get("/api/v1/transactions?<limit>")]
pub async fn api_transactions(
    limit: Option<&str>,
    user: ApiUser,
    app: App<'_>,
) -> Result<Json<Vec<Transaction>>> {
    let App { db, config } = app;
    let limit = match limit {
        None => 10,
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|l| (1..=100).contains(l))
            .ok_or_else(|| Error::BadRequest("limit must be a number from 1 to 100".into()))?,
    };
    let oldest = config.bank.oldest_transaction(now_ms());
    Ok(Json(history::recent(db, &user.session.doc.account, limit, oldest).await?))
}

/// Full-text and prefix search over the caller's transactions (description, merchant, type),
/// newest first, with the matched ranges (UTF-16 offsets) to highlight.
#[utoipa::path(
    tag = "account",
    params(
        ("q" = Option<String>, Query, description = "Words; the last may be a prefix. Empty: everything"),
        ("page" = Option<u32>, Query, minimum = 1, maximum = 500, description = "Default 1"),
    ),
    responses(
        (status = 200, body = SearchPage),
        (status = 400, description = "A bad page or query", body = ApiError),
    )
)]
#[get("/api/v1/search?<q>&<page>")]
pub async fn api_search(
    q: Option<&str>,
    page: Option<&str>,
    user: ApiUser,
    db: &State<Db>,
) -> Result<Json<SearchPage>> {
    let page = parse_page(page)?;
    Ok(Json(search::search(db, &user.session.doc.account, q.unwrap_or("").trim(), page).await?))
}

// ---- seed-compatible endpoints ----------------------------------------------------------------

/// The seed's balance series (last 5 minutes); like the seed tutorial, the newest point is also
/// stored in the session document as `currentBalanceAmount`.
#[utoipa::path(tag = "seed", responses((status = 200, body = Vec<BalancePoint>)))]
#[get("/transaction/balance")]
pub async fn seed_balance(user: ApiUser, db: &State<Db>) -> Result<Json<Vec<BalancePoint>>> {
    let points =
        history::balance_history(db, &user.session.doc.account, now_ms(), 5 * 60_000, MAX_POINTS)
            .await?;
    let stored = user.session.doc.current_balance_amount.as_ref();
    if let Some(last) = points.last() {
        let value = serde_json::to_value(last).map_err(|e| Error::Internal(e.to_string()))?;
        // A client polling this sees the same newest point most times: no write for those.
        if stored == Some(&value) {
            return Ok(Json(points));
        }
        crate::auth::store::set_session_field(db, &user.session.id, "currentBalanceAmount", &value)
            .await?;
    }
    Ok(Json(points))
}

/// The seed's biggest spenders.
#[utoipa::path(tag = "seed", responses((status = 200, body = Spenders)))]
#[get("/transaction/biggestspenders")]
pub async fn seed_spenders(user: ApiUser, db: &State<Db>) -> Result<Json<Spenders>> {
    Ok(Json(history::spenders(db, &user.session.doc.account).await?))
}

/// The seed's ten newest transactions.
#[utoipa::path(tag = "seed", responses((status = 200, body = Vec<Transaction>)))]
#[get("/transaction/transactions")]
pub async fn seed_transactions(user: ApiUser, app: App<'_>) -> Result<Json<Vec<Transaction>>> {
    let App { db, config } = app;
    let oldest = config.bank.oldest_transaction(now_ms());
    Ok(Json(history::recent(db, &user.session.doc.account, 10, oldest).await?))
}

/// The seed's search: the first page of matches for `term`, without highlights.
#[utoipa::path(
    tag = "seed",
    params(("term" = Option<String>, Query, description = "Words; the last may be a prefix")),
    responses(
        (status = 200, body = Vec<Transaction>),
        (status = 400, description = "A query that cannot be searched", body = ApiError),
    )
)]
#[get("/transaction/search?<term>")]
pub async fn seed_search(
    term: Option<&str>,
    user: ApiUser,
    db: &State<Db>,
) -> Result<Json<Vec<Transaction>>> {
    let found = search::search(db, &user.session.doc.account, term.unwrap_or("").trim(), 1).await?;
    Ok(Json(found.results.into_iter().map(|hit| hit.tx).collect()))
}
