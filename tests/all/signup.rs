//! Opening an account, over real HTTP with mail read from a real SMTP server: the answer that
//! reveals nobody's account, signing in with the address, what an unconfirmed customer may not
//! do, the confirmation link, and an unconfirmed account going by itself with its data.

use serde_json::{Value, json};

use crate::bank::{ALICE, cents};
use crate::common;
use crate::common::request::{RequestHelper, client_from};
use crate::common::server::TestServer;
use crate::common::shared_redis;

pub(crate) const PASSWORD: &str = "violet quartz river lamp";

/// An address no other test uses.
pub(crate) fn new_address(name: &str) -> String {
    format!("{name}.{}@example.com", &redbank::secret::random_token()[..10].to_lowercase())
}

pub(crate) async fn open(
    server: &TestServer,
    name: &str,
    email: &str,
    password: &str,
) -> (u16, Value) {
    let body = json!({"name": name, "email": email, "password": password});
    let (status, answer) = server.anon().post("/api/v1/signup", &body).await;
    (status.as_u16(), answer)
}

/// The token of the confirmation link mailed to `address`.
async fn confirmation_token(server: &TestServer, address: &str) -> String {
    let mail = server.mail.about(address, "Confirm your", 0).await;
    let link = mail.link(&format!("{}/email/verify?token=", server.origin)).expect("a link");
    link.split("token=").nth(1).unwrap().to_owned()
}

/// Signs in with `login` and the password; the bearer token.
pub(crate) async fn sign_in(server: &TestServer, login: &str, password: &str) -> Option<String> {
    let (status, body) =
        server.anon().post("/api/v1/login", &common::credentials(login, password)).await;
    (status == 200).then(|| body["token"].as_str().unwrap().to_owned())
}

/// Follows the confirmation link mailed to `address` with `password`: the status.
pub(crate) async fn confirm(
    server: &TestServer,
    address: &str,
    password: Option<&str>,
) -> (u16, Value) {
    let token = confirmation_token(server, address).await;
    let body = json!({"token": token, "password": password});
    let (status, answer) = server.anon().post("/api/v1/email/verify", &body).await;
    (status.as_u16(), answer)
}

/// Opens an account for `name` at `email` with [`PASSWORD`], confirms it, and signs in: the
/// bearer token.
pub(crate) async fn open_account(server: &TestServer, name: &str, email: &str) -> String {
    assert_eq!(open(server, name, email, PASSWORD).await.0, 201);
    assert_eq!(confirm(server, email, Some(PASSWORD)).await.0, 204);
    sign_in(server, email, PASSWORD).await.expect("signed in")
}

#[rocket::async_test]
async fn an_account_opens_when_its_link_is_followed_with_the_password_chosen() {
    let server = TestServer::new().await;
    let email = new_address("ada");
    let (status, answer) = open(&server, "Ada Lovelace", &email, PASSWORD).await;
    assert_eq!(status, 201, "{answer}");
    assert!(answer["message"].as_str().unwrap().contains("Check your e-mail"));
    // Nothing exists to sign in to yet.
    assert!(sign_in(&server, &email, PASSWORD).await.is_none());
    let mail = server.mail.about(&email, "Confirm your e-mail", 0).await;
    assert!(!mail.body().contains("Ada"), "the applicant's words are not echoed: {}", mail.body());
    // The link alone opens nothing: the password chosen must come with it.
    let token = confirmation_token(&server, &email).await;
    for password in [None, Some("wrong password entirely")] {
        let body = json!({"token": token, "password": password});
        let (status, answer) = server.anon().post("/api/v1/email/verify", &body).await;
        assert_eq!((status.as_u16(), &answer["field"]), (422, &json!("password")), "{answer}");
    }
    assert_eq!(confirm(&server, &email, Some(PASSWORD)).await.0, 204);
    // Signed in with the address (any case): the account, its opening balance (and, in demo
    // mode, the sample history on top of it), transfers.
    let token = sign_in(&server, &email.to_uppercase(), PASSWORD).await.expect("signed in");
    let me = server.as_token(&token);
    let (_, who) = me.get("/api/v1/me").await;
    assert_eq!(who["user"]["display_name"], "Ada Lovelace");
    let (_, account) = me.get("/api/v1/account").await;
    let (_, history) = me.get("/api/v1/transactions?limit=100").await;
    let moved: i64 = history.as_array().unwrap().iter().map(|t| cents(&t["amount"])).sum();
    assert_eq!(cents(&account["balance"]), 100_000 + moved, "{account}");
    let number = who["user"]["account"].as_str().unwrap().to_owned();
    let send = |to: &str| json!({"to_account": to, "amount": 5});
    let req = me.request(reqwest::Method::POST, "/api/v1/transfers").header("Idempotency-Key", "a");
    assert_eq!(me.send(req.json(&send(ALICE))).await.status, 201);
    let bob = server.token_user("bob", "foobared").await;
    let req =
        bob.request(reqwest::Method::POST, "/api/v1/transfers").header("Idempotency-Key", "b");
    assert_eq!(bob.send(req.json(&send(&number))).await.status, 201);
    // Nothing of it expires; the link worked once.
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
        assert_eq!(ttl, -1, "{key} expires");
    }
    assert_eq!(confirm(&server, &email, Some(PASSWORD)).await.0, 410);
    server.stop().await.unwrap();
}

