//! Regression tests for the holes an outside security review found (docs/SECURITY.md F.28–F.32): each
//! test reproduces one finding against the real app over real HTTP (or the real binary) and fails
//! on the code before its fix.
//!
//! An `/events` rule is checked once, on Rocket's port; where each server does its own part
//! (reading the resume point, the client address, routing, HTTP/1.1) both are.

use crate::common;
use crate::common::server;

use std::net::IpAddr;
use std::time::Duration;

use crate::common::server::{
    Binary, Sse, TestServer, Via, form_login, form_login_attempt, raw_exchange,
};
use crate::common::{RedisServer, TestApp, credentials, session_id, shared_redis};
use redbank::auth::model::{Assurance, SessionKind};
use redbank::auth::store::{self, ClientInfo};
use rocket::http::Status;
use serde_json::{Value, json};

const VIAS: [Via; 2] = [Via::Rocket, Via::Listener];

/// An HTTP client whose connections come from `ip` (any 127.x.y.z is a distinct client address).
fn client_from(ip: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .local_address(ip.parse::<IpAddr>().unwrap())
        .build()
        .unwrap()
}

/// `POST /api/v1/login` from `http`'s address; the status and the JSON body.
async fn api_login(
    http: &reqwest::Client,
    server: &TestServer,
    body: Value,
) -> (reqwest::StatusCode, Value) {
    server::post_api_login(http, &server.base, &body).await
}

/// A session made directly in the store (no hashing), as `kind`; returns its token.
async fn session_token(
    server: &TestServer,
    redis: &RedisServer,
    user: &str,
    kind: SessionKind,
) -> String {
    let db =
        redbank::redis::Db::connect(&redis.url(), &server.prefix, Duration::from_secs(2)).unwrap();
    let config = redbank::Config { key_prefix: server.prefix.clone(), ..Default::default() };
    let user = store::get_user(&db, user).await.unwrap().unwrap();
    let client = ClientInfo { ip: "127.0.0.1".into(), user_agent: "test".into() };
    store::create_session(&db, &config, &user, kind, &client, Assurance::password(0))
        .await
        .unwrap()
        .0
        .as_str()
        .to_owned()
}

async fn me(server: &TestServer, cookie: Option<&str>, bearer: Option<&str>) -> u16 {
    let mut req = server.http.get(server.url("/api/v1/me"));
    if let Some(cookie) = cookie {
        req = req.header("Cookie", cookie);
    }
    if let Some(token) = bearer {
        req = req.bearer_auth(token);
    }
    req.send().await.unwrap().status().as_u16()
}

// ---- 1. one cookie rule, everywhere ---------------------------------------------------------

#[rocket::async_test]
async fn a_percent_encoded_second_session_cookie_counts_as_a_duplicate() {
    // Debug names the cookie `redbank`. In release it is `__Host-redbank`, which a sibling
    // subdomain cannot set; an encoded alias of it can be set by anyone on the site and must never
    // count as the session, alone or beside the real one.
    let cases = [
        (false, "redbank", &["r%65dbank", "%72edbank", "%72%65%64%62%61%6E%6B"][..]),
        (true, "__Host-redbank", &["%5F%5FHost-redbank"][..]),
    ];
    for (secure, name, aliases) in cases {
        let server =
            TestServer::start(shared_redis(), None, |f| f.merge(("cookie_secure", secure))).await;
        let bob = session_token(&server, shared_redis(), "bob", SessionKind::Browser).await;
        let alice = session_token(&server, shared_redis(), "alice", SessionKind::Browser).await;
        assert_eq!(me(&server, Some(&format!("{name}={bob}")), None).await, 200);
        for alias in aliases {
            for cookies in [
                format!("{name}={bob}; {alias}={alice}"),
                format!("{alias}={alice}; {name}={bob}"),
                format!("{alias}={alice}"),
            ] {
                assert_eq!(me(&server, Some(&cookies), None).await, 401, "/api/v1/me {cookies}");
                let status = server.events(&cookies, None).await.status();
                assert_eq!(status, 401, "/events with {cookies}");
            }
        }
        server.stop().await.unwrap();
    }
}

