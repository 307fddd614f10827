//! Cross-cutting web pieces: health check, static files, error catchers and
//! the security-headers fairing applied to every response.

pub mod app;
pub mod assets;
pub mod metrics;
pub mod page;

use rocket::data::{Data, FromData, Limits};
use rocket::fairing::{AdHoc, Fairing, Info, Kind};
use rocket::form::{Form, FromForm, ValueField};
use rocket::http::{ContentType, RawStr, Status};
use rocket::request::Request;
use rocket::route::{Handler, Route};
use rocket::serde::json::{Json, Value, serde_json::json};
use rocket::{Catcher, Response, State, catch, catchers, data, get, route, routes};

use crate::config::Config;
use crate::error::{Error, ErrorPage};
use crate::redis::Db;
use crate::stage::needs;

/// No inline script or style, nothing from other origins, no framing, no plugins.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
    style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; \
    object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The browser-hardening headers of every response (also sent by the stream listener).
pub const SECURITY_HEADERS: &[(&str, &str)] = &[
    ("Content-Security-Policy", CONTENT_SECURITY_POLICY),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    // Not "no-referrer": with it browsers send `Origin: null` on same-origin form posts, which
    // the CSRF check must then refuse.
    ("Referrer-Policy", "same-origin"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
    ("Permissions-Policy", "camera=(), microphone=(), geolocation=()"),
];

/// The health check, the static files (read and compressed once, here: a missing folder stops
/// the launch), the templates with their `asset()` function, the catchers and the headers.
pub fn stage() -> AdHoc {
    AdHoc::try_on_ignite("Web", |rocket| async {
        let Some(config) = needs::<Config>(&rocket, "Web") else { return Err(rocket) };
        let dir = config.web.static_dir.clone();
        let loaded = tokio::task::spawn_blocking(move || assets::Assets::load(&dir)).await;
        let assets = match loaded.map_err(std::io::Error::other).and_then(std::convert::identity) {
            Ok(assets) => std::sync::Arc::new(assets),
            Err(e) => {
                let dir = config.web.static_dir.display();
                rocket::error!("the static folder {dir} cannot be read: {e}");
                return Err(rocket);
            }
        };
        let for_templates = assets.clone();
        Ok(rocket
            .mount("/", routes![healthz, assets::favicon, assets::static_file])
            .mount("/", exact_paths())
            .manage(assets)
            .attach(rocket_dyn_templates::Template::custom(move |engines| {
                engines.tera.register_function("asset", assets::AssetUrl(for_templates.clone()));
            }))
            .register("/", catchers())
            .attach(SecurityHeaders)
            .attach(AdHoc::on_response("One write per response", |_, res| {
                Box::pin(async move {
                    // Streams have no preset size and keep Rocket's default.
                    if let Some(size) = res.body().preset_size() {
                        res.set_max_chunk_size(size.clamp(MIN_CHUNK, MAX_CHUNK));
                    }
                })
            })))
    })
}

/// How much of a body of known size Rocket hands the connection at a time: all of it, up to 64
/// KiB. Rocket's default (4 KiB) splits a rendered page into two or three socket writes, each a
/// system call with the whole loopback or network send path behind it; a chunk of the body's own
/// size sends a page at once without reserving more buffer than it needs.
const MIN_CHUNK: usize = 4 * 1024;
const MAX_CHUNK: usize = 64 * 1024;

/// Paths are exact: Rocket matches `/events/`, `/events//` and `//events` to the `/events` route
/// (it skips empty segments), which lets them slip past a proxy's rules for `location = /events`
/// (e.g. nginx's per-address stream cap). These routes run before every other and answer 404 for
/// any path with an empty segment or a trailing slash; every other request is forwarded untouched.
fn exact_paths() -> Vec<Route> {
    use rocket::http::Method::*;
    [Get, Head, Post, Put, Delete, Patch, Options]
        .into_iter()
        .map(|method| Route::ranked(-100, method, "/<_..>", ExactPath))
        .collect()
}

#[derive(Clone)]
struct ExactPath;

#[rocket::async_trait]
impl Handler for ExactPath {
    async fn handle<'r>(&self, req: &'r Request<'_>, data: Data<'r>) -> route::Outcome<'r> {
        let path = req.uri().path().as_str();
        if path == "/" || !(path.ends_with('/') || path.contains("//")) {
            route::Outcome::forward(data, Status::NotFound)
        } else {
            route::Outcome::error(Status::NotFound)
        }
    }
}

