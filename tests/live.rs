//! Live updates over real HTTP: SSE from the pub/sub bridge, replay, outages, limits, scale-out.

#![allow(clippy::unwrap_used)]

mod common;
#[path = "common/server.rs"]
mod server;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::{RedisServer, shared_redis};
use redis::AsyncCommands;
use serde_json::Value;
use server::{Next, Sse, TestServer};

const BOB: &str = "1580783161";
const ALICE: &str = "2734819056";

fn generator(ms: u64) -> impl FnOnce(rocket::figment::Figment) -> rocket::figment::Figment {
    move |f| f.merge(("generator_interval_ms", ms)).merge(("sse_heartbeat_secs", 1))
}

/// Every stream id of `account` after `after` (exclusive), oldest first.
async fn stream_ids(redis: &RedisServer, prefix: &str, account: &str, after: &str) -> Vec<String> {
    let mut c = redis.conn().await;
    let key = format!("{prefix}{{acct:{account}}}:stream");
    let reply: redis::Value = redis::cmd("XRANGE")
        .arg(&key)
        .arg(format!("({after}"))
        .arg("+")
        .query_async(&mut c)
        .await
        .unwrap();
    let redis::Value::Bulk(entries) = reply else { panic!("XRANGE reply {reply:?}") };
    entries
        .iter()
        .map(|entry| match entry {
            redis::Value::Bulk(parts) => redis::from_redis_value::<String>(&parts[0]).unwrap(),
            other => panic!("stream entry {other:?}"),
        })
        .collect()
}

#[rocket::async_test]
async fn first_event_arrives_within_two_intervals_and_carries_ids_and_retry() {
    let server = TestServer::start(shared_redis(), None, generator(1000)).await;
    let (cookie, _) = server.login("bob", "foobared").await;
    let started = Instant::now();
    let mut sse = Sse::new(server.events(&cookie, None).await);
    let tx = sse.expect("transaction", Duration::from_millis(2000)).await;
    assert!(
        started.elapsed() <= Duration::from_millis(2000),
        "first event after {:?}",
        started.elapsed()
    );
    assert_eq!(sse.retry, Some(3000), "the stream sends retry:");
    let id = tx.id.clone().expect("event id");
    let doc: Value = serde_json::from_str(&tx.data).unwrap();
    assert_eq!(doc["accountId"], BOB);
    let balance = sse.expect("balance", Duration::from_secs(1)).await;
    assert_eq!(balance.id.as_deref(), Some(id.as_str()));
    let point: Value = serde_json::from_str(&balance.data).unwrap();
    assert_eq!(point["y"], doc["balanceAfter"]);
    assert_eq!(point["x"], doc["date"]);
    let spenders = sse.expect("spenders", Duration::from_secs(1)).await;
    let top: Value = serde_json::from_str(&spenders.data).unwrap();
    assert!(top["labels"].as_array().unwrap().len() <= 5);
    // The id is the account stream entry.
    let all = stream_ids(shared_redis(), &server.prefix, BOB, "0-0").await;
    assert!(all.contains(&id), "{id} not in the stream");
    server.stop().await.unwrap();
}

#[rocket::async_test]
async fn events_are_only_for_the_callers_account() {
    let server = TestServer::start(shared_redis(), None, generator(200)).await;
    let (alice, _) = server.login("alice", "wonderland").await;
    let mut sse = Sse::new(server.events(&alice, None).await);
    for _ in 0..6 {
        let tx = sse.expect("transaction", Duration::from_secs(3)).await;
        assert!(tx.data.contains(ALICE) && !tx.data.contains(BOB), "{}", tx.data);
    }
    server.stop().await.unwrap();
}

