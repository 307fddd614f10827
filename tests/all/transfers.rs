//! Transfers over real HTTP: the rules, the low-value exemption, confirmation bound to amount and
//! payee (replay across two transfers refused), idempotent retries, the crash between debit and
//! credit, and 16 concurrent transfers with the generator running.

use std::time::Duration;

use redbank::auth::factors::totp::{TotpSecret, step_of};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::bank::{ALICE, BOB, OPENING, assert_balanced, cents};
use crate::common;
use crate::common::passkey::Device;
use crate::common::request::{RequestHelper, enrol_first_passkey, session_token};
use crate::common::server::TestServer;
use crate::common::{ADMIN_PASSWORD, shared_redis, unique_prefix};

const ADMIN: &str = "9000000001";

pub(crate) async fn transfer(
    server: &TestServer,
    token: &str,
    key: &str,
    body: Value,
) -> (StatusCode, Value) {
    let bob = server.as_token(token);
    let req =
        bob.request(reqwest::Method::POST, "/api/v1/transfers").header("Idempotency-Key", key);
    bob.send(req.json(&body)).await.pair()
}

async fn balance(server: &TestServer, token: &str) -> i64 {
    let (_, account) = server.as_token(token).get("/api/v1/account").await;
    cents(&account["balance"])
}

/// Sets bob's balance to `cents` with one "Rent" row through the transaction script (so the
/// books stay balanced); returns a handle on the server's Redis keys and its configuration, for
/// more direct reads and writes.
async fn set_bobs_balance(
    server: &TestServer,
    cents: i64,
) -> (redbank::redis::Db, redbank::Config) {
    set_balance(server, BOB, cents).await
}

/// Sets `account`'s balance to `cents` the same way (one "Rent" row).
pub(crate) async fn set_balance(
    server: &TestServer,
    account: &str,
    cents: i64,
) -> (redbank::redis::Db, redbank::Config) {
    use redbank::bank::store as bank;
    let db = redbank::redis::Db::connect(&server.redis_url, &server.prefix, Duration::from_secs(2))
        .unwrap();
    let config = redbank::Config { key_prefix: server.prefix.clone(), ..Default::default() };
    let balance = bank::balance(&db, account).await.unwrap();
    let date = redbank::clock::now_ms();
    let rent = common::transaction(
        account,
        ("Rent", "Landlord", "debit"),
        cents - balance.0,
        date,
        balance,
    );
    bank::record(&db, &config, balance, &rent).await.unwrap();
    (db, config)
}

pub(crate) fn key() -> String {
    redbank::secret::random_token()
}

#[rocket::async_test]
async fn every_rule_is_a_clear_4xx_that_writes_nothing() {
    let server =
        TestServer::start(shared_redis(), None, |f| f.merge(("daily_transfer_limit", 50.0))).await;
    let bob = server.api_login("bob", "foobared").await;
    let before = balance(&server, &bob).await;
    let cases = [
        (json!({"to_account": ALICE, "amount": 0}), "amount"),
        (json!({"to_account": ALICE, "amount": -5}), "amount"),
        (json!({"to_account": ALICE, "amount": 1.234}), "amount"),
        (json!({"to_account": ALICE, "amount": "ten"}), "amount"),
        (json!({"to_account": BOB, "amount": 1}), "to_account"),
        (json!({"to_account": "0000000000", "amount": 1}), "to_account"),
        (json!({"to_account": "12ab", "amount": 1}), "to_account"),
        (json!({"to_account": ALICE, "amount": 1, "reference": "x".repeat(141)}), "reference"),
        (json!({"to_account": ALICE, "amount": 1, "reference": "a\nb"}), "reference"),
        // Found by the second outside review: invisible or line-breaking characters that a
        // deny-list of controls and bidi overrides let through. An allow-list of letters, marks,
        // numbers, punctuation, symbols and the space refuses them (and every other unseen one).
        (json!({"to_account": ALICE, "amount": 1, "reference": "a\u{2028}b"}), "reference"),
        (json!({"to_account": ALICE, "amount": 1, "reference": "a\u{2029}b"}), "reference"),
        (json!({"to_account": ALICE, "amount": 1, "reference": "a\u{061C}b"}), "reference"),
        (json!({"to_account": ALICE, "amount": 1, "reference": "a\u{E0041}b"}), "reference"),
        (json!({"to_account": ALICE, "amount": 1, "reference": "a\u{00AD}b"}), "reference"),
        (json!({"to_account": ALICE, "amount": 1, "reference": "a\u{3164}b"}), "reference"),
        (json!({"to_account": ALICE, "amount": 1, "reference": "a\u{00A0}b"}), "reference"),
        (json!({"to_account": ALICE, "amount": 200_000}), "amount"),
        (json!({"to_account": ALICE, "amount": 50.01}), "amount"),
    ];
    for (body, field) in cases {
        let (status, answer) = transfer(&server, &bob, &key(), body.clone()).await;
        assert_eq!(status, 422, "{body} → {answer}");
        assert_eq!(answer["field"], field, "{body} → {answer}");
        assert!(answer["error"].as_str().is_some_and(|e| e.len() > 10), "{answer}");
    }
    let body = json!({"to_account": ALICE, "amount": 1});
    let (status, answer) = server.as_token(&bob).post("/api/v1/transfers", &body).await;
    assert_eq!(status, 400, "no Idempotency-Key: {answer}");
    // A key that is not 1–255 visible ASCII characters is no key either.
    for bad in ["a b".to_owned(), "k".repeat(256)] {
        let (status, answer) = transfer(&server, &bob, &bad, body.clone()).await;
        assert_eq!(status, 400, "Idempotency-Key {bad:?}: {answer}");
    }
    assert_eq!(balance(&server, &bob).await, before, "a refused transfer moved money");
    server.stop().await.unwrap();
}