/// Liveness + Redis reachability for load balancers: 200 when the server the app writes to
/// answers as the primary, 503 otherwise (unreachable, or a replica — mid-failover, or a URL that
/// names one), always within `redis_timeout_ms` (the round trip is bounded by [`Db::run`]). It
/// says what it sees: `role` (`master`, `slave`, …) and `via` (`url` or `sentinel`).
#[get("/healthz")]
async fn healthz(db: &State<Db>) -> (Status, Json<Value>) {
    // `ROLE` is an admin command: a Redis user without it (ACL) still gets a health check,
    // by `PING`, with the role unknown.
    let role = db
        .run(async |c| match redis::cmd("ROLE").query_async::<_, Vec<redis::Value>>(c).await {
            Ok(reply) => Ok(reply.first().and_then(crate::redis::value_text).unwrap_or_default()),
            Err(e) if e.code() == Some("NOPERM") => {
                redis::cmd("PING").query_async::<_, ()>(c).await.map(|_| "unknown".to_owned())
            }
            Err(e) => Err(e),
        })
        .await;
    let via = db.via();
    match role {
        Ok(role) if role == "master" || role == "unknown" => {
            (Status::Ok, Json(json!({ "status": "ok", "redis": "ok", "role": role, "via": via })))
        }
        Ok(role) => {
            rocket::warn!("healthz: Redis answers as {role}, not as the primary");
            let body = json!({ "status": "degraded", "redis": "ok", "role": role, "via": via });
            (Status::ServiceUnavailable, Json(body))
        }
        Err(e) => {
            rocket::warn!("healthz: {e}");
            let body = json!({ "status": "degraded", "redis": "down", "via": via });
            (Status::ServiceUnavailable, Json(body))
        }
    }
}

/// A url-encoded form whose fields never reach the log. Rocket's own form parser traces every
/// field at debug level — passwords included (`url-encoded field: ("password", "…")`) — so forms
/// that carry secrets are read through this guard instead: same decoding (WHATWG
/// `application/x-www-form-urlencoded`, the `form` size limit), no tracing.
#[derive(Debug)]
pub struct SecretForm<T>(pub T);

