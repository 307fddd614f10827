//! Cross-cutting web pieces: health check, static files, error catchers and
//! the security-headers fairing applied to every response.

use rocket::fairing::{AdHoc, Fairing, Info, Kind};
use rocket::fs::FileServer;
use rocket::http::Status;
use rocket::request::Request;
use rocket::serde::json::{Json, Value, serde_json::json};
use rocket::{Catcher, Response, State, catch, catchers, get, routes};

use crate::config::Config;
use crate::error::ErrorPage;
use crate::redis::Db;

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

pub fn stage() -> AdHoc {
    AdHoc::on_ignite("Web", |rocket| async {
        let static_dir = rocket
            .state::<Config>()
            .map(|c| c.static_dir.clone())
            .unwrap_or_else(|| "static".into());
        rocket
            .mount("/", routes![healthz])
            .mount("/static", FileServer::from(static_dir).rank(20))
            .register("/", catchers())
            .attach(SecurityHeaders)
    })
}

/// Liveness + Redis reachability for load balancers: 200 when a PING round trip succeeds,
/// 503 otherwise, always within `redis_timeout_ms` (the round trip is bounded by [`Db::run`]).
#[get("/healthz")]
async fn healthz(db: &State<Db>) -> (Status, Json<Value>) {
    let ping = db.run(async |c| redis::cmd("PING").query_async::<_, String>(c).await).await;
    match ping {
        Ok(_) => (Status::Ok, Json(json!({ "status": "ok", "redis": "ok" }))),
        Err(e) => {
            rocket::warn!("healthz: {e}");
            (Status::ServiceUnavailable, Json(json!({ "status": "degraded", "redis": "down" })))
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
            res.set_raw_header(*name, *value);
        }
        // Pages and API carry account data: never cache them. Static assets are public.
        if req.uri().path().starts_with("/static/") && res.status() == Status::Ok {
            res.set_raw_header("Cache-Control", "public, max-age=3600");
        } else {
            res.set_raw_header("Cache-Control", "no-store");
        }
        res.remove_header("Server");
    }
}
