//! A customer's password, over real HTTP with mail read from a real SMTP server: the rules every
//! new password meets (NIST SP 800-63B-4), changing it (the current one, a recent second factor
//! where there is one; every other session ends), and "Forgot password?" (a single-use link to
//! the account's own address, the same answer for anyone, the second factor in the same reset,
//! every session ended).

use std::time::Duration;

use redbank::auth::factors::totp::TotpSecret;
use serde_json::{Value, json};

use crate::common;
use crate::common::mail::Mail;
use crate::common::passkey::Device;
use crate::common::request::{RequestHelper, enrol_first_passkey};
use crate::common::server::TestServer;
use crate::common::{demo_app_codes, shared_redis};

const BOB: &str = "bob@example.com";
const ALICE: &str = "alice@example.com";
const NEW: &str = "violet quartz river lamp";

fn reset_mails(server: &TestServer, address: &str) -> usize {
    let subject = |m: &Mail| m.header("Subject").is_some_and(|s| s.contains("Reset your"));
    server.mail.to(address).iter().filter(|m| subject(m)).count()
}

/// Asks for a reset of `login` and returns the token of the link mailed to `address`.
pub(crate) async fn reset_token(server: &TestServer, login: &str, address: &str) -> String {
    let seen = reset_mails(server, address);
    let (status, _) = server.anon().post("/api/v1/password/forgot", &json!({"login": login})).await;
    assert_eq!(status, 202);
    let mail = server.mail.about(address, "Reset your", seen).await;
    let link = mail.link(&format!("{}/password/reset?token=", server.origin)).expect("a link");
    link.split("token=").nth(1).unwrap().to_owned()
}

/// alice, signed in with her password and her demo app's code (AAL2).
async fn alice_token(server: &TestServer) -> String {
    let secret = TotpSecret::from_base32(redbank::auth::demo::ALICE_TOTP_SECRET).unwrap();
    server.totp_login("alice", "wonderland", &secret).await
}

/// The status of a password sign-in of `user`.
async fn login_status(server: &TestServer, user: &str, password: &str) -> u16 {
    server.anon().post("/api/v1/login", &common::credentials(user, password)).await.0.as_u16()
}

async fn me_status(server: &TestServer, token: &str) -> u16 {
    server.as_token(token).get("/api/v1/me").await.0.as_u16()
}