/// The second outside review: the login form's double-submit cookie was read through Rocket's
/// jar, which decodes names, so `redbank%5Fcsrf` stood in for `redbank_csrf` — and a cookie a
/// sibling subdomain can set (`%5F%5FHost-redbank_csrf`) stood in for the `__Host-` one, which it
/// cannot. Every cookie we read follows the session cookie's rule: the literal name, once.
#[rocket::async_test]
async fn an_encoded_alias_of_the_csrf_cookie_is_no_csrf_cookie() {
    for (secure, name, alias) in [
        (false, "redbank_csrf", "redbank%5Fcsrf"),
        (true, "__Host-redbank_csrf", "%5F%5FHost-redbank_csrf"),
    ] {
        let server =
            TestServer::start(shared_redis(), None, |f| f.merge(("cookie_secure", secure))).await;
        let token = "a".repeat(43);
        let login = |cookie: String| {
            server
                .http
                .post(server.url("/login"))
                .header("Cookie", cookie)
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body(format!("username=bob&password=foobared&csrf={token}"))
                .send()
        };
        // The literal name signs in (the session cookie is `Secure` in the second case, so
        // reqwest keeps it to itself: the status says enough).
        let res = login(format!("{name}={token}")).await.unwrap();
        assert_eq!(res.status(), 303, "{name}");
        for cookie in [format!("{alias}={token}"), format!("{name}={token}; {alias}={token}")] {
            let res = login(cookie.clone()).await.unwrap();
            assert_eq!(res.status(), 403, "{cookie}");
        }
        server.stop().await.unwrap();
    }
}

#[rocket::async_test]
async fn a_token_works_only_through_the_channel_it_was_issued_for() {
    let touch_always = |f: rocket::figment::Figment| f.merge(("session_touch_secs", 0));
    let server = TestServer::start(shared_redis(), None, touch_always).await;
    let mobile = session_token(&server, shared_redis(), "bob", SessionKind::Mobile).await;
    let browser = session_token(&server, shared_redis(), "bob", SessionKind::Browser).await;
    assert_eq!(me(&server, None, Some(&mobile)).await, 200);
    assert_eq!(me(&server, Some(&format!("redbank={browser}")), None).await, 200);
    let last_seen = |token: &str| {
        let key = server.keys().session(&session_id(token));
        async move {
            let mut c = shared_redis().conn().await;
            let doc: String = redis::cmd("JSON.GET").arg(&key).query_async(&mut c).await.unwrap();
            serde_json::from_str::<Value>(&doc).unwrap()["last_seen_at"].as_i64().unwrap()
        }
    };
    let (mobile_seen, browser_seen) = (last_seen(&mobile).await, last_seen(&browser).await);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let as_cookie = format!("redbank={mobile}");
    assert_eq!(me(&server, Some(&as_cookie), None).await, 401, "mobile as cookie");
    assert_eq!(me(&server, None, Some(&browser)).await, 401, "browser cookie as bearer");
    // Refused, and not refreshed either (the touch interval is 0 here).
    assert_eq!(last_seen(&mobile).await, mobile_seen);
    assert_eq!(last_seen(&browser).await, browser_seen);
    let res = server.events(&as_cookie, None).await;
    assert_eq!(res.status(), 401, "/events with a mobile token as a cookie");
    server.stop().await.unwrap();
}

// ---- 2. no lockout of the owner by a stranger -----------------------------------------------

