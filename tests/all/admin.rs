//! The operator console over real HTTP: only operators at AAL2 get in, the session search filters,
//! revocation reaches an open stream, and every action is recorded.

use std::time::Duration;

use redbank::auth::factors::totp::{TotpSecret, step_of};
use serde_json::{Value, json};

use crate::common::request::RequestHelper;
use crate::common::server::{TestServer, fast_heartbeat, post_api_login};
use crate::common::{ADMIN_PASSWORD, credentials, shared_redis};

fn code(secret: &TotpSecret, offset: i64) -> String {
    secret.code_at(step_of(redbank::clock::now_ms() / 1000) + offset)
}

/// The admin at AAL2 (an authenticator app set up on the machine, signed in with it).
async fn operator(server: &TestServer) -> String {
    server.operator().await.0
}

/// The outside review's finding: the admin's password alone enrolled a TOTP app over the web and
/// opened the whole console. The operator's first factor now comes only from the machine.
#[rocket::async_test]
async fn an_operators_first_factor_comes_from_the_machine() {
    let server = TestServer::new().await;
    let token = server.api_login("admin", ADMIN_PASSWORD).await;
    // Without a second factor: refused, with how to get in.
    let (status, body) = server.as_token(&token).get("/api/v1/admin/sessions").await;
    assert_eq!(status, 403, "{body}");
    assert!(body["error"].as_str().unwrap().contains("redbank admin totp"), "{body}");
    // …and the web will not add one: neither an app nor a passkey.
    for path in ["/api/v1/mfa/totp", "/api/v1/passkeys/options"] {
        let (status, body) = server.as_token(&token).post(path, &json!({})).await;
        assert_eq!(status, 403, "{path}: {body}");
        assert!(body["error"].as_str().unwrap().contains("redbank admin totp"), "{body}");
    }
    // On the machine: the URI and the key are printed, exit 0.
    let out = server.admin_totp(&[]);
    let printed = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{printed}{}", String::from_utf8_lossy(&out.stderr));
    assert!(printed.lines().any(|l| l.starts_with("otpauth://totp/redbank:admin?")), "{printed}");
    let secret = crate::common::server::printed_secret(&printed);
    assert!(printed.contains('\u{2580}') || printed.contains('\u{2584}'), "a terminal QR code");
    // A factor, but this session signed in with the password alone: the step-up challenge, and
    // the app's code steps it up.
    let (status, body) = server.as_token(&token).get("/api/v1/admin/sessions").await;
    assert_eq!((status.as_u16(), &body["error"]), (401, &json!("step_up_required")));
    let step = json!({"code": code(&secret, 0)});
    let (status, _) = server.as_token(&token).post("/api/v1/step-up/totp", &step).await;
    assert_eq!(status, 200);
    assert_eq!(server.as_token(&token).get("/api/v1/admin/sessions").await.0, 200);
    // Run again, it refuses to replace the app silently; --replace swaps it and ends the
    // admin's sessions.
    let again = server.admin_totp(&[]);
    assert!(!again.status.success(), "replaced an app without --replace");
    let replaced = server.admin_totp(&["--replace"]);
    assert!(replaced.status.success(), "{}", String::from_utf8_lossy(&replaced.stderr));
    let new_secret =
        crate::common::server::printed_secret(&String::from_utf8_lossy(&replaced.stdout));
    assert_ne!(new_secret.base32(), secret.base32());
    assert_eq!(
        server.as_token(&token).get("/api/v1/admin/sessions").await.0,
        401,
        "session survived"
    );
    server.totp_login("admin", ADMIN_PASSWORD, &new_secret).await;
    server.stop().await.unwrap();
}

