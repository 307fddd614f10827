//! What the operator console reads and writes in Redis: the session search across users, the
//! failed sign-ins stream and the operator audit stream.

use std::collections::HashMap;
use std::net::IpAddr;

use redis::Value;

use crate::audit::{ClientInfo, FAILED_KEPT};
use crate::auth::model::{Session, SessionId, SessionKind, valid_username};
use crate::auth::store as sessions;
use crate::clock::now_ms;
use crate::error::{Error, Result};
use crate::redis::{Db, is_missing_index, parse_stored, search_hits};

/// Sessions per page of the console.
pub const PAGE_SIZE: usize = 25;

/// Operator actions kept in the audit stream (about; the oldest go first).
const AUDIT_KEPT: usize = 10_000;

/// The oldest a session filter may ask for (ten years): no session lives that long, and the
/// subtraction from the clock stays far from overflowing.
pub const MAX_AGE_SECS: u64 = 10 * 365 * 86_400;

/// Which sessions an operator asks for (all fields optional).
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub user: Option<String>,
    pub kind: Option<SessionKind>,
    pub ip: Option<String>,
    /// Only sessions signed in at least this long ago.
    pub older_than_secs: Option<u64>,
    pub page: usize,
}

impl Filter {
    /// From the query's text fields, refusing what cannot be a user, kind or address (400).
    pub fn parse(
        user: Option<&str>,
        kind: Option<&str>,
        ip: Option<&str>,
        older_than_secs: Option<u64>,
        page: Option<usize>,
    ) -> Result<Filter> {
        fn present(v: Option<&str>) -> Option<&str> {
            v.map(str::trim).filter(|v| !v.is_empty())
        }
        let user = match present(user) {
            Some(u) if valid_username(u) => Some(u.to_owned()),
            Some(_) => return Err(Error::BadRequest("No user has that name.".into())),
            None => None,
        };
        let kind = match present(kind) {
            Some("browser") => Some(SessionKind::Browser),
            Some("mobile") => Some(SessionKind::Mobile),
            Some(_) => return Err(Error::BadRequest("kind is browser or mobile.".into())),
            None => None,
        };
        let ip = match present(ip) {
            Some(ip) => match ip.parse::<IpAddr>() {
                Ok(ip) => Some(ip.to_string()),
                Err(_) => return Err(Error::BadRequest("ip is an IPv4 or IPv6 address.".into())),
            },
            None => None,
        };
        if older_than_secs.is_some_and(|secs| secs > MAX_AGE_SECS) {
            return Err(Error::BadRequest(format!(
                "older_than_secs is at most {MAX_AGE_SECS} (ten years)."
            )));
        }
        let page = page.unwrap_or(1);
        if !(1..=1000).contains(&page) {
            return Err(Error::BadRequest("page is between 1 and 1000.".into()));
        }
        Ok(Filter { user, kind, ip, older_than_secs, page })
    }
}

/// One page of the sessions matching `filter`, newest first, and how many match in all.
pub async fn search(db: &Db, filter: &Filter) -> Result<(usize, Vec<Session>)> {
    match search_once(db, filter).await {
        Err(e) if is_missing_index(&e) => {
            sessions::ensure_index(db).await?;
            search_once(db, filter).await
        }
        other => other,
    }
}

async fn search_once(db: &Db, filter: &Filter) -> Result<(usize, Vec<Session>)> {
    let mut query = Vec::new();
    let mut params: Vec<(String, String)> = Vec::new();
    if let Some(user) = &filter.user {
        query.push("@user:{$user}");
        params.push(("user".into(), user.clone()));
    }
    if let Some(kind) = filter.kind {
        query.push("@kind:{$kind}");
        let kind = if kind == SessionKind::Browser { "browser" } else { "mobile" };
        params.push(("kind".into(), kind.into()));
    }
    if let Some(ip) = &filter.ip {
        query.push("@ip:{$ip}");
        params.push(("ip".into(), ip.clone()));
    }
    if let Some(secs) = filter.older_than_secs {
        query.push("@created_at:[-inf $before]");
        params.push(("before".into(), (now_ms() - secs as i64 * 1000).to_string()));
    }
    let query = if query.is_empty() { "*".to_owned() } else { query.join(" ") };
    let index = db.keys.session_index();
    let offset = (filter.page - 1) * PAGE_SIZE;
    let reply: Vec<Value> = db
        .run(async |c| {
            let mut cmd = redis::cmd("FT.SEARCH");
            cmd.arg(&index).arg(&query);
            if !params.is_empty() {
                cmd.arg("PARAMS").arg(params.len() * 2);
                for (name, value) in &params {
                    cmd.arg(name).arg(value);
                }
            }
            cmd.arg("SORTBY").arg("created_at").arg("DESC");
            cmd.arg("LIMIT").arg(offset).arg(PAGE_SIZE).arg("DIALECT").arg(2);
            cmd.query_async(c).await
        })
        .await?;
    let (total, hits) = search_hits(&reply);
    let prefix = db.keys.session_prefix();
    let found = hits
        .into_iter()
        .filter_map(|(key, json)| {
            let id = SessionId::parse(key.strip_prefix(&prefix)?)?;
            Some(Session::listed(id, parse_stored(&key, &json)?))
        })
        .collect();
    Ok((total, found))
}

/// Failed sign-ins in the stream, counted by account and by address (most first).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct FailedSignIns {
    pub total: usize,
    pub by_account: Vec<(String, usize)>,
    pub by_address: Vec<(String, usize)>,
    /// Since (ms) — the oldest entry read.
    pub since: Option<i64>,
}

pub async fn failed_sign_ins(db: &Db) -> Result<FailedSignIns> {
    let entries = db.newest_entries(&db.keys.failed_sign_ins(), FAILED_KEPT).await?;
    let (mut accounts, mut addresses) =
        (HashMap::<String, usize>::new(), HashMap::<String, usize>::new());
    let mut since = None;
    let mut total = 0;
    for entry in &entries {
        if let (Some(user), Some(ip)) = (entry.field("user"), entry.field("ip")) {
            *accounts.entry(user.to_owned()).or_default() += 1;
            *addresses.entry(crate::auth::throttle::address_group(ip)).or_default() += 1;
            total += 1;
            since = entry.added_ms();
        }
    }
    let top = |map: HashMap<String, usize>| {
        let mut v: Vec<(String, usize)> = map.into_iter().collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v.truncate(20);
        v
    };
    Ok(FailedSignIns { total, by_account: top(accounts), by_address: top(addresses), since })
}

/// Appends an operator action to the audit stream.
pub async fn audit(
    db: &Db,
    admin: &str,
    action: &str,
    target: &str,
    detail: &str,
    client: &ClientInfo,
) {
    let ip = client.ip.as_str();
    let fields =
        [("admin", admin), ("action", action), ("target", target), ("detail", detail), ("ip", ip)];
    let written = db.append(&db.keys.admin_audit(), AUDIT_KEPT, &fields).await;
    if let Err(e) = written {
        rocket::error!("operator action not audited ({admin} {action} {target}): {e}");
    }
}
