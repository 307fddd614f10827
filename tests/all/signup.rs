//! Opening an account, over real HTTP with mail read from a real SMTP server: the answer that
//! reveals nobody's account, signing in with the address, what an unconfirmed customer may not
//! do, the confirmation link, and an unconfirmed account going by itself with its data.

use std::time::Duration;

use serde_json::{Value, json};

use crate::bank::{ALICE, cents};
use crate::common;
use crate::common::mail::Mail;
use crate::common::request::{RequestHelper, client_from};
use crate::common::server::TestServer;
use crate::common::shared_redis;

const PASSWORD: &str = "violet quartz river lamp";

/// An address no other test uses.
fn new_address(name: &str) -> String {
    format!("{name}.{}@example.com", &redbank::secret::random_token()[..10].to_lowercase())
}

/// Waits for the newest mail to `address` whose subject contains `subject`.
async fn mail_about(server: &TestServer, address: &str, subject: &str) -> Mail {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let found = server
            .mail
            .to(address)
            .into_iter()
            .rev()
            .find(|m| m.header("Subject").is_some_and(|s| s.contains(subject)));
        if let Some(mail) = found {
            return mail;
        }
        assert!(std::time::Instant::now() < deadline, "no mail about {subject:?} to {address}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn open(server: &TestServer, name: &str, email: &str, password: &str) -> (u16, Value) {
    let body = json!({"name": name, "email": email, "password": password});
    let (status, answer) = server.anon().post("/api/v1/signup", &body).await;
    (status.as_u16(), answer)
}

/// The token of the confirmation link mailed to `address`.
async fn confirmation_token(server: &TestServer, address: &str) -> String {
    let mail = mail_about(server, address, "Confirm your e-mail").await;
    let link = mail.link(&format!("{}/email/verify?token=", server.origin)).expect("a link");
    link.split("token=").nth(1).unwrap().to_owned()
}

/// Signs in with `login` and the password; the bearer token.
async fn sign_in(server: &TestServer, login: &str, password: &str) -> Option<String> {
    let (status, body) =
        server.anon().post("/api/v1/login", &common::credentials(login, password)).await;
    (status == 200).then(|| body["token"].as_str().unwrap().to_owned())
}

#[rocket::async_test]
async fn a_new_customer_signs_in_with_the_address_and_confirming_it_opens_everything() {
    let server = TestServer::start(shared_redis(), None, |f| f).await;
    let email = new_address("ada");
    let (status, answer) = open(&server, "Ada Lovelace", &email, PASSWORD).await;
    assert_eq!(status, 201, "{answer}");
    assert!(answer["message"].as_str().unwrap().contains("Check your e-mail"));
    // Signed in with the address (any case), before confirming it.
    let token = sign_in(&server, &email.to_uppercase(), PASSWORD).await.expect("signed in");
    let me = server.as_token(&token);
    let (_, who) = me.get("/api/v1/me").await;
    assert_eq!(who["user"]["display_name"], "Ada Lovelace");
    let (_, account) = me.get("/api/v1/account").await;
    assert_eq!(cents(&account["balance"]), 100_000, "{account}");
    let number = who["user"]["account"].as_str().unwrap().to_owned();
    // Until the address is confirmed: no first factor, no money out, and no money in.
    let (status, refused) = me.post("/api/v1/mfa/totp", &json!({})).await;
    assert_eq!(status, 403, "{refused}");
    assert!(refused["error"].as_str().unwrap().contains("Confirm your e-mail"), "{refused}");
    let send = |to: &str| json!({"to_account": to, "amount": 5});
    let req = me.request(reqwest::Method::POST, "/api/v1/transfers").header("Idempotency-Key", "a");
    assert_eq!(me.send(req.json(&send(ALICE))).await.status, 403);
    let bob = server.token_user("bob", "foobared").await;
    let req =
        bob.request(reqwest::Method::POST, "/api/v1/transfers").header("Idempotency-Key", "b");
    let paid = bob.send(req.json(&send(&number))).await;
    assert_eq!(
        (paid.status.as_u16(), &paid.json["field"]),
        (422, &json!("to_account")),
        "{:?}",
        paid.json
    );
    // Confirming keeps the account and lifts the limits on the session already open.
    let link = confirmation_token(&server, &email).await;
    let (status, body) = server.anon().post("/api/v1/email/verify", &json!({"token": link})).await;
    assert_eq!(status, 204, "{body}");
    let (status, begun) = me.post("/api/v1/mfa/totp", &json!({})).await;
    assert_eq!(status, 200, "{begun}");
    let req = me.request(reqwest::Method::POST, "/api/v1/transfers").header("Idempotency-Key", "c");
    assert_eq!(me.send(req.json(&send(ALICE))).await.status, 201);
    let req =
        bob.request(reqwest::Method::POST, "/api/v1/transfers").header("Idempotency-Key", "d");
    assert_eq!(bob.send(req.json(&send(&number))).await.status, 201);
    // Nothing of it expires any more; the link works once.
    let mut conn = shared_redis().conn().await;
    let username = who["user"]["username"].as_str().unwrap();
    let keys = server.keys();
    for key in [
        keys.user(username),
        keys.email_owner(&email),
        keys.account(&number),
        keys.balance(&number),
    ] {
        let ttl: i64 = redis::cmd("TTL").arg(&key).query_async(&mut conn).await.unwrap();
        assert_eq!(ttl, -1, "{key} still expires");
    }
    let (status, _) = server.anon().post("/api/v1/email/verify", &json!({"token": link})).await;
    assert_eq!(status, 410);
    server.stop().await.unwrap();
}

#[rocket::async_test]
async fn a_taken_address_gets_the_same_answer_and_its_owner_is_told() {
    let server = TestServer::start(shared_redis(), None, |f| f).await;
    let fresh = open(&server, "Ada Lovelace", &new_address("ada"), PASSWORD).await;
    let taken = open(&server, "Mallory", "BOB@example.com", "another long passphrase here").await;
    assert_eq!(fresh, taken, "a taken address answers like a new one");
    let told = mail_about(&server, "bob@example.com", "Someone tried").await;
    assert!(told.body().contains("/password/forgot"), "{}", told.body());
    // Nothing was opened with it: the new password does not sign in; bob's own does, by address.
    assert!(sign_in(&server, "bob@example.com", "another long passphrase here").await.is_none());
    assert!(sign_in(&server, "bob@example.com", "foobared").await.is_some());
    server.stop().await.unwrap();
}

#[rocket::async_test]
async fn a_bad_application_names_its_field_and_a_closed_bank_opens_nothing() {
    let server = TestServer::start(shared_redis(), None, |f| f).await;
    let email = new_address("ada");
    for (name, address, password, field) in [
        ("", email.as_str(), PASSWORD, "name"),
        ("Ada\u{202e}", email.as_str(), PASSWORD, "name"),
        ("Ada Lovelace", "not an address", PASSWORD, "email"),
        ("Ada Lovelace", email.as_str(), "password12345678", "password"),
        ("Ada Lovelace", email.as_str(), "short", "password"),
        ("Ada Lovelace", email.as_str(), "lovelace violet quartz", "password"),
    ] {
        let (status, answer) = open(&server, name, address, password).await;
        assert_eq!((status, &answer["field"]), (422, &json!(field)), "{name} {address} {password}");
    }
    assert!(server.mail.to(&email).is_empty(), "a refused application mailed");
    server.stop().await.unwrap();
    let closed =
        TestServer::start(shared_redis(), None, |f| f.merge(("open_registration", false))).await;
    let (status, _) = open(&closed, "Ada Lovelace", &new_address("ada"), PASSWORD).await;
    assert_eq!(status, 403);
    let page = closed.http.get(closed.url("/signup")).send().await.unwrap();
    assert_eq!(page.status(), 404);
    let login = closed.http.get(closed.url("/login")).send().await.unwrap().text().await.unwrap();
    assert!(!login.contains("href=\"/signup\""));
    closed.stop().await.unwrap();
}

#[rocket::async_test]
async fn an_unconfirmed_account_goes_by_itself_with_its_data() {
    let server = TestServer::start(shared_redis(), None, |f| f).await;
    let email = new_address("ada");
    let before = stored(&server).await;
    open(&server, "Ada Lovelace", &email, PASSWORD).await;
    let token = sign_in(&server, &email, PASSWORD).await.unwrap();
    let (_, who) = server.as_token(&token).get("/api/v1/me").await;
    let number = who["user"]["account"].as_str().unwrap().to_owned();
    let keys = server.keys();
    let mut conn = shared_redis().conn().await;
    // The account itself expires within 24 hours, even with no sweep at all.
    for key in [
        keys.user(who["user"]["username"].as_str().unwrap()),
        keys.email_owner(&email),
        keys.account(&number),
        keys.balance(&number),
    ] {
        let ttl: i64 = redis::cmd("TTL").arg(&key).query_async(&mut conn).await.unwrap();
        assert!((86_000..=86_400).contains(&ttl), "{key}: {ttl}");
    }
    // A day later (its time in the list moved to the past), the sweep removes what it wrote:
    // the session, the device, the activity too. Left: counters that go within the hour.
    let list = keys.unverified_users();
    let members: Vec<String> =
        redis::cmd("ZRANGE").arg(&list).arg(0).arg(-1).query_async(&mut conn).await.unwrap();
    assert_eq!(members.len(), 1, "{members:?}");
    let _: () =
        redis::cmd("ZADD").arg(&list).arg(0).arg(&members[0]).query_async(&mut conn).await.unwrap();
    let db = redbank::redis::Db::connect(&server.redis_url, &server.prefix, Duration::from_secs(2))
        .unwrap();
    assert_eq!(redbank::auth::account::signup::remove_unconfirmed(&db).await.unwrap(), 1);
    for key in stored(&server).await.into_iter().filter(|k| !before.contains(k)) {
        let ttl: i64 = redis::cmd("TTL").arg(&key).query_async(&mut conn).await.unwrap();
        let counter = key.contains(":throttle:") || key.ends_with(":mail:outbox");
        // The confirmation link was written with the account's own 24 hours (the sweep knows
        // only its hash, so it goes by itself; it confirms nothing now).
        // So does a "this wasn't me" link in a mail the sign-in sent (it finds nobody now).
        let link = key.contains(":email-verify:") || key.contains(":not-me:");
        assert!(
            (counter && ttl <= 3600) || (link && ttl <= 86_400),
            "{key} (TTL {ttl}) outlived its account"
        );
    }
    assert_eq!(server.as_token(&token).get("/api/v1/me").await.0, 401);
    assert!(sign_in(&server, &email, PASSWORD).await.is_none());
    // The address is free again.
    let (status, _) = open(&server, "Ada Lovelace", &email, PASSWORD).await;
    assert_eq!(status, 201);
    assert!(sign_in(&server, &email, PASSWORD).await.is_some(), "the address opened a new account");
    server.stop().await.unwrap();
}

/// The keys under this server's prefix.
async fn stored(server: &TestServer) -> Vec<String> {
    let mut conn = shared_redis().conn().await;
    redis::cmd("KEYS").arg(format!("{}*", server.prefix)).query_async(&mut conn).await.unwrap()
}

#[rocket::async_test]
async fn accounts_opened_are_counted_per_client_address() {
    let server = TestServer::start(shared_redis(), None, |f| f).await;
    let http = client_from("127.0.0.23");
    let mut statuses = Vec::new();
    for n in 0..6 {
        let body = json!({"name": "Ada Lovelace", "email": new_address(&format!("ada{n}")), "password": PASSWORD});
        let res = http.post(server.url("/api/v1/signup")).json(&body).send().await.unwrap();
        statuses.push(res.status().as_u16());
    }
    assert_eq!(statuses, [201, 201, 201, 201, 201, 429]);
    server.stop().await.unwrap();
}

#[rocket::async_test]
async fn the_pages_open_an_account_and_confirm_it() {
    let server = TestServer::start(shared_redis(), None, |f| f).await;
    let login = server.http.get(server.url("/login")).send().await.unwrap().text().await.unwrap();
    assert!(login.contains("href=\"/signup\""));
    let form = server.http.get(server.url("/signup")).send().await.unwrap();
    let set_cookie: Vec<String> = form
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    let cookie = common::set_cookie_value(&set_cookie, "redbank_csrf").unwrap();
    let csrf = common::hidden_csrf(&form.text().await.unwrap()).unwrap();
    let email = new_address("ada");
    let post = |password: &str| {
        let body = [
            ("csrf", csrf.as_str()),
            ("name", "Ada Lovelace"),
            ("email", &email),
            ("password", password),
        ]
        .iter()
        .map(|(k, v)| format!("{k}={}", common::enc(v)))
        .collect::<Vec<_>>()
        .join("&");
        server
            .http
            .post(server.url("/signup"))
            .header("Cookie", format!("redbank_csrf={cookie}"))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
    };
    let forged = server
        .http
        .post(server.url("/signup"))
        .header("Cookie", format!("redbank_csrf={cookie}"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(format!("csrf=wrong&name=Ada&email={}&password=x", common::enc(&email)))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403, "a sign-up form without its token");
    let weak = post("password12345678").await.unwrap();
    assert_eq!(weak.status(), 422);
    let html = weak.text().await.unwrap();
    assert!(
        html.contains("id=\"signup-error\"") && html.contains("aria-invalid=\"true\""),
        "{html}"
    );
    assert!(html.contains("Ada Lovelace"), "the form keeps what was typed");
    let sent = post(PASSWORD).await.unwrap();
    assert_eq!(sent.status(), 201);
    assert!(sent.text().await.unwrap().contains("Check your e-mail"));
    // Signed in before confirming: every page says so and offers the link again.
    let (cookie, _) = server.login(&email, PASSWORD).await;
    let dashboard =
        server.http.get(server.url("/dashboard")).header("Cookie", &cookie).send().await;
    assert!(dashboard.unwrap().text().await.unwrap().contains("id=\"email-unconfirmed\""));
    let link = confirmation_token(&server, &email).await;
    let url = server.url(&format!("/email/verify?token={link}"));
    let page = server.http.get(&url).send().await.unwrap();
    assert_eq!(page.headers()["referrer-policy"], "no-referrer");
    assert!(page.text().await.unwrap().contains("Ada Lovelace"));
    let done = server
        .http
        .post(server.url("/email/verify"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(format!("token={link}"))
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), 200);
    assert!(done.text().await.unwrap().contains("Your address is confirmed"));
    let dashboard =
        server.http.get(server.url("/dashboard")).header("Cookie", &cookie).send().await;
    assert!(!dashboard.unwrap().text().await.unwrap().contains("email-unconfirmed"));
    server.stop().await.unwrap();
}