#[rocket::async_test]
async fn a_strangers_failures_never_lock_the_owner_out() {
    let server = TestServer::start(shared_redis(), None, |f| f).await;
    let owner = client_from("127.0.0.10");
    // The owner has signed in before: on a phone (device token) and in a browser (device cookie).
    let (status, body) = api_login(&owner, &server, credentials("bob", "foobared")).await;
    assert_eq!(status, 200, "{body}");
    let device_token = body["device_token"].as_str().map(str::to_owned);

    // One stranger hammers bob's account from one address, in every spelling of the name.
    let stranger = client_from("127.0.0.66");
    let mut statuses = Vec::new();
    for name in ["bob", " BOB ", "Bob", "bob", "bob", "bob", "bob", "bob"] {
        let (status, _) = api_login(&stranger, &server, credentials(name, "guess")).await;
        statuses.push(status.as_u16());
    }
    assert_eq!(statuses.iter().filter(|s| **s == 401).count(), 5, "{statuses:?}");
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");

    // The owner, from another address, is not locked out.
    let elsewhere = client_from("127.0.0.77");
    let (status, body) = api_login(&elsewhere, &server, credentials("bob", "foobared")).await;
    assert_eq!(status, 200, "the owner was locked out by a stranger: {body}");

    // Strangers spread over many addresses: the guesses against the account are bounded…
    let limit = 20;
    let mut hashed = 0;
    for i in 1..=40 {
        let from = client_from(&format!("127.0.1.{i}"));
        let (status, _) = api_login(&from, &server, credentials("bob", "guess")).await;
        assert!(matches!(status.as_u16(), 401 | 429), "{status}");
        hashed += usize::from(status == 401);
    }
    assert!(hashed <= limit, "{hashed} guesses from unknown clients (bound {limit})");
    let new_device = client_from("127.0.0.99");
    let (status, _) = api_login(&new_device, &server, credentials("bob", "foobared")).await;
    assert_eq!(status, 429, "unknown clients share the account's bound");
    // …while the owner's known devices still sign in, from any address.
    let device_token = device_token.expect("the login answer carries a device token");
    let (status, body) = api_login(
        &new_device,
        &server,
        json!({"username": "bob", "password": "foobared", "device_token": device_token}),
    )
    .await;
    assert_eq!(status, 200, "a known phone was locked out: {body}");
    // A device token proves nothing for another account.
    let (status, _) = api_login(
        &new_device,
        &server,
        json!({"username": "alice", "password": "guess", "device_token": device_token}),
    )
    .await;
    assert_eq!(status, 401);
    server.stop().await.unwrap();
}

#[rocket::async_test]
async fn a_browser_that_signed_in_before_is_never_locked_out() {
    let server =
        TestServer::start(shared_redis(), None, |f| f.merge(("login_account_limit", 3))).await;
    let browser = client_from("127.0.2.1");
    // Sign in once through the form: the answer sets a device cookie next to the session.
    let (browser, base) = (&browser, server.base.as_str());
    let post = |cookies: Option<String>| async move {
        form_login_attempt(browser, base, "bob", "foobared", cookies.as_deref()).await
    };
    let res = post(None).await;
    assert_eq!(res.status(), 303);
    let device = res.cookies().find(|c| c.name() == "redbank_device");
    let device = device.expect("a device cookie after a successful sign-in");
    assert!(device.http_only() && device.path() == Some("/"), "{device:?}");
    assert!(device.max_age().is_some_and(|age| age.as_secs() > 86_400), "{device:?}");
    let device = device.value().to_owned();
    // Strangers use up the account's budget for unknown clients…
    for i in 1..=6 {
        let from = client_from(&format!("127.0.3.{i}"));
        let (status, _) = api_login(&from, &server, credentials("bob", "guess")).await;
        assert!(matches!(status.as_u16(), 401 | 429));
    }
    let res = post(None).await;
    assert_eq!(res.status(), 429, "a browser without the device cookie counts as unknown");
    // …the owner's browser still gets in, also next to a device cookie planted by a sibling site.
    let res = post(Some(format!("redbank_device={device}"))).await;
    assert_eq!(res.status(), 303, "the owner's own browser was locked out");
    let planted = "P".repeat(43);
    let res = post(Some(format!("redbank_device={planted}; redbank_device={device}"))).await;
    assert_eq!(res.status(), 303, "a planted device cookie locked the owner's browser out");
    server.stop().await.unwrap();
}

