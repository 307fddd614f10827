//! Sign-in and sessions against the real app and a real Redis (docs/SECURITY.md A–E).

use std::time::{Duration, Instant};

use redbank::auth::model::SessionKind;
use redis::AsyncCommands;
use rocket::http::{ContentType, Cookie, Header, Method, Status};
use rocket::local::asynchronous::LocalResponse;
use serde_json::{Value, json};

use crate::common;
use crate::common::request::{api_login_from, client_from, session_token, status_of_me};
use crate::common::server::{TestServer, form_login_attempt};
use crate::common::{
    ADMIN_PASSWORD, RedisServer, TestApp, bearer, credentials, session_id, shared_redis,
};

async fn json(res: LocalResponse<'_>) -> Value {
    serde_json::from_str(&res.into_string().await.unwrap_or_default()).expect("JSON body")
}

async fn exists(key: &str) -> bool {
    shared_redis().exists(key).await
}

async fn me_status(app: &TestApp, token: &str) -> Status {
    app.client.get("/api/v1/me").header(bearer(token)).dispatch().await.status()
}

#[rocket::async_test]
async fn browser_login_creates_a_json_session_with_a_bounded_ttl_and_a_safe_cookie() {
    let app = TestApp::new().await;
    let attempt = app.try_login_browser("bob", "foobared").await;
    assert_eq!(attempt.status, Status::SeeOther);
    assert_eq!(attempt.location.as_deref(), Some("/dashboard"));
    let token = attempt.session.clone().unwrap();

    let set = attempt.set_cookie.iter().find(|c| c.starts_with("redbank=")).unwrap();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Lax") && set.contains("Path=/"),
        "{set}"
    );
    assert!(
        !set.contains("Expires") && !set.contains("Max-Age") && !set.contains("Domain"),
        "{set}"
    );

    let keys = app.stored_keys(shared_redis()).await;
    let prefix = app.keys().session_prefix();
    let sessions: Vec<&String> = keys.iter().filter(|k| k.starts_with(&prefix)).collect();
    assert_eq!(sessions.len(), 1, "{keys:?}");
    let key = sessions[0];
    // The key names the SHA-256 of the token, never any part of the token itself.
    for window in token.as_bytes().windows(8) {
        assert!(!key.contains(std::str::from_utf8(window).unwrap()), "key {key} leaks the token");
    }
    let mut c = shared_redis().conn().await;
    let kind: String = redis::cmd("TYPE").arg(key).query_async(&mut c).await.unwrap();
    assert_eq!(kind, "ReJSON-RL");
    let ttl: i64 = c.ttl(key).await.unwrap();
    assert!(ttl > 0 && ttl <= app.config().session.idle_secs as i64, "ttl {ttl}");
    let doc: String = redis::cmd("JSON.GET").arg(key).query_async(&mut c).await.unwrap();
    let doc: Value = serde_json::from_str(&doc).unwrap();
    assert_eq!(doc["user"], "bob");
    assert_eq!(doc["kind"], "browser");
    for field in ["created_at", "last_seen_at", "ip", "user_agent", "aal", "amr", "auth_time"] {
        assert!(!doc[field].is_null(), "missing {field} in {doc}");
    }
    // Ordinary roles are left out (the document is kept small); an admin's are written.
    assert!(doc.get("roles").is_none(), "{doc}");
    assert!(!doc.to_string().contains(&token), "the document stores the raw token");

    let dash = app
        .client
        .get("/dashboard")
        .header(common::cookie_header("redbank", &token))
        .dispatch()
        .await;
    assert_eq!(dash.status(), Status::Ok);
    assert_eq!(dash.headers().get_one("Cache-Control"), Some("no-store"));
    let html = dash.into_string().await.unwrap();
    assert!(html.contains("1580783161"));
    // The page's CSRF token comes from the token; the document does not hold it.
    let csrf = common::hidden_csrf(&html).expect("the dashboard carries a CSRF token");
    assert!(!doc.to_string().contains(&csrf), "the document stores the CSRF token");
}

#[rocket::async_test]
async fn pages_redirect_to_login_and_the_api_answers_401_without_a_session() {
    let app = TestApp::new().await;
    for page in ["/", "/dashboard", "/sessions"] {
        let res = app.client.get(page).dispatch().await;
        assert_eq!(res.status(), Status::SeeOther, "{page}");
        assert_eq!(res.headers().get_one("Location"), Some("/login"), "{page}");
    }
    for (path, token) in [
        ("/api/v1/me", None),
        ("/api/v1/me", Some("garbage")),
        ("/api/v1/sessions", Some(&*"A".repeat(43))),
    ] {
        let mut req = app.client.get(path);
        if let Some(t) = token {
            req = req.header(bearer(t));
        }
        let res = req.dispatch().await;
        assert_eq!(res.status(), Status::Unauthorized, "{path}");
        assert!(json(res).await["error"].is_string());
    }
    let res = app.client.delete("/api/v1/session").dispatch().await;
    assert_eq!(res.status(), Status::Unauthorized);

    let browser = app.login_browser("bob", "foobared").await;
    let res = app.client.get("/").header(browser.cookie()).dispatch().await;
    assert_eq!(res.headers().get_one("Location"), Some("/dashboard"));
    let res = app.client.get("/login").header(browser.cookie()).dispatch().await;
    assert_eq!(res.headers().get_one("Location"), Some("/dashboard"));
}