#[rocket::async_test]
async fn asking_for_a_reset_answers_the_same_for_anyone_and_mails_only_the_accounts_address() {
    let server = TestServer::new().await;
    let mut answers = Vec::new();
    for login in ["bob", "BOB@example.com", "nobody", "nobody@example.com", ""] {
        answers.push(server.anon().post("/api/v1/password/forgot", &json!({"login": login})).await);
    }
    for (status, body) in &answers {
        assert_eq!((status.as_u16(), body), (202, &answers[0].1), "every answer is the same");
    }
    assert!(answers[0].1["message"].as_str().unwrap().contains("If an account"));
    // The username and the address (in any case) both found bob; nothing else was sent.
    server.mail.about(BOB, "Reset your", 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let all = server.mail.all();
    assert!(
        all.iter().all(|m| m.to == [BOB]),
        "{:?}",
        all.iter().map(|m| &m.to).collect::<Vec<_>>()
    );
    assert_eq!(reset_mails(&server, BOB), 2);
    // Per account: three mails an hour at most, and the asker cannot tell.
    for _ in 0..3 {
        let (status, _) =
            server.anon().post("/api/v1/password/forgot", &json!({"login": "bob"})).await;
        assert_eq!(status, 202);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(reset_mails(&server, BOB), 3);
    // Per client address: ten asks an hour.
    for _ in 0..5 {
        server.anon().post("/api/v1/password/forgot", &json!({"login": "x"})).await;
    }
    let anon = server.anon();
    let ask = anon.request(reqwest::Method::POST, "/api/v1/password/forgot");
    let refused = anon.send(ask.json(&json!({"login": "x"}))).await;
    assert_eq!(refused.status, 429);
    assert!(refused.headers.contains_key("retry-after"));
    server.stop().await.unwrap();
}

#[rocket::async_test]
async fn a_reset_sets_a_password_by_the_rules_ends_every_session_and_its_link_works_once() {
    let (server, first) = TestServer::with_bob().await;
    let second = server.api_login("bob", "foobared").await;
    let older = reset_token(&server, "bob", BOB).await;
    let token = reset_token(&server, "bob", BOB).await;
    let (status, view) =
        server.anon().post("/api/v1/password/reset/options", &json!({"token": token})).await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["name"], "Bob Jones");
    assert_eq!(view["second_factor_required"], false);
    assert_eq!(view["min_password_chars"], 15);
    // A common password, a short one, one with the name: refused, and the link still works.
    for (weak, why) in [
        ("password12345678", "common"),
        ("violet quartz", "at least 15"),
        ("violet jones quartz river", "name"),
    ] {
        let body = json!({"token": token, "password": weak});
        let (status, body) = server.anon().post("/api/v1/password/reset", &body).await;
        assert_eq!((status.as_u16(), &body["field"]), (422, &json!("password")), "{body}");
        assert!(body["error"].as_str().unwrap().contains(why), "{body}");
    }
    let seen = server.mail.to(BOB).len();
    let (status, body) = server
        .anon()
        .post("/api/v1/password/reset", &json!({"token": token, "password": NEW}))
        .await;
    assert_eq!(status, 204, "{body}");
    // Every session ended; the old password is gone, the new one works.
    assert_eq!((me_status(&server, &first).await, me_status(&server, &second).await), (401, 401));
    assert_eq!(login_status(&server, "bob", "foobared").await, 401);
    assert_eq!(me_status(&server, &server.api_login("bob", NEW).await).await, 200);
    // The link, and the one sent before it, work no more.
    for used in [&token, &older] {
        let body = json!({"token": used, "password": "another fine long passphrase"});
        let (status, body) = server.anon().post("/api/v1/password/reset", &body).await;
        assert_eq!(status, 410, "{body}");
        let (status, _) =
            server.anon().post("/api/v1/password/reset/options", &json!({"token": used})).await;
        assert_eq!(status, 410);
    }
    // The owner is told, with a "this wasn't me" link; the activity says what happened.
    let told = server.mail.about(BOB, "password was reset", 0).await;
    assert!(server.mail.to(BOB).len() > seen);
    assert!(told.link(&format!("{}/not-me?token=", server.origin)).is_some(), "{}", told.body());
    let me = server.api_login("bob", NEW).await;
    let (_, activity) = server.as_token(&me).get("/api/v1/security/activity").await;
    let types: Vec<&str> = activity["activity"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["type"].as_str())
        .collect();
    assert!(types.contains(&"password_reset") && types.contains(&"password_reset_requested"));
    server.stop().await.unwrap();
}

#[rocket::async_test]
async fn a_reset_of_an_account_with_a_second_factor_needs_it_too() {
    let server = TestServer::new().await;
    let token = reset_token(&server, "alice", ALICE).await;
    let (_, view) =
        server.anon().post("/api/v1/password/reset/options", &json!({"token": token})).await;
    assert_eq!(view["second_factor_required"], true);
    assert_eq!(view["min_password_chars"], 8);
    // The mailbox alone is not enough: no code, a wrong code, a code of the wrong kind.
    for proof in [json!({}), json!({"code": "000000"}), json!({"recovery_code": "aaaa-bbbb"})] {
        let mut body = json!({"token": token, "password": "tea kettle moon"});
        body.as_object_mut().unwrap().extend(proof.as_object().unwrap().clone());
        let (status, body) = server.anon().post("/api/v1/password/reset", &body).await;
        assert_eq!((status.as_u16(), &body["field"]), (422, &json!("code")), "{body}");
    }
    assert_eq!(login_status(&server, "alice", "wonderland").await, 200, "nothing changed yet");
    let mut reset = None;
    for code in demo_app_codes() {
        let body = json!({"token": token, "password": "tea kettle moon", "code": code});
        let (status, _) = server.anon().post("/api/v1/password/reset", &body).await;
        if status == 204 {
            reset = Some(code);
            break;
        }
    }
    assert!(reset.is_some(), "a right code of alice's app resets the password");
    assert_eq!(login_status(&server, "alice", "wonderland").await, 401);
    server.stop().await.unwrap();
}

#[rocket::async_test]
async fn a_passkey_proves_a_reset_only_through_a_ceremony_bound_to_its_link() {
    let (server, bob) = TestServer::with_bob().await;
    // bob's first passkey, with the code e-mailed for it.
    let mut device = Device::new(&server.origin);
    enrol_first_passkey(&server.as_token(&bob), &mut device, Some("Key"), BOB).await;
    let token = reset_token(&server, "bob", BOB).await;
    let (_, view) =
        server.anon().post("/api/v1/password/reset/options", &json!({"token": token})).await;
    assert_eq!(
        (view["second_factor_required"].clone(), view["min_password_chars"].clone()),
        (json!(true), json!(8))
    );
    // An assertion for a sign-in ceremony does not prove a reset.
    let (_, sign_in) = server.anon().post_empty("/api/v1/login/passkey/options").await;
    let body =
        json!({"token": token, "password": "tea kettle moon", "passkey": device.sign(&sign_in)});
    let (status, body) = server.anon().post("/api/v1/password/reset", &body).await;
    assert_eq!((status.as_u16(), &body["field"]), (422, &json!("code")), "{body}");
    // One for this link's ceremony does.
    let (status, options) =
        server.anon().post("/api/v1/password/reset/passkey", &json!({"token": token})).await;
    assert_eq!(status, 200, "{options}");
    let body =
        json!({"token": token, "password": "tea kettle moon", "passkey": device.sign(&options)});
    let (status, body) = server.anon().post("/api/v1/password/reset", &body).await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(me_status(&server, &bob).await, 401);
    server.stop().await.unwrap();
}

#[rocket::async_test]
async fn changing_the_password_needs_the_current_one_and_ends_every_other_session() {
    let (server, me) = TestServer::with_bob().await;
    let other = server.api_login("bob", "foobared").await;
    let alice = alice_token(&server).await;
    let change =
        |current: &str, new: &str| json!({"current_password": current, "new_password": new});
    for (body, field) in [
        (change("wrong", NEW), "current_password"),
        (change("foobared", "password12345678"), "new_password"),
        (change("foobared", "short"), "new_password"),
    ] {
        let (status, answer) = server.as_token(&me).put("/api/v1/password", &body).await;
        assert_eq!((status.as_u16(), &answer["field"]), (422, &json!(field)), "{answer}");
    }
    let (status, body) =
        server.as_token(&me).put("/api/v1/password", &change("foobared", NEW)).await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(me_status(&server, &me).await, 200, "this session stays");
    assert_eq!(me_status(&server, &other).await, 401, "every other one ends");
    assert_eq!(me_status(&server, &alice).await, 200, "nobody else's");
    assert_eq!(login_status(&server, "bob", "foobared").await, 401);
    assert_eq!(me_status(&server, &server.api_login("bob", NEW).await).await, 200);
    server.mail.about(BOB, "password was changed", 0).await;
    // Wrong current passwords are counted like wrong sign-ins.
    let mut last = 0;
    for _ in 0..8 {
        last = server.as_token(&me).put("/api/v1/password", &change("wrong", NEW)).await.0.as_u16();
    }
    assert_eq!(last, 429);
    server.stop().await.unwrap();
}

#[rocket::async_test]
async fn changing_the_password_of_an_account_with_a_factor_needs_a_recent_one() {
    let server =
        TestServer::start(shared_redis(), None, |f| f.merge(("step_up_max_age_secs", 60))).await;
    let alice = alice_token(&server).await;
    server.authenticated_at(&alice, redbank::clock::now_ms() - 61_000).await;
    let body = json!({"current_password": "wonderland", "new_password": "tea kettle moon"});
    let answer = server
        .as_token(&alice)
        .send(server.as_token(&alice).request(reqwest::Method::PUT, "/api/v1/password").json(&body))
        .await;
    assert_eq!(answer.status, 401);
    let challenge = answer.headers["www-authenticate"].to_str().unwrap();
    assert!(challenge.contains("insufficient_user_authentication"), "{challenge}");
    server.authenticated_at(&alice, redbank::clock::now_ms()).await;
    assert_eq!(server.as_token(&alice).put("/api/v1/password", &body).await.0, 204);
    server.stop().await.unwrap();
}

#[rocket::async_test]
async fn the_check_explains_a_verdict_and_an_old_password_is_flagged_not_forced() {
    let server = TestServer::new().await;
    let check =
        |password: &str, inputs: Value| json!({"password": password, "user_inputs": inputs});
    let (status, weak) =
        server.anon().post("/api/v1/password/check", &check("password12345678", json!([]))).await;
    assert_eq!(status, 200);
    assert_eq!(weak["acceptable"], false);
    assert!(weak["message"].as_str().unwrap().contains("common"), "{weak}");
    let (_, named) = server
        .anon()
        .post("/api/v1/password/check", &check("violet lindqvist river", json!(["lindqvist"])))
        .await;
    assert_eq!(named["acceptable"], false, "{named}");
    let (_, strong) = server.anon().post("/api/v1/password/check", &check(NEW, json!([]))).await;
    assert_eq!(
        (strong["acceptable"].clone(), strong["score"].as_u64().unwrap() >= 3),
        (json!(true), true)
    );
    // bob's demo password predates the rules: it still signs in, and the pages ask for a change.
    let (cookie, _) = server.login("bob", "foobared").await;
    let page = |path: &str| {
        let req = server.http.get(server.url(path)).header("Cookie", &cookie);
        async move { req.send().await.unwrap().text().await.unwrap() }
    };
    assert!(page("/dashboard").await.contains("id=\"password-outdated\""));
    let token = server.api_login("bob", "foobared").await;
    let body = json!({"current_password": "foobared", "new_password": NEW});
    assert_eq!(server.as_token(&token).put("/api/v1/password", &body).await.0, 204);
    let (cookie, _) = server.login("bob", NEW).await;
    let html = server.http.get(server.url("/dashboard")).header("Cookie", &cookie).send().await;
    assert!(!html.unwrap().text().await.unwrap().contains("password-outdated"));
    server.stop().await.unwrap();
}

#[rocket::async_test]
async fn the_reset_pages_keep_the_token_out_of_referers_and_ask_for_what_the_account_needs() {
    let server = TestServer::new().await;
    let token = reset_token(&server, "alice", ALICE).await;
    let url = server.url(&format!("/password/reset?token={token}"));
    let page = server.http.get(&url).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["referrer-policy"], "no-referrer");
    let html = page.text().await.unwrap();
    assert!(html.contains("Alice Liddell") && html.contains("id=\"reset-factor\""), "{html}");
    // The form: a wrong code keeps the page (422), a right one resets.
    let form = |code: &str| {
        [
            ("token", token.as_str()),
            ("password", "tea kettle moon"),
            ("method", "totp"),
            ("code", code),
        ]
        .iter()
        .map(|(k, v)| format!("{k}={}", common::enc(v)))
        .collect::<Vec<_>>()
        .join("&")
    };
    let post = |body: String| server.form_post("/password/reset", None, body).send();
    let wrong = post(form("000000")).await.unwrap();
    assert_eq!(wrong.status(), 422);
    assert_eq!(wrong.headers()["referrer-policy"], "no-referrer");
    assert!(wrong.text().await.unwrap().contains("id=\"reset-error\""));
    let mut done = false;
    for code in demo_app_codes() {
        let res = post(form(&code)).await.unwrap();
        if res.status() == 200 {
            assert!(res.text().await.unwrap().contains("Your password is reset"));
            done = true;
            break;
        }
    }
    assert!(done);
    let gone = server.http.get(&url).send().await.unwrap();
    assert_eq!(gone.status(), 410);
    assert!(gone.text().await.unwrap().contains("Ask for a new link"));
    // "Forgot password?" is on the login page; its form takes the login form's double-submit
    // token and answers as the API does.
    let login = server.http.get(server.url("/login")).send().await.unwrap().text().await.unwrap();
    assert!(login.contains("href=\"/password/forgot\""));
    let form = server.http.get(server.url("/password/forgot")).send().await.unwrap();
    let cookie = common::set_cookie_value(
        &form
            .headers()
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect::<Vec<_>>(),
        "redbank_csrf",
    )
    .expect("a double-submit cookie");
    let csrf = common::hidden_csrf(&form.text().await.unwrap()).expect("the form's token");
    let ask = |token: &str| {
        server
            .form_post(
                "/password/forgot",
                Some(&format!("redbank_csrf={cookie}")),
                format!("csrf={token}&login=alice"),
            )
            .send()
    };
    let seen = reset_mails(&server, ALICE);
    assert_eq!(ask("wrong").await.unwrap().status(), 403);
    let sent = ask(&csrf).await.unwrap();
    assert_eq!(sent.status(), 200);
    assert!(sent.text().await.unwrap().contains("If an account"));
    server.mail.about(ALICE, "Reset your", seen).await;
    server.stop().await.unwrap();
}