#[rocket::async_test]
async fn only_operators_at_aal2_get_in() {
    let (server, bob) = TestServer::with_bob().await;
    for path in ["/api/v1/admin/sessions", "/api/v1/admin/failed-sign-ins", "/api/v1/admin/stats"] {
        assert_eq!(server.as_token(&bob).get(path).await.0, 403, "{path}");
        let anonymous = server.http.get(server.url(path)).send().await.unwrap();
        assert_eq!(anonymous.status(), 401, "{path}");
    }
    let (status, _) = server.as_token(&bob).delete("/api/v1/admin/users/alice/sessions").await;
    assert_eq!(status, 403);
    let (cookie, _) = server.login("bob", "foobared").await;
    let page = server.http.get(server.url("/admin")).header("Cookie", cookie).send().await.unwrap();
    assert_eq!(page.status(), 403);
    let admin = operator(&server).await;
    assert_eq!(server.as_token(&admin).get("/api/v1/admin/stats").await.0, 200);
    server.stop().await.unwrap();
}

#[rocket::async_test]
async fn the_console_searches_revokes_and_records() {
    let server = TestServer::start(shared_redis(), None, fast_heartbeat).await;
    let admin = operator(&server).await;
    // bob: a browser with an open stream, and a phone on another address.
    let (cookie, _, mut stream) = server.watching("bob", "foobared").await;
    let phone = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 9]))
        .build()
        .unwrap();
    let (_, body) = post_api_login(&phone, &server.base, &credentials("bob", "foobared")).await;
    let phone_token = body["token"].as_str().unwrap().to_owned();
    // A stranger guesses alice's password from another address.
    let guesser = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 5]))
        .build()
        .unwrap();
    for _ in 0..3 {
        post_api_login(&guesser, &server.base, &credentials("alice", "guess")).await;
    }

    let (status, all) = server.as_token(&admin).get("/api/v1/admin/sessions?user=bob").await;
    assert_eq!(status, 200, "{all}");
    assert_eq!(all["total"], 2, "{all}");
    assert!(all["sessions"].as_array().unwrap().iter().all(|s| s["user"] == "bob"));
    let (_, phones) =
        server.as_token(&admin).get("/api/v1/admin/sessions?user=bob&kind=mobile").await;
    assert_eq!(phones["total"], 1);
    assert_eq!(phones["sessions"][0]["ip"], "127.0.0.9");
    // Named as bob's own sessions page names it: the app, whatever its User-Agent says.
    assert_eq!(phones["sessions"][0]["device"], "redbank mobile app", "{phones}");
    let (_, by_ip) = server.as_token(&admin).get("/api/v1/admin/sessions?ip=127.0.0.9").await;
    assert_eq!(by_ip["total"], 1, "{by_ip}");
    let (_, old) =
        server.as_token(&admin).get("/api/v1/admin/sessions?user=bob&older_than_secs=3600").await;
    assert_eq!(old["total"], 0);
    // Found by schemathesis: an age past what a clock can subtract was a 500.
    let too_old = "older_than_secs=9223372036854775808";
    for bad in ["kind=tablet", "ip=not-an-ip", "user=Bad%20Name", "page=0", too_old] {
        let (status, body) =
            server.as_token(&admin).get(&format!("/api/v1/admin/sessions?{bad}")).await;
        assert_eq!(status, 400, "{bad}: {body}");
    }

    // Found by schemathesis: the operator could end their own session here (the id is in the
    // list) — refused like resetting their own factors; signing out is `DELETE /api/v1/session`.
    let own = format!("/api/v1/admin/sessions/{}", crate::common::session_id(&admin));
    let (status, body) = server.as_token(&admin).delete(&own).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(server.as_token(&admin).get("/api/v1/me").await.0, 200);

    // Revoking the browser session ends its open stream within a heartbeat.
    let browser_id = crate::common::session_id(&cookie);
    let path = format!("/api/v1/admin/sessions/{browser_id}");
    assert_eq!(server.as_token(&admin).delete(&path).await.0, 204);
    stream.expect_closed(Duration::from_secs(3), "the revoked session's stream").await;
    // All of bob's: the phone too.
    let (status, done) = server.as_token(&admin).delete("/api/v1/admin/users/bob/sessions").await;
    assert_eq!((status.as_u16(), &done["signed_out"]), (200, &json!(1)));
    assert_eq!(server.as_token(&phone_token).get("/api/v1/me").await.0, 401);

    // Failed sign-ins by account and by address.
    let (_, failed) = server.as_token(&admin).get("/api/v1/admin/failed-sign-ins").await;
    assert_eq!(failed["by_account"][0], json!({"user": "alice", "count": 3}), "{failed}");
    assert_eq!(failed["by_address"][0], json!({"address": "127.0.0.5", "count": 3}), "{failed}");

    // Recorded for bob, and in the operators' audit stream.
    let bob_activity = redbank::audit::newest(
        &redbank::redis::Db::connect(&shared_redis().url(), &server.prefix, Duration::from_secs(2))
            .unwrap(),
        "bob",
        20,
    )
    .await
    .unwrap();
    let by_operator = bob_activity
        .iter()
        .filter(|e| matches!(e.activity, redbank::audit::Activity::RevokedByOperator { .. }))
        .count();
    assert_eq!(by_operator, 2);
    let mut conn = shared_redis().conn().await;
    let audited: usize =
        redis::cmd("XLEN").arg(server.keys().admin_audit()).query_async(&mut conn).await.unwrap();
    assert_eq!(audited, 2);
    server.stop().await.unwrap();
}

