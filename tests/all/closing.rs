//! A customer's own data (GDPR): the export holds everything kept and no secret; closing refuses
//! money still in the account and the demo's and operators' accounts, then ends every session,
//! erases the person and keeps the ledger under a pseudonym that nothing can be paid into.

use reqwest::Method;
use serde_json::{Value, json};

use crate::bank::{ALICE, cents};
use crate::common::request::RequestHelper;
use crate::common::server::TestServer;
use crate::common::shared_redis;
use crate::signup::{confirm, new_address, open, sign_in};
use crate::transfers::set_balance;

const PASSWORD: &str = "violet quartz river lamp";

/// A customer who opened an account: their address and bearer token.
async fn customer(server: &TestServer, name: &str) -> (String, String) {
    let email = new_address(&name.replace(' ', ".").to_lowercase());
    assert_eq!(open(server, name, &email, PASSWORD).await.0, 201);
    assert_eq!(confirm(server, &email, Some(PASSWORD)).await.0, 204);
    let token = sign_in(server, &email, PASSWORD).await.expect("signed in");
    (email, token)
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
    let server = TestServer::start(shared_redis(), None, |f| f).await;
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
    let server = TestServer::start(shared_redis(), None, |f| f).await;
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
    let server = TestServer::start(shared_redis(), None, |f| f).await;
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
    let server = TestServer::start(shared_redis(), None, |f| f).await;
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
    let server = TestServer::start(shared_redis(), None, |f| f).await;
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
