//! Live updates over real HTTP: SSE from the pub/sub bridge, replay, outages, limits, scale-out.
//!
//! `/events` is one endpoint on two servers: Rocket's port and the stream listener. What the
//! endpoint decides (`live::feed`: who may stream, where a stream resumes, what it replays, when a
//! revoked or expired session ends it, the stream limits) is tested once, on Rocket's port. What
//! each server does itself (headers, the wire form of a refusal, closing on shutdown, clients that
//! stop reading, connection caps, the listener's own HTTP) is tested on both, or on the listener
//! alone where only it has the feature.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use redbank::audit::ClientInfo;
use redbank::auth::model::{Assurance, SessionKind};
use redbank::auth::store;
use redbank::redis::Keys;
use redis::AsyncCommands;
use serde_json::Value;

use crate::common;
use crate::common::request::client_from;
use crate::common::server::{Binary, Next, Sse, TestServer, Via, fast_heartbeat, raw_exchange};
use crate::common::{RedisServer, TestApp, server, session_id, shared_redis};

const BOB: &str = "1580783161";
const ALICE: &str = "2734819056";
/// Both servers, for what each does on its own.
const VIAS: [Via; 2] = [Via::Rocket, Via::Listener];

fn generator(ms: u64) -> impl FnOnce(rocket::figment::Figment) -> rocket::figment::Figment {
    move |f| fast_heartbeat(f).merge(("generator_interval_ms", ms))
}

/// Every stream id of `account` after `after` (exclusive), oldest first.
async fn stream_ids(redis: &RedisServer, keys: &Keys, account: &str, after: &str) -> Vec<String> {
    let mut c = redis.conn().await;
    let reply: redis::Value = redis::cmd("XRANGE")
        .arg(keys.stream(account))
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

// ---- the endpoint (once, on Rocket's port) ----------------------------------------------------

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
    let all = stream_ids(shared_redis(), &server.keys(), BOB, "0-0").await;
    assert!(all.contains(&id), "{id} not in the stream");
    server.stop().await.unwrap();
}

#[rocket::async_test]
async fn events_are_only_for_the_callers_account() {
    let server = TestServer::start(shared_redis(), None, generator(200)).await;
    let (alice, _) = server.login("alice", "wonderland").await;
    let mut sse = Sse::new(server.events(&alice, None).await);
    for _ in 0..4 {
        let tx = sse.expect("transaction", Duration::from_secs(3)).await;
        assert!(tx.data.contains(ALICE) && !tx.data.contains(BOB), "{}", tx.data);
    }
    server.stop().await.unwrap();
}