#[rocket::async_test]
async fn ipv6_clients_are_counted_per_64() {
    let app = TestApp::with(shared_redis(), |f| f.merge(("login_ip_limit", 3))).await;
    let attempt = |user, ip| app.try_api_login(user, "nope", Some(ip));
    for (user, ip) in
        [("u1", "2001:db8:1:2::a"), ("u2", "2001:db8:1:2::b"), ("u3", "2001:db8:1:2:ffff::1")]
    {
        assert_eq!(attempt(user, ip).await, Status::Unauthorized);
    }
    assert_eq!(attempt("u4", "2001:db8:1:2::d").await, Status::TooManyRequests, "same /64");
    assert_eq!(attempt("u4", "2001:db8:1:3::1").await, Status::Unauthorized, "another /64");
}

#[rocket::async_test]
async fn a_throttle_counter_left_without_expiry_cannot_lock_forever() {
    let app = TestApp::new().await;
    let mut c = shared_redis().conn().await;
    // What a failure between INCR and EXPIRE used to leave behind: a counter with no TTL.
    let torn = app.keys().throttle_user("bob");
    let _: () = redis::cmd("SET").arg(&torn).arg(1000).query_async(&mut c).await.unwrap();
    let status = app.try_api_login("bob", "wrong", None).await;
    assert!(matches!(status.code, 401 | 429), "{status}");
    let window = app.config().sign_in.window_secs as i64 * 1000;
    let keys: Vec<String> = app.stored_keys(shared_redis()).await;
    let keys: Vec<String> = keys.into_iter().filter(|k| k.contains(":throttle:")).collect();
    assert!(keys.contains(&torn), "{keys:?}");
    for key in keys {
        let ttl: i64 = redis::cmd("PTTL").arg(&key).query_async(&mut c).await.unwrap();
        assert!(ttl > 0 && ttl <= window, "{key} has PTTL {ttl}: a lock that never ends");
    }
}

#[rocket::async_test]
async fn a_long_hashing_queue_answers_503_at_once() {
    let app = TestApp::with(shared_redis(), |f| {
        f.merge(("password_hash_concurrency", 1)).merge(("login_queue_max_ms", 50))
    })
    .await;
    let passwords =
        app.client.rocket().state::<std::sync::Arc<redbank::auth::password::Passwords>>().unwrap();
    let device = {
        let res = app.post_api_login(&credentials("admin", common::ADMIN_PASSWORD), None).await;
        let body: Value = serde_json::from_str(&res.into_string().await.unwrap()).unwrap();
        body["device_token"].as_str().unwrap().to_owned()
    };
    let before = passwords.computed();
    let bob = credentials("bob", "foobared");
    let logins = (0..12).map(|_| app.post_api_login(&bob, None));
    // While the general queue sheds load, a known device has its own slot.
    let body =
        json!({"username": "admin", "password": common::ADMIN_PASSWORD, "device_token": device});
    let known = app.post_api_login(&body, None);
    let (responses, known) = futures::future::join(futures::future::join_all(logins), known).await;
    assert_eq!(known.status(), Status::Ok, "a known device was shed with the strangers");
    let shed: Vec<_> =
        responses.iter().filter(|r| r.status() == Status::ServiceUnavailable).collect();
    let ok = responses.iter().filter(|r| r.status() == Status::Ok).count();
    assert_eq!(shed.len() + ok, 12, "only 200 or 503");
    assert!(!shed.is_empty(), "twelve logins queued behind one slot with a 50 ms bound");
    for res in &shed {
        let retry: u64 = res.headers().get_one("Retry-After").unwrap().parse().unwrap();
        assert!((1..=60).contains(&retry), "Retry-After {retry}");
    }
    assert_eq!(passwords.computed() - before, ok as u64 + 1, "a shed login computed a hash");
    // Shed logins are not failures: the owner is not throttled afterwards.
    assert_eq!(app.try_api_login("bob", "foobared", None).await, Status::Ok);
}

// ---- 3. streams and sessions cannot be exhausted by one user --------------------------------