/// A review finding: a sign-in waiting for its second factor when the password is reset (or
/// changed) must not complete with the old password's word: every session ends with the old
/// password, and so does every sign-in on its way to one.
#[rocket::async_test]
async fn a_sign_in_half_done_with_the_old_password_cannot_finish_after_a_reset() {
    let server = TestServer::new().await;
    let (status, waiting) =
        server.anon().post("/api/v1/login", &common::credentials("alice", "wonderland")).await;
    assert_eq!((status.as_u16(), &waiting["mfa_required"]), (200, &json!(true)), "{waiting}");
    let token = reset_token(&server, "alice", ALICE).await;
    let mut codes = demo_app_codes().into_iter();
    let mut done = false;
    for code in codes.by_ref() {
        let body = json!({"token": token, "password": "tea kettle moon", "code": code});
        if server.anon().post("/api/v1/password/reset", &body).await.0 == 204 {
            done = true;
            break;
        }
    }
    assert!(done, "alice's password was reset");
    // The code after the one the reset used: right, but the sign-in began with the old password.
    let mut statuses = Vec::new();
    for code in codes {
        let body = json!({"mfa_token": waiting["mfa_token"], "code": code});
        statuses.push(server.anon().post("/api/v1/login/totp", &body).await.0.as_u16());
    }
    assert!(!statuses.is_empty() && statuses.iter().all(|s| *s == 401), "{statuses:?}");
    server.stop().await.unwrap();
}
