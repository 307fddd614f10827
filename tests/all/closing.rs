//! A customer's own data (GDPR): the export holds everything kept and no secret; closing refuses
//! money still in the account and the demo's and operators' accounts, then ends every session,
//! erases the person and keeps the ledger under a pseudonym that nothing can be paid into.

use reqwest::Method;
use serde_json::{Value, json};

use crate::bank::{ALICE, cents};
use crate::common::passkey::Device;
use crate::common::request::{RequestHelper, enrol_first_passkey};
use crate::common::server::TestServer;
use crate::common::shared_redis;
use crate::signup::{PASSWORD, new_address, open, open_account, sign_in};
use crate::transfers::set_balance;

/// A customer who opened an account: their address and bearer token.
async fn customer(server: &TestServer, name: &str) -> (String, String) {
    let email = new_address(&name.replace(' ', ".").to_lowercase());
    let token = open_account(server, name, &email).await;
    (email, token)
}

/// A customer who opened an account and has `cents` in it: their address, bearer token and
/// account number.
async fn funded_customer(server: &TestServer, name: &str, cents: i64) -> (String, String, String) {
    let (email, token) = customer(server, name).await;
    let number = number_of(server, &token).await;
    set_balance(server, &number, cents).await;
    (email, token, number)
}

/// A small (exempt) transfer of `cents` to alice with `reference`: its id.
async fn send(server: &TestServer, token: &str, cents: i64, reference: &str) -> String {
    let me = server.as_token(token);
    let amount = format!("{}.{:02}", cents / 100, cents % 100);
    let body = json!({"to_account": ALICE, "amount": amount, "reference": reference});
    let req = me
        .request(Method::POST, "/api/v1/transfers")
        .header("Idempotency-Key", reference.replace(' ', "-"));
    let sent = me.send(req.json(&body)).await;
    assert_eq!(sent.status, 201, "{}", sent.json);
    assert_eq!(sent.json["status"], "completed", "{}", sent.json);
    sent.json["id"].as_str().unwrap().to_owned()
}

async fn json_get(key: &str) -> Option<Value> {
    let mut c = shared_redis().conn().await;
    let raw: Option<String> = redis::cmd("JSON.GET").arg(key).query_async(&mut c).await.unwrap();
    raw.map(|r| serde_json::from_str(&r).unwrap())
}

#[rocket::async_test]
async fn the_export_holds_everything_kept_about_the_customer_and_no_secret() {
    let server = TestServer::new().await;
    let (email, token) = customer(&server, "Grace Hopper").await;
    let me = server.as_token(&token);
    let (_, before) = me.get("/api/v1/account").await;
    let id = send(&server, &token, 1250, "export me").await;

    let answer = me.call(Method::GET, "/api/v1/account/export").await;
    assert_eq!(answer.status, 200, "{}", answer.json);
    let disposition = answer.headers["content-disposition"].to_str().unwrap();
    assert!(disposition.starts_with("attachment; filename=\"redbank-"), "{disposition}");
    let export = answer.json;
    assert_eq!(export["profile"]["email"], json!(email));
    assert_eq!(export["profile"]["display_name"], "Grace Hopper");
    assert_eq!(export["account"]["holder"], "Grace Hopper");
    let left = cents(&before["balance"]) - 1250;
    assert_eq!(cents(&export["account"]["balance"]), left, "{}", export["account"]);
    let transactions = export["transactions"].as_array().unwrap();
    assert!(transactions.iter().any(|t| t["description"] == "export me"), "{transactions:?}");
    let transfers = export["transfers"].as_array().unwrap();
    assert_eq!(transfers.len(), 1, "{transfers:?}");
    assert_eq!((&transfers[0]["id"], &transfers[0]["status"]), (&json!(id), &json!("completed")));
    assert!(export["sessions"].as_array().unwrap().iter().any(|s| s["current"] == true));
    let activity = export["activity"].as_array().unwrap();
    assert!(activity.iter().any(|a| a["type"] == "account_opened"), "{activity:?}");
    assert!(activity.iter().any(|a| a["type"] == "sign_in"), "{activity:?}");
    assert_eq!(export["factors"]["totp"], false);
    // No secret of any kind: no hash, no token, no key.
    let text = export.to_string();
    for secret in ["argon2", "password_hash", &token] {
        assert!(!text.contains(secret), "the export holds {secret:?}: {text}");
    }
    server.stop().await.unwrap();
}