/// A thief holding bob's session and reading his mail added a passkey (a first factor needs the
/// mailed code, no step-up): the bank removes bob's factors, which ends every session of his,
/// and bob signs in with his password.
#[rocket::async_test]
async fn an_operator_removes_a_thiefs_passkey() {
    let server = TestServer::new().await;
    let admin = operator(&server).await;
    let stolen = server.api_login("bob", "foobared").await;
    let mut device = crate::common::passkey::Device::new(&server.origin);
    let thief = server.as_token(&stolen);
    crate::common::request::enrol_first_passkey(&thief, &mut device, None, "bob@example.com").await;
    let (_, login) =
        post_api_login(&server.http, &server.base, &credentials("bob", "foobared")).await;
    assert_eq!(login["mfa_required"], true, "bob's password alone no longer signs him in");
    // bob cannot remove it himself (his password is no step-up for a user with a factor): the
    // bank resets his factors.
    let (status, done) = server.as_token(&admin).delete("/api/v1/admin/users/bob/factors").await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(
        server.as_token(&stolen).get("/api/v1/me").await.0,
        401,
        "the thief's session survived"
    );
    let (_, login) =
        post_api_login(&server.http, &server.base, &credentials("bob", "foobared")).await;
    assert!(login["token"].is_string(), "bob signs in with his password again: {login}");
    let (_, options) = server.as_token(&admin).post_empty("/api/v1/login/passkey/options").await;
    let (status, _) =
        server.as_token(&admin).post("/api/v1/login/passkey", &device.sign(&options)).await;
    assert_eq!(status, 401, "the thief's passkey still signs in");
    assert_eq!(server.as_token(&admin).delete("/api/v1/admin/users/nobody/factors").await.0, 404);
    server.stop().await.unwrap();
}

