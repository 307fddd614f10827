//! Foundation: health check under Redis faults, the module check, error pages and security headers.

use std::time::{Duration, Instant};

use rocket::http::{Accept, ContentType, Header, Status};
use rocket::local::asynchronous::LocalResponse;
use serde_json::{Value, json};

use crate::common;
use crate::common::server::{Binary, form_login, raw_exchange};
use crate::common::{RedisServer, TestApp, credentials, server, shared_redis};

async fn json_body(res: LocalResponse<'_>) -> serde_json::Value {
    serde_json::from_str(&res.into_string().await.unwrap_or_default()).expect("JSON body")
}

#[rocket::async_test]
async fn healthz_ok_when_redis_answers() {
    let app = TestApp::new().await;
    let res = app.get_expecting("/healthz", Status::Ok, ContentType::JSON).await;
    let want = serde_json::json!({"status": "ok", "redis": "ok", "role": "master", "via": "url"});
    assert_eq!(json_body(res).await, want);
}

/// Polls /healthz until it answers `want`, returning how long the last request took.
async fn healthz_until(app: &TestApp, want: Status, within: Duration) -> Duration {
    let deadline = Instant::now() + within;
    loop {
        let started = Instant::now();
        let res = app.client.get("/healthz").dispatch().await;
        let took = started.elapsed();
        if res.status() == want {
            return took;
        }
        assert!(Instant::now() < deadline, "healthz stayed {} (wanted {want})", res.status());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[rocket::async_test]
async fn healthz_503_fast_when_redis_stops_and_recovers_when_it_restarts() {
    let mut redis = RedisServer::start();
    let app = TestApp::with(&redis, |f| f).await;
    assert_eq!(app.client.get("/healthz").dispatch().await.status(), Status::Ok);

    redis.stop();
    let started = Instant::now();
    let res = app.client.get("/healthz").dispatch().await;
    let took = started.elapsed();
    assert_eq!(res.status(), Status::ServiceUnavailable);
    assert!(took < Duration::from_secs(1), "503 took {took:?}");
    let want = serde_json::json!({"status": "degraded", "redis": "down", "via": "url"});
    assert_eq!(json_body(res).await, want);

    // Still fast on repeated calls while Redis is gone (no pool exhaustion, no growing waits).
    for _ in 0..5 {
        let started = Instant::now();
        let status = app.client.get("/healthz").dispatch().await.status();
        assert_eq!(status, Status::ServiceUnavailable);
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    redis.restart();
    healthz_until(&app, Status::Ok, Duration::from_secs(10)).await;
}

#[rocket::async_test]
async fn healthz_503_fast_when_redis_is_frozen_and_recovers_when_it_thaws() {
    let redis = RedisServer::start();
    let app = TestApp::with(&redis, |f| f).await;
    assert_eq!(app.client.get("/healthz").dispatch().await.status(), Status::Ok);

    redis.freeze();
    for _ in 0..3 {
        let started = Instant::now();
        let res = app.client.get("/healthz").dispatch().await;
        assert_eq!(res.status(), Status::ServiceUnavailable);
        let took = started.elapsed();
        assert!(took < Duration::from_secs(1), "503 took {took:?} with a frozen Redis");
    }

    redis.thaw();
    healthz_until(&app, Status::Ok, Duration::from_secs(10)).await;
}

#[rocket::async_test]
async fn module_check_names_what_is_missing() {
    let app = TestApp::new().await;
    let missing = redbank::redis::missing_modules(app.db()).await.expect("MODULE LIST");
    assert!(missing.is_empty(), "modules missing on the test server: {missing:?}");

    let bare = RedisServer::start_without_modules();
    let app = TestApp::with(&bare, |f| f).await;
    let missing = redbank::redis::missing_modules(app.db()).await.expect("MODULE LIST");
    assert_eq!(missing, vec!["RedisJSON", "RediSearch"]);
}

/// The icon browsers ask for by its plain name: cached, but revalidated (its ETag answers 304).
#[rocket::async_test]
async fn the_site_icon_is_served_and_cacheable() {
    let app = TestApp::new().await;
    let res = app.get_expecting("/favicon.ico", Status::Ok, ContentType::Icon).await;
    assert_eq!(res.headers().get_one("Cache-Control"), Some("public, no-cache"));
    let etag = res.headers().get_one("ETag").expect("an ETag").to_owned();
    let body = res.into_bytes().await.unwrap();
    assert_eq!(&body[..4], &[0, 0, 1, 0], "not an ICO file");
    let again =
        app.client.get("/favicon.ico").header(Header::new("If-None-Match", etag)).dispatch();
    let again = again.await;
    assert_eq!(again.status(), Status::NotModified);
    assert!(again.into_bytes().await.unwrap_or_default().is_empty());
}

/// The first `href`/`src` in `html` that names `/static/<prefix>…`.
fn linked(html: &str, prefix: &str) -> String {
    let start =
        html.find(&format!("\"/static/{prefix}")).unwrap_or_else(|| panic!("{prefix}: {html}"));
    let rest = &html[start + 1..];
    rest[..rest.find('"').unwrap()].to_owned()
}

/// Pages link to content-hashed names, served from memory for a year as `immutable`, in brotli
/// or gzip as the client accepts (decoding to the file on disk), or as they are; the plain name
/// is revalidated; a stale hash or a path out of the folder is a 404.
#[rocket::async_test]
async fn static_assets_are_content_hashed_immutable_and_compressed() {
    use std::io::Read;
    let app = TestApp::new().await;
    let login = app.client.get("/login").dispatch().await.into_string().await.unwrap();
    let css = linked(&login, "css/app.");
    let on_disk = std::fs::read("static/css/app.css").unwrap();
    let hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&on_disk));
    assert_eq!(css, format!("/static/css/app.{}.css", &hash[..10]));

    let get = async |path: &str, accept: Option<&str>| {
        let mut req = app.client.get(path.to_owned());
        if let Some(accept) = accept {
            req = req.header(Header::new("Accept-Encoding", accept.to_owned()));
        }
        let res = req.dispatch().await;
        let header = |name: &str| res.headers().get_one(name).map(str::to_owned);
        let heads = (header("Content-Encoding"), header("Cache-Control"), header("Vary"));
        (res.status(), res.content_type(), heads, res.into_bytes().await.unwrap_or_default())
    };
    let (status, kind, (coding, cache, vary), body) = get(&css, Some("gzip, deflate, br")).await;
    assert_eq!((status, kind), (Status::Ok, Some(ContentType::CSS)));
    assert_eq!(coding.as_deref(), Some("br"));
    assert_eq!(cache.as_deref(), Some("public, max-age=31536000, immutable"));
    assert_eq!(vary.as_deref(), Some("Accept-Encoding"));
    let mut decoded = Vec::new();
    brotli::Decompressor::new(&body[..], 4096).read_to_end(&mut decoded).unwrap();
    assert_eq!(decoded, on_disk);
    assert!(
        body.len() * 2 < on_disk.len(),
        "brotli saved little: {} of {}",
        body.len(),
        on_disk.len()
    );

    let (_, _, (coding, _, _), body) = get(&css, Some("gzip")).await;
    assert_eq!(coding.as_deref(), Some("gzip"));
    let mut decoded = Vec::new();
    flate2::read::GzDecoder::new(&body[..]).read_to_end(&mut decoded).unwrap();
    assert_eq!(decoded, on_disk);
    let (_, _, (coding, _, _), body) = get(&css, None).await;
    assert_eq!((coding, body), (None, on_disk.clone()));

    let (status, _, (_, cache, _), body) = get("/static/css/app.css", Some("br")).await;
    assert_eq!((status, cache.as_deref()), (Status::Ok, Some("public, no-cache")));
    assert!(!body.is_empty());
    // Images are sent as they are.
    let (_, kind, (coding, _, _), _) = get("/static/icons/icon-192.png", Some("br")).await;
    assert_eq!((kind, coding), (Some(ContentType::PNG), None));
    for missing in ["/static/css/app.0000000000.css", "/static/../Cargo.toml", "/static/nothing.js"]
    {
        let (status, _, (_, cache, _), _) = get(missing, None).await;
        assert_eq!((status, cache.as_deref()), (Status::NotFound, Some("no-store")), "{missing}");
    }
}

#[rocket::async_test]
async fn unknown_page_gets_the_html_404_page() {
    let app = TestApp::new().await;
    let res = app.get_expecting("/no/such/page", Status::NotFound, ContentType::HTML).await;
    let body = res.into_string().await.unwrap();
    assert!(body.contains("404") && body.contains("nothing at this address"), "{body}");
}

#[rocket::async_test]
async fn unknown_api_path_gets_a_json_404() {
    let app = TestApp::new().await;
    let res = app.get_expecting("/api/v1/no-such-thing", Status::NotFound, ContentType::JSON).await;
    let body = json_body(res).await;
    assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()), "{body}");

    // A JSON client gets JSON on any path.
    let res = app.client.get("/nope").header(Accept::JSON).dispatch().await;
    assert_eq!(res.status(), Status::NotFound);
    assert_eq!(res.content_type(), Some(ContentType::JSON));
}