#[rocket::async_test]
async fn no_session_is_401_and_tokens_in_urls_are_not_accepted() {
    let server = TestServer::start(shared_redis(), None, |f| f).await;
    let res = server.http.get(server.url("/events")).send().await.unwrap();
    assert_eq!(res.status(), 401);
    let token = {
        let res = server
            .http
            .post(server.url("/api/v1/login"))
            .json(&serde_json::json!({"username": "bob", "password": "foobared"}))
            .send()
            .await
            .unwrap();
        res.json::<Value>().await.unwrap()["token"].as_str().unwrap().to_owned()
    };
    // Neither a bearer header nor a token in the URL opens a stream: cookie only.
    let res = server.http.get(server.url(&format!("/events?token={token}"))).send().await.unwrap();
    assert_eq!(res.status(), 401);
    let res = server.http.get(server.url("/events")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(res.status(), 401);
    server.stop().await.unwrap();
}

#[rocket::async_test]
async fn last_event_id_replays_exactly_the_missed_events_in_order() {
    let interval = 200;
    let server = TestServer::start(shared_redis(), None, generator(interval)).await;
    let (cookie, _) = server.login("bob", "foobared").await;
    let mut sse = Sse::new(server.events(&cookie, None).await);
    let seen = sse.expect("transaction", Duration::from_secs(3)).await.id.unwrap();
    drop(sse);
    tokio::time::sleep(Duration::from_millis(3 * interval + 100)).await;

    let mut sse = Sse::new(server.events(&cookie, Some(&seen)).await);
    let mut got: Vec<String> = Vec::new();
    // Read until we are past what the stream held when we reconnected, plus one live event.
    let missed = stream_ids(shared_redis(), &server.prefix, BOB, &seen).await;
    assert!(missed.len() >= 3, "expected ≥ 3 missed events, got {}", missed.len());
    while got.len() < missed.len() + 1 {
        let tx = sse.expect("transaction", Duration::from_secs(3)).await;
        got.push(tx.id.unwrap());
    }
    assert_eq!(&got[..missed.len()], &missed[..], "replay differs from the stream");
    let unique: HashSet<&String> = got.iter().collect();
    assert_eq!(unique.len(), got.len(), "duplicate events: {got:?}");
    let all = stream_ids(shared_redis(), &server.prefix, BOB, &seen).await;
    assert_eq!(&all[..got.len()], &got[..], "not in stream order or with a gap");
    server.stop().await.unwrap();
}

#[rocket::async_test]
async fn redis_restart_mid_stream_loses_and_duplicates_nothing() {
    let mut redis = RedisServer::start_persistent();
    let server = TestServer::start(&redis, None, generator(200)).await;
    let (cookie, _) = server.login("bob", "foobared").await;
    let mut sse = Sse::new(server.events(&cookie, None).await);
    let first = sse.expect("transaction", Duration::from_secs(3)).await.id.unwrap();
    let mut got = vec![first.clone()];

    redis.stop();
    tokio::time::sleep(Duration::from_secs(3)).await;
    redis.restart();

    // Keep reading; if the stream ends, reconnect with Last-Event-ID as a browser does.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut after_restart = 0;
    while after_restart < 5 {
        assert!(Instant::now() < deadline, "no recovery: got {got:?}");
        match sse.next(Duration::from_secs(2)).await {
            Next::Event(e) if e.event == "transaction" => {
                let id = e.id.unwrap();
                if *got.last().unwrap() != id || !got.contains(&id) {
                    got.push(id);
                }
                after_restart += 1;
            }
            Next::Event(_) | Next::Timeout => {}
            Next::Closed => {
                tokio::time::sleep(Duration::from_millis(300)).await;
                let res = server.events(&cookie, Some(got.last().unwrap())).await;
                if res.status() == 200 {
                    sse = Sse::new(res);
                }
            }
        }
    }
    let last = got.last().unwrap().clone();
    let mut expected = vec![first.clone()];
    expected.extend(
        stream_ids(&redis, &server.prefix, BOB, &first)
            .await
            .into_iter()
            .take_while(|id| *id <= last),
    );
    let unique: HashSet<&String> = got.iter().collect();
    assert_eq!(unique.len(), got.len(), "duplicates: {got:?}");
    assert_eq!(got, expected, "the client missed or reordered events across the outage");
    server.stop().await.unwrap();
}

#[rocket::async_test]
async fn logout_closes_the_open_stream_within_a_heartbeat() {
    let server =
        TestServer::start(shared_redis(), None, |f| f.merge(("sse_heartbeat_secs", 1))).await;
    let (cookie, csrf) = server.login("bob", "foobared").await;
    let mut sse = Sse::new(server.events(&cookie, None).await);
    let res = server
        .http
        .post(server.url("/logout"))
        .header("Cookie", &cookie)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let started = Instant::now();
    loop {
        match sse.next(Duration::from_secs(3)).await {
            Next::Closed => break,
            Next::Event(_) => continue,
            Next::Timeout => panic!("stream still open {:?} after logout", started.elapsed()),
        }
    }
    assert!(started.elapsed() < Duration::from_millis(2500));
    server.stop().await.unwrap();
}

#[rocket::async_test]
async fn heartbeats_never_extend_the_session_and_expiry_ends_the_stream() {
    let server = TestServer::start(shared_redis(), None, |f| {
        f.merge(("sse_heartbeat_secs", 1))
            .merge(("session_idle_secs", 3))
            .merge(("session_touch_secs", 0))
    })
    .await;
    let (cookie, _) = server.login("bob", "foobared").await;
    let token = cookie.trim_start_matches("redbank=");
    let id = redbank::session::model::SessionToken::parse(token).unwrap().id();
    let key = format!("{}session:{}", server.prefix, id.as_str());
    let mut sse = Sse::new(server.events(&cookie, None).await);
    let mut c = shared_redis().conn().await;
    let ttl_at_start: i64 = c.pttl(&key).await.unwrap();
    let started = Instant::now();
    let mut ttls = vec![];
    loop {
        match sse.next(Duration::from_secs(6)).await {
            Next::Closed => break,
            Next::Event(_) => continue,
            Next::Timeout => panic!("stream outlived its session"),
        }
    }
    // Between heartbeats the TTL only went down.
    let ttl_now: i64 = c.pttl(&key).await.unwrap();
    ttls.push(ttl_now);
    assert!(sse.comments >= 1, "no heartbeat comments seen");
    assert!(ttl_now < ttl_at_start, "TTL was extended by the stream: {ttl_at_start} → {ttl_now}");
    assert!(started.elapsed() < Duration::from_millis(5500), "ended after {:?}", started.elapsed());
    server.stop().await.unwrap();
}

#[rocket::async_test]
async fn a_client_that_never_reads_does_not_delay_others() {
    use tokio::io::AsyncWriteExt;
    let server =
        TestServer::start(shared_redis(), None, |f| generator(100)(f).merge(("sse_queue", 8)))
            .await;
    let (cookie, _) = server.login("bob", "foobared").await;
    // A raw client that asks for the stream and never reads a byte.
    let addr = server.base.trim_start_matches("http://").to_owned();
    let mut stuck = Vec::new();
    for _ in 0..4 {
        let mut tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let req = format!("GET /events HTTP/1.1\r\nHost: {addr}\r\nCookie: {cookie}\r\n\r\n");
        tcp.write_all(req.as_bytes()).await.unwrap();
        stuck.push(tcp);
    }
    let (other, _) = server.login("bob", "foobared").await;
    let mut sse = Sse::new(server.events(&other, None).await);
    let mut last = sse.expect("transaction", Duration::from_secs(2)).await;
    for _ in 0..20 {
        let started = Instant::now();
        let tx = sse.expect("transaction", Duration::from_secs(2)).await;
        assert!(started.elapsed() < Duration::from_millis(1000), "a reader was delayed");
        assert_ne!(tx.id, last.id);
        last = tx;
    }
    drop(stuck);
    server.stop().await.unwrap();
}

#[rocket::async_test]
async fn per_session_and_global_stream_limits() {
    let server = TestServer::start(shared_redis(), None, |f| {
        // A closed connection is noticed at the next write: the heartbeat.
        f.merge(("sse_max_per_session", 2))
            .merge(("sse_max_streams", 3))
            .merge(("sse_heartbeat_secs", 1))
    })
    .await;
    let (a, _) = server.login("bob", "foobared").await;
    let (b, _) = server.login("alice", "wonderland").await;
    let s1 = server.events(&a, None).await;
    let s2 = server.events(&a, None).await;
    assert_eq!((s1.status(), s2.status()), (reqwest::StatusCode::OK, reqwest::StatusCode::OK));
    let s3 = server.events(&a, None).await;
    assert_eq!(s3.status(), 429, "third stream of one session");
    let s4 = server.events(&b, None).await;
    assert_eq!(s4.status(), 200);
    let s5 = server.events(&b, None).await;
    assert_eq!(s5.status(), 503, "global cap");
    // Closing a stream frees its slot.
    drop(s1);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let again = server.events(&b, None).await;
        if again.status() == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "slot never freed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop((s2, s4));
    server.stop().await.unwrap();
}

#[rocket::async_test]
async fn graceful_shutdown_ends_open_streams() {
    let server = TestServer::start(shared_redis(), None, generator(200)).await;
    let (cookie, _) = server.login("bob", "foobared").await;
    let mut streams = Vec::new();
    for _ in 0..3 {
        streams.push(Sse::new(server.events(&cookie, None).await));
    }
    let started = Instant::now();
    server.stop().await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    for mut sse in streams {
        loop {
            match sse.next(Duration::from_secs(3)).await {
                Next::Closed => break,
                Next::Event(_) => continue,
                Next::Timeout => panic!("stream survived shutdown"),
            }
        }
    }
}

#[rocket::async_test]
async fn newlines_in_data_arrive_as_one_event() {
    let server = TestServer::start(shared_redis(), None, |f| f).await;
    let (cookie, _) = server.login("bob", "foobared").await;
    let mut sse = Sse::new(server.events(&cookie, None).await);
    let db =
        redbank::redis::Db::connect(&shared_redis().url(), &server.prefix, Duration::from_secs(2))
            .unwrap();
    let balance = redbank::bank::store::balance(&db, BOB).await.unwrap();
    let now = redbank::clock::now_ms();
    let description =
        "line one\ndata: forged\n\nevent: spenders\nid: 1-1\r\n<img src=x onerror=alert(1)>";
    let mut tx =
        common::transaction(BOB, description, "Test Vendor", "card payment", -100, now, balance);
    tx.from_account_name = "Test\nVendor".into();
    let config = redbank::Config::default();
    redbank::bank::store::record(&db, &config, balance, &tx).await.unwrap();
    let event = sse.expect("transaction", Duration::from_secs(3)).await;
    let doc: Value = serde_json::from_str(&event.data).unwrap();
    assert_eq!(doc["description"], description);
    let next = sse.expect("balance", Duration::from_secs(2)).await;
    assert_eq!(next.id, event.id, "the forged lines became events of their own");
    server.stop().await.unwrap();
}

#[rocket::async_test]
async fn two_instances_share_sessions_stream_everything_and_run_one_generator() {
    let prefix = common::unique_prefix();
    let a = TestServer::start(shared_redis(), Some(&prefix), generator(300)).await;
    let b = TestServer::start(shared_redis(), Some(&prefix), generator(300)).await;
    let (cookie, _) = a.login("bob", "foobared").await;
    let me = b.http.get(b.url("/api/v1/me")).header("Cookie", &cookie).send().await.unwrap();
    assert_eq!(me.status(), 200, "a session made on A is valid on B");

    let mut on_a = Sse::new(a.events(&cookie, None).await);
    let mut on_b = Sse::new(b.events(&cookie, None).await);
    let first = on_a.expect("transaction", Duration::from_secs(3)).await.id.unwrap();
    // Align B on the same event.
    loop {
        let id = on_b.expect("transaction", Duration::from_secs(3)).await.id.unwrap();
        if id == first {
            break;
        }
    }
    let started = Instant::now();
    let mut ids_a = Vec::new();
    let mut ids_b = Vec::new();
    for _ in 0..8 {
        ids_a.push(on_a.expect("transaction", Duration::from_secs(3)).await.id.unwrap());
        ids_b.push(on_b.expect("transaction", Duration::from_secs(3)).await.id.unwrap());
    }
    assert_eq!(ids_a, ids_b, "both instances stream every event");
    // One generator: 8 transactions for bob take ~8 intervals, not ~4.
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(8 * 300 * 3 / 4),
        "two generators? 8 events in {elapsed:?}"
    );
    a.stop().await.unwrap();
    b.stop().await.unwrap();
}