#[rocket::async_test]
async fn a_stream_opens_only_with_a_session_credential_on_its_own_channel() {
    let (server, token) = TestServer::with_bob().await;
    let (cookie, _) = server.login("bob", "foobared").await;
    let url = server.url("/events");
    let res = server.http.get(&url).send().await.unwrap();
    assert_eq!(res.status(), 401);
    let body: Value = res.json().await.unwrap();
    assert!(body["error"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    // Never a token in the URL; a mobile token only as a bearer token, a browser's only as its
    // cookie.
    let res = server.http.get(format!("{url}?token={token}")).send().await.unwrap();
    assert_eq!(res.status(), 401);
    let res = server.http.get(&url).header("Cookie", format!("redbank={token}")).send().await;
    assert_eq!(res.unwrap().status(), 401, "a mobile token as a cookie");
    let browser_token = cookie.trim_start_matches("redbank=");
    let res = server.http.get(&url).bearer_auth(browser_token).send().await.unwrap();
    assert_eq!(res.status(), 401, "a browser token as a bearer token");
    let res = server.http.get(&url).bearer_auth(&token).send().await.unwrap();
    assert_eq!(res.status(), 200, "the mobile client's own bearer token");
    drop(res);
    // A well-formed cookie that names no session is refused.
    let forged = format!("redbank={}", "A".repeat(43));
    assert_eq!(server.events(&forged, None).await.status(), 401);
    // A second session cookie planted next to the real one (browsers send the one with the
    // narrower Path first) voids both, instead of streaming someone else's account.
    let (planted, _) = server.login("alice", "wonderland").await;
    for pair in [format!("{planted}; {cookie}"), format!("{cookie}; {planted}")] {
        assert_eq!(server.events(&pair, None).await.status(), 401, "{pair}");
    }
    assert_eq!(server.events(&cookie, None).await.status(), 200);
    // The same rule for every cookie-authenticated route.
    let pair = format!("{cookie}; {cookie}");
    let res = server.http.get(server.url("/api/v1/me")).header("Cookie", &pair).send().await;
    assert_eq!(res.unwrap().status(), 401);
    let res = server.http.get(server.url("/api/v1/me")).header("Cookie", &cookie).send().await;
    assert_eq!(res.unwrap().status(), 200);
    server.stop().await.unwrap();
}

#[rocket::async_test]
async fn last_event_id_replays_exactly_the_missed_events_in_order() {
    let interval = 200;
    let server = TestServer::start(shared_redis(), None, generator(interval)).await;
    let (cookie, _, mut sse) = server.watching("bob", "foobared").await;
    let seen = sse.expect("transaction", Duration::from_secs(3)).await.id.unwrap();
    drop(sse);
    tokio::time::sleep(Duration::from_millis(3 * interval + 100)).await;

    let mut sse = Sse::new(server.events(&cookie, Some(&seen)).await);
    let mut got: Vec<String> = Vec::new();
    // Read until we are past what the stream held when we reconnected, plus one live event.
    let missed = stream_ids(shared_redis(), &server.keys(), BOB, &seen).await;
    assert!(missed.len() >= 3, "expected ≥ 3 missed events, got {}", missed.len());
    while got.len() < missed.len() + 1 {
        let tx = sse.expect("transaction", Duration::from_secs(3)).await;
        got.push(tx.id.unwrap());
    }
    assert_eq!(&got[..missed.len()], &missed[..], "replay differs from the stream");
    let unique: HashSet<&String> = got.iter().collect();
    assert_eq!(unique.len(), got.len(), "duplicate events: {got:?}");
    let all = stream_ids(shared_redis(), &server.keys(), BOB, &seen).await;
    assert_eq!(&all[..got.len()], &got[..], "not in stream order or with a gap");
    server.stop().await.unwrap();
}

/// A mobile client: signs in through the API, streams with its bearer token on either server,
/// and resumes with `Last-Event-ID` after a gap, exactly like a browser.
#[rocket::async_test]
async fn a_mobile_client_streams_with_its_bearer_token_and_resumes_on_both_servers() {
    let interval = 200;
    let server = TestServer::start(shared_redis(), None, generator(interval)).await;
    let token = server.api_login("bob", "foobared").await;
    for via in [Via::Rocket, Via::Listener] {
        let open = |last: Option<String>| {
            let mut req = server.http.get(server.events_url(via)).bearer_auth(&token);
            if let Some(id) = last {
                req = req.header("Last-Event-ID", id);
            }
            req.send()
        };
        let res = open(None).await.unwrap();
        assert_eq!(res.status(), 200, "{via:?}");
        let mut sse = Sse::new(res);
        let seen = sse.expect("transaction", Duration::from_secs(3)).await.id.unwrap();
        drop(sse);
        tokio::time::sleep(Duration::from_millis(3 * interval + 100)).await;
        let missed = stream_ids(shared_redis(), &server.keys(), BOB, &seen).await;
        assert!(missed.len() >= 2, "{via:?}: expected missed events, got {missed:?}");
        let mut sse = Sse::new(open(Some(seen)).await.unwrap());
        let mut got = Vec::new();
        while got.len() < missed.len() {
            got.push(sse.expect("transaction", Duration::from_secs(10)).await.id.unwrap());
        }
        assert_eq!(got, missed, "{via:?}: the replay differs from the stream");
    }
    server.stop().await.unwrap();
}

#[rocket::async_test]
async fn both_servers_give_every_stream_response_a_request_id_a_trusted_proxys_when_sent() {
    let trust = |f: rocket::figment::Figment| f.merge(("request_id_header", "X-Request-Id"));
    let server = TestServer::start(shared_redis(), None, trust).await;
    let (cookie, _) = server.login("bob", "foobared").await;
    let id = |res: &reqwest::Response| {
        res.headers().get("x-request-id").and_then(|v| v.to_str().ok()).map(str::to_owned)
    };
    for via in [Via::Rocket, Via::Listener] {
        let url = server.events_url(via);
        let refused = server.http.get(&url).header("X-Request-Id", "proxy-7").send().await.unwrap();
        assert_eq!(refused.status(), 401);
        assert_eq!(id(&refused).as_deref(), Some("proxy-7"), "{via:?}");
        let opened = server.events_via(via, &cookie, None).await;
        assert_eq!(opened.status(), 200);
        let made = id(&opened).unwrap_or_default();
        assert!(made.len() == 32 && made.bytes().all(|b| b.is_ascii_hexdigit()), "{via:?}: {made}");
    }
    server.stop().await.unwrap();
}

#[rocket::async_test]
async fn redis_restart_mid_stream_loses_and_duplicates_nothing() {
    let mut redis = RedisServer::start_persistent();
    let server = TestServer::start(&redis, None, generator(200)).await;
    let (cookie, _, mut sse) = server.watching("bob", "foobared").await;
    let mut got = vec![sse.expect("transaction", Duration::from_secs(3)).await.id.unwrap()];

    redis.stop();
    tokio::time::sleep(Duration::from_secs(3)).await;
    redis.restart();

    // The client keeps reading; if its stream ends, it reconnects with Last-Event-ID as a
    // browser does.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut after_restart = 0;
    while after_restart < 5 {
        assert!(Instant::now() < deadline, "no recovery: got {got:?}");
        match sse.next(Duration::from_secs(2)).await {
            Next::Event(e) if e.event == "transaction" => {
                got.push(e.id.unwrap());
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
    let (first, last) = (got[0].clone(), got.last().unwrap().clone());
    let mut expected = vec![first.clone()];
    let after_first = stream_ids(&redis, &server.keys(), BOB, &first).await;
    expected.extend(after_first.into_iter().take_while(|id| *id <= last));
    let unique: HashSet<&String> = got.iter().collect();
    assert_eq!(unique.len(), got.len(), "duplicates: {got:?}");
    assert_eq!(got, expected, "missed or reordered events across the outage");
    server.stop().await.unwrap();
}

#[rocket::async_test]
async fn logout_closes_the_open_stream_within_a_heartbeat() {
    let server = TestServer::start(shared_redis(), None, fast_heartbeat).await;
    let (cookie, csrf, mut sse) = server.watching("bob", "foobared").await;
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
    let what = "stream still open 3 s after its last event, after logout";
    sse.expect_closed(Duration::from_secs(3), what).await;
    assert!(started.elapsed() < Duration::from_millis(2500));
    server.stop().await.unwrap();
}

#[rocket::async_test]
async fn heartbeats_never_extend_the_session_and_expiry_ends_the_stream() {
    let server = TestServer::start(shared_redis(), None, |f| {
        fast_heartbeat(f).merge(("session_idle_secs", 3)).merge(("session_touch_secs", 0))
    })
    .await;
    let (cookie, _, mut sse) = server.watching("bob", "foobared").await;
    let key = server.keys().session(&session_id(&cookie));
    let mut c = shared_redis().conn().await;
    let ttl_at_start: i64 = c.pttl(&key).await.unwrap();
    assert!(ttl_at_start > 0, "no session key");
    let started = Instant::now();
    // Two heartbeats in (each one re-checks the session), the key is still there and its TTL
    // has only gone down.
    while sse.comments < 2 {
        match sse.next(Duration::from_millis(100)).await {
            Next::Closed => panic!("stream ended before two heartbeats"),
            Next::Event(_) | Next::Timeout => {}
        }
        assert!(started.elapsed() < Duration::from_secs(3), "no heartbeats");
    }
    let ttl_later: i64 = c.pttl(&key).await.unwrap();
    assert!(
        ttl_later > 0 && ttl_later <= ttl_at_start - 1500,
        "TTL was extended by the stream: {ttl_at_start} → {ttl_later} ms"
    );
    sse.expect_closed(Duration::from_secs(6), "stream outlived its session").await;
    assert!(started.elapsed() < Duration::from_millis(5500), "ended after {:?}", started.elapsed());
    server.stop().await.unwrap();
}

/// The limits are one count for both servers, and both refuse alike: past a limit, and a caller
/// without a session.
#[rocket::async_test]
async fn both_servers_share_the_stream_limits_and_refuse_alike() {
    let server = TestServer::start(shared_redis(), None, |f| {
        // A closed connection is noticed at the next write: the heartbeat.
        fast_heartbeat(f).merge(("sse_max_per_session", 2)).merge(("sse_max_streams", 3))
    })
    .await;
    let (a, _) = server.login("bob", "foobared").await;
    let (b, _) = server.login("alice", "wonderland").await;
    // Signed out, and a doubled session cookie (voids the session).
    for cookie in ["", &format!("{a}; {a}")] {
        let refused = refusals(&server, cookie).await;
        assert_eq!(refused[0].0, 401, "{cookie:?}");
        assert!(refused[0].2["error"].as_str().is_some_and(|m| !m.is_empty()), "{refused:?}");
    }
    let s1 = server.events_via(Via::Rocket, &a, None).await;
    let s2 = server.events_via(Via::Listener, &a, None).await;
    assert_eq!((s1.status(), s2.status()), (reqwest::StatusCode::OK, reqwest::StatusCode::OK));
    let third = refusals(&server, &a).await;
    assert_eq!(third[0].0, 429, "third stream of one session");
    assert_eq!(third[0].1.as_deref(), Some("5"), "Retry-After");
    let s4 = server.events(&b, None).await;
    assert_eq!(s4.status(), 200);
    let global = refusals(&server, &b).await;
    assert_eq!(global[0].0, 503, "global cap");
    assert!(global[0].1.is_some(), "no Retry-After at the global cap");
    // Closing a stream frees its slot: at once on the listener (it watches the socket for
    // EOF), within two heartbeats on Rocket's port (the first write after the close is still
    // accepted by the kernel; the second fails). The bound leaves room for a loaded machine.
    for (closed, reopen_via) in [(s1, Via::Listener), (s2, Via::Rocket)] {
        drop(closed);
        let started = Instant::now();
        loop {
            let again = server.events_via(reopen_via, &b, None).await;
            if again.status() == 200 {
                break;
            }
            let waited = started.elapsed();
            assert!(
                waited < Duration::from_secs(10),
                "slot never freed ({reopen_via:?}, {waited:?})"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    drop(s4);
    server.stop().await.unwrap();
}

/// How each server refuses a stream with `cookie`: status, `Retry-After` and error text on
/// Rocket's port, then on the listener; asserts they are the same.
async fn refusals(server: &TestServer, cookie: &str) -> Vec<(u16, Option<String>, Value)> {
    let mut answers = Vec::new();
    for via in VIAS {
        let res = server.events_via(via, cookie, None).await;
        let retry = res.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
        answers.push((res.status().as_u16(), retry, res.json::<Value>().await.unwrap()));
    }
    assert_eq!(answers[0], answers[1], "Rocket's port and the listener refuse differently");
    answers
}

#[rocket::async_test]
async fn newlines_in_data_arrive_as_one_event() {
    let server = TestServer::new().await;
    let (_, _, mut sse) = server.watching("bob", "foobared").await;
    let db =
        redbank::redis::Db::connect(&shared_redis().url(), &server.prefix, Duration::from_secs(2))
            .unwrap();
    let balance = redbank::bank::store::balance(&db, BOB).await.unwrap();
    let now = redbank::clock::now_ms();
    let description =
        "line one\ndata: forged\n\nevent: spenders\nid: 1-1\r\n<img src=x onerror=alert(1)>";
    let mut tx =
        common::transaction(BOB, (description, "Test Vendor", "card payment"), -100, now, balance);
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

// ---- each server (transport) ------------------------------------------------------------------

/// Both servers send a stream with the same headers, and end it on shutdown.
#[rocket::async_test]
async fn graceful_shutdown_ends_open_streams_on_both_servers() {
    let server = TestServer::start(shared_redis(), None, generator(200)).await;
    let (cookie, _) = server.login("bob", "foobared").await;
    let names = ["content-type", "cache-control"].into_iter();
    let names: Vec<&str> =
        names.chain(redbank::web::SECURITY_HEADERS.iter().map(|h| h.0)).collect();
    let mut streams = Vec::new();
    let mut heads = Vec::new();
    for via in [Via::Rocket, Via::Rocket, Via::Listener, Via::Listener] {
        let res = server.events_via(via, &cookie, None).await;
        let header = |name: &&str| res.headers().get(*name).map(|v| v.to_str().unwrap().to_owned());
        heads.push(names.iter().map(header).collect::<Vec<_>>());
        streams.push(Sse::new(res));
    }
    assert!(heads[0].iter().all(Option::is_some), "{names:?}: {:?}", heads[0]);
    assert_eq!(heads[0], heads[2], "Rocket's port and the listener send different headers");
    let started = Instant::now();
    server.stop().await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    for mut sse in streams {
        sse.expect_closed(Duration::from_secs(3), "stream survived shutdown").await;
    }
}

#[rocket::async_test]
async fn a_client_that_never_reads_does_not_delay_others() {
    use tokio::io::AsyncWriteExt;
    let server =
        TestServer::start(shared_redis(), None, |f| generator(100)(f).merge(("sse_queue", 8)))
            .await;
    let (cookie, _) = server.login("bob", "foobared").await;
    // Raw clients that ask for the stream and never read a byte, on both servers.
    let mut stuck = Vec::new();
    for base in [&server.base, &server.stream_base] {
        let addr = base.trim_start_matches("http://").to_owned();
        for _ in 0..2 {
            let mut tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
            let req = format!("GET /events HTTP/1.1\r\nHost: {addr}\r\nCookie: {cookie}\r\n\r\n");
            tcp.write_all(req.as_bytes()).await.unwrap();
            stuck.push(tcp);
        }
    }
    let (other, _) = server.login("bob", "foobared").await;
    let mut readers = Vec::new();
    for via in VIAS {
        let mut sse = Sse::new(server.events_via(via, &other, None).await);
        let last = sse.expect("transaction", Duration::from_secs(2)).await;
        readers.push((via, sse, last));
    }
    for _ in 0..20 {
        for (via, sse, last) in readers.iter_mut() {
            let started = Instant::now();
            let tx = sse.expect("transaction", Duration::from_secs(2)).await;
            assert!(started.elapsed() < Duration::from_millis(1000), "{via:?}: reader delayed");
            assert_ne!(tx.id, last.id);
            *last = tx;
        }
    }
    drop(stuck);
    server.stop().await.unwrap();
}

/// A listener client that stops reading is cut off — by the write timeout (one heartbeat) or by
/// `TCP_USER_TIMEOUT` (two), whichever comes first — and its slot goes back. Rocket's path has
/// neither (see docs/OPERATIONS.md, "Live updates at scale").
#[rocket::async_test]
async fn the_stream_listener_cuts_off_a_client_that_stopped_reading() {
    use tokio::io::AsyncWriteExt;
    let server = TestServer::start(shared_redis(), None, |f| {
        generator(20)(f).merge(("sse_max_per_session", 1)).merge(("sse_queue", 100_000))
    })
    .await;
    let (cookie, _) = server.login("bob", "foobared").await;
    let addr = server.stream_base.trim_start_matches("http://").to_owned();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stuck = socket.connect(addr.parse().unwrap()).await.unwrap();
    let req = format!("GET /events HTTP/1.1\r\nHost: {addr}\r\nCookie: {cookie}\r\n\r\n");
    stuck.write_all(req.as_bytes()).await.unwrap();
    // It holds the session's only slot…
    tokio::time::sleep(Duration::from_millis(300)).await;
    let res = server.events_via(Via::Listener, &cookie, None).await;
    assert_eq!(res.status(), 429, "the stuck stream should hold the slot");
    drop(res);
    // …until its buffers fill (~50 events/s) and a write stays stuck for a heartbeat (1 s).
    let started = Instant::now();
    loop {
        let res = server.events_via(Via::Listener, &cookie, None).await;
        if res.status() == 200 {
            break;
        }
        assert_eq!(res.status(), 429);
        assert!(started.elapsed() < Duration::from_secs(30), "the stuck client kept its slot");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    drop(stuck);
    server.stop().await.unwrap();
}

/// The real binary: SIGTERM with open event streams on both servers ends them and exits within
/// Rocket's grace + mercy; sessions survive in Redis and work after the restart.
#[rocket::async_test]
async fn sigterm_with_open_streams_exits_cleanly_and_sessions_survive() {
    let prefix = common::unique_prefix();
    let env = [
        ("ROCKET_LOG_LEVEL", "off"),
        ("ROCKET_GENERATOR_INTERVAL_MS", "300"),
        ("ROCKET_SHUTDOWN", "{grace=2,mercy=2}"),
    ];
    let mut app = Binary::start(shared_redis(), &prefix, &env, None).await;
    let token = server::api_token(&app.http, &app.base, "bob", "foobared").await;
    // A browser session for the streams (cookie only), made through the form.
    let cookie = server::form_login(&app.http, &app.base, "bob", "foobared").await;
    let mut streams = Vec::new();
    for events_base in [&app.base, &app.base, &app.stream_base] {
        let res = app.http.get(format!("{events_base}/events")).header("Cookie", &cookie).send();
        let mut sse = Sse::new(res.await.unwrap());
        sse.expect("transaction", Duration::from_secs(3)).await;
        streams.push(sse);
    }

    app.terminate();
    for mut sse in streams {
        sse.expect_closed(Duration::from_secs(6), "a stream outlived SIGTERM").await;
    }
    let status = app.exit_status(Duration::from_secs(6)).await;
    assert!(status.success(), "exit status {status}");

    // Sessions survive the restart.
    let app = Binary::start(shared_redis(), &prefix, &env, None).await;
    let me = app.http.get(format!("{}/api/v1/me", app.base));
    assert_eq!(me.bearer_auth(&token).send().await.unwrap().status(), 200);
    let me = app.http.get(format!("{}/api/v1/me", app.base));
    assert_eq!(me.header("Cookie", &cookie).send().await.unwrap().status(), 200);
}

/// The stream listener is a deliberately tiny HTTP server: one `GET /events` per connection,
/// everything else refused with a readable JSON error, slow or oversized heads cut off.
#[rocket::async_test]
async fn stream_listener_serves_only_get_events_and_refuses_the_rest() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = TestServer::new().await;
    let (cookie, _) = server.login("bob", "foobared").await;
    let addr = server.stream_base.trim_start_matches("http://").to_owned();
    // Sends `request`, returns everything the server wrote until it closed (or 8 s passed).
    let exchange = |request: Vec<u8>| {
        let addr = addr.clone();
        async move { raw_exchange(&addr, &[&request], Duration::ZERO, Duration::from_secs(8)).await }
    };
    let status = |reply: &str| reply.split(' ').nth(1).unwrap_or_default().to_owned();
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"GET /login HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), "404"),
        (
            format!("POST /events HTTP/1.1\r\nHost: x\r\nCookie: {cookie}\r\n\r\n").into_bytes(),
            "405",
        ),
        (b"GET /events HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc".to_vec(), "400"),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n".to_vec(), "400"),
        (
            format!("GET /events HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(40_000)).into_bytes(),
            "431",
        ),
        (b"GET /events HTTP/1.1\r\nHost: x\r\nCookie: redbank=nope\r\n\r\n".to_vec(), "401"),
    ];
    for (request, expected) in cases {
        let reply = exchange(request).await;
        assert_eq!(status(&reply), expected, "{reply}");
        let (head, body) = reply.split_once("\r\n\r\n").unwrap();
        assert!(head.contains("\r\nContent-Type: application/json\r\n"), "{head}");
        assert!(head.contains("\r\nX-Content-Type-Options: nosniff\r\n"), "{head}");
        let body: Value = serde_json::from_str(body).unwrap();
        assert!(body["error"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
        if expected == "405" {
            assert!(head.contains("\r\nAllow: GET\r\n"), "{head}");
        }
    }

    // A head that never completes is answered 408 and closed after the head timeout.
    let started = Instant::now();
    let reply = exchange(b"GET /events HTTP/1.1\r\nHost: x\r\n".to_vec()).await;
    assert_eq!(status(&reply), "408", "{reply}");
    let waited = started.elapsed();
    assert!(waited >= Duration::from_secs(4) && waited < Duration::from_secs(8), "{waited:?}");

    // The stream: a close-delimited event stream with the same hardening headers as the app.
    let mut tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let request = format!("GET /events HTTP/1.1\r\nHost: {addr}\r\nCookie: {cookie}\r\n\r\n");
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        assert_eq!(tcp.read(&mut byte).await.unwrap(), 1, "closed during the head");
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    for line in [
        "HTTP/1.1 200 OK\r\n",
        "\r\nContent-Type: text/event-stream\r\n",
        "\r\nCache-Control: no-store\r\n",
        "\r\nConnection: close\r\n",
        "\r\nX-Frame-Options: DENY\r\n",
    ] {
        assert!(head.contains(line), "{line:?} missing from {head}");
    }
    let mut retry = [0u8; 12];
    tcp.read_exact(&mut retry).await.unwrap();
    assert_eq!(&retry, b"retry:3000\n\n");
    // A client sends nothing after its request: any byte ends the stream.
    tcp.write_all(b"x").await.unwrap();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(3), tcp.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "stream still open after the client sent data");
    server.stop().await.unwrap();
}

/// The second outside review: 2,000 silent connections held a real request 35 s (the listener
/// stopped accepting while its 512 handshake slots waited out their head timeouts). Silent
/// connections from one address now hold at most that address's share of the slots, the rest are
/// closed as soon as they are accepted, and a request from any other address is answered at once.
#[rocket::async_test]
async fn silent_connections_hold_only_their_addresses_share_of_the_handshake_slots() {
    use redbank::live::listener::{HEAD_TIMEOUT, MAX_HANDSHAKES_PER_ADDRESS};
    use tokio::io::AsyncReadExt;
    let server = TestServer::new().await;
    let (cookie, _) = server.login("bob", "foobared").await;
    let addr: std::net::SocketAddr =
        server.stream_base.trim_start_matches("http://").parse().unwrap();
    // 2,000 silent connections from 127.0.0.2.
    let mut silent = Vec::with_capacity(2000);
    for _ in 0..2000 {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        silent.push(socket.connect(addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // All but the address's share were closed at once (a read sees EOF, not a wait).
    let mut open = 0;
    for socket in &mut silent {
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_millis(5), socket.read(&mut byte)).await;
        open += usize::from(read.is_err());
    }
    assert_eq!(open, MAX_HANDSHAKES_PER_ADDRESS, "silent connections holding a slot");
    // A real client (127.0.0.1) is answered long before the silent ones' head timeout.
    let started = Instant::now();
    let res = server.events_via(Via::Listener, &cookie, None).await;
    assert_eq!(res.status(), 200);
    let waited = started.elapsed();
    assert!(waited < HEAD_TIMEOUT / 2, "a real request waited {waited:?} behind silent ones");
    // Rocket's port was never affected.
    let health = server.http.get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    drop(silent);
    server.stop().await.unwrap();
}

/// With a replica to wait for (`min_replicas_ack`), a transaction is announced only once the
/// replica has it; one no replica confirmed is not announced at all, and the next announcement
/// (naming it as `prev`) makes the stream read it from the account stream — in order, nothing
/// lost, nothing twice.
#[rocket::async_test]
async fn with_a_replica_to_wait_for_events_come_once_replicated_and_in_order() {
    use redbank::bank::generator::{Generator, vendors};
    // Each with an append-only file: a replica confirms a write (WAITAOF) once it has it on disk.
    let primary = RedisServer::start_persistent();
    let replica = RedisServer::start_persistent();
    let mut c = replica.conn().await;
    let _: () = redis::cmd("REPLICAOF")
        .arg("127.0.0.1")
        .arg(primary.port)
        .query_async(&mut c)
        .await
        .unwrap();
    // A replica's first confirmation of an fsync comes a few seconds after its first sync.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut p = primary.conn().await;
    loop {
        // In sync, and its own append-only file written (after the first sync it rewrites one).
        // Not pipelined with the write: see `Db::replicated`.
        let _: () = redis::cmd("SET").arg("sync-probe").arg(1).query_async(&mut p).await.unwrap();
        let (_, on_replica): (u32, u32) =
            redis::cmd("WAITAOF").arg(0).arg(1).arg(100).query_async(&mut p).await.unwrap();
        if on_replica == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "the replica did not sync");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let wait_one = |f: rocket::figment::Figment| fast_heartbeat(f).merge(("min_replicas_ack", 1));
    let server = TestServer::start(&primary, None, wait_one).await;
    let token = server.api_login("bob", "foobared").await;
    let res = server.http.get(server.events_url(Via::Rocket)).bearer_auth(&token).send().await;
    let mut sse = Sse::new(res.unwrap());
    let mut config = redbank::Config { key_prefix: server.prefix.clone(), ..Default::default() };
    config.redis.min_replicas_ack = Some(1);
    // Room for the replica's confirmation when the whole suite shares the machine (the bound of
    // its WAITAOF is half of this).
    config.redis.timeout_ms = 4_000;
    let db = redbank::redis::Db::connect(&primary.url(), &server.prefix, Duration::from_secs(4))
        .unwrap();
    let mut generator =
        Generator::new(db, config, std::sync::Arc::new(vendors().unwrap())).unwrap();

    generator.tick().await.unwrap();
    let first = sse.expect("transaction", Duration::from_secs(10)).await.id.unwrap();
    // The replica stops answering: the next transaction is written but not announced.
    replica.freeze();
    generator.tick().await.unwrap();
    let deadline = Instant::now() + Duration::from_millis(800);
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match sse.next(left).await {
            Next::Event(e) if e.event == "transaction" => {
                panic!("announced before a replica had it: {}", e.data)
            }
            Next::Event(_) => {}
            Next::Timeout => break,
            Next::Closed => panic!("the stream closed"),
        }
    }
    replica.thaw();
    generator.tick().await.unwrap();
    let stored = stream_ids(&primary, &server.keys(), BOB, &first).await;
    assert_eq!(stored.len(), 2, "{stored:?}");
    let mut got = Vec::new();
    for _ in 0..2 {
        got.push(sse.expect("transaction", Duration::from_secs(3)).await.id.unwrap());
    }
    assert_eq!(got, stored, "the unannounced transaction was skipped or came out of order");
    server.stop().await.unwrap();
}

#[rocket::async_test]
async fn streams_are_capped_per_user_and_per_client_address() {
    let server = TestServer::start(shared_redis(), None, |f| {
        f.merge(("sse_max_per_user", 3)).merge(("sse_max_per_address", 4))
    })
    .await;
    let (a, _) = server.login("bob", "foobared").await;
    let (b, _) = server.login("bob", "foobared").await;
    let mut open = Vec::new();
    // One count for both servers.
    for (cookie, via) in [(&a, Via::Rocket), (&a, Via::Listener), (&b, Via::Rocket)] {
        let res = server.events_via(via, cookie, None).await;
        assert_eq!(res.status(), 200, "{via:?}");
        open.push(res);
    }
    let res = server.events(&b, None).await;
    assert_eq!(res.status(), 429, "a fourth stream of one user (two sessions)");
    assert!(res.headers().contains_key("retry-after"));
    // Alice shares bob's address: one more stream from it, then the address is full.
    let (c, _) = server.login("alice", "wonderland").await;
    open.push(server.events_via(Via::Listener, &c, None).await);
    assert_eq!(open.last().unwrap().status(), 200);
    let res = server.events(&c, None).await;
    assert_eq!(res.status(), 429, "a fifth stream from one address");
    // Each server takes the address from its own socket: from another one alice streams on both.
    let other = client_from("127.0.0.2");
    for via in VIAS {
        let res = other.get(server.events_url(via)).header("Cookie", &c).send().await.unwrap();
        assert_eq!(res.status(), 200, "{via:?}");
        open.push(res);
    }
    drop(open);
    server.stop().await.unwrap();
}

#[rocket::async_test]
async fn event_routes_are_exact() {
    let server = TestServer::new().await;
    let (cookie, _) = server.login("bob", "foobared").await;
    for path in ["/events/", "/events//", "//events", "/api/v1/me/"] {
        for base in [&server.base, &server.stream_base] {
            let res =
                server.http.get(format!("{base}{path}")).header("Cookie", &cookie).send().await;
            assert_eq!(res.unwrap().status(), 404, "{base}{path}");
        }
    }
    assert_eq!(server.events(&cookie, None).await.status(), 200);
    server.stop().await.unwrap();
}

#[rocket::async_test]
async fn a_resume_id_out_of_range_is_a_400() {
    let server = TestServer::new().await;
    let (cookie, _) = server.login("bob", "foobared").await;
    for id in ["18446744073709551615-18446744073709551615", "+1-0", "1-+0", "1-2-3", "x"] {
        let url = format!("{}?after={id}", server.url("/events"));
        let res = server.http.get(&url).header("Cookie", &cookie).send().await.unwrap();
        assert_eq!(res.status(), 400, "after={id}");
        let body: Value = res.json().await.unwrap();
        assert!(body["error"].as_str().is_some_and(|m| m.contains("event id")), "{body}");
        let res = server.events(&cookie, Some(id)).await;
        assert_eq!(res.status(), 400, "Last-Event-ID {id}");
    }
    // Each server reads the header and the query itself: both refuse alike.
    for via in VIAS {
        let res = server.events_via(via, &cookie, Some("1-2-3")).await;
        assert_eq!(res.status(), 400, "{via:?} Last-Event-ID");
        let body: Value = res.json().await.unwrap();
        assert!(body["error"].as_str().is_some_and(|m| m.contains("event id")), "{body}");
        // Query names are decoded as Rocket decodes them; a bare `after` is an empty id.
        for query in ["after=x", "%61fter=junk", "after"] {
            let url = format!("{}?{query}", server.events_url(via));
            let res = server.http.get(&url).header("Cookie", &cookie).send().await.unwrap();
            assert_eq!(res.status(), 400, "{via:?} ?{query}");
        }
        // Judged before the credentials, the same on both servers.
        let url = format!("{}?after=+1-0", server.events_url(via));
        assert_eq!(server.http.get(&url).send().await.unwrap().status(), 400, "{via:?}");
        let res = server.events_via(via, &cookie, Some("0-0")).await;
        assert_eq!(res.status(), 200, "{via:?}");
    }
    server.stop().await.unwrap();
}

#[rocket::async_test]
async fn the_heartbeat_check_fails_closed_when_redis_cannot_answer() {
    let redis = RedisServer::start();
    let server =
        TestServer::start(&redis, None, |f| fast_heartbeat(f).merge(("redis_timeout_ms", 200)))
            .await;
    let (_, _, mut sse) = server.watching("bob", "foobared").await;
    redis.freeze();
    let what = "a stream outlived a session check Redis could not answer";
    sse.expect_closed(Duration::from_secs(4), what).await;
    redis.thaw();
    server.stop().await.unwrap();
}

#[rocket::async_test]
async fn replay_is_read_in_pages_as_the_client_reads() {
    use redbank::live::event::StreamId;
    const BOB: &str = "1580783161";
    let redis = RedisServer::start();
    let app = TestApp::with(&redis, |f| f).await;
    let (db, config) = (app.db(), app.config());
    let start = redbank::clock::now_ms() - 60_000;
    let mut balance = redbank::bank::store::balance(db, BOB).await.unwrap();
    for i in 0..1_200 {
        let tx =
            common::transaction(BOB, ("replay", "Vendor", "withdrawal"), -1, start + i, balance);
        balance = redbank::bank::store::record(db, config, balance, &tx).await.unwrap().balance;
    }
    let user = redbank::auth::users::get_user(db, "bob").await.unwrap().unwrap();
    let client = ClientInfo { ip: "127.0.0.1".into(), user_agent: "test".into() };
    let (_, session) = store::create_session(
        db,
        config,
        &user,
        SessionKind::Browser,
        &client,
        Assurance::password(0),
    )
    .await
    .unwrap();
    let hub = app.client.rocket().state::<std::sync::Arc<redbank::live::bridge::Hub>>().unwrap();
    let xranges = || async {
        let mut c = redis.conn().await;
        let info: String =
            redis::cmd("INFO").arg("commandstats").query_async(&mut c).await.unwrap();
        info.lines()
            .find_map(|l| l.strip_prefix("cmdstat_xrange:calls="))
            .and_then(|rest| rest.split(',').next()?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let before = xranges().await;
    let mut feed = redbank::live::feed::open(
        db,
        hub,
        config,
        redbank::live::feed::Holder { session: &session, ip: "127.0.0.1", transport: "rocket" },
        Some(StreamId(0, 0)),
        app.client.rocket().shutdown(),
    )
    .await
    .unwrap();
    let greeting = feed.next().await.unwrap();
    assert!(greeting.starts_with(b"retry:"));
    let first = feed.next().await.unwrap();
    assert!(first.starts_with(b"event:transaction"));
    assert_eq!(xranges().await - before, 1, "the replay read ahead of the client");
    // Reading on pages through the rest, in order, and then the stream stays open (live).
    let mut seen = 1;
    while seen < 1_200 {
        let bytes =
            tokio::time::timeout(Duration::from_secs(5), feed.next()).await.unwrap().unwrap();
        seen += bytes.windows(18).filter(|w| w == b"event:transaction\n").count();
    }
    assert_eq!(seen, 1_200);
    let pages = xranges().await - before;
    assert!(pages > 5, "{pages} reads for 1,200 entries");
    assert!(
        tokio::time::timeout(Duration::from_millis(300), feed.next()).await.is_err(),
        "the feed ended"
    );
}

#[rocket::async_test]
async fn the_stream_listener_speaks_http_1_1() {
    let server = TestServer::new().await;
    let (cookie, _) = server.login("bob", "foobared").await;
    let addr = server.stream_base.trim_start_matches("http://").to_owned();
    let status = |reply: &str| reply.split(' ').nth(1).unwrap_or_default().to_owned();
    let get = |extra: &str| format!("GET /events HTTP/1.1\r\nCookie: {cookie}\r\n{extra}\r\n");
    let pause = Duration::from_millis(150);
    // Exactly one Host header (RFC 9112 §3.2).
    for (request, expected) in [
        (get(""), "400"),
        (get("Host: a\r\nHost: b\r\n"), "400"),
        (get(&format!("Host: {addr}\r\n")), "200"),
    ] {
        let reply =
            raw_exchange(&addr, &[request.as_bytes()], pause, Duration::from_millis(800)).await;
        assert_eq!(status(&reply), expected, "{reply}");
        let head = reply.split("\r\n\r\n").next().unwrap();
        let date = head.lines().find_map(|l| l.strip_prefix("Date: ")).unwrap_or_default();
        assert!(date.ends_with(" GMT") && date.len() == 29, "no HTTP date in {head}");
    }
    // Pipelined requests: the first is answered, then the connection closes, however the bytes
    // are split into segments.
    let one = get(&format!("Host: {addr}\r\n"));
    let two = format!("{one}{one}");
    let together = raw_exchange(&addr, &[two.as_bytes()], pause, Duration::from_secs(3)).await;
    let apart =
        raw_exchange(&addr, &[one.as_bytes(), one.as_bytes()], pause, Duration::from_secs(3)).await;
    for reply in [&together, &apart] {
        assert_eq!(reply.matches("HTTP/1.1 ").count(), 1, "{reply}");
        assert_eq!(status(reply), "200", "{reply}");
        assert!(reply.ends_with("retry:3000\n\n"), "answered, then closed: {reply:?}");
    }
    // A head sent one byte at a time is still read (incrementally) and answered.
    let bytes = one.as_bytes();
    let chunks: Vec<&[u8]> = bytes.chunks(1).collect();
    let slow =
        raw_exchange(&addr, &chunks, Duration::from_millis(1), Duration::from_millis(800)).await;
    assert_eq!(status(&slow), "200", "{slow}");
    server.stop().await.unwrap();
}

/// How many subscribers (this process's one, or none) Redis has on `account`'s shard channel.
async fn subscribers(redis: &RedisServer, keys: &Keys, account: &str) -> i64 {
    let mut c = redis.conn().await;
    let reply: (String, i64) = redis::cmd("PUBSUB")
        .arg("SHARDNUMSUB")
        .arg(keys.events(account))
        .query_async(&mut c)
        .await
        .unwrap();
    reply.1
}

async fn until_subscribers(redis: &RedisServer, keys: &Keys, account: &str, want: i64) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let now = subscribers(redis, keys, account).await;
        if now == want {
            return;
        }
        assert!(Instant::now() < deadline, "{account}: {now} subscribers, not {want}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A process subscribes to an account's channel from its first stream of that account to its
/// last, and receives no other account's events: a transaction of an account nobody watches
/// here does not reach it, one of the watched account does, on both of its streams.
#[rocket::async_test]
async fn a_process_hears_an_account_only_while_one_of_its_streams_shows_it() {
    let port = common::free_port();
    let server = TestServer::start(shared_redis(), None, |f| {
        fast_heartbeat(f).merge(("metrics_port", port))
    })
    .await;
    let (redis, keys) = (shared_redis(), server.keys());
    until_subscribers(redis, &keys, BOB, 0).await;
    let (cookie, _) = server.login("bob", "foobared").await;
    let mut first = Sse::new(server.events_via(Via::Rocket, &cookie, None).await);
    let mut second = Sse::new(server.events_via(Via::Listener, &cookie, None).await);
    until_subscribers(redis, &keys, BOB, 1).await;
    assert_eq!(subscribers(redis, &keys, ALICE).await, 0, "nobody watches alice here");

    let heard = async || {
        crate::metrics::sample(
            &crate::metrics::scrape(port).await,
            "redbank_events_fanned_out_total",
        )
    };
    let before = heard().await;
    let db =
        redbank::redis::Db::connect(&redis.url(), &server.prefix, Duration::from_secs(2)).unwrap();
    // A card payment by `account`, now, through the generator's own store function.
    let pay = async |account: &str, description: &str| {
        let balance = redbank::bank::store::balance(&db, account).await.unwrap();
        let now = redbank::clock::now_ms();
        let tx =
            common::transaction(account, (description, "Cafe", "card payment"), -100, now, balance);
        let config = redbank::Config::default();
        redbank::bank::store::record(&db, &config, balance, &tx).await.unwrap();
    };
    for account in [ALICE, BOB] {
        pay(account, "Coffee").await;
    }
    for sse in [&mut first, &mut second] {
        let event = sse.expect("transaction", Duration::from_secs(3)).await;
        assert!(event.data.contains("Coffee") && !event.data.contains(ALICE), "{}", event.data);
    }
    assert_eq!(heard().await, before + 1.0, "the process received an event nobody here watches");

    // One stream closes: still subscribed; the last one: unsubscribed (seen at its next
    // heartbeat, within a second).
    drop(first);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(subscribers(redis, &keys, BOB).await, 1);
    drop(second);
    until_subscribers(redis, &keys, BOB, 0).await;
    // And back: a new stream subscribes again and hears the next transaction.
    let mut again = Sse::new(server.events_via(Via::Rocket, &cookie, None).await);
    until_subscribers(redis, &keys, BOB, 1).await;
    pay(BOB, "Tea").await;
    let event = again.expect("transaction", Duration::from_secs(3)).await;
    assert!(event.data.contains("Tea"), "{}", event.data);
    drop(again);
    server.stop().await.unwrap();
}