#[rocket::async_test]
async fn mobile_login_me_and_logout_with_a_bearer_token() {
    let app = TestApp::new().await;
    let res = app.post_api_login(&credentials("bob", "foobared"), None).await;
    assert_eq!(res.status(), Status::Ok);
    let body = json(res).await;
    let token = body["token"].as_str().unwrap().to_owned();
    assert_eq!(token.len(), 43);
    assert!(body["expires_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(body["user"]["username"], "bob");
    assert_eq!(body["user"]["account"], "1580783161");
    assert!(body["user"].get("password_hash").is_none());

    let res = app.client.get("/api/v1/me").header(bearer(&token)).dispatch().await;
    assert_eq!(res.status(), Status::Ok);
    assert_eq!(res.headers().get_one("Cache-Control"), Some("no-store"));
    let me = json(res).await;
    assert_eq!(me["user"]["username"], "bob");
    assert_eq!(me["session"]["kind"], "mobile");

    let key = app.keys().session(&session_id(&token));
    assert!(exists(&key).await);
    let res = app.client.delete("/api/v1/session").header(bearer(&token)).dispatch().await;
    assert_eq!(res.status(), Status::Ok);
    assert!(!exists(&key).await, "logout left the key");
    assert_eq!(me_status(&app, &token).await, Status::Unauthorized);
}

#[rocket::async_test]
async fn login_rotates_the_token_and_destroys_the_previous_session() {
    let app = TestApp::new().await;
    let first = app.login_browser("bob", "foobared").await;
    let again = app.login_with("bob", "foobared", Some(&first.session)).await;
    assert_eq!(again.status, Status::SeeOther);
    let second = again.session.unwrap();
    assert_ne!(second, first.session);
    assert!(!exists(&app.keys().session(&first.id())).await, "pre-login session survived");
    let old = app.client.get("/dashboard").header(first.cookie()).dispatch().await;
    assert_eq!(old.headers().get_one("Location"), Some("/login"));

    // A client-chosen (never issued) token is not adopted either.
    let chosen = "B".repeat(43);
    let fixed = app.login_with("bob", "foobared", Some(&chosen)).await;
    assert_ne!(fixed.session.as_deref(), Some(chosen.as_str()));
}

#[rocket::async_test]
async fn browser_logout_deletes_the_session_and_the_old_cookie_fails() {
    let app = TestApp::new().await;
    let b = app.login_browser("bob", "foobared").await;
    let key = app.keys().session(&b.id());
    assert!(exists(&key).await);
    let res = app.post_form("/logout", &b).await;
    assert_eq!(res.status(), Status::SeeOther);
    assert_eq!(res.headers().get_one("Location"), Some("/login"));
    let cleared = res.headers().get("Set-Cookie").any(|c| c.starts_with("redbank=;"));
    assert!(cleared, "cookie not cleared");
    assert!(!exists(&key).await);
    let replay = app.client.get("/dashboard").header(b.cookie()).dispatch().await;
    assert_eq!(replay.headers().get_one("Location"), Some("/login"));
    let replay = app.client.get("/api/v1/me").header(b.cookie()).dispatch().await;
    assert_eq!(replay.status(), Status::Unauthorized);
}

#[rocket::async_test]
async fn a_logout_racing_twenty_requests_leaves_no_key() {
    // touch on every request, so every in-flight request tries to write the session
    let app = TestApp::with(shared_redis(), |f| f.merge(("session_touch_secs", 0))).await;
    for _ in 0..5 {
        let token = app.api_login("bob", "foobared").await;
        let key = app.keys().session(&session_id(&token));
        let requests =
            (0..20).map(|_| app.client.get("/api/v1/me").header(bearer(&token)).dispatch());
        let logout = app.client.delete("/api/v1/session").header(bearer(&token)).dispatch();
        let (_, out) = tokio::join!(futures::future::join_all(requests), logout);
        assert_eq!(out.status(), Status::Ok);
        assert!(!exists(&key).await, "a request raced the logout and brought the key back");
        assert_eq!(me_status(&app, &token).await, Status::Unauthorized);
    }
}

#[rocket::async_test]
async fn idle_timeout_expires_an_unused_session() {
    let app = TestApp::with(shared_redis(), |f| {
        f.merge(("session_idle_secs", 1)).merge(("session_touch_secs", 0))
    })
    .await;
    let token = app.api_login("bob", "foobared").await;
    assert_eq!(me_status(&app, &token).await, Status::Ok);
    tokio::time::sleep(Duration::from_millis(1600)).await;
    assert_eq!(me_status(&app, &token).await, Status::Unauthorized);
}

#[rocket::async_test]
async fn activity_extends_the_idle_timeout_but_never_past_the_absolute_one() {
    let app = TestApp::with(shared_redis(), |f| {
        f.merge(("session_idle_secs", 1))
            .merge(("session_absolute_secs", 3))
            .merge(("session_touch_secs", 0))
    })
    .await;
    let token = app.api_login("bob", "foobared").await;
    let key = app.keys().session(&session_id(&token));
    let started = Instant::now();
    let mut c = shared_redis().conn().await;
    // Busy for 2.5 s: well past the 1 s idle timeout, still alive.
    while started.elapsed() < Duration::from_millis(2500) {
        assert_eq!(me_status(&app, &token).await, Status::Ok, "at {:?}", started.elapsed());
        let ttl: i64 = redis::cmd("PTTL").arg(&key).query_async(&mut c).await.unwrap();
        assert!(ttl > 0 && ttl <= 1000, "ttl {ttl} ms out of (0, idle]");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Still busy, but past the absolute limit: rejected.
    while started.elapsed() < Duration::from_millis(3300) {
        let _ = me_status(&app, &token).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(me_status(&app, &token).await, Status::Unauthorized);
    assert!(!exists(&key).await);
}

#[rocket::async_test]
async fn sessions_page_lists_both_devices_and_revoke_kills_the_other_token() {
    let app = TestApp::new().await;
    let b = app.login_browser("bob", "foobared").await;
    let phone = "redbank-android/2.1 (Pixel 8; Android 14)";
    let login = app
        .client
        .post("/api/v1/login")
        .header(ContentType::JSON)
        .header(Header::new("User-Agent", phone))
        .body(credentials("bob", "foobared").to_string())
        .dispatch()
        .await;
    let mobile = json(login).await["token"].as_str().unwrap().to_owned();
    let _alice = app.api_login("alice", "wonderland").await;

    let page = app.client.get("/sessions").header(b.cookie()).dispatch().await;
    assert_eq!(page.status(), Status::Ok);
    let html = page.into_string().await.unwrap();
    assert_eq!(
        html.matches("<tr role=\"row\" class=\"session").count(),
        2,
        "bob sees exactly his 2 sessions"
    );
    assert!(html.contains("data-kind=\"mobile\"") && html.contains("data-kind=\"browser\""));
    assert!(html.contains("this device"));
    // Each device by name, its whole User-Agent behind a disclosure.
    assert!(html.contains("redbank mobile app"), "{html}");
    let escaped = phone.replace('/', "&#x2F;");
    assert!(html.contains(&format!("<summary>Details</summary>{escaped}</details>")), "{html}");

    let api =
        json(app.client.get("/api/v1/sessions").header(bearer(&mobile)).dispatch().await).await;
    let rows = api["sessions"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    let mobile_id = session_id(&mobile);
    assert!(rows.iter().any(|r| r["id"] == mobile_id.as_str() && r["current"] == true));

    let res = app.post_form(format!("/sessions/{}/revoke", mobile_id.as_str()), &b).await;
    assert_eq!(res.status(), Status::SeeOther);
    assert_eq!(me_status(&app, &mobile).await, Status::Unauthorized);
    assert_eq!(app.page("/sessions", &b).await.0, Status::Ok);
}

#[rocket::async_test]
async fn sign_out_all_other_sessions_keeps_only_this_one() {
    let app = TestApp::new().await;
    let b = app.login_browser("bob", "foobared").await;
    let others: Vec<String> =
        futures::future::join_all((0..3).map(|_| app.api_login("bob", "foobared"))).await;
    let alice = app.api_login("alice", "wonderland").await;
    let res = app.post_form("/sessions/revoke-others", &b).await;
    assert_eq!(res.status(), Status::SeeOther);
    for t in &others {
        assert_eq!(me_status(&app, t).await, Status::Unauthorized);
    }
    assert_eq!(me_status(&app, &alice).await, Status::Ok, "another user's session was touched");
    assert_eq!(app.page("/api/v1/me", &b).await.0, Status::Ok);
}

#[rocket::async_test]
async fn nobody_revokes_another_users_session_outside_the_console() {
    let app = TestApp::new().await;
    let bob = app.api_login("bob", "foobared").await;
    let bob_id = session_id(&bob);
    let alice = app.login_browser("alice", "wonderland").await;

    let res = app.post_form(format!("/sessions/{}/revoke", bob_id.as_str()), &alice).await;
    assert_eq!(res.status(), Status::Forbidden);
    let alice_token = app.api_login("alice", "wonderland").await;
    let res = app
        .client
        .delete(format!("/api/v1/sessions/{}", bob_id.as_str()))
        .header(bearer(&alice_token))
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::Forbidden);
    assert_eq!(me_status(&app, &bob).await, Status::Ok);

    // Not even an admin: every user's sessions are the console's (AAL2, audited; see admin.rs).
    let admin = app.login_browser("admin", ADMIN_PASSWORD).await;
    let (status, html) = app.page("/sessions", &admin).await;
    assert_eq!(status, Status::Ok);
    assert!(!html.contains(bob_id.as_str()), "the admin's own page lists bob's session");
    let res = app.post_form(format!("/sessions/{}/revoke", bob_id.as_str()), &admin).await;
    assert_eq!(res.status(), Status::Forbidden);
    assert_eq!(me_status(&app, &bob).await, Status::Ok);
}

#[rocket::async_test]
async fn cross_site_posts_and_wrong_csrf_tokens_are_refused() {
    let app = TestApp::new().await;
    let b = app.login_browser("bob", "foobared").await;
    let post = |csrf: String, extra: Option<Header<'static>>| {
        let mut req = app
            .client
            .post("/logout")
            .header(b.cookie())
            .header(ContentType::Form)
            .body(format!("csrf={csrf}"));
        if let Some(h) = extra {
            req = req.header(h);
        }
        req.dispatch()
    };
    let res = post(b.csrf.clone(), Some(Header::new("Sec-Fetch-Site", "cross-site"))).await;
    assert_eq!(res.status(), Status::Forbidden);
    let res = post(b.csrf.clone(), Some(Header::new("Origin", "https://evil.example"))).await;
    assert_eq!(res.status(), Status::Forbidden);
    let res = post(b.csrf.clone(), Some(Header::new("Origin", "null"))).await;
    assert_eq!(res.status(), Status::Forbidden);
    let res = post(b.csrf.clone(), Some(Header::new("Sec-Fetch-Site", "same-site"))).await;
    assert_eq!(res.status(), Status::Forbidden);
    let res = post("x".repeat(43), None).await;
    assert_eq!(res.status(), Status::Forbidden);
    let res = post(String::new(), None).await;
    assert_eq!(res.status(), Status::Forbidden);
    assert!(exists(&app.keys().session(&b.id())).await, "a refused logout still logged out");

    // Cookie-authenticated API writes need the X-CSRF-Token header; bearer ones do not.
    let res = app.client.delete("/api/v1/session").header(b.cookie()).dispatch().await;
    assert_eq!(res.status(), Status::Forbidden);
    let res = app.script_request(Method::Delete, "/api/v1/session", &b).await;
    assert_eq!(res.status(), Status::Ok);

    // The login form itself: cross-site and wrong double-submit token are refused.
    let cross_site = app
        .client
        .post("/login")
        .header(Header::new("Sec-Fetch-Site", "cross-site"))
        .body("username=bob&password=foobared&csrf=x");
    let wrong_token = app
        .client
        .post("/login")
        .cookie(Cookie::new("redbank_csrf", "a".repeat(43)))
        .body(format!("username=bob&password=foobared&csrf={}", "b".repeat(43)));
    for req in [cross_site, wrong_token] {
        let res = req.header(ContentType::Form).dispatch().await;
        assert_eq!(res.status(), Status::Forbidden);
        assert!(res.cookies().get("redbank").is_none());
    }
}

#[rocket::async_test]
async fn sixth_wrong_password_is_throttled_before_any_hashing() {
    let app = TestApp::new().await;
    let passwords =
        app.client.rocket().state::<std::sync::Arc<redbank::auth::password::Passwords>>().unwrap();
    for i in 1..=5 {
        let a = app.try_login_browser("bob", "wrong").await;
        assert_eq!(a.status, Status::Unauthorized, "attempt {i}");
    }
    let before = passwords.computed();
    let sixth = app.try_login_browser("bob", "wrong").await;
    assert_eq!(sixth.status, Status::TooManyRequests);
    let retry: u64 = sixth.retry_after.unwrap().parse().unwrap();
    // The lock lasts the whole window (15 minutes) from the last failure, not a moment.
    assert!((890..=900).contains(&retry), "Retry-After {retry}");
    assert_eq!(passwords.computed(), before, "a throttled attempt computed a hash");
    // Locked even with the right password, and via the API too.
    assert_eq!(app.try_login_browser("bob", "foobared").await.status, Status::TooManyRequests);
    let res = app.post_api_login(&credentials("bob", "foobared"), None).await;
    assert_eq!(res.status(), Status::TooManyRequests);
    assert!(res.headers().get_one("Retry-After").is_some());
    assert_eq!(passwords.computed(), before);
    // Retry-After is what is left of the lock, not a whole window: with 100 s left, 100.
    let mut c = shared_redis().conn().await;
    let pattern = format!("{}*bob*", app.keys().throttle_user("").trim_end_matches("user:"));
    let counters: Vec<String> = redis::cmd("KEYS").arg(&pattern).query_async(&mut c).await.unwrap();
    assert!(!counters.is_empty(), "no counter matches {pattern}");
    for counter in counters {
        let _: () =
            redis::cmd("PEXPIRE").arg(&counter).arg(99_500).query_async(&mut c).await.unwrap();
    }
    let res = app.post_api_login(&credentials("bob", "foobared"), None).await;
    assert_eq!(res.status(), Status::TooManyRequests);
    assert_eq!(res.headers().get_one("Retry-After"), Some("100"));
    // Other users are not locked out by bob's counter.
    assert_eq!(app.try_login_browser("alice", "wonderland").await.status, Status::SeeOther);
}

#[rocket::async_test]
async fn failures_from_one_ip_are_throttled_across_usernames() {
    let app = TestApp::with(shared_redis(), |f| f.merge(("login_ip_limit", 3))).await;
    let attempt = |user, ip| app.try_api_login(user, "nope", Some(ip));
    for user in ["u1", "u2", "u3"] {
        assert_eq!(attempt(user, "10.1.1.1").await, Status::Unauthorized);
    }
    assert_eq!(attempt("u4", "10.1.1.1").await, Status::TooManyRequests);
    assert_eq!(attempt("u4", "10.2.2.2").await, Status::Unauthorized);
}

#[rocket::async_test]
async fn unknown_user_and_wrong_password_look_identical() {
    let app = TestApp::new().await;
    let unknown = app.try_login_browser("mallory", "foobared").await;
    let wrong = app.try_login_browser("bob", "not-it").await;
    assert_eq!(unknown.status, Status::Unauthorized);
    assert_eq!(wrong.status, Status::Unauthorized);
    assert!(unknown.body.contains("Invalid username or password"));
    // Same page apart from the echoed username and the form's own CSRF token.
    let normalise = |body: &str| {
        let token = common::hidden_csrf(body).unwrap();
        body.replace(&token, "TOKEN").replace("mallory", "bob")
    };
    assert_eq!(normalise(&unknown.body), normalise(&wrong.body));
    assert_eq!(unknown.set_cookie, wrong.set_cookie);

    let (mallory, bob) = (credentials("mallory", "x"), credentials("bob", "x"));
    let (a, b) = (app.post_api_login(&mallory, None).await, app.post_api_login(&bob, None).await);
    assert_eq!((a.status(), b.status()), (Status::Unauthorized, Status::Unauthorized));
    assert_eq!(a.into_string().await, b.into_string().await);
}

#[rocket::async_test]
async fn a_thousand_anonymous_requests_create_no_keys() {
    let app = TestApp::new().await;
    let before = app.stored_keys(shared_redis()).await;
    let paths = [
        "/",
        "/login",
        "/dashboard",
        "/sessions",
        "/api/v1/me",
        "/api/v1/sessions",
        "/healthz",
        "/nope",
    ];
    for i in 0..1000 {
        let path = paths[i % paths.len()];
        let mut req = app.client.get(path);
        if i % 3 == 0 {
            req = req.header(common::cookie_header("redbank", &format!("{:A>43}", i)));
        }
        if i % 5 == 0 {
            req = req.header(bearer(&format!("{:b>43}", i)));
        }
        let status = req.dispatch().await.status();
        assert!(status.code < 500, "{path}: {status}");
    }
    assert_eq!(app.stored_keys(shared_redis()).await, before);
}

#[rocket::async_test]
async fn corrupt_or_wrong_type_session_documents_are_no_session_and_are_deleted() {
    let app = TestApp::new().await;
    let mut c = shared_redis().conn().await;
    for corrupt in [r#"{"user":"bob"}"#, r#"{"v":999,"user":"bob"}"#, "[1,2,3]"] {
        let token = app.api_login("bob", "foobared").await;
        let key = app.keys().session(&session_id(&token));
        common::json_set(&mut c, &key, "$", corrupt).await;
        assert_eq!(me_status(&app, &token).await, Status::Unauthorized, "{corrupt}");
        assert!(!exists(&key).await, "corrupt document kept: {corrupt}");
    }
    let token = app.api_login("bob", "foobared").await;
    let key = app.keys().session(&session_id(&token));
    let _: () = c.del(&key).await.unwrap();
    let _: () = c.set(&key, "not json").await.unwrap();
    assert_eq!(me_status(&app, &token).await, Status::Unauthorized);
    assert!(!exists(&key).await);
}

#[rocket::async_test]
async fn redis_down_is_a_fast_503_never_logged_out_and_recovers() {
    let mut redis = RedisServer::start();
    let app = TestApp::with(&redis, |f| f).await;
    let b = app.login_browser("bob", "foobared").await;
    let token = app.api_login("bob", "foobared").await;
    redis.freeze();
    let started = Instant::now();
    let page = app.client.get("/dashboard").header(b.cookie()).dispatch().await;
    assert_eq!(
        page.status(),
        Status::ServiceUnavailable,
        "a frozen Redis must not log the user out"
    );
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(me_status(&app, &token).await, Status::ServiceUnavailable);
    // The login page of a signed-in browser is not "signed out" either.
    let page = app.client.get("/login").header(b.cookie()).dispatch().await;
    assert_eq!(page.status(), Status::ServiceUnavailable, "the outage looked like no session");
    let login = app.try_api_login("bob", "foobared", None).await;
    assert_eq!(login, Status::ServiceUnavailable);
    redis.thaw();
    let deadline = Instant::now() + Duration::from_secs(10);
    while me_status(&app, &token).await != Status::Ok {
        assert!(Instant::now() < deadline, "no recovery");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    redis.stop();
    assert_eq!(me_status(&app, &token).await, Status::ServiceUnavailable);
}

#[rocket::async_test]
async fn parallel_guesses_cannot_slip_past_the_throttle() {
    let app = TestApp::new().await;
    let passwords =
        app.client.rocket().state::<std::sync::Arc<redbank::auth::password::Passwords>>().unwrap();
    let before = passwords.computed();
    let guesses: Vec<String> = (0..12).map(|i| format!("guess-{i}")).collect();
    let guesses = guesses.iter().map(|guess| app.try_api_login("bob", guess, None));
    let statuses: Vec<Status> = futures::future::join_all(guesses).await;
    let hashed = passwords.computed() - before;
    // Limit 5; with 2 hashing slots at most one more guess can pass alongside the fifth.
    let bound =
        app.config().sign_in.user_limit + app.config().sign_in.password_hash_concurrency as u64 - 1;
    assert!(hashed <= bound, "{hashed} guesses were hashed (bound {bound}): {statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == Status::Unauthorized).count() as u64, hashed);
    assert_eq!(
        statuses.iter().filter(|s| **s == Status::TooManyRequests).count() as u64,
        12 - hashed
    );
}

#[rocket::async_test]
async fn sign_out_everywhere_reaches_past_one_page_of_sessions() {
    let app = TestApp::with(shared_redis(), |f| f.merge(("max_sessions_per_user", 1000))).await;
    let b = app.login_browser("bob", "foobared").await;
    // 230 other sessions (more than one 200-row page of the index), made without hashing.
    let user = redbank::auth::users::get_user(app.db(), "bob").await.unwrap().unwrap();
    let client = redbank::audit::ClientInfo { ip: "10.9.9.9".into(), user_agent: "bulk".into() };
    let mut tokens = Vec::new();
    for _ in 0..230 {
        let (token, _) = redbank::auth::store::create_session(
            app.db(),
            app.config(),
            &user,
            redbank::auth::model::SessionKind::Mobile,
            &client,
            redbank::auth::model::Assurance::password(0),
        )
        .await
        .unwrap();
        tokens.push(token);
    }
    let res = app.post_form("/sessions/revoke-others", &b).await;
    assert_eq!(res.status(), Status::SeeOther);
    for token in [&tokens[0], &tokens[115], &tokens[229]] {
        assert_eq!(me_status(&app, token.as_str()).await, Status::Unauthorized);
    }
    let prefix = app.keys().session_prefix();
    let left: Vec<String> = app.stored_keys(shared_redis()).await;
    let left: Vec<String> = left.into_iter().filter(|k| k.starts_with(&prefix)).collect();
    assert_eq!(left, vec![app.keys().session(&b.id())], "only this browser's session remains");
}

#[rocket::async_test]
async fn concurrent_successful_logins_of_one_user_are_never_throttled() {
    // A queue bound no shared test machine reaches: this is about the throttle, not load shedding.
    let app = TestApp::with(shared_redis(), |f| f.merge(("login_queue_max_ms", 60_000))).await;
    let logins = (0..16).map(|_| app.try_api_login("bob", "foobared", None));
    let statuses: Vec<Status> = futures::future::join_all(logins).await;
    assert!(statuses.iter().all(|s| *s == Status::Ok), "{statuses:?}");
}

/// PSD2 RTS Art. 4(3)(d): at most 5 minutes without activity after authentication. The idle limit
/// defaults to 300 s; pages carry the deadline and the warning that says why; "stay signed in"
/// is a real request that extends the session (an open live stream is not activity).
#[rocket::async_test]
async fn sessions_idle_out_after_five_minutes_and_stay_signed_in_extends_them() {
    let app = TestApp::new().await;
    assert_eq!(app.config().session.idle_secs, 300);
    let browser = app.login_browser("bob", "foobared").await;
    let key = app.keys().session(&browser.id());
    let mut conn = shared_redis().conn().await;
    let ttl: i64 = redis::cmd("TTL").arg(&key).query_async(&mut conn).await.unwrap();
    assert!((1..=300).contains(&ttl), "ttl {ttl}");
    let html = app.page("/dashboard", &browser).await.1;
    assert!(html.contains("data-idle-left=\""), "no idle countdown on the page");
    assert!(html.contains("id=\"idle-warning\"") && html.contains("PSD2"), "no warning");
    // Age the session: a minute left.
    let _: () = redis::cmd("EXPIRE").arg(&key).arg(60).query_async(&mut conn).await.unwrap();
    let res = app.script_request(Method::Post, "/api/v1/session/refresh", &browser).await;
    assert_eq!(res.status(), Status::Ok);
    let body: Value = serde_json::from_str(&res.into_string().await.unwrap()).unwrap();
    assert!(body["idle_expires_at"].as_str().is_some(), "{body}");
    assert!(body["idle_secs_left"].as_u64().is_some_and(|s| s > 250), "{body}");
    let ttl: i64 = redis::cmd("TTL").arg(&key).query_async(&mut conn).await.unwrap();
    assert!(ttl > 250, "stay signed in did not extend the session: ttl {ttl}");
    // Without the CSRF token, a cookie session is not refreshed.
    let res = app.client.post("/api/v1/session/refresh").header(browser.cookie()).dispatch().await;
    assert_eq!(res.status(), Status::Forbidden);
}

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
        assert_eq!(status_of_me(&server, Some(&format!("{name}={bob}")), None).await, 200);
        for alias in aliases {
            for cookies in [
                format!("{name}={bob}; {alias}={alice}"),
                format!("{alias}={alice}; {name}={bob}"),
                format!("{alias}={alice}"),
            ] {
                assert_eq!(
                    status_of_me(&server, Some(&cookies), None).await,
                    401,
                    "/api/v1/me {cookies}"
                );
                let status = server.events(&cookies, None).await.status();
                assert_eq!(status, 401, "/events with {cookies}");
            }
        }
        server.stop().await.unwrap();
    }
}

/// Every form a signed-in browser posts checks the synchronizer token before it acts: each
/// mounted POST route outside the API, posted with a wrong token (and every field a form of ours
/// has), is a 403. The sign-in forms, which have no session yet, use the double-submit cookie and
/// are checked above; the console's forms (they need an operator's browser at AAL2) in `admin`.
#[rocket::async_test]
async fn every_signed_in_form_refuses_a_wrong_token() {
    let app = TestApp::new().await;
    let b = app.login_browser("bob", "foobared").await;
    // Before a sign-in: the sign-in forms (double-submit cookie), and the links' pages whose
    // token is the credential ("this wasn't me", a password reset, an address confirmation;
    // "Forgot password?" and "Open an account" are checked in `password` and `signup`).
    let before_login =
        ["/login", "/not-me", "/password", "/signup", "/email/verify", "/email/undo"];
    let paths: Vec<String> = app
        .client
        .rocket()
        .routes()
        .filter(|r| r.method == rocket::http::Method::Post)
        .map(|r| r.uri.path().to_string())
        .filter(|p| {
            !p.starts_with("/api/") && !p.starts_with("/admin") && !p.starts_with("/transaction")
        })
        .filter(|p| !p.contains("<_..>"))
        // `/login/verify` is also the step-up form of a signed-in user: that one is ours.
        .filter(|p| {
            p == "/login/verify"
                || !before_login.iter().any(|l| p == l || p.starts_with(&format!("{l}/")))
        })
        .collect();
    assert!(paths.len() >= 10, "too few forms found: {paths:?}");
    let body = "csrf=wrong&code=123456&email_code=12345678&method=totp&next=%2Fsecurity\
                &to_account=0000000001&amount=1&reference=x&idempotency_key=k&password=foobared";
    for path in &paths {
        let path = path.replace("<id>", "x").replace("<user>", "bob");
        let res = app
            .client
            .post(path.clone())
            .header(b.cookie())
            .header(ContentType::Form)
            .body(body)
            .dispatch()
            .await;
        assert_eq!(res.status(), Status::Forbidden, "POST {path} with a wrong token");
        let page = res.into_string().await.unwrap_or_default();
        assert!(page.contains("Your form has expired"), "POST {path}: the reason is not shown");
    }
    assert!(exists(&app.keys().session(&b.id())).await, "a refused form signed out");
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
                .form_post(
                    "/login",
                    Some(&cookie),
                    format!("username=bob&password=foobared&csrf={token}"),
                )
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
    assert_eq!(status_of_me(&server, None, Some(&mobile)).await, 200);
    assert_eq!(status_of_me(&server, Some(&format!("redbank={browser}")), None).await, 200);
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
    assert_eq!(status_of_me(&server, Some(&as_cookie), None).await, 401, "mobile as cookie");
    assert_eq!(status_of_me(&server, None, Some(&browser)).await, 401, "browser cookie as bearer");
    // Refused, and not refreshed either (the touch interval is 0 here).
    assert_eq!(last_seen(&mobile).await, mobile_seen);
    assert_eq!(last_seen(&browser).await, browser_seen);
    let res = server.events(&as_cookie, None).await;
    assert_eq!(res.status(), 401, "/events with a mobile token as a cookie");
    server.stop().await.unwrap();
}

#[rocket::async_test]
async fn a_strangers_failures_never_lock_the_owner_out() {
    let server = TestServer::new().await;
    let owner = client_from("127.0.0.10");
    // The owner has signed in before: on a phone (device token) and in a browser (device cookie).
    let (status, body) = api_login_from(&owner, &server, credentials("bob", "foobared")).await;
    assert_eq!(status, 200, "{body}");
    let device_token = body["device_token"].as_str().map(str::to_owned);

    // One stranger hammers bob's account from one address, in every spelling of the name.
    let stranger = client_from("127.0.0.66");
    let mut statuses = Vec::new();
    for name in ["bob", " BOB ", "Bob", "bob", "bob", "bob", "bob", "bob"] {
        let (status, _) = api_login_from(&stranger, &server, credentials(name, "guess")).await;
        statuses.push(status.as_u16());
    }
    assert_eq!(statuses.iter().filter(|s| **s == 401).count(), 5, "{statuses:?}");
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");

    // The owner, from another address, is not locked out.
    let elsewhere = client_from("127.0.0.77");
    let (status, body) = api_login_from(&elsewhere, &server, credentials("bob", "foobared")).await;
    assert_eq!(status, 200, "the owner was locked out by a stranger: {body}");

    // Strangers spread over many addresses: the guesses against the account are bounded…
    let limit = 20;
    let mut hashed = 0;
    for i in 1..=40 {
        let from = client_from(&format!("127.0.1.{i}"));
        let (status, _) = api_login_from(&from, &server, credentials("bob", "guess")).await;
        assert!(matches!(status.as_u16(), 401 | 429), "{status}");
        hashed += usize::from(status == 401);
    }
    assert!(hashed <= limit, "{hashed} guesses from unknown clients (bound {limit})");
    let new_device = client_from("127.0.0.99");
    let (status, _) = api_login_from(&new_device, &server, credentials("bob", "foobared")).await;
    assert_eq!(status, 429, "unknown clients share the account's bound");
    // …while the owner's known devices still sign in, from any address.
    let device_token = device_token.expect("the login answer carries a device token");
    let (status, body) = api_login_from(
        &new_device,
        &server,
        json!({"username": "bob", "password": "foobared", "device_token": device_token}),
    )
    .await;
    assert_eq!(status, 200, "a known phone was locked out: {body}");
    // A device token proves nothing for another account.
    let (status, _) = api_login_from(
        &new_device,
        &server,
        json!({"username": "alice", "password": "guess", "device_token": device_token}),
    )
    .await;
    assert_eq!(status, 401);
    server.stop().await.unwrap();
}

#[rocket::async_test]
async fn a_sign_in_restarts_the_clients_count_and_trusts_its_device_for_the_configured_days() {
    let app = TestApp::new().await;
    let from = Some("127.0.3.1");
    let attempt = async |password: &str| {
        app.post_api_login(&credentials("bob", password), from).await.status().code
    };
    for _ in 0..4 {
        assert_eq!(attempt("guess").await, 401);
    }
    assert_eq!(attempt("foobared").await, 200);
    // The right password cleared this client's count: four more wrong guesses are all heard
    // (without the reset the sixth failure in the window would be locked).
    for i in 1..=4 {
        assert_eq!(attempt("guess").await, 401, "wrong guess {i} after the sign-in");
    }
    // The device it handed out is trusted for `device_trust_days` (90) from this use.
    let mut c = shared_redis().conn().await;
    let key = app.keys().devices("bob");
    let ids: Vec<String> = c.hkeys(&key).await.unwrap();
    assert_eq!(ids.len(), 1, "one device remembered");
    let ttl: Vec<i64> = redis::cmd("HTTL")
        .arg(&key)
        .arg("FIELDS")
        .arg(1)
        .arg(&ids[0])
        .query_async(&mut c)
        .await
        .unwrap();
    let days = 90 * 86_400;
    assert!((days - 60..=days).contains(&ttl[0]), "device trusted for {ttl:?} s");
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
        let (status, _) = api_login_from(&from, &server, credentials("bob", "guess")).await;
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
        // …and a whole window: a shorter one would let guessing go on sooner.
        assert!(ttl > window - 60_000, "{key} has PTTL {ttl}, not a window of {window} ms");
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

#[rocket::async_test]
async fn a_step_up_is_recorded_at_the_top_of_a_live_session_and_never_brings_back_an_ended_one() {
    use redbank::auth::model::{Assurance, SessionId};
    let app = TestApp::new().await;
    let token = app.api_login("bob", "foobared").await;
    let id = SessionId::parse(&session_id(&token)).expect("a session id");
    let key = app.keys().session(id.as_str());
    let now = redbank::clock::now_ms();
    let passkey = Assurance::passkey(now);

    let recorded = redbank::auth::store::set_assurance(app.db(), &id, &passkey);
    assert!(recorded.await.unwrap(), "a live session's step-up was not recorded");
    let mut c = shared_redis().conn().await;
    let doc: String = redis::cmd("JSON.GET").arg(&key).query_async(&mut c).await.unwrap();
    let doc: Value = serde_json::from_str(&doc).unwrap();
    assert_eq!(
        (&doc["aal"], &doc["amr"], &doc["auth_time"]),
        (&json!(2), &json!("hwk user mfa"), &json!(now))
    );
    assert!(doc.get("assurance").is_none(), "{doc}");
    assert_eq!(doc["user"], "bob", "the merge lost the rest of the document: {doc}");
    assert_eq!(me_status(&app, &token).await, Status::Ok);

    let _: () = c.del(&key).await.unwrap();
    let recorded = redbank::auth::store::set_assurance(app.db(), &id, &passkey);
    assert!(!recorded.await.unwrap(), "a step-up was recorded on a session that ended");
    assert!(!exists(&key).await, "recording a step-up brought an ended session back");
}
