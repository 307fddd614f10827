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
            let mut after = seen[i + 1..]
                .iter()
                .filter(|later| later.client == s.client && !later.is("SCRIPT"));
            // A script Redis did not have yet is loaded and called again (the refused call's
            // WAITAOF, in its pipeline, comes before the load): judge the last call.
            let again = after.clone().find(|later| later.is("EVALSHA"));
            if again.is_some_and(|again| again.words == s.words) {
                return None;
            }
            Some((s, after.next()))
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
    let (app, log) = app_logging(redis, &common::unique_prefix(), &[]).await;
    let warned = log.until(&format!("appendfsync {setting}")).await;
    (app, warned)
}

/// The real binary's log, read while it runs.
struct Log(std::path::PathBuf);

impl Log {
    /// The log once it holds `text` (or after 5 s without).
    async fn until(&self, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let log = std::fs::read_to_string(&self.0).unwrap_or_default();
            if log.contains(text) || Instant::now() > deadline {
                return log;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The real binary against `redis` with `prefix` and `env`, logging at `normal`.
async fn app_logging(redis: &RedisServer, prefix: &str, env: &[(&str, &str)]) -> (Binary, Log) {
    let log =
        Log(std::env::temp_dir()
            .join(format!("redbank-fsync-{}.txt", prefix.trim_end_matches(':'))));
    let mut all = vec![("ROCKET_LOG_LEVEL", "normal"), ("ROCKET_GENERATOR_INTERVAL_MS", "0")];
    all.extend_from_slice(env);
    let app = Binary::start(redis, prefix, &all, Some(&log.0)).await;
    (app, log)
}

/// bob sends alice $1.00 through the API: the answer's status and body.
async fn send_one(app: &Binary) -> (u16, Value) {
    let token = server::api_token(&app.http, &app.base, "bob", "foobared").await;
    send(app, &token, &redbank::secret::random_token()).await
}

/// bob (`token`) sends alice $1.00 with `key` as its `Idempotency-Key`.
async fn send(app: &Binary, token: &str, key: &str) -> (u16, Value) {
    let res = app
        .http
        .post(format!("{}/api/v1/transfers", app.base))
        .bearer_auth(token)
        .header("Idempotency-Key", key)
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

/// Where `CONFIG` is not allowed, the app cannot read the setting: it sends each write and its
/// `WAITAOF` one after the other, and learns from the refused `WAITAOF` that there is no
/// append-only file — money moves, and the log names the setting.
#[rocket::async_test]
async fn a_redis_that_refuses_config_is_learned_from_waitaof_and_money_still_moves() {
    let redis = RedisServer::start(); // appendonly no
    let mut c = redis.conn().await;
    redis::cmd("ACL")
        .arg(&["SETUSER", "bank", "on", ">bank-password", "~*", "&*", "+@all", "-config"][..])
        .query_async::<_, ()>(&mut c)
        .await
        .unwrap();
    let url = redis.url().replace("redis://", "redis://bank:bank-password@");
    let (app, log) =
        app_logging(&redis, &common::unique_prefix(), &[("REDIS_URL", url.as_str())]).await;
    let unread = log.until("could not read its persistence settings").await;
    assert!(unread.contains("could not read its persistence settings"), "{unread}");

    let (status, t) = send_one(&app).await;
    assert_eq!((status, &t["status"]), (201, &json!("completed")), "{t}");
    let learned = log.until("appendonly no").await;
    assert!(learned.contains("no append-only file (appendonly no)"), "{learned}");
    let (status, t) = send_one(&app).await;
    assert_eq!((status, &t["status"]), (201, &json!("completed")), "{t}");
}

/// An append-only file turned off while the app runs: the write and its `WAITAOF` went in one
/// pipeline, whose only answer is the refusal — that transfer is answered 503, not as done; the
/// recovery task finishes it (exactly once), the same `Idempotency-Key` then shows it completed,
/// and the next transfer no longer waits.
#[rocket::async_test]
async fn an_append_only_file_turned_off_while_running_costs_one_answer_and_nothing_else() {
    let redis = RedisServer::start_persistent();
    let prefix = common::unique_prefix();
    let (app, log) = app_logging(&redis, &prefix, &[]).await;
    log.until("appendfsync always").await;
    let db = redbank::redis::Db::connect(&redis.url(), &prefix, Duration::from_secs(2)).unwrap();
    let config = redbank::Config { key_prefix: prefix.clone(), ..Default::default() };
    let alice_before = redbank::bank::store::balance(&db, ALICE).await.unwrap();

    let mut c = redis.conn().await;
    redis::cmd("CONFIG")
        .arg(&["SET", "appendonly", "no"][..])
        .query_async::<_, ()>(&mut c)
        .await
        .unwrap();
    let token = server::api_token(&app.http, &app.base, "bob", "foobared").await;
    let key = redbank::secret::random_token();
    let (status, body) = send(&app, &token, &key).await;
    assert_eq!(status, 503, "acknowledged without knowing it is on disk: {body}");
    let learned = log.until("appendonly no").await;
    assert!(learned.contains("no append-only file (appendonly no)"), "{learned}");

    // The debit happened; the recovery task credits it.
    assert_eq!(redbank::transfer::recovery::run_once(&db, &config).await.unwrap(), 1);
    let (status, t) = send(&app, &token, &key).await;
    assert_eq!((status, &t["status"]), (201, &json!("completed")), "{t}");
    let (status, t) = send_one(&app).await;
    assert_eq!((status, &t["status"]), (201, &json!("completed")), "{t}");
    let alice_after = redbank::bank::store::balance(&db, ALICE).await.unwrap();
    assert_eq!(alice_after.0 - alice_before.0, 200, "two transfers of $1.00, each credited once");
}
