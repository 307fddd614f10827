//! Strong authentication over real HTTP: TOTP enrolment and sign-in, code replay, the `mfa_token`
//! (expired, reused, guessed), recovery codes, passkeys (registration, usernameless sign-in,
//! replay), step-up (refused with RFC 9470's challenge, then granted), ceremony and pre-auth state
//! shared by two instances, the security activity and the live new-sign-in notice.

use std::time::Duration;

use redbank::auth::factors::totp::{TotpSecret, step_of};
use serde_json::{Value, json};

use crate::common;
use crate::common::passkey::Device;
use crate::common::request::{RequestHelper, begin_first_passkey, enrol_first_passkey};
use crate::common::server::{Next, TestServer, fast_heartbeat, post_api_login};
use crate::common::{TestApp, credentials, demo_app_codes, shared_redis, unique_prefix};

/// The origin both instances of the passkey test serve (one site behind one proxy).
const ORIGIN: &str = "https://bank.example";

/// The code of `secret` for the time step `offset` steps from now.
fn code(secret: &TotpSecret, offset: i64) -> String {
    secret.code_at(step_of(redbank::clock::now_ms() / 1000) + offset)
}

/// Enrols bob's first factor, TOTP, through the API with the code e-mailed to him; the secret
/// and the recovery codes.
async fn enrol_totp(server: &TestServer, token: &str) -> (TotpSecret, Vec<String>) {
    let seen = server.mail.to(BOB_EMAIL).len();
    let (status, begun) = server.as_token(token).post("/api/v1/mfa/totp", &json!({})).await;
    assert_eq!(status, 200, "{begun}");
    assert_eq!(begun["email_code_required"], true, "{begun}");
    let secret = TotpSecret::from_base32(begun["secret"].as_str().unwrap()).unwrap();
    let uri = begun["otpauth_uri"].as_str().unwrap();
    assert!(uri.starts_with("otpauth://totp/redbank:") && uri.contains("secret="), "{uri}");
    assert!(begun["qr_svg"].as_str().unwrap().starts_with("<svg"));
    let email_code = server.mail.code_to(BOB_EMAIL, seen).await;
    // A wrong app code does not turn it on (and spends no try of the e-mailed code).
    let wrong = if code(&secret, 0) == "000000" { "111111" } else { "000000" };
    let wrong = json!({"code": wrong, "email_code": email_code});
    let (status, body) = server.as_token(token).post("/api/v1/mfa/totp/confirm", &wrong).await;
    assert_eq!(status, 422, "a wrong code of a signed-in user is not a lost session: {body}");
    let right = json!({"code": code(&secret, -1), "email_code": email_code});
    let (status, done) = server.as_token(token).post("/api/v1/mfa/totp/confirm", &right).await;
    assert_eq!(status, 200, "{done}");
    let codes: Vec<String> = done["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().into())
        .collect();
    assert_eq!(codes.len(), 10);
    (secret, codes)
}

const BOB_EMAIL: &str = "bob@example.com";

/// What the API says of the factors of the user of `token`.
async fn factors_of(server: &TestServer, token: &str) -> Value {
    let path = "/api/v1/security/activity";
    server.as_token(token).get(path).await.1["factors"].clone()
}

/// The outside review's finding: a phished password alone (an AAL1 session) enrolled the thief's
/// authenticator app and then confirmed payments with it. The first factor now also needs the
/// code mailed to the account — bound to that enrolment, single use, five tries.
#[rocket::async_test]
async fn a_password_alone_cannot_add_the_first_factor() {
    let (server, thief) = TestServer::with_bob().await;
    let (status, begun) = server.as_token(&thief).post("/api/v1/mfa/totp", &json!({})).await;
    assert_eq!((status.as_u16(), &begun["email_code_required"]), (200, &json!(true)), "{begun}");
    let secret = TotpSecret::from_base32(begun["secret"].as_str().unwrap()).unwrap();
    // The code went to bob's mailbox, not to the caller.
    let mail = server.mail.code_mail(BOB_EMAIL, 0).await;
    let mailed = mail.code(8).expect("an 8-digit code");
    assert!(!begun.to_string().contains(&mailed), "the code must only be in the mail");
    assert_eq!(mail.header("To").as_deref(), Some(BOB_EMAIL));
    assert!(mail.body().contains("authenticator app"), "{}", mail.body());
    // Without it, or with a wrong one: 422 naming the field, and no factor.
    let confirm = |email_code: Option<&str>| {
        let mut body = json!({"code": code(&secret, 0)});
        if let Some(email_code) = email_code {
            body["email_code"] = json!(email_code);
        }
        body
    };
    let wrong = if mailed == "12345678" { "87654321" } else { "12345678" };
    for attempt in [None, Some(wrong), Some("not digits")] {
        let (status, body) =
            server.as_token(&thief).post("/api/v1/mfa/totp/confirm", &confirm(attempt)).await;
        assert_eq!((status.as_u16(), &body["field"]), (422, &json!("email_code")), "{body}");
    }
    assert_eq!(factors_of(&server, &thief).await["totp"], false);
    // Five tries in all (one wrong so far; a missing or malformed code costs none): four more
    // wrong ones void the code, even the right one is then refused.
    for _ in 0..4 {
        let (status, _) =
            server.as_token(&thief).post("/api/v1/mfa/totp/confirm", &confirm(Some(wrong))).await;
        assert_eq!(status, 422);
    }
    let (status, body) =
        server.as_token(&thief).post("/api/v1/mfa/totp/confirm", &confirm(Some(&mailed))).await;
    assert_eq!((status.as_u16(), &body["field"]), (422, &json!("email_code")), "{body}");
    assert_eq!(factors_of(&server, &thief).await["totp"], false);

    // Bound to its enrolment: a code mailed for one set-up does not confirm the next.
    let seen = server.mail.to(BOB_EMAIL).len();
    let (_, first) = server.as_token(&thief).post("/api/v1/mfa/totp", &json!({})).await;
    let first_code = server.mail.code_to(BOB_EMAIL, seen).await;
    let seen = server.mail.to(BOB_EMAIL).len();
    let (_, second) = server.as_token(&thief).post("/api/v1/mfa/totp", &json!({})).await;
    let second_code = server.mail.code_to(BOB_EMAIL, seen).await;
    assert_ne!(first["secret"], second["secret"]);
    let secret = TotpSecret::from_base32(second["secret"].as_str().unwrap()).unwrap();
    let with = |c: &str| json!({"code": code(&secret, 0), "email_code": c});
    let (status, _) =
        server.as_token(&thief).post("/api/v1/mfa/totp/confirm", &with(&first_code)).await;
    assert_eq!(status, 422, "the first set-up's code confirmed the second");
    // The owner, reading the mail, confirms: on, and the code is spent.
    let (status, body) =
        server.as_token(&thief).post("/api/v1/mfa/totp/confirm", &with(&second_code)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(factors_of(&server, &thief).await["totp"], true);
    let left = shared_redis().exists(&server.keys().enrol_code("bob")).await;
    assert!(!left, "a used code is gone");
    server.stop().await.unwrap();
}

/// A server on which bob (signed in with his password alone) has begun to enrol a first passkey:
/// the server, his token, the registration options and the code mailed for them.
async fn bob_begins_a_passkey() -> (TestServer, String, Value, String) {
    let (server, token) = TestServer::with_bob().await;
    let (options, mailed) =
        begin_first_passkey(&server.as_token(&token), Some("Key"), BOB_EMAIL).await;
    (server, token, options, mailed)
}

/// A passkey as the first factor takes the e-mailed code too, bound to its ceremony; a wrong code
/// leaves the ceremony for the right one.
#[rocket::async_test]
async fn a_first_passkey_needs_the_emailed_code() {
    let (server, token, options, mailed) = bob_begins_a_passkey().await;
    let bob = server.as_token(&token);
    assert_eq!(options["email_code_required"], true);
    assert!(server.mail.code_mail(BOB_EMAIL, 0).await.body().contains("a passkey"));
    let answer = Device::new(&server.origin).register(&options);
    let (status, body) = bob.post("/api/v1/passkeys", &answer).await;
    assert_eq!((status.as_u16(), &body["field"]), (422, &json!("email_code")), "{body}");
    let wrong = if mailed == "12345678" { "87654321" } else { "12345678" };
    let mut with_code = answer.clone();
    with_code["email_code"] = json!(wrong);
    let (status, body) = bob.post("/api/v1/passkeys", &with_code).await;
    assert_eq!((status.as_u16(), &body["field"]), (422, &json!("email_code")), "{body}");
    assert_eq!(factors_of(&server, &token).await["passkeys"], 0);
    with_code["email_code"] = json!(mailed);
    let (status, body) = bob.post("/api/v1/passkeys", &with_code).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(factors_of(&server, &token).await["passkeys"], 1);
    server.stop().await.unwrap();
}

/// An attestation that does not verify spends nothing: not the e-mailed code, not the ceremony.
/// The same code then takes a good answer to the same options, and the good answer is the one
/// that spends both (a second use of either is refused).
#[rocket::async_test]
async fn a_failed_attestation_keeps_the_emailed_code() {
    let (server, token, options, mailed) = bob_begins_a_passkey().await;
    let bob = server.as_token(&token);
    // An answer to our options whose attestation is damaged in transit: it does not verify.
    let mut broken = Device::new(&server.origin).register(&options);
    broken["response"]["attestationObject"] = json!("o2NmbXRkbm9uZQ");
    broken["email_code"] = json!(mailed);
    let (status, body) = bob.post("/api/v1/passkeys", &broken).await;
    assert_eq!(status, 422, "{body}");
    assert_ne!(body["field"], json!("email_code"), "the code was right: {body}");
    assert_eq!(factors_of(&server, &token).await["passkeys"], 0);

    let mut answer = Device::new(&server.origin).register(&options);
    answer["email_code"] = json!(mailed);
    let (status, body) = bob.post("/api/v1/passkeys", &answer).await;
    assert_eq!(status, 201, "the right code and a good answer: {body}");
    assert_eq!(factors_of(&server, &token).await["passkeys"], 1);
    // Both are spent now.
    let challenge = options["publicKey"]["challenge"].as_str().unwrap();
    let ceremony = server.keys().ceremony(&redbank::secret::sha256_hex(challenge));
    let open = shared_redis().exists(&ceremony).await;
    let code_left = shared_redis().exists(&server.keys().enrol_code("bob")).await;
    assert!(!open && !code_left, "ceremony open: {open}, code kept: {code_left}");
    server.stop().await.unwrap();
}

/// The `/security` pages carry the same field: the set-up page asks for the mailed code, and the
/// confirmation without it is refused with the page again.
#[rocket::async_test]
async fn the_security_page_asks_for_the_emailed_code() {
    let server = TestServer::new().await;
    let (cookie, csrf) = server.login("bob", "foobared").await;
    let form = |body: String| server.form_post("/security/totp/confirm", Some(&cookie), body);
    let res = server
        .form_post("/security/totp", Some(&cookie), format!("csrf={csrf}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let html = res.text().await.unwrap();
    assert!(html.contains("name=\"email_code\""), "no e-mail code field");
    let key: String = html
        .split("id=\"totp-secret\">")
        .nth(1)
        .unwrap()
        .split('<')
        .next()
        .unwrap()
        .replace(' ', "");
    let secret = TotpSecret::from_base32(&key).unwrap();
    let mailed = server.mail.code_to(BOB_EMAIL, 0).await;
    let res = form(format!("csrf={csrf}&code={}", code(&secret, 0))).send().await.unwrap();
    assert_eq!(res.status(), 422);
    assert!(res.text().await.unwrap().contains("e-mailed"), "the page says what is missing");
    let body = format!("csrf={csrf}&code={}&email_code={mailed}", code(&secret, 0));
    let res = form(body).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.text().await.unwrap().matches("<li><code>").count(), 10, "recovery codes");
    server.stop().await.unwrap();
}

/// A password sign-in that must stop at the second factor; its `mfa_token` and methods.
async fn password_step(server: &TestServer, user: &str, password: &str) -> (String, Value) {
    let (status, body) =
        post_api_login(&server.http, &server.base, &credentials(user, password)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["mfa_required"], true, "{body}");
    assert!(body.get("token").is_none(), "a session before the second factor: {body}");
    (body["mfa_token"].as_str().unwrap().to_owned(), body["methods"].clone())
}

#[rocket::async_test]
async fn totp_enrolment_sign_in_and_code_replay() {
    let (server, token) = TestServer::with_bob().await;
    let (_, me) = server.as_token(&token).get("/api/v1/me").await;
    assert_eq!(me["session"]["aal"], 1);
    assert_eq!(me["session"]["amr"], json!(["pwd"]));
    let (secret, _) = enrol_totp(&server, &token).await;
    // A second factor on top of the first needs a step-up (a stolen session must not add one)…
    let (status, body) = server.as_token(&token).post("/api/v1/mfa/totp", &json!({})).await;
    assert_eq!((status.as_u16(), &body["error"]), (401, &json!("step_up_required")));

    let (mfa_token, methods) = password_step(&server, "bob", "foobared").await;
    assert_eq!(methods, json!(["totp", "recovery"]));
    // The code used to confirm enrolment (step −1) is spent: it, and anything older, is refused.
    let replay = json!({"mfa_token": mfa_token, "code": code(&secret, -1)});
    assert_eq!(server.anon().post("/api/v1/login/totp", &replay).await.0, 401);
    let right = json!({"mfa_token": mfa_token, "code": code(&secret, 0)});
    let (status, done) = server.anon().post("/api/v1/login/totp", &right).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["aal"], 2);
    assert_eq!(done["amr"], json!(["pwd", "otp", "mfa"]));
    let new_token = done["token"].as_str().unwrap();
    let (_, me) = server.as_token(new_token).get("/api/v1/me").await;
    assert_eq!(me["session"]["aal"], 2);
    assert!(me["session"]["auth_time"].as_str().is_some());
    // The same code on a new sign-in: refused (single use), the next one works.
    let (mfa_token, _) = password_step(&server, "bob", "foobared").await;
    let again = json!({"mfa_token": mfa_token, "code": code(&secret, 0)});
    assert_eq!(server.anon().post("/api/v1/login/totp", &again).await.0, 401);
    let next = json!({"mfa_token": mfa_token, "code": code(&secret, 1)});
    assert_eq!(server.anon().post("/api/v1/login/totp", &next).await.0, 200);
    // The sessions list shows how strongly each session signed in.
    let (_, list) = server.as_token(new_token).get("/api/v1/sessions").await;
    let levels: Vec<i64> =
        list["sessions"].as_array().unwrap().iter().map(|s| s["aal"].as_i64().unwrap()).collect();
    assert!(levels.contains(&1) && levels.contains(&2), "{list}");
    server.stop().await.unwrap();
}

#[rocket::async_test]
async fn the_mfa_token_is_single_use_expires_and_takes_few_guesses() {
    let server = TestServer::new().await;
    // Reused: the token that completed a sign-in completes no other.
    let (mfa_token, _) = password_step(&server, "alice", "wonderland").await;
    let signed_in = server.totp_step_with_demo_app(&mfa_token).await;
    assert!(signed_in.is_some(), "alice signs in with her app");
    for code in demo_app_codes() {
        let body = json!({"mfa_token": mfa_token, "code": code});
        let (status, body) = server.anon().post("/api/v1/login/totp", &body).await;
        assert_eq!(status, 401, "a used mfa_token worked again: {body}");
    }
    // Not a token at all, or a session token: refused the same way.
    let bob = server.api_login("bob", "foobared").await;
    for fake in ["", "nope", bob.as_str()] {
        let body = json!({"mfa_token": fake, "code": "123456"});
        assert_eq!(server.anon().post("/api/v1/login/totp", &body).await.0, 401, "{fake}");
    }
    // Expired: Redis drops the state after its TTL (shortened here to one millisecond).
    let (mfa_token, _) = password_step(&server, "alice", "wonderland").await;
    let key = server
        .keys()
        .pre_auth(redbank::auth::model::SessionToken::parse(&mfa_token).unwrap().id().as_str());
    let mut conn = shared_redis().conn().await;
    let ttl: i64 = redis::cmd("TTL").arg(&key).query_async(&mut conn).await.unwrap();
    assert!(ttl > 0 && ttl <= 300, "pre-auth state TTL {ttl}");
    let _: () = redis::cmd("PEXPIRE").arg(&key).arg(1).query_async(&mut conn).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    for code in demo_app_codes() {
        let body = json!({"mfa_token": mfa_token, "code": code});
        assert_eq!(server.anon().post("/api/v1/login/totp", &body).await.0, 401);
    }
    // Guessed: five wrong codes and the state is gone, so a right code no longer helps.
    let (mfa_token, _) = password_step(&server, "alice", "wonderland").await;
    let secret = TotpSecret::from_base32(redbank::auth::demo::ALICE_TOTP_SECRET).unwrap();
    let valid: Vec<String> = (-1..=1).map(|o| code(&secret, o)).collect();
    let wrong: Vec<String> = (0..100)
        .map(|n| format!("{:06}", n * 7919 % 1_000_000))
        .filter(|c| !valid.contains(c))
        .take(5)
        .collect();
    for guess in &wrong {
        let body = json!({"mfa_token": mfa_token, "code": guess});
        assert_eq!(server.anon().post("/api/v1/login/totp", &body).await.0, 401);
    }
    let key = server
        .keys()
        .pre_auth(redbank::auth::model::SessionToken::parse(&mfa_token).unwrap().id().as_str());
    assert!(!shared_redis().exists(&key).await, "the pre-auth state outlived five wrong codes");
    for code in demo_app_codes() {
        let body = json!({"mfa_token": mfa_token, "code": code});
        let (status, body) = server.anon().post("/api/v1/login/totp", &body).await;
        assert_eq!(status, 401, "the sixth try of a guessed mfa_token worked: {body}");
    }
    server.stop().await.unwrap();
}

#[rocket::async_test]
async fn recovery_codes_work_once() {
    let (server, token) = TestServer::with_bob().await;
    let (_, codes) = enrol_totp(&server, &token).await;
    let (mfa_token, _) = password_step(&server, "bob", "foobared").await;
    // Typed with spaces and in capitals, it is the same code.
    let typed = codes[3].replace('-', " ").to_uppercase();
    let body = json!({"mfa_token": mfa_token, "code": typed});
    let (status, done) = server.anon().post("/api/v1/login/recovery", &body).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["aal"], 2);
    let (mfa_token, _) = password_step(&server, "bob", "foobared").await;
    let body = json!({"mfa_token": mfa_token, "code": codes[3]});
    assert_eq!(server.anon().post("/api/v1/login/recovery", &body).await.0, 401, "used twice");
    let body = json!({"mfa_token": mfa_token, "code": codes[4]});
    assert_eq!(server.anon().post("/api/v1/login/recovery", &body).await.0, 200);
    let (_, activity) = server.as_token(&token).get("/api/v1/security/activity").await;
    assert_eq!(activity["factors"]["recovery_codes_left"], 8, "{activity}");
    let used: Vec<&Value> = activity["activity"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "recovery_code_used")
        .collect();
    assert_eq!(used.len(), 2);
    assert_eq!(used[0]["remaining"], 8, "newest first");
    server.stop().await.unwrap();
}

/// Makes the session of `token` look like it signed in long ago (what time would do).
async fn age_session(server: &TestServer, token: &str) {
    server.authenticated_at(token, 0).await;
}

/// `step_up_max_age_secs` is the limit, to the second: alice's two-factor sign-in of 4 m 50 s
/// ago still allows new recovery codes; one of 5 m 10 s ago asks for a step-up.
#[rocket::async_test]
async fn a_strong_sign_in_is_recent_for_exactly_step_up_max_age() {
    let server = TestServer::new().await;
    let secret = TotpSecret::from_base32(redbank::auth::demo::ALICE_TOTP_SECRET).unwrap();
    let token = server.totp_login("alice", "wonderland", &secret).await;
    let alice = server.as_token(&token);
    let now = redbank::clock::now_ms();
    server.authenticated_at(&token, now - 290_000).await;
    let (status, body) = alice.post("/api/v1/mfa/recovery-codes", &json!({})).await;
    assert_eq!(status, 200, "4 m 50 s ago: {body}");
    server.authenticated_at(&token, now - 310_000).await;
    let (status, body) = alice.post("/api/v1/mfa/recovery-codes", &json!({})).await;
    assert_eq!((status.as_u16(), &body["error"]), (401, &json!("step_up_required")), "{body}");
    server.stop().await.unwrap();
}

#[rocket::async_test]
async fn sensitive_actions_need_a_recent_strong_sign_in() {
    let (server, token) = TestServer::with_bob().await;
    let bob = server.as_token(&token);
    // A password-only user: a fresh sign-in is recent enough; an old one steps up with the
    // password (recorded as AAL1).
    age_session(&server, &token).await;
    let (status, body) = bob.post("/api/v1/mfa/recovery-codes", &json!({})).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"], "step_up_required");
    let (status, body) = bob.post("/api/v1/step-up/password", &json!({"password": "nope"})).await;
    assert_eq!(status, 422, "{body}");
    let (status, body) =
        bob.post("/api/v1/step-up/password", &json!({"password": "foobared"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["aal"], 1);
    // Adding a first factor never waits for a step-up, even on an old session.
    age_session(&server, &token).await;
    let (secret, _) = enrol_totp(&server, &token).await;
    // Now bob has a second factor: his password session (AAL1) must step up with it.
    let answer = bob.call(reqwest::Method::DELETE, "/api/v1/mfa/totp").await;
    let (status, body, headers) = (answer.status, answer.json, answer.headers);
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"], "step_up_required");
    assert_eq!(
        headers.get("WWW-Authenticate").unwrap(),
        r#"Bearer error="insufficient_user_authentication", max_age=300, acr_values="aal2""#
    );
    let (status, _) = bob.post("/api/v1/step-up/password", &json!({"password": "foobared"})).await;
    assert_eq!(status, 403, "a user with a second factor cannot step up with the password");
    let (status, _) = bob.post("/api/v1/step-up/totp", &json!({"code": code(&secret, -1)})).await;
    assert_eq!(status, 422, "the enrolment's code again");
    let (status, body) = bob.post("/api/v1/step-up/totp", &json!({"code": code(&secret, 0)})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["aal"], 2);
    let (status, _) = bob.delete("/api/v1/mfa/totp").await;
    assert_eq!(status, 204);
    // Protective actions never wait: signing out every other session works on an old session.
    age_session(&server, &token).await;
    let other = server.api_login("bob", "foobared").await;
    let id = crate::common::session_id(&other);
    let (status, _) = bob.delete(&format!("/api/v1/sessions/{id}")).await;
    assert_eq!(status, 204);
    let (_, activity) = bob.get("/api/v1/security/activity").await;
    let types: Vec<&str> = activity["activity"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    for expected in [
        "sign_in",
        "factor_added",
        "factor_removed",
        "step_up",
        "session_revoked",
        "failed_sign_in",
    ] {
        assert!(types.contains(&expected), "{expected} missing from {types:?}");
    }
    server.stop().await.unwrap();
}

#[rocket::async_test]
async fn a_page_action_without_step_up_goes_through_verify_and_back() {
    let server = TestServer::new().await;
    let (cookie, csrf) = server.login("alice", "wonderland").await;
    let token = cookie.split_once('=').unwrap().1.to_owned();
    age_session(&server, &token).await;
    let form = |cookie: &str, body: String| {
        server.form_post("/security/recovery-codes", Some(cookie), body)
    };
    let res = form(&cookie, format!("csrf={csrf}")).send().await.unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(res.headers()["Location"], "/login/verify?next=%2Fsecurity");
    let page =
        server.http.get(server.url("/login/verify?next=%2Fsecurity")).header("Cookie", &cookie);
    let html = page.send().await.unwrap().text().await.unwrap();
    assert!(html.contains("Confirm it is you") && html.contains("name=\"method\" value=\"totp\""));
    // Off-site `next` values are never followed.
    let evil =
        server.http.get(server.url("/login/verify?next=//evil.example")).header("Cookie", &cookie);
    let html = evil.send().await.unwrap().text().await.unwrap();
    assert!(!html.contains("evil.example"), "an off-site next survived");
    let mut rotated = None;
    for code in demo_app_codes() {
        let res = server
            .form_post(
                "/login/verify",
                Some(&cookie),
                format!("csrf={csrf}&method=totp&code={code}&next=%2Fsecurity"),
            )
            .send()
            .await
            .unwrap();
        if res.status() == 303 {
            assert_eq!(res.headers()["Location"], "/security");
            rotated = res.cookies().find(|c| c.name() == "redbank").map(|c| c.value().to_owned());
            break;
        }
        assert_eq!(res.status(), 422, "a wrong code shows the page again with 422");
    }
    let rotated = format!("redbank={}", rotated.expect("a new session cookie after the step-up"));
    // The token from before the step-up is worth nothing now.
    let me = |cookie: &str| {
        server.http.get(server.url("/api/v1/me")).header("Cookie", cookie.to_owned()).send()
    };
    assert_eq!(me(&cookie).await.unwrap().status(), 401);
    let me_now: Value = me(&rotated).await.unwrap().json().await.unwrap();
    assert_eq!(me_now["session"]["aal"], 2);
    let html =
        server.http.get(server.url("/security")).header("Cookie", &rotated).send().await.unwrap();
    let csrf = crate::common::hidden_csrf(&html.text().await.unwrap()).unwrap();
    let res = form(&rotated, format!("csrf={csrf}")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let html = res.text().await.unwrap();
    assert_eq!(html.matches("<li><code>").count(), 10, "ten new recovery codes, shown once");
    server.stop().await.unwrap();
}

#[rocket::async_test]
async fn passkeys_register_sign_in_alone_and_work_across_instances() {
    let prefix = unique_prefix();
    // Both behind one origin, as behind one proxy.
    let one_site = |f: rocket::figment::Figment| f.merge(("public_origin", ORIGIN));
    let a = TestServer::start(shared_redis(), Some(&prefix), one_site).await;
    let b = TestServer::start(shared_redis(), Some(&prefix), one_site).await;
    let token = a.api_login("bob", "foobared").await;
    let mut device = Device::new(ORIGIN);
    // Registration starts on one instance and finishes on the other.
    let (options, mailed) =
        begin_first_passkey(&a.as_token(&token), Some("Test key"), BOB_EMAIL).await;
    assert_eq!(options["publicKey"]["authenticatorSelection"]["residentKey"], "required");
    assert_eq!(options["publicKey"]["authenticatorSelection"]["userVerification"], "required");
    assert_eq!(options["publicKey"]["rp"]["id"], "bank.example");
    let mut answer = device.register(&options);
    answer["email_code"] = json!(mailed);
    let (status, added) = b.as_token(&token).post("/api/v1/passkeys", &answer).await;
    assert_eq!(status, 201, "{added}");
    assert_eq!(added["name"], "Test key");
    // Now that bob has a factor, his password session must step up to add another.
    let (status, body) = b.as_token(&token).post("/api/v1/passkeys", &answer).await;
    assert_eq!((status.as_u16(), &body["error"]), (401, &json!("step_up_required")));
    let (_, list) = a.as_token(&token).get("/api/v1/passkeys").await;
    assert_eq!(list["passkeys"].as_array().unwrap().len(), 1, "{list}");

    // Usernameless sign-in, started on B, finished on A: two factors in one.
    let (status, options) = b.anon().post("/api/v1/login/passkey/options", &json!({})).await;
    assert_eq!(status, 200, "{options}");
    assert_eq!(options["publicKey"]["allowCredentials"], json!([]));
    let assertion = device.sign(&options);
    let (status, done) = a.anon().post("/api/v1/login/passkey", &assertion).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["user"]["username"], "bob");
    assert_eq!(done["aal"], 2);
    assert_eq!(done["amr"], json!(["hwk", "user", "mfa"]));
    // Replayed: the challenge was used.
    assert_eq!(b.anon().post("/api/v1/login/passkey", &assertion).await.0, 401);
    // A password sign-in now asks for the passkey.
    let (_, methods) = password_step(&a, "bob", "foobared").await;
    assert_eq!(methods, json!(["passkey"]));

    // Removing it is sensitive: the password session steps up with the passkey first.
    let id = list["passkeys"][0]["id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/passkeys/{id}");
    assert_eq!(a.as_token(&token).delete(&path).await.0, 401);
    let (status, options) =
        a.as_token(&token).post("/api/v1/step-up/passkey/options", &json!({})).await;
    assert_eq!(status, 200);
    let assertion = device.sign(&options);
    // Another session cannot use this session's step-up ceremony.
    let stranger = b.api_login("alice", "wonderland").await;
    assert_eq!(b.as_token(&stranger).post("/api/v1/step-up/passkey", &assertion).await.0, 422);
    let (status, options) =
        a.as_token(&token).post("/api/v1/step-up/passkey/options", &json!({})).await;
    assert_eq!(status, 200);
    let assertion = device.sign(&options);
    let (status, body) = b.as_token(&token).post("/api/v1/step-up/passkey", &assertion).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["aal"], 2);
    assert_eq!(a.as_token(&token).delete(&path).await.0, 204);
    let (_, plain) = post_api_login(&a.http, &a.base, &credentials("bob", "foobared")).await;
    assert!(plain.get("token").is_some(), "without a factor bob signs in with the password alone");
    a.stop().await.unwrap();
    b.stop().await.unwrap();
}

#[rocket::async_test]
async fn a_second_factor_started_on_one_instance_finishes_on_another() {
    let prefix = unique_prefix();
    let a = TestServer::start(shared_redis(), Some(&prefix), |f| f).await;
    let b = TestServer::start(shared_redis(), Some(&prefix), |f| f).await;
    let (mfa_token, methods) = password_step(&a, "alice", "wonderland").await;
    assert_eq!(methods, json!(["totp"]));
    let done = b.totp_step_with_demo_app(&mfa_token).await;
    assert!(done.is_some(), "B finished what A started");
    a.stop().await.unwrap();
    b.stop().await.unwrap();
}

#[rocket::async_test]
async fn a_new_device_signing_in_is_announced_on_the_other_dashboards() {
    let server = TestServer::start(shared_redis(), None, fast_heartbeat).await;
    let (cookie, _, mut stream) = server.watching("bob", "foobared").await;
    // A phone that never signed in to bob's account before, from another address.
    let phone = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 3]))
        .user_agent(
            "Mozilla/5.0 (Linux; Android 14) AppleWebKit/537.36 Chrome/131.0 Mobile Safari/537.36",
        )
        .build()
        .unwrap();
    let (status, body) =
        post_api_login(&phone, &server.base, &credentials("bob", "foobared")).await;
    assert_eq!(status, 200, "{body}");
    let new_session = crate::common::session_id(body["token"].as_str().unwrap());
    let event = stream.expect("security", Duration::from_secs(5)).await;
    let notice: Value = serde_json::from_str(&event.data).unwrap();
    assert_eq!(notice["type"], "new_sign_in");
    assert_eq!(notice["device"], "Chrome on Android");
    assert_eq!(notice["ip"], "127.0.0.3");
    assert_eq!(notice["session"], new_session.as_str());
    assert!(event.id.is_none(), "a notice must not move the stream's resume point");
    // The same device again is not news.
    let device = body["device_token"].as_str().unwrap();
    let again = json!({"username": "bob", "password": "foobared", "device_token": device});
    let (status, _) = post_api_login(&phone, &server.base, &again).await;
    assert_eq!(status, 200);
    // The stream stays quiet about it (heartbeats are comments, the generator is off).
    let quiet = stream.next(Duration::from_secs(2)).await;
    assert!(matches!(quiet, Next::Timeout), "an event for a device the account knows");
    // A factor added from the phone's session (a first factor: with the mailed code, no
    // step-up) is news too.
    let phone_token = body["token"].as_str().unwrap();
    let mut device = Device::new(&server.origin);
    let phone_user = server.as_token(phone_token);
    enrol_first_passkey(&phone_user, &mut device, Some("Phone"), BOB_EMAIL).await;
    let event = stream.expect("security", Duration::from_secs(5)).await;
    let notice: Value = serde_json::from_str(&event.data).unwrap();
    assert_eq!(
        (notice["type"].as_str(), notice["factor"].as_str()),
        (Some("factor_added"), Some("passkey"))
    );
    assert_eq!(notice["name"], "Phone");
    assert_eq!(notice["ip"], "127.0.0.3");
    // "Not me": the browser signs out every other session, the phone's included.
    let dashboard = server.http.get(server.url("/dashboard")).header("Cookie", &cookie);
    let html = dashboard.send().await.unwrap().text().await.unwrap();
    let csrf = crate::common::hidden_csrf(&html).unwrap();
    let res = server
        .http
        .post(server.url("/api/v1/sessions/revoke-others"))
        .header("Cookie", &cookie)
        .header("X-CSRF-Token", csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let (status, _) = server.as_token(phone_token).get("/api/v1/me").await;
    assert_eq!(status, 401, "the phone's session survived 'sign out every other session'");
    server.stop().await.unwrap();
}

#[rocket::async_test]
async fn wrong_codes_are_throttled_like_passwords_without_locking_the_owner_out() {
    let server =
        TestServer::start(shared_redis(), None, |f| f.merge(("login_user_limit", 3))).await;
    // alice's own phone signed in before: it holds a device token.
    let (mfa_token, _) = password_step(&server, "alice", "wonderland").await;
    let done = server.totp_step_with_demo_app(&mfa_token).await;
    let device = done.and_then(|d| d["device_token"].as_str().map(str::to_owned));
    let device = device.expect("alice signed in from her phone");
    // Someone with her password guesses codes from another address: three wrong codes, then
    // that address is locked for her account — the right password no longer even gets a token.
    let stranger = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 7]))
        .build()
        .unwrap();
    let (status, body) =
        post_api_login(&stranger, &server.base, &credentials("alice", "wonderland")).await;
    assert_eq!(status, 200, "{body}");
    let mfa_token = body["mfa_token"].as_str().unwrap().to_owned();
    let secret = TotpSecret::from_base32(redbank::auth::demo::ALICE_TOTP_SECRET).unwrap();
    let valid: Vec<String> = (-1..=1).map(|o| code(&secret, o)).collect();
    let wrong = ["314159", "271828", "161803", "141421"]
        .into_iter()
        .filter(|c| !valid.contains(&c.to_string()));
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for guess in wrong.take(4) {
        let res = stranger
            .post(server.url("/api/v1/login/totp"))
            .json(&json!({"mfa_token": mfa_token, "code": guess}))
            .send()
            .await
            .unwrap();
        statuses.push(res.status().as_u16());
        retry_after = res.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
    }
    assert_eq!(&statuses[..3], &[401, 401, 401]);
    assert_eq!(statuses.get(3), Some(&429), "the fourth guess was not throttled: {statuses:?}");
    // Locked for the whole window (15 minutes), not a moment.
    let retry: u64 = retry_after.expect("Retry-After").parse().unwrap();
    assert!((890..=900).contains(&retry), "Retry-After {retry}");
    let (status, _) =
        post_api_login(&stranger, &server.base, &credentials("alice", "wonderland")).await;
    assert_eq!(status, 429, "a locked address still got an mfa_token");
    // The owner's phone is counted on its own and signs in at once.
    let body = json!({"username": "alice", "password": "wonderland", "device_token": device});
    let (status, body) = post_api_login(&server.http, &server.base, &body).await;
    assert_eq!(status, 200, "{body}");
    let mfa_token = body["mfa_token"].as_str().unwrap();
    let ok = server.totp_step_with_demo_app(mfa_token).await;
    assert!(ok.is_some(), "the owner's known device was locked out by a stranger's guesses");
    server.stop().await.unwrap();
}