/// Someone applies with another person's free address: its owner gets the link, but only the
/// applicant's password opens the account, and a few wrong ones drop the application. Nothing
/// of an application outlives its day.
#[rocket::async_test]
async fn an_application_is_finished_only_by_its_applicant_and_leaves_nothing_behind() {
    let server = TestServer::new().await;
    let victim = new_address("victim");
    let before = stored(&server).await;
    open(&server, "Mallory", &victim, PASSWORD).await;
    let token = confirmation_token(&server, &victim).await;
    let mut conn = shared_redis().conn().await;
    for key in stored(&server).await.into_iter().filter(|k| !before.contains(k)) {
        let ttl: i64 = redis::cmd("TTL").arg(&key).query_async(&mut conn).await.unwrap();
        assert!((1..=86_400).contains(&ttl), "{key} (TTL {ttl}) would outlive the application");
    }
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let body = json!({"token": token, "password": "the owner guesses"});
        statuses.push(server.anon().post("/api/v1/email/verify", &body).await.0.as_u16());
    }
    assert_eq!(statuses, [422, 422, 422, 422, 422, 410], "a link takes five wrong passwords");
    let body = json!({"token": token, "password": PASSWORD});
    assert_eq!(server.anon().post("/api/v1/email/verify", &body).await.0, 410, "dropped");
    assert!(sign_in(&server, &victim, PASSWORD).await.is_none());
    server.stop().await.unwrap();
}

#[rocket::async_test]
async fn a_taken_address_gets_the_same_answer_and_its_owner_is_told() {
    let server = TestServer::new().await;
    let fresh = open(&server, "Ada Lovelace", &new_address("ada"), PASSWORD).await;
    let taken = open(&server, "Mallory", "BOB@example.com", "another long passphrase here").await;
    assert_eq!(fresh, taken, "a taken address answers like a new one");
    let told = server.mail.about("bob@example.com", "Someone tried", 0).await;
    assert!(told.body().contains("/password/forgot"), "{}", told.body());
    // Nothing was opened with it: the new password does not sign in; bob's own does, by address.
    assert!(sign_in(&server, "bob@example.com", "another long passphrase here").await.is_none());
    assert!(sign_in(&server, "bob@example.com", "foobared").await.is_some());
    server.stop().await.unwrap();
}