#[rocket::async_test]
async fn small_transfers_are_exempt_until_the_count_or_total_is_reached() {
    let (server, bob) = TestServer::with_bob().await;
    let alice = server.api_login("alice", "wonderland").await;
    let (bob_before, alice_before) = (balance(&server, &bob).await, balance(&server, &alice).await);
    let mut last = Value::Null;
    for n in 0..5 {
        // The last one without a reference: each row then says which way it went.
        let reference = if n < 4 { format!("Lunch {n}") } else { String::new() };
        let body = json!({"to_account": ALICE, "amount": 12.5, "reference": reference});
        let (status, t) = transfer(&server, &bob, &key(), body).await;
        assert_eq!(status, 201, "{t}");
        assert_eq!(t["status"], "completed", "{t}");
        assert_eq!(t["payee_name"], "Alice Liddell");
        assert_eq!(t["confirmed_by"], "exempt");
        last = t;
    }
    assert_eq!(balance(&server, &bob).await, bob_before - 6250);
    assert_eq!(balance(&server, &alice).await, alice_before + 6250);
    // The sixth in a row (or one over $30): bob has no second factor, so it is refused.
    let (status, answer) =
        transfer(&server, &bob, &key(), json!({"to_account": ALICE, "amount": 1})).await;
    assert_eq!(status, 403, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("Security"), "{answer}");
    // Both sides see it like any transaction: the recent list and the search, by reference.
    let (_, recent) = server.as_token(&alice).get("/api/v1/transactions?limit=5").await;
    let first = &recent.as_array().unwrap()[0];
    assert_eq!(
        (first["transactionType"].as_str(), first["fromAccountName"].as_str()),
        (Some("transfer"), Some("Bob Jones"))
    );
    assert_eq!(cents(&first["amount"]), 1250);
    // Each side's row names the money's way: from bob's account to alice's, on both sides.
    let (_, paid) = server.as_token(&bob).get("/api/v1/transactions?limit=1").await;
    for row in [first, &paid[0]] {
        let way = (row["fromAccount"].as_str(), row["toAccount"].as_str());
        assert_eq!(way, (Some(BOB), Some(ALICE)), "{row}");
    }
    assert_eq!(paid[0]["toAccountName"], "Alice Liddell", "{paid}");
    assert_eq!(first["toAccountName"], "Alice Liddell", "{first}");
    assert_eq!(paid[0]["description"], "Transfer to Alice Liddell", "{paid}");
    // The transfer records both rows it wrote, and each row is kept for the retention (30 days).
    let mut c = shared_redis().conn().await;
    let doc = server.keys().transfer(BOB, last["id"].as_str().unwrap());
    let legs: String = redis::cmd("JSON.GET").arg(&doc).arg("$").query_async(&mut c).await.unwrap();
    let legs: Value = serde_json::from_str(&legs).unwrap();
    assert_eq!(legs[0]["debit_tx"], paid[0]["id"], "{legs}");
    assert_eq!(legs[0]["credit_tx"], first["id"], "{legs}");
    for (account, row) in [(BOB, &paid[0]), (ALICE, first)] {
        let key = server.keys().transaction(account, row["id"].as_u64().unwrap());
        let ttl: i64 = redis::cmd("TTL").arg(&key).query_async(&mut c).await.unwrap();
        let days = 30 * 86_400;
        assert!((days - 60..=days).contains(&ttl), "{account}'s row kept {ttl} s");
    }
    assert_eq!(first["description"], "Transfer from Bob Jones", "{first}");
    let (_, found) = server.as_token(&bob).get("/api/v1/search?q=lunch").await;
    assert_eq!(found["total"], 4, "{found}");
    assert_balanced(shared_redis(), &server.prefix, BOB).await;
    assert_balanced(shared_redis(), &server.prefix, ALICE).await;
    server.stop().await.unwrap();
}

/// The code of alice's demo app for the step `offset` from now.
fn alice_code(offset: i64) -> String {
    let secret = TotpSecret::from_base32(redbank::auth::demo::ALICE_TOTP_SECRET).unwrap();
    secret.code_at(step_of(redbank::clock::now_ms() / 1000) + offset)
}