fn assert_security_headers(res: &LocalResponse<'_>, what: &str) {
    let h = res.headers();
    let csp = h.get_one("Content-Security-Policy").unwrap_or_else(|| panic!("{what}: no CSP"));
    for part in
        ["script-src 'self'", "object-src 'none'", "base-uri 'none'", "frame-ancestors 'none'"]
    {
        assert!(csp.contains(part), "{what}: CSP lacks {part}: {csp}");
    }
    assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"), "{what}: {csp}");
    assert_eq!(h.get_one("X-Content-Type-Options"), Some("nosniff"), "{what}");
    assert_eq!(h.get_one("X-Frame-Options"), Some("DENY"), "{what}");
    assert!(h.get_one("Referrer-Policy").is_some(), "{what}: no Referrer-Policy");
    assert_eq!(h.get_one("Server"), None, "{what}: server version leaked");
}

#[rocket::async_test]
async fn security_headers_on_pages_errors_and_json() {
    let app = TestApp::new().await;
    let page = app.client.get("/login").dispatch().await;
    assert_eq!(page.status(), Status::Ok);
    assert_security_headers(&page, "200 page");
    assert_eq!(page.headers().get_one("Cache-Control"), Some("no-store"));

    let missing = app.client.get("/missing").dispatch().await;
    assert_eq!(missing.status(), Status::NotFound);
    assert_security_headers(&missing, "404 page");

    let json = app.client.get("/healthz").dispatch().await;
    assert_eq!(json.status(), Status::Ok);
    assert_security_headers(&json, "JSON");

    let css = app.client.get("/static/css/app.css").dispatch().await;
    assert_eq!(css.status(), Status::Ok);
    assert_security_headers(&css, "static file");
}