#[rocket::async_test]
async fn a_bad_application_names_its_field_and_a_closed_bank_opens_nothing() {
    let server = TestServer::new().await;
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
    // A page on another site cannot apply from its visitors' browsers.
    let body = json!({"name": "Ada", "email": email, "password": PASSWORD});
    let anon = server.anon();
    let req = anon
        .request(reqwest::Method::POST, "/api/v1/signup")
        .header("Sec-Fetch-Site", "cross-site");
    assert_eq!(anon.send(req.json(&body)).await.status, 403);
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

/// The keys under this server's prefix.
async fn stored(server: &TestServer) -> Vec<String> {
    let mut conn = shared_redis().conn().await;
    redis::cmd("KEYS").arg(format!("{}*", server.prefix)).query_async(&mut conn).await.unwrap()
}

#[rocket::async_test]
async fn accounts_opened_are_counted_per_client_address() {
    let server = TestServer::new().await;
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
    let server = TestServer::new().await;
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
        server.form_post("/signup", Some(&format!("redbank_csrf={cookie}")), body).send()
    };
    let forged = server
        .form_post(
            "/signup",
            Some(&format!("redbank_csrf={cookie}")),
            format!("csrf=wrong&name=Ada&email={}&password=x", common::enc(&email)),
        )
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
    let link = confirmation_token(&server, &email).await;
    let url = server.url(&format!("/email/verify?token={link}"));
    let page = server.http.get(&url).send().await.unwrap();
    assert_eq!(page.headers()["referrer-policy"], "no-referrer");
    let html = page.text().await.unwrap();
    assert!(html.contains("Ada Lovelace") && html.contains("id=\"verify-password\""), "{html}");
    let follow = |password: &str| {
        server
            .form_post(
                "/email/verify",
                None,
                format!("token={link}&password={}", common::enc(password)),
            )
            .send()
    };
    let wrong = follow("not the password").await.unwrap();
    assert_eq!(wrong.status(), 422);
    assert!(wrong.text().await.unwrap().contains("id=\"verify-error\""));
    let done = follow(PASSWORD).await.unwrap();
    assert_eq!(done.status(), 200);
    let html = done.text().await.unwrap();
    assert!(html.contains("Your address is confirmed") && html.contains("id=\"verify-opened\""));
    let (cookie, _) = server.login(&email, PASSWORD).await;
    let dashboard =
        server.http.get(server.url("/dashboard")).header("Cookie", &cookie).send().await;
    assert!(dashboard.unwrap().text().await.unwrap().contains("Ada Lovelace"));
    server.stop().await.unwrap();
}

#[rocket::async_test]
async fn the_address_moves_once_the_new_one_confirms_and_the_old_one_can_undo_it() {
    let (server, bob) = TestServer::with_bob().await;
    let new = new_address("robert");
    let (status, answer) =
        server.as_token(&bob).put("/api/v1/email", &json!({"email": new.to_uppercase()})).await;
    assert_eq!(status, 202, "{answer}");
    let told = server.mail.about("bob@example.com", "A new e-mail address", 0).await;
    assert!(
        told.body().contains(&new) && told.body().contains("/not-me?token="),
        "{}",
        told.body()
    );
    // Nothing moved yet: bob@example.com still signs in.
    assert!(sign_in(&server, "bob@example.com", "foobared").await.is_some());
    let link = confirmation_token(&server, &new).await;
    let (status, body) = server.anon().post("/api/v1/email/verify", &json!({"token": link})).await;
    assert_eq!(status, 204, "{body}");
    assert!(sign_in(&server, &new, "foobared").await.is_some());
    assert!(sign_in(&server, "bob@example.com", "foobared").await.is_none());
    // The old address can put itself back, which signs every session out.
    let changed = server.mail.about("bob@example.com", "address was changed", 0).await;
    let undo = changed.link(&format!("{}/email/undo?token=", server.origin)).expect("an undo link");
    let token = undo.split("token=").nth(1).unwrap();
    let (status, body) = server.anon().post("/api/v1/email/undo", &json!({"token": token})).await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(server.as_token(&bob).get("/api/v1/me").await.0, 401);
    assert!(sign_in(&server, "bob@example.com", "foobared").await.is_some());
    assert!(sign_in(&server, &new, "foobared").await.is_none());
    let (status, _) = server.anon().post("/api/v1/email/undo", &json!({"token": token})).await;
    assert_eq!(status, 410, "an undo link works once");
    // Another account's address: the same answer, and that owner is told; nothing moves.
    let bob = server.api_login("bob", "foobared").await;
    let (status, _) =
        server.as_token(&bob).put("/api/v1/email", &json!({"email": "alice@example.com"})).await;
    assert_eq!(status, 202);
    server.mail.about("alice@example.com", "Your address was given", 0).await;
    let alice = common::credentials("alice@example.com", "wonderland");
    let (status, body) = server.anon().post("/api/v1/login", &alice).await;
    assert_eq!((status.as_u16(), &body["mfa_required"]), (200, &json!(true)), "alice keeps hers");
    // A session whose sign-in is old must step up first.
    server.authenticated_at(&bob, 0).await;
    let (status, _) =
        server.as_token(&bob).put("/api/v1/email", &json!({"email": new_address("x")})).await;
    assert_eq!(status, 401);
    server.stop().await.unwrap();
}