/// The second outside review (PSD2, RTS Art. 5): a TOTP code is not generated from the amount and
/// payee, so a phished code confirms whatever transfer the attacker made. Every transfer outside
/// the low-value exemption is confirmed with a passkey, whose challenge is bound to it; a code
/// confirms none, and a customer with only an authenticator app is told to add a passkey.
#[rocket::async_test]
async fn only_a_passkey_bound_to_the_transfer_confirms_it_never_a_code() {
    let server = TestServer::new().await;
    // alice has only her authenticator app: told why, and what to add.
    let alice = server.api_login("alice", "wonderland").await;
    let (status, refused) =
        transfer(&server, &alice, &key(), json!({"to_account": BOB, "amount": 50})).await;
    assert_eq!(status, 403, "{refused}");
    let message = refused["error"].as_str().unwrap();
    assert!(message.contains("passkey") && message.contains("amount and payee"), "{message}");
    // bob, with a passkey: the transfer says what confirms it and why; a code is refused.
    let (bob, mut device) = bob_with_passkey(&server).await;
    let (status, a) =
        transfer(&server, &bob, &key(), json!({"to_account": ALICE, "amount": 50})).await;
    assert_eq!(status, 201, "{a}");
    assert_eq!(a["methods"], json!(["passkey"]));
    assert!(a["why"].as_str().unwrap().contains("amount and payee"), "{a}");
    let (status, answer) = server
        .as_token(&bob)
        .post(&transfer_path(&a["id"], "confirm"), &json!({"code": alice_code(0)}))
        .await;
    assert_eq!(status, 403, "a code confirmed a payment: {answer}");
    // The options say the same.
    let (_, options) = server.as_token(&bob).post_empty(&transfer_path(&a["id"], "options")).await;
    assert_eq!(options["accepts"], json!(["passkey"]), "{options}");
    let (status, done) = confirm_with_passkey(&server, &bob, &mut device, &a["id"]).await;
    assert_eq!((status.as_u16(), done["confirmed_by"].as_str()), (200, Some("passkey")), "{done}");
    // A completed transfer is not confirmed again: a conflict, not a second transfer.
    let (status, _) = server.as_token(&bob).post_empty(&transfer_path(&a["id"], "options")).await;
    assert_eq!(status, 409);
    // Another customer's transfer does not exist for alice.
    let path = format!("/api/v1/transfers/{}", a["id"].as_str().unwrap());
    let (status, _) = server.as_token(&alice).get(&path).await;
    assert_eq!(status, 404);
    server.stop().await.unwrap();
}

#[rocket::async_test]
async fn a_passkey_assertion_for_one_transfer_fails_for_another() {
    let server = TestServer::new().await;
    let (bob, mut device) = bob_with_passkey(&server).await;
    let (_, a) = transfer(
        &server,
        &bob,
        &key(),
        json!({"to_account": ALICE, "amount": 42, "reference": "Dinner"}),
    )
    .await;
    let (_, b) =
        transfer(&server, &bob, &key(), json!({"to_account": ALICE, "amount": 4200})).await;
    assert_eq!(a["methods"], json!(["passkey"]));
    let path = transfer_path;
    let (status, options) = server.as_token(&bob).post_empty(&path(&a["id"], "options")).await;
    assert_eq!(status, 200, "{options}");
    let assertion = device.sign(&options);
    // Made for A ($42 to alice): refused for B ($4,200), and then used up.
    let (status, _) = server.as_token(&bob).post(&path(&b["id"], "confirm"), &assertion).await;
    assert_eq!(status, 401, "an assertion for one transfer confirmed another");
    let (status, _) = server.as_token(&bob).post(&path(&a["id"], "confirm"), &assertion).await;
    assert_eq!(status, 401, "the ceremony survived a failed use");
    let (_, options) = server.as_token(&bob).post_empty(&path(&a["id"], "options")).await;
    let (status, done) =
        server.as_token(&bob).post(&path(&a["id"], "confirm"), &device.sign(&options)).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(
        (done["status"].as_str(), done["confirmed_by"].as_str()),
        (Some("completed"), Some("passkey"))
    );
    let (_, b_now) = server
        .as_token(&bob)
        .get(&format!("/api/v1/transfers/{}", b["id"].as_str().unwrap()))
        .await;
    assert_eq!(b_now["status"], "confirmation_required");
    server.stop().await.unwrap();
}

#[rocket::async_test]
async fn an_idempotency_key_makes_one_transfer() {
    let (server, bob) = TestServer::with_bob().await;
    let before = balance(&server, &bob).await;
    let k = key();
    let body = json!({"to_account": ALICE, "amount": 7.25, "reference": "Coffee"});
    let tries = (0..5).map(|_| transfer(&server, &bob, &k, body.clone()));
    let answers = futures::future::join_all(tries).await;
    let ids: Vec<&Value> = answers
        .iter()
        .map(|(status, t)| {
            assert_eq!(*status, 201, "{t}");
            &t["id"]
        })
        .collect();
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(balance(&server, &bob).await, before - 725, "a retried request transferred twice");
    let (status, answer) =
        transfer(&server, &bob, &k, json!({"to_account": ALICE, "amount": 8})).await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["field"], "Idempotency-Key");
    server.stop().await.unwrap();
}