/// The real binary: SIGTERM with open event streams ends them and exits within Rocket's grace +
/// mercy; sessions survive in Redis and work after the restart.
#[rocket::async_test]
async fn sigterm_with_open_streams_exits_cleanly_and_sessions_survive() {
    let prefix = common::unique_prefix();
    let spawn = || {
        let port = common::free_port();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_redbank"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("REDIS_URL", shared_redis().url())
            .env("ROCKET_PORT", port.to_string())
            .env("ROCKET_KEY_PREFIX", &prefix)
            .env("ROCKET_LOG_LEVEL", "off")
            .env("ROCKET_GENERATOR_INTERVAL_MS", "300")
            .env("ROCKET_ADMIN_PASSWORD", common::ADMIN_PASSWORD)
            .env("ROCKET_SHUTDOWN", "{grace=2,mercy=2}")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        (child, format!("http://127.0.0.1:{port}"))
    };
    let http =
        reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let wait_up = |base: String| {
        let http = http.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(20);
            while http
                .get(format!("{base}/healthz"))
                .send()
                .await
                .map(|r| r.status() != 200)
                .unwrap_or(true)
            {
                assert!(Instant::now() < deadline, "binary did not start");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };

    let (mut child, base) = spawn();
    wait_up(base.clone()).await;
    let res = http
        .post(format!("{base}/api/v1/login"))
        .json(&serde_json::json!({"username": "bob", "password": "foobared"}))
        .send()
        .await
        .unwrap();
    let token = res.json::<Value>().await.unwrap()["token"].as_str().unwrap().to_owned();
    // A browser session for the streams (cookie only), made through the form.
    let cookie = server::form_login(&http, &base, "bob", "foobared").await;
    let mut streams = Vec::new();
    for _ in 0..3 {
        let res =
            http.get(format!("{base}/events")).header("Cookie", &cookie).send().await.unwrap();
        let mut sse = Sse::new(res);
        sse.expect("transaction", Duration::from_secs(3)).await;
        streams.push(sse);
    }

    let started = Instant::now();
    let ok = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(ok.success());
    for mut sse in streams {
        loop {
            match sse.next(Duration::from_secs(6)).await {
                Next::Closed => break,
                Next::Event(_) => continue,
                Next::Timeout => panic!("a stream outlived SIGTERM"),
            }
        }
    }
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(6), "still running 6 s after SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "exit status {status}");

    // Sessions survive the restart.
    let (mut child, base) = spawn();
    wait_up(base.clone()).await;
    let me = http.get(format!("{base}/api/v1/me")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(me.status(), 200);
    let me = http.get(format!("{base}/api/v1/me")).header("Cookie", &cookie).send().await.unwrap();
    assert_eq!(me.status(), 200);
    let _ = child.kill();
    let _ = child.wait();
}