/// In demo mode a new account starts with a sample history (so its dashboard shows something),
/// then the generator writes for it only while someone watches it: an account nobody streams
/// costs nothing, however many are opened.
#[rocket::async_test]
async fn a_demo_account_starts_with_a_history_and_grows_only_while_watched() {
    let server =
        TestServer::start(shared_redis(), None, |f| f.merge(("generator_interval_ms", 100))).await;
    let watched = open_account(&server, "Dana Scully", &new_address("watched")).await;
    let unwatched = open_account(&server, "Dana Scully", &new_address("unwatched")).await;
    let history = async |token: &str| -> Vec<Value> {
        let (status, list) = server.as_token(token).get("/api/v1/transactions?limit=100").await;
        assert_eq!(status, 200, "{list}");
        list.as_array().unwrap().clone()
    };
    let first = history(&watched).await;
    assert_eq!(first.len(), 20, "{first:?}");
    let dates: Vec<i64> = first.iter().map(|t| t["date"].as_i64().unwrap()).collect();
    assert!(dates.windows(2).all(|w| w[0] > w[1]), "newest first: {dates:?}");
    assert!(dates[0] - dates[19] > 7 * 86_400_000, "spread over days: {dates:?}");
    let (_, account) = server.as_token(&watched).get("/api/v1/account").await;
    let moved: i64 = first.iter().map(|t| cents(&t["amount"])).sum();
    assert_eq!(cents(&account["balance"]), 100_000 + moved, "{account}");

    // One of them streams its account: only that one grows.
    let stream = server.http.get(server.url("/events")).bearer_auth(&watched).send();
    let stream = stream.await.unwrap();
    assert_eq!(stream.status(), 200);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while history(&watched).await.len() <= 20 {
        assert!(std::time::Instant::now() < deadline, "nothing generated for a watched account");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(history(&unwatched).await.len(), 20, "an account nobody watches grew");
    // Closed: it stops once no instance says it is watched (three refreshes). Counted in the
    // account's stream, which no page size caps.
    drop(stream);
    let number = account["number"].as_str().unwrap().to_owned();
    let stream_key = server.keys().stream(&number);
    let written = async || -> i64 {
        let mut c = shared_redis().conn().await;
        redis::cmd("XLEN").arg(&stream_key).query_async(&mut c).await.unwrap()
    };
    tokio::time::sleep(redbank::bank::store::WATCH_REFRESH * 3 + std::time::Duration::from_secs(1))
        .await;
    let settled = written().await;
    assert!(settled > 20, "{settled}");
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    assert_eq!(written().await, settled, "it still grows after its stream closed");
    server.stop().await.unwrap();
}

/// After a sign-in with a password alone, the dashboard offers a passkey; a session made with a
/// second factor (AAL2) is not offered one.
#[rocket::async_test]
async fn a_password_sign_in_is_offered_a_passkey_and_a_strong_one_is_not() {
    let server = TestServer::new().await;
    let bob = server.cookie_user("bob", "foobared").await;
    let dashboard = async || {
        let res = bob.request(reqwest::Method::GET, "/dashboard").send().await.unwrap();
        res.text().await.unwrap()
    };
    let html = dashboard().await;
    assert!(html.contains("id=\"offer-passkey\""), "no passkey offered after a password sign-in");
    assert!(html.contains("href=\"/security#passkeys\""));
    server.set_in_session(&bob.cookie, "$.aal", 2).await;
    assert!(!dashboard().await.contains("offer-passkey"), "offered at AAL2");
    server.stop().await.unwrap();
}

/// An account opened with a passkey: the application has no password and answers a secret; the
/// mailed link opens it only with that secret and a passkey made for its options — whoever
/// reads the mailbox without the secret cannot — and the account then signs in with the
/// passkey alone (AAL2) and never with a password.
#[rocket::async_test]
async fn an_account_opens_with_a_passkey_and_no_password_for_its_applicant_only() {
    let server = TestServer::new().await;
    let email = new_address("passkey");
    let before = stored(&server).await;
    let body = json!({"name": "Ada Passkey", "email": email});
    let (status, applied) = server.anon().post("/api/v1/signup", &body).await;
    assert_eq!(status, 201, "{applied}");
    let secret = applied["application"].as_str().expect("the applicant's secret").to_owned();
    let token = confirmation_token(&server, &email).await;
    let mail = server.mail.about(&email, "Confirm your", 0).await;
    assert!(mail.body().contains("create your passkey"), "{}", mail.body());

    // Without the secret (the mailbox's reader), nothing.
    let options = |application: Option<&str>| json!({"token": token, "application": application});
    let (status, refused) =
        server.anon().post("/api/v1/signup/passkey/options", &options(None)).await;
    assert_eq!((status.as_u16(), &refused["field"]), (422, &json!("application")), "{refused}");
    let (status, refused) =
        server.anon().post("/api/v1/signup/passkey/options", &options(Some("guess"))).await;
    assert_eq!(status, 422, "{refused}");
    // A password does not open it either: it has none.
    let with_password = json!({"token": token, "password": PASSWORD});
    let (status, refused) = server.anon().post("/api/v1/email/verify", &with_password).await;
    assert_eq!(status, 422, "{refused}");

    let (status, created) =
        server.anon().post("/api/v1/signup/passkey/options", &options(Some(&secret))).await;
    assert_eq!(status, 200, "{created}");
    // An application abandoned here leaves nothing behind: its user handle goes with it.
    let mut conn = shared_redis().conn().await;
    let day = 86_400 + redbank::auth::factors::passkey::CEREMONY_SECS as i64;
    for key in stored(&server).await.into_iter().filter(|k| !before.contains(k)) {
        let ttl: i64 = redis::cmd("TTL").arg(&key).query_async(&mut conn).await.unwrap();
        assert!((1..=day).contains(&ttl), "{key} (TTL {ttl}) would outlive the application");
    }
    let mut device = crate::common::passkey::Device::new(&server.origin);
    let credential = device.register(&created);
    let stranger = json!({"token": token, "passkey": credential});
    let (status, refused) = server.anon().post("/api/v1/email/verify", &stranger).await;
    assert_eq!((status.as_u16(), &refused["field"]), (422, &json!("application")), "{refused}");
    let opening = json!({"token": token, "application": secret, "passkey": credential});
    let (status, body) = server.anon().post("/api/v1/email/verify", &opening).await;
    assert_eq!(status, 204, "{body}");
    let (status, _) = server.anon().post("/api/v1/email/verify", &opening).await;
    assert_eq!(status, 410, "the link worked twice");

    // The passkey alone signs in, at AAL2; no password ever does.
    let (status, request) = server.anon().post("/api/v1/login/passkey/options", &json!({})).await;
    assert_eq!(status, 200, "{request}");
    let (status, signed_in) =
        server.anon().post("/api/v1/login/passkey", &device.sign(&request)).await;
    assert_eq!(status, 200, "{signed_in}");
    assert_eq!(signed_in["aal"], 2, "{signed_in}");
    let me = server.as_token(signed_in["token"].as_str().unwrap());
    let (_, who) = me.get("/api/v1/me").await;
    assert_eq!(who["user"]["display_name"], "Ada Passkey");
    // The opened account keeps its user handle.
    let handle_key = server.keys().user_handle(who["user"]["username"].as_str().unwrap());
    let handle: String = redis::cmd("GET").arg(&handle_key).query_async(&mut conn).await.unwrap();
    for key in [handle_key, server.keys().handle_owner(&handle)] {
        let ttl: i64 = redis::cmd("TTL").arg(&key).query_async(&mut conn).await.unwrap();
        assert_eq!(ttl, -1, "{key} expires");
    }
    let (_, activity) = me.get("/api/v1/security/activity").await;
    assert_eq!(activity["factors"]["passkeys"], 1, "{activity}");
    for password in ["", PASSWORD] {
        assert!(sign_in(&server, &email, password).await.is_none(), "a password signed in");
    }

    // Security sets a first password (no current one to give), after the passkey's recent
    // sign-in; a password sign-in then asks for the passkey too.
    let (status, refused) = me.put("/api/v1/password", &json!({"new_password": "short"})).await;
    assert_eq!((status.as_u16(), &refused["field"]), (422, &json!("new_password")), "{refused}");
    let (status, body) = me.put("/api/v1/password", &json!({"new_password": PASSWORD})).await;
    assert_eq!(status, 204, "{body}");
    let (status, step) =
        server.anon().post("/api/v1/login", &common::credentials(&email, PASSWORD)).await;
    assert_eq!((status.as_u16(), &step["methods"]), (200, &json!(["passkey"])), "{step}");
    assert!(step.get("token").is_none(), "the password alone signed in: {step}");
    server.stop().await.unwrap();
}