#[rocket::async_test]
async fn a_crash_between_debit_and_credit_is_completed_exactly_once() {
    let prefix = unique_prefix();
    let crashing =
        TestServer::start(shared_redis(), Some(&prefix), |f| f.merge(("fault_after_debit", true)))
            .await;
    let bob = crashing.api_login("bob", "foobared").await;
    let alice = crashing.api_login("alice", "wonderland").await;
    let (bob_before, alice_before) =
        (balance(&crashing, &bob).await, balance(&crashing, &alice).await);
    let (status, _) =
        transfer(&crashing, &bob, &key(), json!({"to_account": ALICE, "amount": 20})).await;
    assert_eq!(status, 503, "the fault switch stops after the debit");
    assert_eq!(balance(&crashing, &bob).await, bob_before - 2000);
    assert_eq!(balance(&crashing, &alice).await, alice_before, "credited despite the crash");
    crashing.stop().await.unwrap();
    // A healthy instance's recovery completes it; running recovery again changes nothing.
    let healthy =
        TestServer::start(shared_redis(), Some(&prefix), |f| f.merge(("repair_interval_secs", 1)))
            .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while balance(&healthy, &alice).await == alice_before {
        assert!(std::time::Instant::now() < deadline, "the owed credit never landed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let db = redbank::redis::Db::connect(&shared_redis().url(), &prefix, Duration::from_secs(2))
        .unwrap();
    let config = redbank::Config { key_prefix: prefix.clone(), ..Default::default() };
    for _ in 0..3 {
        assert_eq!(redbank::transfer::recovery::run_once(&db, &config).await.unwrap(), 0);
    }
    assert_eq!(balance(&healthy, &alice).await, alice_before + 2000, "credited more than once");
    assert_balanced(shared_redis(), &prefix, BOB).await;
    assert_balanced(shared_redis(), &prefix, ALICE).await;
    healthy.stop().await.unwrap();
}

#[rocket::async_test]
async fn sixteen_concurrent_transfers_and_the_generator_keep_the_books() {
    let server = TestServer::start(shared_redis(), None, |f| {
        f.merge(("generator_interval_ms", 20))
            .merge(("sca_exempt_count", 100))
            .merge(("sca_exempt_total", 100_000.0))
    })
    .await;
    let bob = server.api_login("bob", "foobared").await;
    let admin = server.api_login("admin", ADMIN_PASSWORD).await;
    let payers = [(&bob, ADMIN), (&admin, BOB)];
    let bodies: Vec<(&String, Value)> = (0..16)
        .map(|n| {
            let (token, to) = payers[n % 2];
            (token, json!({"to_account": to, "amount": 10 + n, "reference": format!("t{n}")}))
        })
        .collect();
    let keys: Vec<String> = (0..16).map(|_| key()).collect();
    let tries = bodies
        .iter()
        .zip(&keys)
        .map(|((token, body), k)| transfer(&server, token, k, body.clone()));
    for (status, t) in futures::future::join_all(tries).await {
        assert_eq!(status, 201, "{t}");
        assert_eq!(t["status"], "completed", "{t}");
    }
    let prefix = server.prefix.clone();
    server.stop().await.unwrap();
    let db = redbank::redis::Db::connect(&shared_redis().url(), &prefix, Duration::from_secs(2))
        .unwrap();
    let config = redbank::Config { key_prefix: prefix.clone(), ..Default::default() };
    redbank::transfer::recovery::run_once(&db, &config).await.unwrap();
    // Each account balances against its own documents, never negative; together the transfers
    // net to zero, so the total is the openings plus the generated transactions.
    let mut total = 0;
    let mut generated = 0;
    let mut transfers = 0;
    for account in [BOB, ALICE, ADMIN] {
        let ledger = assert_balanced(shared_redis(), &prefix, account).await;
        total += ledger.balance;
        for doc in ledger.docs.values() {
            if doc["transactionType"] == "transfer" {
                transfers += cents(&doc["amount"]);
            } else {
                generated += cents(&doc["amount"]);
            }
        }
    }
    assert_eq!(transfers, 0, "the two sides of the transfers do not cancel out");
    assert_eq!(total, 3 * OPENING + generated);
}

// ---- findings of the review of transfers ------------------------------------------------------

/// A pending transfer past its five minutes reads as expired, with nothing left to confirm.
#[rocket::async_test]
async fn an_expired_transfer_reads_as_expired() {
    let server = TestServer::new().await;
    let (bob, _) = bob_with_passkey(&server).await;
    let (_, t) = transfer(&server, &bob, &key(), json!({"to_account": ALICE, "amount": 75})).await;
    let id = t["id"].as_str().unwrap();
    // Its page, while it waits: the review, with the passkey button.
    let browser =
        session_token(&server, shared_redis(), "bob", redbank::auth::model::SessionKind::Browser);
    let cookie = format!("redbank={}", browser.await);
    let page = || async {
        let res = server.http.get(server.url(&format!("/transfer/{id}"))).header("Cookie", &cookie);
        res.send().await.unwrap().text().await.unwrap()
    };
    let review = page().await;
    assert!(review.contains("id=\"review\"") && review.contains("id=\"confirm-passkey\""));
    let doc = server.keys().transfer(BOB, id);
    let mut conn = shared_redis().conn().await;
    common::json_set(&mut conn, &doc, "$.expires_at", 1).await;
    let (status, now) = server.as_token(&bob).get(&format!("/api/v1/transfers/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!((now["status"].as_str(), &now["methods"]), (Some("expired"), &json!([])), "{now}");
    // And after: the receipt of an expired transfer, nothing to confirm.
    let receipt = page().await;
    assert!(receipt.contains("Transfer expired") && !receipt.contains("confirm-passkey"));
    server.stop().await.unwrap();
}

/// The transfer form offers the accounts bob paid last, by name (and a list to pick from), and
/// none before his first transfer.
#[rocket::async_test]
async fn the_transfer_form_offers_the_last_payees() {
    let (server, bob) = TestServer::with_bob().await;
    let browser = server.cookie_user("bob", "foobared").await;
    let form = || async {
        let res = browser.request(reqwest::Method::GET, "/transfer").send().await.unwrap();
        res.text().await.unwrap()
    };
    let before = form().await;
    assert!(before.contains("id=\"to-account\"") && !before.contains("Recent payees"), "{before}");
    let body = json!({"to_account": ALICE, "amount": 1});
    let (status, t) = transfer(&server, &bob, &key(), body).await;
    assert_eq!(status, 201, "{t}");
    let after = form().await;
    assert!(after.contains(&format!("Recent payees: Alice Liddell ({ALICE})")), "{after}");
    assert!(after.contains(&format!("<option value=\"{ALICE}\">Alice Liddell</option>")));
    // A payee whose account is gone (a number without its document, the newest entry) is left
    // out, and the others still show.
    let mut conn = shared_redis().conn().await;
    let payees = server.keys().payees(BOB);
    let _: () = redis::cmd("ZADD")
        .arg(&payees)
        .arg(i64::MAX >> 12)
        .arg("999999999")
        .query_async(&mut conn)
        .await
        .unwrap();
    let gone = form().await;
    assert!(gone.contains(&format!("Recent payees: Alice Liddell ({ALICE})</p>")), "{gone}");
    assert!(!gone.contains("999999999"), "{gone}");
    server.stop().await.unwrap();
}

/// A confirmed transfer whose request died before the debit is carried out by the recovery task.
#[rocket::async_test]
async fn a_transfer_confirmed_but_never_debited_is_carried_out_by_recovery() {
    let server = TestServer::new().await;
    let (bob, _) = bob_with_passkey(&server).await;
    let alice = server.api_login("alice", "wonderland").await;
    let alice_before = balance(&server, &alice).await;
    let (_, t) = transfer(&server, &bob, &key(), json!({"to_account": ALICE, "amount": 75})).await;
    let id = t["id"].as_str().unwrap();
    // What a confirmation leaves behind when the process dies right after it: `executing`, and
    // the note the recovery task reads (dated 20 s ago).
    let mut conn = shared_redis().conn().await;
    let keys = server.keys();
    common::json_set(&mut conn, &keys.transfer(BOB, id), "$.status", "\"executing\"").await;
    let db =
        redbank::redis::Db::connect(&shared_redis().url(), &server.prefix, Duration::from_secs(2))
            .unwrap();
    let config = redbank::Config { key_prefix: server.prefix.clone(), ..Default::default() };
    let executing_since = async |at: i64| {
        let mut conn = shared_redis().conn().await;
        let _: () = redis::cmd("ZADD")
            .arg(keys.executing(BOB))
            .arg(at)
            .arg(id)
            .query_async(&mut conn)
            .await
            .unwrap();
    };
    // Two seconds old, its request may still be carrying it out: recovery leaves it alone.
    executing_since(redbank::clock::now_ms() - 2_000).await;
    assert_eq!(redbank::transfer::recovery::run_once(&db, &config).await.unwrap(), 0);
    let (_, still) = server.as_token(&bob).get(&format!("/api/v1/transfers/{id}")).await;
    assert_eq!(still["status"], "executing", "a transfer in flight was taken over: {still}");
    executing_since(redbank::clock::now_ms() - 20_000).await;
    assert_eq!(
        redbank::transfer::recovery::run_once(&db, &config).await.unwrap(),
        1,
        "the transfer was not carried out"
    );
    let (_, done) = server.as_token(&bob).get(&format!("/api/v1/transfers/{id}")).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(balance(&server, &alice).await, alice_before + 7500);
    assert_eq!(redbank::transfer::recovery::run_once(&db, &config).await.unwrap(), 0, "done twice");
    server.stop().await.unwrap();
}

/// Starting transfers is limited per user, so nobody walks the account numbers for names.
#[rocket::async_test]
async fn transfer_starts_are_limited_per_user() {
    let (server, bob) = TestServer::with_bob().await;
    let mut statuses = Vec::new();
    for n in 0..31 {
        let body = json!({"to_account": format!("{:010}", 1_000_000_000u64 + n), "amount": 1});
        statuses.push(transfer(&server, &bob, &key(), body).await.0.as_u16());
    }
    assert!(statuses[..30].iter().all(|s| *s == 422), "{statuses:?}");
    assert_eq!(statuses[30], 429, "{statuses:?}");
    server.stop().await.unwrap();
}

/// bob with a passkey (his first factor, confirmed with the code mailed to him): his token and
/// the device holding it.
pub(crate) async fn bob_with_passkey(server: &TestServer) -> (String, Device) {
    let bob = server.api_login("bob", "foobared").await;
    let mut device = Device::new(&server.origin);
    enrol_first_passkey(&server.as_token(&bob), &mut device, None, "bob@example.com").await;
    (bob, device)
}

/// A pending transfer says what can confirm it now: nothing, once the sender's last passkey is
/// gone. With no replica to wait for, no answer speaks of replication.
#[rocket::async_test]
async fn a_pending_transfer_offers_no_method_once_the_last_passkey_is_gone() {
    let server = TestServer::new().await;
    let (bob, mut device) = bob_with_passkey(&server).await;
    let longest_key = "k".repeat(255);
    let body = json!({"to_account": ALICE, "amount": 50});
    let (status, a) = transfer(&server, &bob, &longest_key, body).await;
    assert_eq!((status.as_u16(), &a["methods"]), (201, &json!(["passkey"])), "{a}");
    let (status, small) =
        transfer(&server, &bob, &key(), json!({"to_account": ALICE, "amount": 1})).await;
    assert_eq!((status.as_u16(), small["status"].as_str()), (201, Some("completed")), "{small}");
    assert!(small.get("replication").is_none() && a.get("replication").is_none(), "{small}");
    // bob steps up with the passkey, then removes it.
    let (_, options) = server.as_token(&bob).post_empty("/api/v1/step-up/passkey/options").await;
    let (status, _) =
        server.as_token(&bob).post("/api/v1/step-up/passkey", &device.sign(&options)).await;
    assert_eq!(status, 200);
    let (_, passkeys) = server.as_token(&bob).get("/api/v1/passkeys").await;
    let id = passkeys["passkeys"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(server.as_token(&bob).delete(&format!("/api/v1/passkeys/{id}")).await.0, 204);
    let path = format!("/api/v1/transfers/{}", a["id"].as_str().unwrap());
    let (_, now) = server.as_token(&bob).get(&path).await;
    assert_eq!(
        (now["status"].as_str(), &now["methods"]),
        (Some("confirmation_required"), &json!([])),
        "{now}"
    );
    server.stop().await.unwrap();
}

/// `/api/v1/transfers/<id>/<what>`.
fn transfer_path(id: &Value, what: &str) -> String {
    format!("/api/v1/transfers/{}/{what}", id.as_str().unwrap())
}

/// Confirms bob's pending transfer `id` with his passkey.
pub(crate) async fn confirm_with_passkey(
    server: &TestServer,
    token: &str,
    device: &mut Device,
    id: &Value,
) -> (StatusCode, Value) {
    let (_, options) = server.as_token(token).post_empty(&transfer_path(id, "options")).await;
    let assertion = device.sign(&options);
    let confirm = transfer_path(id, "confirm");
    server.as_token(token).post(&confirm, &assertion).await
}

/// The second outside review: every started transfer was kept 30 days and there was no bound on
/// how many could wait for a confirmation. At most `max_pending_transfers` wait per user (the
/// next start is a 409 that says why), each kept only until its expiry plus a short margin; a
/// confirmed one is kept as a receipt.
#[rocket::async_test]
async fn pending_transfers_are_bounded_per_user_and_kept_only_until_they_expire() {
    let server =
        TestServer::start(shared_redis(), None, |f| f.merge(("max_pending_transfers", 3))).await;
    let (bob, mut device) = bob_with_passkey(&server).await;
    let mut ids = Vec::new();
    for n in 0..3 {
        let body = json!({"to_account": ALICE, "amount": 50 + n});
        let (status, t) = transfer(&server, &bob, &key(), body).await;
        assert_eq!((status.as_u16(), t["status"].as_str()), (201, Some("confirmation_required")));
        ids.push(t["id"].clone());
    }
    let (status, refused) =
        transfer(&server, &bob, &key(), json!({"to_account": ALICE, "amount": 60})).await;
    assert_eq!(status, 409, "{refused}");
    assert!(refused["error"].as_str().unwrap().contains("waiting"), "{refused}");
    let mut conn = shared_redis().conn().await;
    let ttl = |id: &Value| {
        let key = server.keys().transfer(BOB, id.as_str().unwrap());
        let mut conn = conn.clone();
        async move { redis::cmd("TTL").arg(key).query_async::<_, i64>(&mut conn).await.unwrap() }
    };
    let pending_ttl = ttl(&ids[0]).await;
    assert!((1..=900).contains(&pending_ttl), "a pending transfer kept {pending_ttl} s");
    // Confirming one makes room, and keeps it as a receipt.
    let (status, done) = confirm_with_passkey(&server, &bob, &mut device, &ids[0]).await;
    assert_eq!(status, 200, "{done}");
    assert!(ttl(&ids[0]).await > 86_400, "a completed transfer is a receipt");
    let (status, _) =
        transfer(&server, &bob, &key(), json!({"to_account": ALICE, "amount": 61})).await;
    assert_eq!(status, 201);
    let _: () = redis::cmd("PING").query_async(&mut conn).await.unwrap();
    server.stop().await.unwrap();
}

/// The second outside review: deleting the transaction script's atomic overdraft guard
/// (`INSUFFICIENT funds`) left every test green, though it is the only thing that holds when
/// writers race — the service's balance check reads a balance the debit may no longer find.
/// Four parallel $20.00 transfers on a $25.00 balance: one completes, three are refused and
/// write nothing; and a debit larger than the balance, written by the store function the
/// generator uses, is refused with nothing written.
#[rocket::async_test]
async fn racing_debits_never_overdraw_and_the_refused_ones_write_nothing() {
    use redbank::bank::store as bank;
    let (server, bob) = TestServer::with_bob().await;
    // bob's balance to $25.00, through the ledger (so it stays balanced).
    let (db, config) = set_bobs_balance(&server, 2500).await;
    let keys: Vec<String> = (0..4).map(|_| key()).collect();
    let race = keys.iter().map(|k| {
        let body = json!({"to_account": ALICE, "amount": 20});
        let bob = bob.clone();
        let server = &server;
        async move { transfer(server, &bob, k, body).await }
    });
    let answers = futures::future::join_all(race).await;
    let completed = answers.iter().filter(|(s, t)| *s == 201 && t["status"] == "completed").count();
    let refused = answers.iter().filter(|(s, t)| *s == 422 && t["field"] == "amount").count();
    assert_eq!((completed, refused), (1, 3), "{answers:?}");
    // Each request again with its Idempotency-Key: the same answer, word for word, and no new
    // transfer (a key whose transfer was refused when carried out is not given back).
    for (k, first) in keys.iter().zip(&answers) {
        let again = transfer(&server, &bob, k, json!({"to_account": ALICE, "amount": 20})).await;
        assert_eq!((again.0, &again.1["error"]), (first.0, &first.1["error"]), "{k}");
    }
    assert_eq!(bank::balance(&db, BOB).await.unwrap().0, 500);
    // Refused ones do not count against the low-value exemption: only the completed one does.
    let mut conn = shared_redis().conn().await;
    let tally: (Option<i64>, Option<i64>) = redis::cmd("HMGET")
        .arg(server.keys().sca_tally("bob"))
        .arg("count")
        .arg("cents")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(tally, (Some(1), Some(2000)), "exemption tally after one $20.00 transfer");
    let ledger = crate::bank::assert_balanced(shared_redis(), &server.prefix, BOB).await;
    let transfers = ledger.docs.values().filter(|d| d["transactionType"] == "transfer").count();
    assert_eq!(transfers, 1, "a refused transfer wrote a transaction");
    // A debit of more than the balance, through the generator's own store function.
    let balance = bank::balance(&db, BOB).await.unwrap();
    let date = redbank::clock::now_ms() + 1;
    let big =
        crate::common::transaction(BOB, ("Big", "Shop", "debit"), -(balance.0 + 1), date, balance);
    let refused = bank::record(&db, &config, balance, &big).await;
    assert!(matches!(&refused, Err(e) if e.to_string().contains("INSUFFICIENT")), "{refused:?}");
    let after = crate::bank::assert_balanced(shared_redis(), &server.prefix, BOB).await;
    assert_eq!(
        (after.balance, after.docs.len()),
        (500, ledger.docs.len()),
        "the refused debit wrote"
    );
    server.stop().await.unwrap();
}

/// Found by the review of the pending-transfer bound: a pending transfer is now forgotten 15
/// minutes after it starts, but its `Idempotency-Key` is kept 24 h; the same request again then
/// read "still running" (409) for a day. It now says the transfer expired (410).
#[rocket::async_test]
async fn an_idempotency_key_whose_transfer_expired_and_was_forgotten_answers_410() {
    let server = TestServer::new().await;
    let (bob, _) = bob_with_passkey(&server).await;
    let idempotency = key();
    let body = json!({"to_account": ALICE, "amount": 75});
    let (status, t) = transfer(&server, &bob, &idempotency, body.clone()).await;
    assert_eq!(status, 201, "{t}");
    // Forgotten (as after its 5 + 10 minutes), and the key's record dated an hour back.
    let mut conn = shared_redis().conn().await;
    let doc = server.keys().transfer(BOB, t["id"].as_str().unwrap());
    let _: () = redis::cmd("DEL").arg(&doc).query_async(&mut conn).await.unwrap();
    let digest = redbank::secret::sha256_hex(&idempotency);
    let record = server.keys().idempotency("bob", &digest);
    let stored: String = redis::cmd("GET").arg(&record).query_async(&mut conn).await.unwrap();
    let mut remembered: Value = serde_json::from_str(&stored).unwrap();
    // Without its transfer, a key first used up to the transfer's 5 minutes and a minute more
    // ago may still be on its way (409); one used longer ago is gone for good (410).
    for (age_ms, want) in [(5_000, 409), (300_000, 409), (400_000, 410), (3_600_000, 410)] {
        remembered["at"] = json!(redbank::clock::now_ms() - age_ms);
        let _: () = redis::cmd("SET")
            .arg(&record)
            .arg(remembered.to_string())
            .arg("KEEPTTL")
            .query_async(&mut conn)
            .await
            .unwrap();
        let (status, answer) = transfer(&server, &bob, &idempotency, body.clone()).await;
        assert_eq!(status, want, "first used {age_ms} ms ago: {answer}");
    }
    server.stop().await.unwrap();
}

/// The edges of each rule, with the message the customer reads: a payee number of the right
/// length but not all digits, a reference of exactly the longest length, and the whole balance
/// (allowed) or a cent more (refused before anything is written, saying why).
#[rocket::async_test]
async fn each_rule_holds_at_its_edge_and_says_which_rule() {
    use redbank::bank::store as bank;
    let (server, bob) = TestServer::with_bob().await;
    let refusal = |body: Value| {
        let bob = &bob;
        let server = &server;
        async move {
            let (status, answer) = transfer(server, bob, &key(), body.clone()).await;
            assert_eq!(status, 422, "{body} → {answer}");
            (answer["field"].as_str().unwrap_or("").to_owned(), answer["error"].to_string())
        }
    };
    for number in ["12ab56", "1234567890123456789x", "123456789012345678901"] {
        let (field, error) = refusal(json!({"to_account": number, "amount": 1})).await;
        assert!(field == "to_account" && error.contains("6 to 20 digits"), "{number}: {error}");
    }
    let (field, error) = refusal(json!({"to_account": "999999", "amount": 1})).await;
    assert!(field == "to_account" && error.contains("no account"), "{error}");
    let longest = "r".repeat(140);
    let body = json!({"to_account": ALICE, "amount": 1, "reference": longest});
    let (status, t) = transfer(&server, &bob, &key(), body).await;
    assert_eq!((status.as_u16(), &t["reference"]), (201, &json!(longest)), "{t}");

    // bob's balance to $20.00 through the ledger; $20.01 is refused, $20.00 leaves zero.
    let (db, _) = set_bobs_balance(&server, 2000).await;
    let (field, error) = refusal(json!({"to_account": ALICE, "amount": 20.01})).await;
    assert!(field == "amount" && error.contains("more than your balance ($20.00)"), "{error}");
    let (status, t) =
        transfer(&server, &bob, &key(), json!({"to_account": ALICE, "amount": 20})).await;
    assert_eq!((status.as_u16(), &t["status"]), (201, &json!("completed")), "{t}");
    assert_eq!(bank::balance(&db, BOB).await.unwrap().0, 0);
    assert_balanced(shared_redis(), &server.prefix, BOB).await;
    server.stop().await.unwrap();
}

/// The exemption and the daily limit at their edges: a transfer of exactly the exempt amount is
/// exempt; the daily limit can be reached exactly, and a refusal says how much is left; a
/// passkey confirmation starts the exemption's count again.
#[rocket::async_test]
async fn the_exemption_and_the_daily_limit_hold_at_their_edges() {
    let server = TestServer::start(shared_redis(), None, |f| {
        f.merge(("daily_transfer_limit", 150.0)).merge(("sca_exempt_total", 1000.0))
    })
    .await;
    let bob = server.api_login("bob", "foobared").await;
    let send_money = |amount: f64| {
        let (server, bob) = (&server, &bob);
        async move {
            transfer(server, bob, &key(), json!({"to_account": ALICE, "amount": amount})).await
        }
    };
    // Exactly $30.00 is exempt: four of them, $120.00 sent today.
    for n in 0..4 {
        let (status, t) = send_money(30.0).await;
        assert_eq!((status.as_u16(), &t["confirmed_by"]), (201, &json!("exempt")), "#{n}: {t}");
    }
    // $30.01 is over the daily limit ($150.00, $30.00 left), and the refusal says so.
    let (status, t) = send_money(30.01).await;
    assert_eq!((status.as_u16(), &t["field"]), (422, &json!("amount")), "{t}");
    let error = t["error"].as_str().unwrap_or("");
    assert!(error.contains("$150.00 a day; $30.00 left today"), "{error}");
    // Exactly what is left is allowed: the limit is reached to the cent, and then nothing is left.
    let (status, t) = send_money(30.0).await;
    assert_eq!((status.as_u16(), &t["confirmed_by"]), (201, &json!("exempt")), "{t}");
    // Its receipt is kept as long as transactions (30 days), not a moment less.
    let receipt = server.keys().transfer(BOB, t["id"].as_str().unwrap_or(""));
    let mut conn = shared_redis().conn().await;
    let ttl: i64 = redis::cmd("TTL").arg(&receipt).query_async(&mut conn).await.unwrap();
    assert!((30 * 86_400 - 60..=30 * 86_400).contains(&ttl), "receipt kept {ttl} s");
    let (status, t) = send_money(0.01).await;
    assert_eq!(status, 422, "{t}");
    assert!(t["error"].as_str().unwrap_or("").contains("$0.00 left today"), "{t}");
    server.stop().await.unwrap();

    // Five exempt transfers use the count up; a passkey confirmation starts it again.
    let server = TestServer::new().await;
    let (bob, mut device) = bob_with_passkey(&server).await;
    let small = json!({"to_account": ALICE, "amount": 1});
    for _ in 0..5 {
        let (status, t) = transfer(&server, &bob, &key(), small.clone()).await;
        assert_eq!((status.as_u16(), &t["confirmed_by"]), (201, &json!("exempt")), "{t}");
    }
    let (status, sixth) = transfer(&server, &bob, &key(), small.clone()).await;
    assert_eq!((status.as_u16(), &sixth["status"]), (201, &json!("confirmation_required")));
    // It waits five minutes for its confirmation.
    let at = |field: &str| {
        time::OffsetDateTime::parse(
            sixth[field].as_str().unwrap_or(""),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap()
    };
    assert_eq!((at("expires_at") - at("created_at")).whole_seconds(), 300, "{sixth}");
    let (status, done) = confirm_with_passkey(&server, &bob, &mut device, &sixth["id"]).await;
    assert_eq!(status, 200, "{done}");
    let (status, t) = transfer(&server, &bob, &key(), small).await;
    assert_eq!((status.as_u16(), &t["confirmed_by"]), (201, &json!("exempt")), "{t}");
    server.stop().await.unwrap();
}
