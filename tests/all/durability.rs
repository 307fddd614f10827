//! Acknowledged means on disk: every money-moving write (a transfer's debit and credit, a
//! generated transaction) is followed by `WAITAOF` on the connection that wrote it, before the
//! app answers; a Redis that fsyncs once a second is named at startup, and still loses nothing.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::bank::ALICE;
use crate::common::monitor::{Monitor, Seen};
use crate::common::server::{self, Binary, TestServer};
use crate::common::{self, RedisServer};
use crate::transfers;

/// The transaction script's calls (they name the account's channel) whose words mention
/// `marker`, each with the next command its connection sent after it (`None` when it sent none
/// yet; a `SCRIPT LOAD` in between does not count).
fn followed_by<'a>(seen: &'a [Seen], marker: &str) -> Vec<(&'a Seen, Option<&'a Seen>)> {
    seen.iter()
        .enumerate()
        .filter(|(_, s)| {
            s.is("EVALSHA")
                && s.words.iter().any(|w| w.contains(marker))
                && s.words.iter().any(|w| w.contains("events:"))
        })
        .filter_map(|(i, s)| {
            // A script Redis did not have yet is loaded and called again: judge the last call.
            let mut after = seen[i + 1..]
                .iter()
                .filter(|later| later.client == s.client && !later.is("SCRIPT"));
            match after.next() {
                Some(again) if again.words == s.words => None,
                next => Some((s, next)),
            }
        })
        .collect()
}

fn is_waitaof(seen: Option<&Seen>) -> bool {
    seen.is_some_and(|s| s.is("WAITAOF") && s.words.get(1).map(String::as_str) == Some("1"))
}

#[rocket::async_test]
async fn a_transfer_is_answered_only_after_each_leg_is_fsynced_on_its_own_connection() {
    // appendonly yes, appendfsync always: as scripts/redis and compose run it.
    let redis = RedisServer::start_persistent();
    let server = TestServer::start(&redis, None, |f| f).await;
    let bob = server.api_login("bob", "foobared").await;
    let mut monitor = Monitor::start(&redis).await;

    let body = json!({"to_account": ALICE, "amount": 2});
    let (status, t) = transfers::transfer(&server, &bob, &transfers::key(), body).await;
    assert_eq!(status, 201, "{t}");
    assert_eq!(t["status"], "completed", "{t}");
    let id = t["id"].as_str().unwrap().to_owned();

    // The answer is in: both legs and their WAITAOF happened before it. (MONITOR is told of a
    // command before its reply is sent, so what is missing now only travels.)
    let seen = monitor
        .until(Duration::from_secs(5), |seen| {
            let legs = followed_by(seen, &id);
            legs.len() >= 2 && legs.iter().all(|(_, next)| next.is_some())
        })
        .await;
    let legs = followed_by(&seen, &id);
    assert_eq!(legs.len(), 2, "a debit and a credit naming the transfer: {seen:#?}");
    for (leg, next) in &legs {
        assert!(
            is_waitaof(*next),
            "the leg's connection ({}) sent {:?} after it, not WAITAOF 1: {seen:#?}",
            leg.client,
            next.map(|n| &n.words)
        );
    }
    // Sessions and reads do not share the durable connections: the sign-in's and the transfer's
    // reads came from other clients than the legs.
    let legs_clients: Vec<&str> = legs.iter().map(|(l, _)| l.client.as_str()).collect();
    let balance_reads = seen
        .iter()
        .filter(|s| s.is("GET"))
        .filter(|s| s.words.get(1).is_some_and(|k| k.contains("balance")));
    for read in balance_reads {
        assert!(!legs_clients.contains(&read.client.as_str()), "{read:?} on a durable connection");
    }
    server.stop().await.unwrap();
}

#[rocket::async_test]
async fn a_generated_transaction_waits_for_its_fsync_too() {
    let redis = RedisServer::start_persistent();
    let server = TestServer::start(&redis, None, |f| f.merge(("generator_interval_ms", 100))).await;
    let mut monitor = Monitor::start(&redis).await;
    // A generated transaction is recorded by the same script, with the account's channel in it.
    let seen = monitor
        .until(Duration::from_secs(10), |seen| {
            let written = followed_by(seen, "events:");
            written.len() >= 3 && written.iter().all(|(_, next)| next.is_some())
        })
        .await;
    for (write, next) in followed_by(&seen, "events:") {
        assert!(is_waitaof(next), "{write:?} then {next:?}");
    }
    server.stop().await.unwrap();
}

/// The real binary against `redis` (persistent) set to `appendfsync <setting>`, once its startup
/// log names the setting: the app and that log.
async fn app_on(redis: &RedisServer, setting: &str) -> (Binary, String) {
    let mut c = redis.conn().await;
    redis::cmd("CONFIG")
        .arg("SET")
        .arg("appendfsync")
        .arg(setting)
        .query_async::<_, ()>(&mut c)
        .await
        .unwrap();
    let prefix = common::unique_prefix();
    let log =
        std::env::temp_dir().join(format!("redbank-fsync-{}.txt", prefix.trim_end_matches(':')));
    let env = [("ROCKET_LOG_LEVEL", "normal"), ("ROCKET_GENERATOR_INTERVAL_MS", "0")];
    let app = Binary::start(redis, &prefix, &env, Some(&log)).await;
    let named = format!("appendfsync {setting}");
    let deadline = Instant::now() + Duration::from_secs(5);
    let warned = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains(&named) || Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let _ = std::fs::remove_file(&log);
    (app, warned)
}

/// bob sends alice $1.00 through the API: the answer's status and body.
async fn send_one(app: &Binary) -> (u16, Value) {
    let token = server::api_token(&app.http, &app.base, "bob", "foobared").await;
    let res = app
        .http
        .post(format!("{}/api/v1/transfers", app.base))
        .bearer_auth(&token)
        .header("Idempotency-Key", redbank::secret::random_token())
        .json(&json!({"to_account": ALICE, "amount": 1}))
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap())
}

/// `appendfsync everysec` is found at startup and named in a warning; a transfer then waits for
/// the next fsync (up to a second) and is still answered as done.
#[rocket::async_test]
async fn a_redis_that_fsyncs_once_a_second_is_named_at_startup_and_still_confirms() {
    let redis = RedisServer::start_persistent();
    let (app, warned) = app_on(&redis, "everysec").await;
    assert!(
        warned
            .lines()
            .any(|l| l.contains("appendfsync everysec") && l.contains("appendfsync always")),
        "no warning naming everysec: {warned}"
    );
    let (status, t) = send_one(&app).await;
    assert_eq!((status, &t["status"]), (201, &json!("completed")), "{t}");
}

/// `appendfsync no` leaves the fsync to the kernel, and `WAITAOF` never confirms one: the setting
/// is named in a warning, and money still moves (acknowledged without waiting, as the warning
/// says), instead of every transfer timing out into a 503.
#[rocket::async_test]
async fn a_redis_that_leaves_fsync_to_the_kernel_is_named_at_startup_and_money_still_moves() {
    let redis = RedisServer::start_persistent();
    let (app, warned) = app_on(&redis, "no").await;
    assert!(
        warned.lines().any(|l| l.contains("appendfsync no") && l.contains("appendfsync always")),
        "no warning naming appendfsync no: {warned}"
    );
    let (status, t) = send_one(&app).await;
    assert_eq!((status, &t["status"]), (201, &json!("completed")), "{t}");
}