/// The second outside review: TOTP secrets sat in Redis in clear, so a dump alone yielded
/// working codes. They are sealed (XChaCha20-Poly1305) with `totp_keys`: the dump holds no
/// secret, a server without the key cannot use it, and keys rotate — a new key first opens the
/// old values, `redbank admin totp-rekey` re-seals them, and the old key can then go.
#[rocket::async_test]
async fn totp_secrets_are_sealed_at_rest_and_their_keys_rotate() {
    use base64::Engine;
    let key = |id: &str, byte: u8| {
        format!("{id}:{}", base64::engine::general_purpose::STANDARD.encode([byte; 32]))
    };
    let (old, new) = (key("old", 7), key("new", 9));
    let prefix = unique_prefix();
    let with = |keys: Vec<String>| move |f: rocket::figment::Figment| f.merge(("totp_keys", keys));
    let server = TestServer::start(shared_redis(), Some(&prefix), with(vec![old.clone()])).await;
    let token = server.api_login("bob", "foobared").await;
    let (secret, _) = enrol_totp(&server, &token).await;
    let mut conn = shared_redis().conn().await;
    let stored = async |conn: &mut redis::aio::MultiplexedConnection| -> String {
        let key = redbank::redis::Keys::new(&prefix).totp("bob");
        redis::cmd("HGET").arg(key).arg("secret").query_async(conn).await.unwrap()
    };
    let dumped = stored(&mut conn).await;
    assert!(dumped.starts_with("v1.old.") && !dumped.contains(&secret.base32()), "{dumped}");
    server.stop().await.unwrap();
    // A sign-in with a code of the app works on a server holding the key…
    let sign_in = async |keys: Vec<String>| {
        let server = TestServer::start(shared_redis(), Some(&prefix), with(keys)).await;
        let (_, body) =
            post_api_login(&server.http, &server.base, &credentials("bob", "foobared")).await;
        let mfa_token = body["mfa_token"].as_str().unwrap().to_owned();
        let mut status = 0;
        for offset in [0, 1] {
            let body = json!({"mfa_token": mfa_token, "code": code(&secret, offset)});
            status = server.anon().post("/api/v1/login/totp", &body).await.0.as_u16();
            if status == 200 {
                break;
            }
        }
        (server, status)
    };
    let (server, status) = sign_in(vec![new.clone(), old.clone()]).await;
    assert_eq!(status, 200, "the old key no longer opened its value");
    // …re-sealed with the new key by the tool, after which the old key can go.
    let out = server.admin_tool(&[new.clone(), old.clone()], &["totp-rekey"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed = String::from_utf8_lossy(&out.stdout).into_owned();
    // bob's, and alice's demo app.
    assert!(printed.contains("re-sealed 2 "), "{printed}");
    assert!(stored(&mut conn).await.starts_with("v1.new."));
    server.stop().await.unwrap();
    let (server, status) = sign_in(vec![old.clone()]).await;
    assert_eq!(status, 401, "a server with only the dropped key used the secret");
    server.stop().await.unwrap();
    let (server, _) = sign_in(vec![new.clone()]).await;
    server.stop().await.unwrap();
}

/// The e-mailed code's rules at the store level, as a mutation pass found them untested: a code
/// is per user (one user's code never replaces another's), answers only the enrolment it was
/// mailed for, and a malformed or oversized one spends no try.
#[rocket::async_test]
async fn an_emailed_code_is_per_user_per_enrolment_and_malformed_ones_cost_nothing() {
    use redbank::auth::factors::email_code::{self, NewFactor};
    let server = TestServer::new().await;
    let db = redbank::redis::Db::connect(&server.redis_url, &server.prefix, Duration::from_secs(2))
        .unwrap();
    let mut config = redbank::Config { key_prefix: server.prefix.clone(), ..Default::default() };
    config.mail.smtp_url = Some(server.mail.url());
    let mailer = redbank::mail::Mailer::new(&config).unwrap();
    let alice_email = "alice@example.com";
    email_code::send(&db, &mailer, "bob", NewFactor::Totp, "enrolment A").await.unwrap();
    let bobs = server.mail.code_to(BOB_EMAIL, 0).await;
    email_code::send(&db, &mailer, "alice", NewFactor::Totp, "enrolment C").await.unwrap();
    let alices = server.mail.code_to(alice_email, 0).await;
    // Malformed or oversized: refused without spending any of bob's five tries.
    for _ in 0..6 {
        for junk in ["not digits", "123456789012345678901"] {
            let refused =
                email_code::redeem(&db, "bob", NewFactor::Totp, "enrolment A", Some(junk));
            assert!(refused.await.is_err());
        }
    }
    // Another enrolment's code is refused (a try spent), then the right one works, once.
    let other = email_code::redeem(&db, "bob", NewFactor::Totp, "enrolment B", Some(&bobs));
    assert!(other.await.is_err(), "a code answered another enrolment");
    email_code::redeem(&db, "bob", NewFactor::Totp, "enrolment A", Some(&bobs)).await.unwrap();
    let again = email_code::redeem(&db, "bob", NewFactor::Totp, "enrolment A", Some(&bobs));
    assert!(again.await.is_err(), "a code worked twice");
    // alice's code, mailed after bob's, neither replaced his nor was replaced.
    email_code::redeem(&db, "alice", NewFactor::Totp, "enrolment C", Some(&alices)).await.unwrap();
    server.stop().await.unwrap();
}

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
    let server = TestServer::new().await;
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
            .form_post(
                "/login/verify",
                Some(&cookie),
                format!("csrf={csrf}&method=password&password=foobared&next={}", common::enc(next)),
            )
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

/// The login page starts a sign-in ceremony on every load (passkey autofill), so one address's
/// page loads may use up the sign-in ceremonies; they are counted apart, and never keep a
/// signed-in customer there from confirming a transfer or stepping up.
#[rocket::async_test]
async fn sign_in_ceremonies_are_counted_apart_from_a_signed_in_customers() {
    let (server, bob) = TestServer::with_bob().await;
    let limit = redbank::auth::factors::passkey::CEREMONIES_PER_MINUTE;
    for n in 0..limit {
        let (status, _) = server.anon().post_empty("/api/v1/login/passkey/options").await;
        assert_eq!(status, 200, "sign-in ceremony {n}");
    }
    let (status, refused) = server.anon().post_empty("/api/v1/login/passkey/options").await;
    assert_eq!(status, 429, "{refused}");
    let (status, options) =
        server.as_token(&bob).post_empty("/api/v1/step-up/passkey/options").await;
    assert_eq!(status, 200, "{options}");
    server.stop().await.unwrap();
}