#[rocket::async_test]
async fn closing_refuses_money_in_the_account_then_erases_the_person_and_keeps_a_pseudonymous_ledger()
 {
    let server = TestServer::new().await;
    let (email, token) = customer(&server, "Katherine Johnson").await;
    let me = server.as_token(&token);
    let (_, who) = me.get("/api/v1/me").await;
    let (username, number) = (
        who["user"]["username"].as_str().unwrap().to_owned(),
        who["user"]["account"].as_str().unwrap().to_owned(),
    );
    // $20.00 left after the demo's sample history: a small transfer empties it.
    set_balance(&server, &number, 2_000).await;

    // Money in it: refused, nothing changed.
    let (status, refused) = me.delete("/api/v1/account").await;
    assert_eq!(status, 409, "{refused}");
    assert!(refused["error"].as_str().unwrap().contains("$20.00"), "{refused}");
    assert_eq!(me.get("/api/v1/me").await.0, 200);

    let id = send(&server, &token, 2_000, "all of it").await;
    let (status, body) = me.delete("/api/v1/account").await;
    assert_eq!(status, 204, "{body}");

    // Signed out, and nothing to sign in to.
    assert_eq!(me.get("/api/v1/me").await.0, 401);
    assert!(sign_in(&server, &email, PASSWORD).await.is_none());
    let keys = server.keys();
    let mut c = shared_redis().conn().await;
    for key in [keys.user(&username), keys.email_owner(&email), keys.activity(&username)] {
        let n: i64 = redis::cmd("EXISTS").arg(&key).query_async(&mut c).await.unwrap();
        assert_eq!(n, 0, "{key} outlived the closing");
    }
    // The ledger stays, under the pseudonym.
    let account = json_get(&keys.account(&number)).await.unwrap();
    assert_eq!((&account["closed"], &account["holder"]), (&json!(true), &json!("Closed account")));
    assert_eq!(account["username"], "");
    let transfer = json_get(&keys.transfer(&number, &id)).await.unwrap();
    assert_eq!(transfer["from_name"], "Closed account", "{transfer}");
    assert_eq!(transfer["user"], "Closed account", "{transfer}");
    let tx = transfer["debit_tx"].as_u64().unwrap();
    let debit = json_get(&keys.transaction(&number, tx)).await.unwrap();
    assert_eq!(debit["amount"], json!(-20.0), "{debit}");
    assert!(!debit.to_string().contains("Katherine"), "the ledger still names her: {debit}");
    // What alice's statement says is alice's.
    let alice = server.token_user("alice", "wonderland").await;
    let (_, hers) = alice.get("/api/v1/transactions?limit=20").await;
    let credit = hers.as_array().unwrap().iter().find(|t| t["description"] == "all of it");
    assert_eq!(credit.unwrap()["fromAccountName"], "Katherine Johnson");
    // Nothing is paid into it any more.
    let bob = server.token_user("bob", "foobared").await;
    let req = bob.request(Method::POST, "/api/v1/transfers").header("Idempotency-Key", "c1");
    let paid = bob.send(req.json(&json!({"to_account": number, "amount": 1}))).await;
    assert_eq!((paid.status.as_u16(), &paid.json["field"]), (422, &json!("to_account")));
    // The last mail says so; the address can open an account again.
    let mail = server.mail.about(&email, "Your redbank account is closed", 0).await;
    assert!(mail.body().contains(&number), "{}", mail.body());
    assert_eq!(open(&server, "Katherine Johnson", &email, PASSWORD).await.0, 201);
    let mail = server.mail.about(&email, "Confirm your", 1).await;
    assert!(mail.body().contains("token="), "a new application, not a taken address");
    server.stop().await.unwrap();
}

#[rocket::async_test]
async fn the_demo_and_operator_accounts_do_not_close_here() {
    let server = TestServer::new().await;
    let bob = server.token_user("bob", "foobared").await;
    let (status, body) = bob.delete("/api/v1/account").await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(bob.get("/api/v1/me").await.0, 200);
    let (token, _) = server.operator().await;
    let (status, body) = server.as_token(&token).delete("/api/v1/account").await;
    assert_eq!(status, 403, "{body}");
    server.stop().await.unwrap();
}

