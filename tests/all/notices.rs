//! Security notices by mail and "this wasn't me" (docs/SECURITY.md G.34, G.36), over real HTTP with the
//! mail read from a real SMTP server: every factor change, new-device sign-in and wrong second
//! factor after a right password is mailed with a one-time link; the link's page only shows, its
//! button secures the account (factors added in the last 24 hours removed, every session and
//! device signed out, the password marked compromised so the next password sign-in needs the
//! e-mailed code and a new password). Devices are remembered per user, at most ten, listed and
//! forgotten; second-factor codes have a per-account budget that no device token lifts.

use std::time::Duration;

use redbank::auth::factors::totp::{TotpSecret, step_of};
use serde_json::json;

use crate::common::mail::Mail;
use crate::common::request::RequestHelper;
use crate::common::server::{TestServer, post_api_login};
use crate::common::{credentials, demo_app_codes, shared_redis};

const BOB: &str = "bob@example.com";
const ALICE: &str = "alice@example.com";

/// The "this wasn't me" link's token in a notice.
fn not_me_token(mail: &Mail, server: &TestServer) -> String {
    let link = mail.link(&format!("{}/not-me?token=", server.origin)).expect("a not-me link");
    link.split("token=").nth(1).unwrap().to_owned()
}

fn code(secret: &TotpSecret, offset: i64) -> String {
    secret.code_at(step_of(redbank::clock::now_ms() / 1000) + offset)
}

/// bob's first factor (TOTP), with the code mailed to him; its secret.
async fn enrol_bob(server: &TestServer, token: &str) -> TotpSecret {
    let seen = server.mail.to(BOB).len();
    let (_, begun) = server.as_token(token).post("/api/v1/mfa/totp", &json!({})).await;
    let secret = TotpSecret::from_base32(begun["secret"].as_str().unwrap()).unwrap();
    let email_code = server.mail.code_to(BOB, seen).await;
    let body = json!({"code": code(&secret, -1), "email_code": email_code});
    let (status, _) = server.as_token(token).post("/api/v1/mfa/totp/confirm", &body).await;
    assert_eq!(status, 200);
    secret
}

#[rocket::async_test]
async fn factor_changes_and_new_devices_are_mailed_with_a_not_me_link() {
    let (server, token) = TestServer::with_bob().await;
    let mail = server.mail.about(BOB, "New sign-in", 0).await;
    assert!(mail.body().contains("127.0.0.1"), "{}", mail.body());
    assert!(!not_me_token(&mail, &server).is_empty());
    let secret = enrol_bob(&server, &token).await;
    let added = server.mail.about(BOB, "factor was added", 0).await;
    assert!(added.body().contains("an authenticator app"), "{}", added.body());
    // Each notice has a link of its own.
    assert_ne!(not_me_token(&added, &server), not_me_token(&mail, &server));
    // Removing it (after a step-up) is mailed too.
    let step = json!({"code": code(&secret, 0)});
    let (status, _) = server.as_token(&token).post("/api/v1/step-up/totp", &step).await;
    assert_eq!(status, 200);
    let (status, _) = server.as_token(&token).delete("/api/v1/mfa/totp").await;
    assert_eq!(status, 204);
    server.mail.about(BOB, "factor was removed", 0).await;
    server.stop().await.unwrap();
}

#[rocket::async_test]
async fn a_right_password_with_a_wrong_code_is_mailed_once_per_sign_in() {
    let server = TestServer::new().await;
    let attempt = async || {
        let (_, body) =
            post_api_login(&server.http, &server.base, &credentials("alice", "wonderland")).await;
        body["mfa_token"].as_str().unwrap().to_owned()
    };
    let wrong = if demo_app_codes().contains(&"000000".to_owned()) { "111111" } else { "000000" };
    let mfa_token = attempt().await;
    for _ in 0..3 {
        let body = json!({"mfa_token": mfa_token, "code": wrong});
        assert_eq!(server.anon().post("/api/v1/login/totp", &body).await.0, 401);
    }
    server.mail.about(ALICE, "wrong code", 0).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let count = |m: &Vec<Mail>| {
        m.iter().filter(|m| m.header("Subject").is_some_and(|s| s.contains("wrong code"))).count()
    };
    assert_eq!(count(&server.mail.to(ALICE)), 1, "one notice per sign-in, not per code");
    server.stop().await.unwrap();
}