#[rocket::async_trait]
impl<'r, T> FromData<'r> for SecretForm<T>
where
    T: for<'a> FromForm<'a> + Send + 'static,
{
    type Error = Error;

    async fn from_data(req: &'r Request<'_>, data: Data<'r>) -> data::Outcome<'r, Self> {
        if req.content_type() != Some(&ContentType::Form) {
            return data::Outcome::Forward((data, Status::UnsupportedMediaType));
        }
        let body = match read_body(req, data, "form", Limits::FORM).await {
            Ok(body) => body,
            Err(failed) => return data::Outcome::Error(failed),
        };
        let fields: Vec<(String, String)> = body
            .split('&')
            .filter(|field| !field.is_empty())
            .map(|field| {
                let (name, value) = field.split_once('=').unwrap_or((field, ""));
                let decode = |s: &str| RawStr::new(s).url_decode_lossy().into_owned();
                (decode(name), decode(value))
            })
            .collect();
        let parsed = Form::<T>::parse_iter(
            fields.iter().map(|(name, value)| ValueField::from((name.as_str(), value.as_str()))),
        );
        match parsed {
            Ok(value) => data::Outcome::Success(SecretForm(value)),
            Err(_) => {
                let e = Error::BadRequest("The form could not be understood.".into());
                data::Outcome::Error((Status::UnprocessableEntity, e))
            }
        }
    }
}

/// The whole body as text within the named size limit (the secret-carrying guards' one reader).
async fn read_body(
    req: &Request<'_>,
    data: Data<'_>,
    limit_name: &str,
    default: rocket::data::ByteUnit,
) -> Result<String, (Status, Error)> {
    let limit = req.limits().get(limit_name).unwrap_or(default);
    match data.open(limit).into_string().await {
        Ok(body) if body.is_complete() => Ok(body.into_inner()),
        Ok(_) => {
            Err((Status::PayloadTooLarge, Error::BadRequest("The request is too large.".into())))
        }
        Err(_) => Err((
            Status::BadRequest,
            Error::BadRequest("The request body could not be read.".into()),
        )),
    }
}

/// A JSON body whose text never reaches the log. Rocket's `Json` guard logs a body it cannot
/// parse, verbatim, at `warn` (the default level shows it) — a login with a malformed field would
/// log its password. This guard answers such a body with a 400 that names only where parsing
/// stopped, and logs nothing.
#[derive(Debug)]
pub struct SecretJson<T>(pub T);

#[rocket::async_trait]
impl<'r, T> FromData<'r> for SecretJson<T>
where
    T: serde::de::DeserializeOwned + Send + 'static,
{
    type Error = Error;

    async fn from_data(req: &'r Request<'_>, data: Data<'r>) -> data::Outcome<'r, Self> {
        let body = match read_body(req, data, "json", Limits::JSON).await {
            Ok(body) => body,
            Err(failed) => return data::Outcome::Error(failed),
        };
        match serde_json::from_str(&body) {
            Ok(value) => data::Outcome::Success(SecretJson(value)),
            // serde's message may quote the offending value: say only where it went wrong.
            Err(e) => {
                let message = format!(
                    "The request body is not the JSON this endpoint expects (line {}, column {}).",
                    e.line(),
                    e.column()
                );
                data::Outcome::Error((Status::UnprocessableEntity, Error::BadRequest(message)))
            }
        }
    }
}

fn catchers() -> Vec<Catcher> {
    catchers![default_catcher, not_found]
}

#[catch(404)]
fn not_found() -> ErrorPage {
    ErrorPage { status: Status::NotFound, message: "There is nothing at this address." }
}

/// Every other error status Rocket produces itself (bad form, guard failure, …), in our format.
#[catch(default)]
fn default_catcher(status: Status, _req: &Request<'_>) -> ErrorPage {
    let message = match status.code {
        400 | 422 => "The request could not be understood.",
        401 => "Please sign in.",
        403 => "You are not allowed to do that.",
        413 => "The request is too large.",
        500 => "Something went wrong on our side. Please try again.",
        503 => "The service is temporarily unavailable. Please retry in a moment.",
        _ => status.reason_lossy(),
    };
    ErrorPage { status, message }
}

/// Adds the browser-hardening headers to every response, errors and streams included.
pub struct SecurityHeaders;

#[rocket::async_trait]
impl Fairing for SecurityHeaders {
    fn info(&self) -> Info {
        Info { name: "Security headers", kind: Kind::Response }
    }

    async fn on_response<'r>(&self, req: &'r Request<'_>, res: &mut Response<'r>) {
        for (name, value) in SECURITY_HEADERS {
            // A page that carries a secret in its URL asked for a stricter policy: keep it.
            if *name == "Referrer-Policy" && res.headers().contains(name) {
                continue;
            }
            res.set_raw_header(*name, *value);
        }
        // Pages and API carry account data: never cache them. A static asset's answer says how
        // it is cached (see `assets`).
        let path = req.uri().path();
        let asset = path.starts_with("/static/") || path == "/favicon.ico";
        if !(asset && res.headers().contains("Cache-Control")) {
            res.set_raw_header("Cache-Control", "no-store");
        }
        res.remove_header("Server");
    }
}

/// A response to save rather than show: `Content-Disposition: attachment` with `filename` (ASCII
/// letters, digits, `-`, `_` and `.`; anything else becomes `_`).
pub struct Attachment<R> {
    pub filename: String,
    pub body: R,
}

impl<'r, 'o: 'r, R: rocket::response::Responder<'r, 'o>> rocket::response::Responder<'r, 'o>
    for Attachment<R>
{
    fn respond_to(self, req: &'r Request<'_>) -> rocket::response::Result<'o> {
        let mut res = self.body.respond_to(req)?;
        let safe: String = self
            .filename
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' })
            .collect();
        res.set_raw_header("Content-Disposition", format!("attachment; filename=\"{safe}\""));
        Ok(res)
    }
}

/// A response whose URL carries a secret (a "this wasn't me" link's token): `Referrer-Policy:
/// no-referrer`, so not even this site's own requests from the page repeat the URL. (Its form
/// then posts with `Origin: null`: the route behind it must not rely on the origin check.)
pub struct NoReferrer<R>(pub R);

impl<'r, 'o: 'r, R: rocket::response::Responder<'r, 'o>> rocket::response::Responder<'r, 'o>
    for NoReferrer<R>
{
    fn respond_to(self, req: &'r Request<'_>) -> rocket::response::Result<'o> {
        let mut res = self.0.respond_to(req)?;
        res.set_raw_header("Referrer-Policy", "no-referrer");
        Ok(res)
    }
}