/// Security's "Your data" in a browser: the download, and the close form — shown to a customer
/// only, refused without the box ticked, and then the page that says it is done.
#[rocket::async_test]
async fn security_downloads_the_data_and_closes_an_empty_account_once_the_box_is_ticked() {
    let server = TestServer::new().await;
    let (email, token) = customer(&server, "Mary Jackson").await;
    let (_, who) = server.as_token(&token).get("/api/v1/me").await;
    set_balance(&server, who["user"]["account"].as_str().unwrap(), 0).await;
    let me = server.cookie_user(&email, PASSWORD).await;
    let page = |user: &dyn Fn(reqwest::RequestBuilder) -> reqwest::RequestBuilder| {
        user(server.http.get(server.url("/security")))
    };
    let html = page(&|r| me.authorize(r)).send().await.unwrap().text().await.unwrap();
    assert!(html.contains("id=\"close-form\""), "no close form for a customer");
    let bob = server.cookie_user("bob", "foobared").await;
    let html = page(&|r| bob.authorize(r)).send().await.unwrap().text().await.unwrap();
    assert!(html.contains("id=\"export-data\"") && !html.contains("id=\"close-form\""));

    let form = |fields: &[(&str, &str)]| {
        let mut all = vec![("csrf", me.csrf.as_str())];
        all.extend_from_slice(fields);
        all.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&")
    };
    let post = |path: &str, body: String| {
        me.request(Method::POST, path)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(body)
    };
    let download = post("/security/export", form(&[])).send().await.unwrap();
    assert_eq!(download.status(), 200);
    assert!(download.headers()["content-disposition"].to_str().unwrap().starts_with("attachment"));
    let export: Value = download.json().await.unwrap();
    assert_eq!(export["profile"]["email"], json!(email));

    let unticked = post("/security/close", form(&[])).send().await.unwrap();
    assert_eq!(unticked.status(), 422);
    assert_eq!(me.get("/api/v1/me").await.0, 200, "closed without the box ticked");
    let closed = post("/security/close", form(&[("understood", "true")])).send().await.unwrap();
    assert_eq!(closed.status(), 200);
    assert!(closed.text().await.unwrap().contains("Your account is closed"));
    assert_eq!(me.get("/api/v1/me").await.0, 401);
    server.stop().await.unwrap();
}

/// A transfer waiting for its confirmation when its payee closes the account: confirming it is
/// refused (422 naming the payee), and nothing leaves the sender.
#[rocket::async_test]
async fn a_transfer_to_an_account_closed_meanwhile_is_refused_at_its_confirmation() {
    let server = TestServer::new().await;
    let (bob, mut device) = crate::transfers::bob_with_passkey(&server).await;
    let (_, token) = customer(&server, "Annie Easley").await;
    let (_, who) = server.as_token(&token).get("/api/v1/me").await;
    let number = who["user"]["account"].as_str().unwrap().to_owned();
    let body = json!({"to_account": number, "amount": 50});
    let (status, pending) = crate::transfers::transfer(&server, &bob, "closed-payee", body).await;
    assert_eq!((status.as_u16(), &pending["status"]), (201, &json!("confirmation_required")));
    set_balance(&server, &number, 0).await;
    assert_eq!(server.as_token(&token).delete("/api/v1/account").await.0, 204);

    let (_, before) = server.as_token(&bob).get("/api/v1/account").await;
    let (status, refused) =
        crate::transfers::confirm_with_passkey(&server, &bob, &mut device, &pending["id"]).await;
    assert_eq!((status.as_u16(), &refused["field"]), (422, &json!("to_account")), "{refused}");
    let (_, after) = server.as_token(&bob).get("/api/v1/account").await;
    assert_eq!(cents(&after["balance"]), cents(&before["balance"]), "money left the sender");
    let mut c = shared_redis().conn().await;
    let payee: i64 =
        redis::cmd("GET").arg(server.keys().balance(&number)).query_async(&mut c).await.unwrap();
    assert_eq!(payee, 0, "money reached a closed account");
    server.stop().await.unwrap();
}

/// The account number of the customer holding `token`.
async fn number_of(server: &TestServer, token: &str) -> String {
    let (_, who) = server.as_token(token).get("/api/v1/me").await;
    who["user"]["account"].as_str().unwrap().to_owned()
}

/// The credit `description` on alice's statement.
async fn alices_credit(server: &TestServer, description: &str) -> Option<Value> {
    let alice = server.token_user("alice", "wonderland").await;
    let (_, hers) = alice.get("/api/v1/transactions?limit=50").await;
    hers.as_array().unwrap().iter().find(|t| t["description"] == description).cloned()
}