#[rocket::async_test]
async fn this_wasnt_me_secures_the_account_and_the_next_sign_in_renews_the_password() {
    let server = TestServer::new().await;
    // A thief signs in with bob's password, and (reading his mail too) adds an authenticator app.
    let thief = server.api_login("bob", "foobared").await;
    enrol_bob(&server, &thief).await;
    let notice = server.mail.about(BOB, "factor was added", 0).await;
    let token = not_me_token(&notice, &server);

    // Opening the link only shows: twice, and nothing changes.
    for _ in 0..2 {
        let res =
            server.http.get(server.url(&format!("/not-me?token={token}"))).send().await.unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()["referrer-policy"], "no-referrer");
        let html = res.text().await.unwrap();
        assert!(html.contains("Bob Jones") && html.contains("not-me-confirm"), "{html}");
    }
    assert_eq!(server.as_token(&thief).get("/api/v1/me").await.0, 200);

    // The button acts, without a sign-in.
    let res = server
        .http
        .post(server.url("/not-me"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .header("Origin", "null")
        .body(format!("token={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.text().await.unwrap().contains("Your account is secured"));
    assert_eq!(server.as_token(&thief).get("/api/v1/me").await.0, 401);
    let totp = shared_redis().exists(&server.keys().totp("bob")).await;
    assert!(!totp, "the app added within 24 hours is gone");
    let devices = shared_redis().exists(&server.keys().devices("bob")).await;
    assert!(!devices, "remembered devices survived");
    // Single use.
    let again = json!({"token": token});
    assert_eq!(server.anon().post("/api/v1/not-me", &again).await.0, 410);
    let res = server.http.get(server.url(&format!("/not-me?token={token}"))).send().await.unwrap();
    assert_eq!(res.status(), 410);

    // The password alone no longer signs in: a code is mailed, and a new password is needed.
    let seen = server.mail.to(BOB).len();
    let (status, body) =
        post_api_login(&server.http, &server.base, &credentials("bob", "foobared")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["password_change_required"], true, "{body}");
    assert!(body.get("token").is_none(), "a session with a compromised password: {body}");
    let renew_token = body["renew_token"].as_str().unwrap().to_owned();
    let email_code = server.mail.code_to(BOB, seen).await;
    // Whoever goes on signing in with the old password neither replaces that code nor mails
    // another (the owner's code stays good for the owner's own sign-in).
    let (_, again) =
        post_api_login(&server.http, &server.base, &credentials("bob", "foobared")).await;
    let second_token = again["renew_token"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let codes = server.mail.to(BOB).iter().skip(seen).filter(|m| m.code(8).is_some()).count();
    assert_eq!(codes, 1, "a second sign-in mailed another renewal code");
    let wrong = if email_code == "12345678" { "87654321" } else { "12345678" };
    let renew = |email_code: &str, password: &str| json!({"renew_token": renew_token, "email_code": email_code, "new_password": password});
    // A refused password spends no try of the code.
    let cases = [
        (email_code.as_str(), "too short", "password"),
        (email_code.as_str(), "the password of bob", "password"),
        (wrong, "correct horse battery staple", "email_code"),
    ];
    for (code, password, field) in cases {
        let (status, body) =
            server.anon().post("/api/v1/login/renew", &renew(code, password)).await;
        assert_eq!((status.as_u16(), &body["field"]), (422, &json!(field)), "{password}: {body}");
    }
    let done = json!({
        "renew_token": second_token,
        "email_code": email_code,
        "new_password": "correct horse battery staple",
    });
    let (status, body) = server.anon().post("/api/v1/login/renew", &done).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["token"].is_string());
    // The old password is dead, the new one signs in plainly (no factor left, no renewal).
    let (status, _) =
        post_api_login(&server.http, &server.base, &credentials("bob", "foobared")).await;
    assert_eq!(status, 401);
    let (_, body) = post_api_login(
        &server.http,
        &server.base,
        &credentials("bob", "correct horse battery staple"),
    )
    .await;
    assert!(body["token"].is_string(), "{body}");
    server.stop().await.unwrap();
}

/// The same renewal through the pages: the login form leads to `/login/renew`, which takes the
/// e-mailed code and the new password and signs the browser in.
#[rocket::async_test]
async fn the_renewal_page_signs_the_browser_in_with_a_new_password() {
    let server = TestServer::new().await;
    server.api_login("bob", "foobared").await;
    let notice = server.mail.about(BOB, "New sign-in", 0).await;
    let body = json!({"token": not_me_token(&notice, &server)});
    let (status, undone) = server.anon().post("/api/v1/not-me", &body).await;
    assert_eq!((status.as_u16(), &undone["signed_out"]), (200, &json!(1)), "{undone}");

    let http = &server.http;
    let page = http.get(server.url("/login")).send().await.unwrap();
    let csrf_cookie =
        page.cookies().find(|c| c.name() == "redbank_csrf").unwrap().value().to_owned();
    let form =
        crate::common::LoginForm::new(Some(csrf_cookie.clone()), &page.text().await.unwrap());
    let seen = server.mail.to(BOB).len();
    let res = http
        .post(server.url("/login"))
        .header("Cookie", form.cookie(None))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(form.body("bob", "foobared"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        (res.status().as_u16(), res.headers()["location"].to_str().unwrap()),
        (303, "/login/renew")
    );
    let pre = res.cookies().find(|c| c.name() == "redbank_mfa").unwrap().value().to_owned();
    let cookies = format!("redbank_csrf={csrf_cookie}; redbank_mfa={pre}");
    let page =
        http.get(server.url("/login/renew")).header("Cookie", &cookies).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let csrf = crate::common::hidden_csrf(&page.text().await.unwrap()).unwrap();
    let email_code = server.mail.code_to(BOB, seen).await;
    let submit = |body: String| {
        http.post(server.url("/login/renew"))
            .header("Cookie", &cookies)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
    };
    let res = submit(format!("csrf={csrf}&email_code={email_code}&password=short")).await.unwrap();
    assert_eq!(res.status(), 422);
    assert!(res.text().await.unwrap().contains("at least 15 characters"));
    let body = format!("csrf={csrf}&email_code={email_code}&password=correct+horse+battery+staple");
    let res = submit(body).await.unwrap();
    assert_eq!(
        (res.status().as_u16(), res.headers()["location"].to_str().unwrap()),
        (303, "/dashboard")
    );
    assert!(res.cookies().any(|c| c.name() == "redbank" && !c.value().is_empty()));
    server.stop().await.unwrap();
}

/// Devices are remembered per user, at most ten (the least recently used dropped), listed for
/// the owner, and forgotten by "sign out everywhere".
#[rocket::async_test]
async fn devices_are_remembered_per_user_capped_listed_and_forgotten() {
    let server = TestServer::new().await;
    let mut tokens = Vec::new();
    for _ in 0..12 {
        let (_, body) =
            post_api_login(&server.http, &server.base, &credentials("bob", "foobared")).await;
        tokens.push(body["token"].as_str().unwrap().to_owned());
    }
    let (_, security) = server.as_token(&tokens[0]).get("/api/v1/security/activity").await;
    assert_eq!(security["devices"].as_array().unwrap().len(), 10, "{security}");
    let (status, _) =
        server.as_token(&tokens[11]).post_empty("/api/v1/sessions/revoke-others").await;
    assert_eq!(status, 200);
    let (_, security) = server.as_token(&tokens[11]).get("/api/v1/security/activity").await;
    assert_eq!(security["devices"], json!([]), "devices outlived 'sign out everywhere'");
    server.stop().await.unwrap();
}

/// The outside review's finding: with 30 device tokens one address had 150 TOTP codes checked in
/// 1.6 s (each token's own counter allowed five). The account's budget for second-factor codes
/// is now shared by every device and address; reaching it is mailed to the owner once.
#[rocket::async_test]
async fn second_factor_codes_have_one_budget_per_account_whatever_the_devices() {
    let server =
        TestServer::start(shared_redis(), None, |f| f.merge(("second_factor_limit", 5))).await;
    // Three devices alice's account knows (each signed in once, with one of the three codes of
    // the time steps around now: each step works once). Each device's own counter would allow
    // five wrong codes, fifteen in all.
    let mut devices = Vec::new();
    for code in demo_app_codes() {
        let login = credentials("alice", "wonderland");
        let (_, body) = post_api_login(&server.http, &server.base, &login).await;
        let body = json!({"mfa_token": body["mfa_token"], "code": code});
        let (status, done) = server.anon().post("/api/v1/login/totp", &body).await;
        assert_eq!(status, 200, "{done}");
        devices.push(done["device_token"].as_str().expect("a device token").to_owned());
    }
    let wrong = if demo_app_codes().contains(&"000000".to_owned()) { "111111" } else { "000000" };
    let mut statuses = Vec::new();
    for i in 0..8 {
        let device = &devices[i % devices.len()];
        let login = json!({"username": "alice", "password": "wonderland", "device_token": device});
        let (_, body) = post_api_login(&server.http, &server.base, &login).await;
        let body = json!({"mfa_token": body["mfa_token"], "code": wrong});
        statuses.push(server.anon().post("/api/v1/login/totp", &body).await.0.as_u16());
    }
    assert_eq!(
        statuses,
        [401, 401, 401, 401, 401, 429, 429, 429],
        "codes beyond the account's budget"
    );
    let locked = server.mail.about(ALICE, "locked", 0).await;
    assert!(locked.body().contains("locked for"), "{}", locked.body());
    tokio::time::sleep(Duration::from_millis(600)).await;
    let locks = server
        .mail
        .to(ALICE)
        .iter()
        .filter(|m| m.header("Subject").is_some_and(|s| s.contains("locked")))
        .count();
    assert_eq!(locks, 1, "the lock is announced once");
    server.stop().await.unwrap();
}