/// The outside review's finding: an admin session at AAL1 listed every user's sessions (address,
/// device) and ended them through `/sessions` and `/api/v1/sessions`, outside the console's AAL2
/// rule and its audit. There is one privileged view now: the console.
#[rocket::async_test]
async fn the_session_pages_show_an_admin_only_their_own() {
    let (server, bob) = TestServer::with_bob().await;
    let bobs = crate::common::session_id(&bob);
    let admin = server.api_login("admin", ADMIN_PASSWORD).await;
    let (status, list) = server.as_token(&admin).get("/api/v1/sessions").await;
    assert_eq!(status, 200);
    let users: Vec<&str> = list["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["user"].as_str().unwrap_or("admin"))
        .collect();
    assert!(!list.to_string().contains(&bobs), "bob's session in the admin's list: {list}");
    assert!(users.iter().all(|u| *u == "admin"), "{list}");
    let path = format!("/api/v1/sessions/{bobs}");
    let (status, _) = server.as_token(&admin).delete(&path).await;
    assert_eq!(status, 403, "an admin at AAL1 ended bob's session");
    assert_eq!(server.as_token(&bob).get("/api/v1/me").await.0, 200, "bob's session ended");
    let (cookie, _) = server.login("admin", ADMIN_PASSWORD).await;
    let page = server.http.get(server.url("/sessions")).header("Cookie", &cookie).send().await;
    let html = page.unwrap().text().await.unwrap();
    assert!(html.contains("Your active sessions") && !html.contains(&bobs[..16]), "{html}");
    server.stop().await.unwrap();
}

/// Destructive console actions need a fresh authentication, like removing one's own factor: an
/// operator whose two-factor sign-in is older than `step_up_max_age_secs` is asked to step up
/// (with that age in the challenge) before resetting a customer's factors or ending all their
/// sessions; reading the console needs no fresh one.
#[rocket::async_test]
async fn destructive_console_actions_need_a_fresh_authentication() {
    let server =
        TestServer::start(shared_redis(), None, |f| f.merge(("step_up_max_age_secs", 30))).await;
    let (admin, secret) = server.operator().await;
    server.api_login("bob", "foobared").await;
    // Age the operator's authentication past the limit.
    server.authenticated_at(&admin, redbank::clock::now_ms() - 31_000).await;
    assert_eq!(
        server.as_token(&admin).get("/api/v1/admin/sessions").await.0,
        200,
        "reading is fine"
    );
    for path in ["/api/v1/admin/users/bob/factors", "/api/v1/admin/users/bob/sessions"] {
        let res = server.http.delete(server.url(path)).bearer_auth(&admin).send().await.unwrap();
        assert_eq!(res.status(), 401, "{path}");
        let challenge = res.headers()["www-authenticate"].to_str().unwrap().to_owned();
        assert!(challenge.contains("max_age=30"), "{challenge}");
        let body: Value = res.json().await.unwrap();
        assert_eq!((&body["error"], &body["max_age"]), (&json!("step_up_required"), &json!(30)));
    }
    let step = json!({"code": code(&secret, 1)});
    let (status, _) = server.as_token(&admin).post("/api/v1/step-up/totp", &step).await;
    assert_eq!(status, 200);
    let path = "/api/v1/admin/users/bob/sessions";
    let (status, body) = server.as_token(&admin).delete(path).await;
    assert_eq!(status, 200, "{body}");
    server.stop().await.unwrap();
}

/// The console's forms check the synchronizer token like every signed-in form: posted by an
/// operator's browser at AAL2 (so no other guard refuses first) with a wrong token, each is a 403
/// that says the form expired, and nothing is done.
#[rocket::async_test]
async fn the_consoles_forms_refuse_a_wrong_token() {
    use redbank::auth::model::{Assurance, SessionKind};
    use rocket::http::{ContentType, Status};
    let app = crate::common::TestApp::new().await;
    let bob = app.api_login("bob", "foobared").await;
    // An operator's browser after the password and a code (the store's own session write).
    let admin = redbank::auth::users::get_user(app.db(), "admin").await.unwrap().unwrap();
    let client = redbank::audit::ClientInfo { ip: "127.0.0.1".into(), user_agent: "test".into() };
    let fresh = Assurance::password_and_code(redbank::clock::now_ms());
    let (token, _) = redbank::auth::store::create_session(
        app.db(),
        app.config(),
        &admin,
        SessionKind::Browser,
        &client,
        fresh,
    )
    .await
    .unwrap();
    let cookie = crate::common::cookie_header(app.cookie_name(), token.as_str());
    let bobs = crate::common::session_id(&bob);
    let forms = app
        .client
        .rocket()
        .routes()
        .filter(|r| r.method == rocket::http::Method::Post && r.uri.path().starts_with("/admin"))
        .map(|r| r.uri.path().replace("<id>", bobs.as_str()).replace("<user>", "bob"))
        .collect::<Vec<_>>();
    assert_eq!(forms.len(), 3, "{forms:?}");
    for path in &forms {
        let res = app
            .client
            .post(path.clone())
            .header(cookie.clone())
            .header(ContentType::Form)
            .body("csrf=wrong")
            .dispatch()
            .await;
        assert_eq!(res.status(), Status::Forbidden, "POST {path}");
        let page = res.into_string().await.unwrap_or_default();
        assert!(page.contains("Your form has expired"), "POST {path}: {page}");
    }
    let me = app.client.get("/api/v1/me").header(crate::common::bearer(&bob)).dispatch().await;
    assert_eq!(me.status(), Status::Ok, "a refused console form signed bob out");
}