/// Money still in the account goes to the account the customer names; a small payout is made
/// and the account closed in one request. A payee that is no open account, or the customer's
/// own, is a 422 naming `payout_to`, and nothing moves.
#[rocket::async_test]
async fn a_small_balance_is_paid_out_to_a_named_account_and_the_account_closes_at_once() {
    let server = TestServer::new().await;
    let (email, token, number) = funded_customer(&server, "Mary Jackson", 2_000).await;
    let me = server.as_token(&token);

    for payee in [number.as_str(), "0000000001", "12ab"] {
        let (status, refused) = me.delete(&format!("/api/v1/account?payout_to={payee}")).await;
        assert_eq!((status.as_u16(), &refused["field"]), (422, &json!("payout_to")), "{refused}");
    }
    let (_, account) = me.get("/api/v1/account").await;
    assert_eq!(cents(&account["balance"]), 2_000, "a refused payout moved money");

    let (status, body) = me.delete(&format!("/api/v1/account?payout_to={ALICE}")).await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(me.get("/api/v1/me").await.0, 401);
    assert!(sign_in(&server, &email, PASSWORD).await.is_none());
    let credit = alices_credit(&server, "Account closing").await.expect("alice was paid");
    assert_eq!(
        (&credit["amount"], &credit["fromAccountName"]),
        (&json!(20.0), &json!("Mary Jackson"))
    );
    let account = json_get(&server.keys().account(&number)).await.unwrap();
    assert_eq!(account["closed"], true, "{account}");
    let mut c = shared_redis().conn().await;
    let left: i64 =
        redis::cmd("GET").arg(server.keys().balance(&number)).query_async(&mut c).await.unwrap();
    assert_eq!(left, 0);
    server.stop().await.unwrap();
}

/// A payout above the exemption (here above the daily limit too: it is the whole balance) needs a
/// passkey: without one it is a 403 and the account stays open. With one, closing answers the
/// pending payout (202), bound to its amount, payee and the closing; its confirmation pays it
/// and closes the account. A client cannot ask an ordinary transfer to skip the daily limit.
#[rocket::async_test]
async fn a_large_payout_waits_for_a_passkey_bound_to_it_and_its_confirmation_closes_the_account() {
    let server = TestServer::new().await;
    let whole = 1_500_000; // $15,000, over the $10,000 daily limit
    let (email, token, number) = funded_customer(&server, "Dorothy Vaughan", whole).await;
    let me = server.as_token(&token);

    let (status, refused) = me.delete(&format!("/api/v1/account?payout_to={ALICE}")).await;
    assert_eq!(status, 403, "{refused}");
    assert!(refused["error"].as_str().unwrap().contains("passkey"), "{refused}");
    assert_eq!(me.get("/api/v1/me").await.0, 200);

    // A passkey (confirmed with the mailed code), and a step-up with it.
    let mut device = Device::new(&server.origin);
    enrol_first_passkey(&me, &mut device, None, &email).await;
    let (_, options) = me.post_empty("/api/v1/step-up/passkey/options").await;
    assert_eq!(me.post("/api/v1/step-up/passkey", &device.sign(&options)).await.0, 200);

    // No client can mark its own transfer as a closing's payout.
    let body = json!({"to_account": ALICE, "amount": 15_000, "closes_account": true});
    let (status, refused) = crate::transfers::transfer(&server, &token, "over", body).await;
    assert_eq!((status.as_u16(), &refused["field"]), (422, &json!("amount")), "{refused}");

    let (status, pending) = me.delete(&format!("/api/v1/account?payout_to={ALICE}")).await;
    assert_eq!(status, 202, "{pending}");
    assert_eq!(pending["status"], "confirmation_required", "{pending}");
    assert_eq!((&pending["amount"], &pending["closes_account"]), (&json!(15_000.0), &json!(true)));
    assert_eq!(me.get("/api/v1/me").await.0, 200, "closed before the payout was confirmed");

    let (status, done) =
        crate::transfers::confirm_with_passkey(&server, &token, &mut device, &pending["id"]).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!((&done["status"], &done["closes_account"]), (&json!("completed"), &json!(true)));
    assert_eq!(me.get("/api/v1/me").await.0, 401);
    let credit = alices_credit(&server, "Account closing").await.expect("alice was paid");
    assert_eq!(credit["amount"], json!(15_000.0), "{credit}");
    let account = json_get(&server.keys().account(&number)).await.unwrap();
    assert_eq!(account["closed"], true, "{account}");
    let mail = server.mail.about(&email, "Your redbank account is closed", 0).await;
    assert!(mail.body().contains(&number), "{}", mail.body());
    server.stop().await.unwrap();
}