#[rocket::async_test]
async fn a_new_sign_in_beyond_the_cap_ends_the_least_recently_used_session() {
    let app = TestApp::with(shared_redis(), |f| {
        f.merge(("max_sessions_per_user", 3)).merge(("session_touch_secs", 0))
    })
    .await;
    let mut tokens = Vec::new();
    for _ in 0..3 {
        tokens.push(app.api_login("bob", "foobared").await);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The oldest one is used again, so the second becomes the least recently used.
    let me = |token: String| app.client.get("/api/v1/me").header(common::bearer(&token)).dispatch();
    assert_eq!(me(tokens[0].clone()).await.status(), Status::Ok);
    tokio::time::sleep(Duration::from_millis(5)).await;
    tokens.push(app.api_login("bob", "foobared").await);
    let alive: Vec<bool> = futures::future::join_all(tokens.iter().map(|t| me(t.clone())))
        .await
        .iter()
        .map(|r| r.status() == Status::Ok)
        .collect();
    assert_eq!(alive, [true, false, true, true], "the least recently used session should go");
    // Another user's sessions are untouched by bob's cap.
    let alice = app.api_login("alice", "wonderland").await;
    assert_eq!(me(alice).await.status(), Status::Ok);
}

#[rocket::async_test]
async fn streams_are_capped_per_user_and_per_client_address() {
    let server = TestServer::start(shared_redis(), None, |f| {
        f.merge(("sse_max_per_user", 3)).merge(("sse_max_per_address", 4))
    })
    .await;
    let (a, _) = server.login("bob", "foobared").await;
    let (b, _) = server.login("bob", "foobared").await;
    let mut open = Vec::new();
    // One count for both servers.
    for (cookie, via) in [(&a, Via::Rocket), (&a, Via::Listener), (&b, Via::Rocket)] {
        let res = server.events_via(via, cookie, None).await;
        assert_eq!(res.status(), 200, "{via:?}");
        open.push(res);
    }
    let res = server.events(&b, None).await;
    assert_eq!(res.status(), 429, "a fourth stream of one user (two sessions)");
    assert!(res.headers().contains_key("retry-after"));
    // Alice shares bob's address: one more stream from it, then the address is full.
    let (c, _) = server.login("alice", "wonderland").await;
    open.push(server.events_via(Via::Listener, &c, None).await);
    assert_eq!(open.last().unwrap().status(), 200);
    let res = server.events(&c, None).await;
    assert_eq!(res.status(), 429, "a fifth stream from one address");
    // Each server takes the address from its own socket: from another one alice streams on both.
    let other = client_from("127.0.0.2");
    for via in VIAS {
        let res = other.get(server.events_url(via)).header("Cookie", &c).send().await.unwrap();
        assert_eq!(res.status(), 200, "{via:?}");
        open.push(res);
    }
    drop(open);
    server.stop().await.unwrap();
}

#[rocket::async_test]
async fn event_routes_are_exact() {
    let server = TestServer::start(shared_redis(), None, |f| f).await;
    let (cookie, _) = server.login("bob", "foobared").await;
    for path in ["/events/", "/events//", "//events", "/api/v1/me/"] {
        for base in [&server.base, &server.stream_base] {
            let res =
                server.http.get(format!("{base}{path}")).header("Cookie", &cookie).send().await;
            assert_eq!(res.unwrap().status(), 404, "{base}{path}");
        }
    }
    assert_eq!(server.events(&cookie, None).await.status(), 200);
    server.stop().await.unwrap();
}

#[rocket::async_test]
async fn a_resume_id_out_of_range_is_a_400() {
    let server = TestServer::start(shared_redis(), None, |f| f).await;
    let (cookie, _) = server.login("bob", "foobared").await;
    for id in ["18446744073709551615-18446744073709551615", "+1-0", "1-+0", "1-2-3", "x"] {
        let url = format!("{}?after={id}", server.url("/events"));
        let res = server.http.get(&url).header("Cookie", &cookie).send().await.unwrap();
        assert_eq!(res.status(), 400, "after={id}");
        let body: Value = res.json().await.unwrap();
        assert!(body["error"].as_str().is_some_and(|m| m.contains("event id")), "{body}");
        let res = server.events(&cookie, Some(id)).await;
        assert_eq!(res.status(), 400, "Last-Event-ID {id}");
    }
    // Each server reads the header and the query itself: both refuse alike.
    for via in VIAS {
        let res = server.events_via(via, &cookie, Some("1-2-3")).await;
        assert_eq!(res.status(), 400, "{via:?} Last-Event-ID");
        let body: Value = res.json().await.unwrap();
        assert!(body["error"].as_str().is_some_and(|m| m.contains("event id")), "{body}");
        // Query names are decoded as Rocket decodes them; a bare `after` is an empty id.
        for query in ["after=x", "%61fter=junk", "after"] {
            let url = format!("{}?{query}", server.events_url(via));
            let res = server.http.get(&url).header("Cookie", &cookie).send().await.unwrap();
            assert_eq!(res.status(), 400, "{via:?} ?{query}");
        }
        // Judged before the credentials, the same on both servers.
        let url = format!("{}?after=+1-0", server.events_url(via));
        assert_eq!(server.http.get(&url).send().await.unwrap().status(), 400, "{via:?}");
        let res = server.events_via(via, &cookie, Some("0-0")).await;
        assert_eq!(res.status(), 200, "{via:?}");
    }
    server.stop().await.unwrap();
}

#[rocket::async_test]
async fn the_heartbeat_check_fails_closed_when_redis_cannot_answer() {
    let redis = RedisServer::start();
    let server = TestServer::start(&redis, None, |f| {
        f.merge(("sse_heartbeat_secs", 1)).merge(("redis_timeout_ms", 200))
    })
    .await;
    let (cookie, _) = server.login("bob", "foobared").await;
    let mut sse = Sse::new(server.events(&cookie, None).await);
    redis.freeze();
    let what = "a stream outlived a session check Redis could not answer";
    sse.expect_closed(Duration::from_secs(4), what).await;
    redis.thaw();
    server.stop().await.unwrap();
}

#[rocket::async_test]
async fn replay_is_read_in_pages_as_the_client_reads() {
    use redbank::live::event::StreamId;
    const BOB: &str = "1580783161";
    let redis = RedisServer::start();
    let app = TestApp::with(&redis, |f| f).await;
    let (db, config) = (app.db(), app.config());
    let start = redbank::clock::now_ms() - 60_000;
    let mut balance = redbank::bank::store::balance(db, BOB).await.unwrap();
    for i in 0..1_200 {
        let tx = common::transaction(BOB, "replay", "Vendor", "withdrawal", -1, start + i, balance);
        balance = redbank::bank::store::record(db, config, balance, &tx).await.unwrap().balance;
    }
    let user = store::get_user(db, "bob").await.unwrap().unwrap();
    let client = ClientInfo { ip: "127.0.0.1".into(), user_agent: "test".into() };
    let (_, session) = store::create_session(
        db,
        config,
        &user,
        SessionKind::Browser,
        &client,
        Assurance::password(0),
    )
    .await
    .unwrap();
    let hub = app.client.rocket().state::<std::sync::Arc<redbank::live::bridge::Hub>>().unwrap();
    let xranges = || async {
        let mut c = redis.conn().await;
        let info: String =
            redis::cmd("INFO").arg("commandstats").query_async(&mut c).await.unwrap();
        info.lines()
            .find_map(|l| l.strip_prefix("cmdstat_xrange:calls="))
            .and_then(|rest| rest.split(',').next()?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let before = xranges().await;
    let mut feed = redbank::live::feed::open(
        db,
        hub,
        config,
        redbank::live::feed::Holder { session: &session, ip: "127.0.0.1", transport: "rocket" },
        Some(StreamId(0, 0)),
        app.client.rocket().shutdown(),
    )
    .await
    .unwrap();
    let greeting = feed.next().await.unwrap();
    assert!(greeting.starts_with(b"retry:"));
    let first = feed.next().await.unwrap();
    assert!(first.starts_with(b"event:transaction"));
    assert_eq!(xranges().await - before, 1, "the replay read ahead of the client");
    // Reading on pages through the rest, in order, and then the stream stays open (live).
    let mut seen = 1;
    while seen < 1_200 {
        let bytes =
            tokio::time::timeout(Duration::from_secs(5), feed.next()).await.unwrap().unwrap();
        seen += bytes.windows(18).filter(|w| w == b"event:transaction\n").count();
    }
    assert_eq!(seen, 1_200);
    let pages = xranges().await - before;
    assert!(pages > 5, "{pages} reads for 1,200 entries");
    assert!(
        tokio::time::timeout(Duration::from_millis(300), feed.next()).await.is_err(),
        "the feed ended"
    );
}

// ---- 4. secrets and demo defaults -----------------------------------------------------------

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
        let mut c = shared_redis().conn().await;
        let admin: bool = redis::cmd("EXISTS")
            .arg(redbank::redis::Keys::new(&prefix).user("admin"))
            .query_async(&mut c)
            .await
            .unwrap();
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

// ---- 5. the stream listener speaks HTTP/1.1 correctly --------------------------------------

#[rocket::async_test]
async fn the_stream_listener_speaks_http_1_1() {
    let server = TestServer::start(shared_redis(), None, |f| f).await;
    let (cookie, _) = server.login("bob", "foobared").await;
    let addr = server.stream_base.trim_start_matches("http://").to_owned();
    let status = |reply: &str| reply.split(' ').nth(1).unwrap_or_default().to_owned();
    let get = |extra: &str| format!("GET /events HTTP/1.1\r\nCookie: {cookie}\r\n{extra}\r\n");
    let pause = Duration::from_millis(150);
    // Exactly one Host header (RFC 9112 §3.2).
    for (request, expected) in [
        (get(""), "400"),
        (get("Host: a\r\nHost: b\r\n"), "400"),
        (get(&format!("Host: {addr}\r\n")), "200"),
    ] {
        let reply =
            raw_exchange(&addr, &[request.as_bytes()], pause, Duration::from_millis(800)).await;
        assert_eq!(status(&reply), expected, "{reply}");
        let head = reply.split("\r\n\r\n").next().unwrap();
        let date = head.lines().find_map(|l| l.strip_prefix("Date: ")).unwrap_or_default();
        assert!(date.ends_with(" GMT") && date.len() == 29, "no HTTP date in {head}");
    }
    // Pipelined requests: the first is answered, then the connection closes, however the bytes
    // are split into segments.
    let one = get(&format!("Host: {addr}\r\n"));
    let two = format!("{one}{one}");
    let together = raw_exchange(&addr, &[two.as_bytes()], pause, Duration::from_secs(3)).await;
    let apart =
        raw_exchange(&addr, &[one.as_bytes(), one.as_bytes()], pause, Duration::from_secs(3)).await;
    for reply in [&together, &apart] {
        assert_eq!(reply.matches("HTTP/1.1 ").count(), 1, "{reply}");
        assert_eq!(status(reply), "200", "{reply}");
        assert!(reply.ends_with("retry:3000\n\n"), "answered, then closed: {reply:?}");
    }
    // A head sent one byte at a time is still read (incrementally) and answered.
    let bytes = one.as_bytes();
    let chunks: Vec<&[u8]> = bytes.chunks(1).collect();
    let slow =
        raw_exchange(&addr, &chunks, Duration::from_millis(1), Duration::from_millis(800)).await;
    assert_eq!(status(&slow), "200", "{slow}");
    server.stop().await.unwrap();
}

// ---- findings of the review of strong authentication ---------------------------------------------

/// Parallel password step-ups from one (stolen) session are throttled like sign-ins: checked,
/// hashed and counted under one hashing slot, so at most the limit (+ slots − 1) are hashed.
#[rocket::async_test]
async fn parallel_password_step_ups_are_throttled() {
    let app = TestApp::with(shared_redis(), |f| f.merge(("login_user_limit", 3))).await;
    let passwords =
        app.client.rocket().state::<std::sync::Arc<redbank::auth::password::Passwords>>().unwrap();
    let token = app.api_login("bob", "foobared").await;
    let before = passwords.computed();
    let bodies: Vec<Value> = (0..20).map(|n| json!({"password": format!("guess-{n}")})).collect();
    let guesses =
        bodies.iter().map(|body| app.post_json("/api/v1/step-up/password", Some(&token), body));
    let statuses: Vec<u16> =
        futures::future::join_all(guesses).await.iter().map(|r| r.status().code).collect();
    let hashed = passwords.computed() - before;
    assert!(hashed <= 4, "{hashed} of 20 parallel guesses were hashed ({statuses:?})");
    assert!(statuses.contains(&429), "{statuses:?}");
}

/// Parallel wrong codes on one `mfa_token` are counted before they are checked: at most five
/// are ever evaluated.
#[rocket::async_test]
async fn parallel_codes_on_one_mfa_token_are_counted_before_they_are_checked() {
    let app = TestApp::new().await;
    let res = app.post_api_login(&credentials("alice", "wonderland"), None).await;
    let body: Value = serde_json::from_str(&res.into_string().await.unwrap()).unwrap();
    let mfa_token = body["mfa_token"].as_str().unwrap().to_owned();
    let valid = common::demo_app_codes();
    let wrong: Vec<String> = (0..40)
        .map(|n| format!("{:06}", 100_003 * n % 1_000_000))
        .filter(|c| !valid.contains(c))
        .take(20)
        .collect();
    let bodies: Vec<Value> =
        wrong.iter().map(|code| json!({"mfa_token": mfa_token, "code": code})).collect();
    let guesses = bodies.iter().map(|body| app.post_json("/api/v1/login/totp", None, body));
    futures::future::join_all(guesses).await;
    let entries = redbank::audit::newest(app.db(), "alice", 100).await.unwrap();
    let evaluated = entries
        .iter()
        .filter(|e| matches!(e.activity, redbank::audit::Activity::FailedSignIn { .. }))
        .count();
    assert!(evaluated <= 5, "{evaluated} of 20 parallel guesses were checked");
}

/// `next` after a step-up is a local path or nothing: no tab, space or backslash trick leads
/// off-site, and an odd one never costs the user their session.
#[rocket::async_test]
async fn step_up_never_redirects_off_site() {
    let server = TestServer::start(shared_redis(), None, |f| f).await;
    let (cookie, csrf) = server.login("bob", "foobared").await;
    for next in [
        "/%09/evil.example",
        "/%0A/evil.example",
        "/%5Cevil.example",
        "//evil.example",
        "/ /evil",
        "https://evil.example",
    ] {
        let page = server
            .http
            .get(server.url(&format!("/login/verify?next={next}")))
            .header("Cookie", &cookie);
        let html = page.send().await.unwrap().text().await.unwrap();
        assert!(html.contains("id=\"verify\""), "not the step-up page");
        assert!(!html.contains("evil"), "{next} survived into the page");
    }
    let (mut cookie, mut csrf) = (cookie, csrf);
    for next in ["/\t/evil.example", "/ /evil", "/\\evil.example", "/é"] {
        let res = server
            .http
            .post(server.url("/login/verify"))
            .header("Cookie", &cookie)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(format!(
                "csrf={csrf}&method=password&password=foobared&next={}",
                common::enc(next)
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 303, "{next:?}");
        assert_eq!(res.headers()["Location"], "/security", "{next:?}");
        // The step-up moved the session to a new token (and CSRF token): carry on with those.
        let token = res.cookies().find(|c| c.name() == "redbank").map(|c| c.value().to_owned());
        cookie = format!("redbank={}", token.unwrap_or_else(|| panic!("{next:?}: signed out")));
        let page = server.http.get(server.url("/security")).header("Cookie", &cookie);
        csrf = common::hidden_csrf(&page.send().await.unwrap().text().await.unwrap()).unwrap();
    }
    server.stop().await.unwrap();
}

/// A password sign-in that continues with a second factor ends the session the browser had, as
/// a completed sign-in does: the next user never sees the previous one's step-up page.
#[rocket::async_test]
async fn a_sign_in_waiting_for_a_second_factor_ends_the_browsers_old_session() {
    let app = TestApp::new().await;
    let bob = app.login_browser("bob", "foobared").await;
    let res = app.login_with("alice", "wonderland", Some(&bob.session)).await;
    assert_eq!(res.location.as_deref(), Some("/login/verify"));
    let me = app.client.get("/api/v1/me").header(bob.cookie()).dispatch().await;
    assert_eq!(me.status(), Status::Unauthorized, "bob's session survived alice's sign-in");
}