/// Add to home screen: every page names the web app manifest and the theme colour, and the
/// manifest's icons are served as PNG images of the sizes it says.
#[rocket::async_test]
async fn the_app_can_be_added_to_a_home_screen() {
    let app = TestApp::new().await;
    let login = app.client.get("/login").dispatch().await.into_string().await.unwrap();
    assert!(login.contains(r#"<link rel="manifest" href="/static/manifest."#), "{login}");
    assert!(login.contains(r##"<meta name="theme-color" content="#c8102e">"##), "{login}");
    let res = app.client.get(linked(&login, "manifest.")).dispatch().await;
    assert_eq!(res.status(), Status::Ok);
    let manifest: Value = serde_json::from_str(&res.into_string().await.unwrap()).unwrap();
    assert_eq!(
        (manifest["start_url"].as_str(), manifest["display"].as_str()),
        (Some("/dashboard"), Some("standalone"))
    );
    let icons = manifest["icons"].as_array().unwrap();
    let sizes: Vec<&str> = icons.iter().filter_map(|i| i["sizes"].as_str()).collect();
    assert_eq!(sizes, ["192x192", "512x512"]);
    for icon in icons {
        let res = app.client.get(icon["src"].as_str().unwrap().to_owned()).dispatch().await;
        assert_eq!(res.status(), Status::Ok, "{icon}");
        assert_eq!(res.content_type(), Some(ContentType::PNG), "{icon}");
        let png = res.into_bytes().await.unwrap();
        // The PNG header's width and height (IHDR) are the size the manifest says.
        let side = u32::from_be_bytes(png[16..20].try_into().unwrap());
        let high = u32::from_be_bytes(png[20..24].try_into().unwrap());
        assert_eq!(format!("{side}x{high}"), icon["sizes"].as_str().unwrap(), "{icon}");
    }
}

/// The launch fails at the Config fairing (and Rocket's error must be inspected, or it panics on drop).
async fn assert_config_rejected(figment: rocket::figment::Figment) {
    assert_launch_refused_by(figment, "Config").await;
}

/// Building the app on `figment` fails, and the fairing named `fairing` is what refused it.
async fn assert_launch_refused_by(figment: rocket::figment::Figment, fairing: &str) {
    assert_refused_by(redbank::build(figment), fairing).await;
}

/// Launching `rocket` fails, and the fairing named `fairing` is what refused it.
async fn assert_refused_by(rocket: rocket::Rocket<rocket::Build>, fairing: &str) {
    let Err(err) = rocket::local::asynchronous::Client::untracked(rocket).await else {
        panic!("{fairing}: launch must fail");
    };
    match err.kind() {
        rocket::error::ErrorKind::FailedFairings(failed) => {
            assert!(failed.iter().any(|f| f.name == fairing), "{fairing}: {failed:?}")
        }
        other => panic!("{fairing}: unexpected launch error: {other:?}"),
    }
}

#[rocket::async_test]
async fn invalid_configuration_stops_the_launch() {
    let redis = common::shared_redis();
    let absolute_below_idle = common::test_figment(redis, "bad:")
        .merge(("session_absolute_secs", 10))
        .merge(("session_idle_secs", 60));
    assert_config_rejected(absolute_below_idle).await;
    assert_config_rejected(common::test_figment(redis, "has space:")).await;
    assert_config_rejected(common::test_figment(redis, "{tag}:")).await;
    // A value of the wrong type names its key.
    let figment = common::test_figment(redis, "typed:").merge(("session_idle_secs", "five"));
    let error = redbank::Config::from_figment(&figment).map(|_| ()).unwrap_err().to_string();
    assert!(error.contains("session_idle_secs"), "{error}");
    // What only a feature can check, its stage checks at ignite.
    let bad_mail = common::test_figment(redis, "mail:").merge(("admin_email", "not an address"));
    assert_launch_refused_by(bad_mail, "Mail").await;
    let bad_smtp = common::test_figment(redis, "smtp:").merge(("smtp_url", "ftp://mail"));
    assert_launch_refused_by(bad_smtp, "Mail").await;
    let bad_origin = common::test_figment(redis, "origin:").merge(("public_origin", "not a url"));
    assert_launch_refused_by(bad_origin, "Strong authentication").await;
    // The static files are read at start: a folder that is not there is no app to serve.
    let no_static = common::test_figment(redis, "static:").merge(("static_dir", "/nonexistent"));
    assert_launch_refused_by(no_static, "Web").await;
}

#[rocket::async_test]
async fn a_stream_port_that_cannot_be_served_stops_the_launch() {
    let redis = common::shared_redis();
    let launch_fails = |figment| assert_launch_refused_by(figment, "Stream listener");
    // The same port as Rocket's own.
    let port = common::free_port();
    let figment = common::test_figment(redis, "same:").merge(("port", port));
    launch_fails(figment.merge(("stream_port", port))).await;
    // A port somebody else holds.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let figment = common::test_figment(redis, "taken:").merge(("address", "127.0.0.1"));
    launch_fails(figment.merge(("stream_port", taken.local_addr().unwrap().port()))).await;
}

/// A stage attached without the stages it needs (here: transfers without configuration and
/// Redis) stops the launch, naming itself, instead of leaving its background task unstarted.
#[rocket::async_test]
async fn a_stage_without_what_it_needs_stops_the_launch() {
    let figment = common::test_figment(common::shared_redis(), "alone:");
    for (rocket, name) in [
        (rocket::custom(figment.clone()).attach(redbank::transfer::stage()), "Transfers"),
        (rocket::custom(figment.clone()).attach(redbank::bank::stage()), "Bank"),
        (
            rocket::custom(figment).attach(redbank::config::stage()).attach(redbank::live::stage()),
            "Live updates",
        ),
    ] {
        assert_refused_by(rocket, name).await;
    }
}

/// What a route takes from the application's state is checked at launch (Rocket's sentinels):
/// an application assembled without a stage that a route needs stops, naming what is missing,
/// instead of answering 500s. Transfers close the account after a closing's payout through a step
/// the account stage hands them (they do not import `account`); the authentication handlers'
/// `AuthApp` needs the relying party of the strong-authentication stage.
#[rocket::async_test]
async fn a_route_without_the_state_it_takes_stops_the_launch() {
    let figment = common::test_figment(common::shared_redis(), "nostate:");
    let base = || {
        rocket::custom(figment.clone())
            .attach(redbank::config::stage())
            .attach(redbank::redis::stage())
    };
    for (rocket, missing) in [
        (base().attach(redbank::transfer::stage()), "ClosesAccount"),
        (base().attach(redbank::auth::stage()), "AuthApp"),
    ] {
        let Err(err) = rocket::local::asynchronous::Client::untracked(rocket).await else {
            panic!("{missing}: the launch must stop");
        };
        match err.kind() {
            rocket::error::ErrorKind::SentinelAborts(sentries) => {
                let named = sentries.iter().any(|s| s.type_name.contains(missing));
                assert!(named, "{missing}: {sentries:?}");
            }
            other => panic!("{missing}: unexpected launch error: {other:?}"),
        }
    }
}

#[rocket::async_test]
async fn a_redis_that_lost_its_data_is_repaired_without_a_restart() {
    let mut redis = RedisServer::start();
    let app = TestApp::with(&redis, |f| f.merge(("repair_interval_secs", 1))).await;
    let login = || app.try_api_login("bob", "foobared", None);
    assert_eq!(login().await, Status::Ok);
    redis.restart(); // no persistence: users, accounts and indexes are gone
    // Wait for the repair by looking at Redis (failed logins would trip the throttle).
    let mut c = redis.conn().await;
    let user_key = app.keys().user("bob");
    let deadline = Instant::now() + Duration::from_secs(15);
    while !redis::cmd("EXISTS").arg(&user_key).query_async::<_, bool>(&mut c).await.unwrap() {
        assert!(Instant::now() < deadline, "bob was never re-created");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(login().await, Status::Ok);
    // The accounts are repaired by their own loop: wait for them too.
    loop {
        let accounts: Vec<String> =
            redis::cmd("SMEMBERS").arg(app.keys().accounts()).query_async(&mut c).await.unwrap();
        if accounts.contains(&"1580783161".to_owned()) {
            break;
        }
        assert!(Instant::now() < deadline, "the accounts were never re-created: {accounts:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

// ---- request ids and the log --------------------------------------------------------------------

fn request_id(res: &LocalResponse<'_>) -> String {
    res.headers().get_one("X-Request-Id").expect("X-Request-Id").to_owned()
}

#[rocket::async_test]
async fn every_response_carries_a_request_id_a_client_cannot_choose() {
    let app = TestApp::new().await;
    let ok = app.client.get("/healthz").dispatch().await;
    let chosen = Header::new("X-Request-Id", "chosen-by-the-client");
    let missing = app.client.get("/no-such-page").header(chosen).dispatch().await;
    assert_eq!(missing.status(), Status::NotFound);
    let (a, b) = (request_id(&ok), request_id(&missing));
    assert!(a.len() == 32 && a.bytes().all(|c| c.is_ascii_hexdigit()), "{a}");
    assert_ne!(a, b);
    assert_ne!(b, "chosen-by-the-client", "an untrusted client chose its request id");

    // Behind a proxy named as trusted, its id is the request's — when it is a short plain label.
    let proxied =
        TestApp::with(shared_redis(), |f| f.merge(("request_id_header", "X-Request-Id"))).await;
    let long = "x".repeat(129);
    for (sent, kept) in [("4bf92f35-77b3:4da6.a3ce_9", true), ("two words", false), (&long, false)]
    {
        let header = Header::new("X-Request-Id", sent.to_owned());
        let res = proxied.client.get("/api/v1/me").header(header).dispatch().await;
        assert_eq!(res.status(), Status::Unauthorized);
        assert_eq!(request_id(&res) == sent, kept, "{sent}");
    }
}

#[rocket::async_test]
async fn the_json_log_has_one_object_per_line_and_each_request_with_its_id() {
    let prefix = common::unique_prefix();
    let log =
        std::env::temp_dir().join(format!("redbank-json-{}.txt", prefix.trim_end_matches(':')));
    let env = [
        ("ROCKET_LOG_FORMAT", "json"),
        ("ROCKET_LOG_LEVEL", "normal"),
        ("ROCKET_GENERATOR_INTERVAL_MS", "0"),
    ];
    let app = Binary::start(shared_redis(), &prefix, &env, Some(&log)).await;
    let res = app.http.get(format!("{}/api/v1/me?q=private-search", app.base)).send().await;
    let res = res.unwrap();
    assert_eq!(res.status(), 401);
    let id = res.headers()["x-request-id"].to_str().unwrap().to_owned();
    // Rocket reports a path nothing serves as an error, with its query, and a request it cannot
    // parse as a warning, with its URI; not here.
    let missing = app.http.get(format!("{}/no-such-page?q=private-search", app.base)).send().await;
    assert_eq!(missing.unwrap().status(), 404);
    let addr = app.base.trim_start_matches("http://").to_owned();
    let unparsable: &[u8] =
        b"BREW /pot?q=private-search HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let answer = raw_exchange(&addr, &[unparsable], Duration::ZERO, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 4"), "{answer}");
    drop(app);
    let text = std::fs::read_to_string(&log).unwrap();
    let _ = std::fs::remove_file(&log);
    let records: Vec<serde_json::Value> = text
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect();
    assert!(records.iter().any(|r| r["msg"].as_str().is_some_and(|m| m.contains("launched"))));
    assert!(records.iter().all(|r| r["ts"].is_string() && r["level"].is_string()), "{text}");
    let access = records.iter().find(|r| r["request_id"] == id.as_str()).expect("no access record");
    assert_eq!(access["target"], "redbank::access");
    assert_eq!(
        (&access["method"], &access["path"], &access["status"]),
        (&"GET".into(), &"/api/v1/me".into(), &401.into())
    );
    assert!(access["ms"].is_number(), "{access}");
    assert!(!text.contains("private-search"), "a query string reached the log");
}

/// Runs the real binary at `level` against the shared Redis, signs in (a wrong password, then
/// the API and the form), lets self-repair run, and returns the log and what it must not contain.
async fn secrets_and_log(prefix: &str, level: &str) -> (Vec<String>, String) {
    let log =
        std::env::temp_dir().join(format!("redbank-log-{}.txt", prefix.trim_end_matches(':')));
    let env = [
        ("ROCKET_LOG_LEVEL", level),
        ("ROCKET_GENERATOR_INTERVAL_MS", "0"),
        ("ROCKET_REPAIR_INTERVAL_SECS", "1"),
    ];
    let app = Binary::start(shared_redis(), prefix, &env, Some(&log)).await;
    let (http, base) = (&app.http, app.base.as_str());
    let wrong = "marker-Wr0ng-pa55word";
    let (status, _) = server::post_api_login(http, base, &credentials("bob", wrong)).await;
    assert_eq!(status, 401);
    // A body Rocket's own JSON guard would have logged verbatim, at the default level.
    let body = json!({"username": "bob", "password": wrong, "device_token": 5});
    assert_eq!(server::post_api_login(http, base, &body).await.0, 422);
    let token = server::api_token(http, base, "bob", "foobared").await;
    let cookie = form_login(http, base, "alice", "wonderland").await;
    let res = http.get(format!("{base}/api/v1/me")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(res.status(), 200);
    // Clients that hang up mid-request: ordinary, and no operator's business at this level.
    for _ in 0..10 {
        let mut tcp =
            tokio::net::TcpStream::connect(base.trim_start_matches("http://")).await.unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut tcp, b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
    }
    // Let self-repair run a few times (it used to re-create and re-announce the admin).
    tokio::time::sleep(Duration::from_millis(2500)).await;
    drop(app);
    let text = std::fs::read_to_string(&log).unwrap();
    let _ = std::fs::remove_file(&log);
    assert!(text.contains("Rocket has launched"), "no log captured: {text}");
    let session = cookie.trim_start_matches("redbank=").to_owned();
    (vec![wrong.into(), "foobared".into(), "wonderland".into(), token, session], text)
}

#[rocket::async_test]
async fn no_password_or_token_reaches_the_log_and_no_admin_exists_without_a_password() {
    // At the production level nothing secret is logged; at debug no password is (Rocket's form
    // parser traces fields there). Debug also prints hyper's raw headers — cookies and bearer
    // tokens included — which is why it is never for production (docs/SECURITY.md).
    for (level, checked) in [("normal", 5), ("debug", 3)] {
        let prefix = common::unique_prefix();
        let (secrets, text) = secrets_and_log(&prefix, level).await;
        for secret in &secrets[..checked] {
            assert!(!text.contains(secret.as_str()), "{level}: a secret reached the log:\n{text}");
        }
        assert!(!text.to_lowercase().contains("password `"), "{level}: a password was logged");
        if level != "debug" {
            for noise in ["Connection failed", "Remote left", "connection closed"] {
                assert!(!text.contains(noise), "{level}: a client disconnect was logged:\n{text}");
            }
        }
        let admin = shared_redis().exists(&redbank::redis::Keys::new(&prefix).user("admin")).await;
        assert!(!admin, "an admin user exists although no admin_password is set");
    }
}

#[rocket::async_test]
async fn users_follow_the_configuration_across_restarts() {
    let prefix = common::unique_prefix();
    let admin = |password: &'static str| {
        move |f: rocket::figment::Figment| f.merge(("admin_password", password))
    };
    // An admin with one password, and a signed-in admin session.
    let app = TestApp::with_prefix(shared_redis(), &prefix, admin("first-password-1")).await;
    let session = app.api_login("admin", "first-password-1").await;
    drop(app);
    // Restarted with another password: the old one and its sessions are gone.
    let app = TestApp::with_prefix(shared_redis(), &prefix, admin("second-password-2")).await;
    let me =
        app.client.get("/api/v1/me").header(common::bearer(&session)).dispatch().await.status();
    assert_eq!(me, Status::Unauthorized, "a session of the old admin password lives on");
    assert_eq!(app.try_api_login("admin", "first-password-1", None).await, Status::Unauthorized);
    assert_eq!(app.try_api_login("admin", "second-password-2", None).await, Status::Ok);
    drop(app);
    // Restarted without it (as an earlier version left an admin with a generated password), and
    // without the demo users: they are removed, not kept.
    let app = TestApp::with_prefix(shared_redis(), &prefix, |f| {
        f.merge(("admin_password", None::<String>)).merge(("demo_users", false))
    })
    .await;
    assert_eq!(app.try_api_login("admin", "second-password-2", None).await, Status::Unauthorized);
    assert_eq!(app.try_api_login("bob", "foobared", None).await, Status::Unauthorized);
    let keys = app.stored_keys(shared_redis()).await;
    for user in ["admin", "bob", "alice"] {
        assert!(!keys.contains(&app.keys().user(user)), "{user} remains: {keys:?}");
    }
}

#[rocket::async_test]
async fn demo_users_can_be_turned_off() {
    let app = TestApp::with(shared_redis(), |f| f.merge(("demo_users", false))).await;
    let page = app.client.get("/login").dispatch().await.into_string().await.unwrap();
    assert!(!page.contains("foobared"), "the login page still hints at the demo password");
    assert_eq!(app.try_login_browser("bob", "foobared").await.status, Status::Unauthorized);
    let keys = app.stored_keys(shared_redis()).await;
    let k = app.keys();
    for key in [k.user("bob"), k.user("alice"), k.account("1580783161"), k.account("2734819056")] {
        assert!(!keys.contains(&key), "{key} exists: {keys:?}");
    }
    // The configured admin is still created: it is not a demo user.
    assert_eq!(
        app.try_login_browser("admin", common::ADMIN_PASSWORD).await.status,
        Status::SeeOther
    );
    // And with the default, the demo works as before.
    let app = TestApp::new().await;
    let page = app.client.get("/login").dispatch().await.into_string().await.unwrap();
    assert!(page.contains("bob"));
    assert_eq!(app.try_login_browser("bob", "foobared").await.status, Status::SeeOther);
}