/// Security, with money in the account: the form says the balance goes first and asks where to;
/// a small one is paid out and the account closed in one submit, and a larger one without a
/// passkey is refused, saying why, with the account still open.
#[rocket::async_test]
async fn security_pays_the_balance_out_to_the_account_named_then_closes() {
    let server = TestServer::new().await;
    let (email, _, number) = funded_customer(&server, "Frances Allen", 5_000).await;
    let me = server.cookie_user(&email, PASSWORD).await;
    let html = me.request(Method::GET, "/security").send().await.unwrap().text().await.unwrap();
    assert!(html.contains("id=\"close-balance\"") && html.contains("$50.00"), "{html}");
    assert!(html.contains("name=\"payout_to\""), "no payout field");

    let close = async |payout_to: &str| {
        let body = format!("csrf={}&understood=true&payout_to={payout_to}", me.csrf);
        let req = me
            .request(Method::POST, "/security/close")
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(body);
        let res = req.send().await.unwrap();
        (res.status().as_u16(), res.text().await.unwrap())
    };
    let (status, page) = close(ALICE).await;
    assert_eq!(status, 403, "{page}");
    assert!(page.contains("passkey"), "{page}");
    assert_eq!(me.get("/api/v1/me").await.0, 200);

    set_balance(&server, &number, 1_000).await;
    let (status, page) = close(ALICE).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Your account is closed"), "{page}");
    assert_eq!(me.get("/api/v1/me").await.0, 401);
    let credit = alices_credit(&server, "Account closing").await.expect("alice was paid");
    assert_eq!(credit["amount"], json!(10.0), "{credit}");
    // Where the transfer page sends a browser whose passkey confirmed a closing's payout.
    let closed = server.http.get(server.url("/closed")).send().await.unwrap();
    assert_eq!(closed.status(), 200);
    assert!(closed.text().await.unwrap().contains("Your account is closed"));
    server.stop().await.unwrap();
}

/// A transfer already debited when its payee closes the account (its credit in flight, or here
/// waiting for the recovery task after a crash) does not land in the closed account: the money
/// comes back to the sender, once, and the transfer says why.
#[rocket::async_test]
async fn a_credit_in_flight_to_an_account_that_closed_returns_to_the_sender() {
    let prefix = crate::common::unique_prefix();
    let crashing =
        TestServer::start(shared_redis(), Some(&prefix), |f| f.merge(("fault_after_debit", true)))
            .await;
    let (_, token) = customer(&crashing, "Evelyn Boyd").await;
    let number = number_of(&crashing, &token).await;
    let bob = crashing.token_user("bob", "foobared").await;
    let (_, account) = bob.get("/api/v1/account").await;
    let bob_before = cents(&account["balance"]);
    let body = json!({"to_account": number, "amount": 20});
    let (status, _) = crate::transfers::transfer(&crashing, &bob.token, "in-flight", body).await;
    assert_eq!(status, 503, "the fault switch stops after the debit");
    set_balance(&crashing, &number, 0).await;
    assert_eq!(crashing.as_token(&token).delete("/api/v1/account").await.0, 204);
    crashing.stop().await.unwrap();

    let db = redbank::redis::Db::connect(
        &shared_redis().url(),
        &prefix,
        std::time::Duration::from_secs(2),
    )
    .unwrap();
    let config = redbank::Config { key_prefix: prefix.clone(), ..Default::default() };
    assert_eq!(redbank::transfer::recovery::run_once(&db, &config).await.unwrap(), 1);
    for _ in 0..2 {
        assert_eq!(redbank::transfer::recovery::run_once(&db, &config).await.unwrap(), 0);
    }
    let mut c = shared_redis().conn().await;
    let keys = &db.keys;
    let payee: Option<i64> =
        redis::cmd("GET").arg(keys.balance(&number)).query_async(&mut c).await.unwrap();
    assert_eq!(payee.unwrap_or(0), 0, "money reached a closed account");
    let sender: i64 =
        redis::cmd("GET").arg(keys.balance(crate::bank::BOB)).query_async(&mut c).await.unwrap();
    assert_eq!(sender, bob_before, "the money did not come back, or came back twice");
    let ids: Vec<String> = redis::cmd("ZRANGE")
        .arg(keys.transfers_of(crate::bank::BOB))
        .arg(0)
        .arg(-1)
        .query_async(&mut c)
        .await
        .unwrap();
    let mut returned = None;
    for id in ids {
        let doc = json_get(&keys.transfer(crate::bank::BOB, &id)).await.unwrap();
        if doc["to_account"] == json!(number) {
            returned = Some(doc);
        }
    }
    let returned = returned.expect("bob's transfer");
    assert_eq!(returned["status"], "failed", "{returned}");
    assert!(returned["failure"].as_str().unwrap().contains("closed"), "{returned}");
    crate::bank::assert_balanced(shared_redis(), &prefix, crate::bank::BOB).await;
}
