//! Prometheus metrics on their own port: the values move when logins, streams and transactions
//! happen, and the public port does not serve them.

use std::time::Duration;

use crate::common::server::{Sse, TestServer, Via, post_api_login};
use crate::common::{credentials, free_port, shared_redis};

/// The value of the sample `name{labels}` (labels exactly as exposed), 0 when absent.
pub(crate) fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0.0)
}

pub(crate) async fn scrape(port: u16) -> String {
    let res = reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await.unwrap();
    assert_eq!(res.status(), 200);
    let ct = res.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    res.text().await.unwrap()
}

#[rocket::async_test]
async fn metrics_move_with_logins_streams_and_transactions() {
    let port = free_port();
    let server = TestServer::start(shared_redis(), None, |f| {
        f.merge(("metrics_port", port)).merge(("generator_interval_ms", 50))
    })
    .await;
    let before = scrape(port).await;
    let ok = r#"redbank_logins_total{outcome="ok"}"#;
    let bad = r#"redbank_logins_total{outcome="bad_password"}"#;
    let second = r#"redbank_logins_total{outcome="second_factor"}"#;
    let (cookie, _) = server.login("bob", "foobared").await;
    post_api_login(&server.http, &server.base, &credentials("bob", "wrong")).await;
    post_api_login(&server.http, &server.base, &credentials("alice", "wonderland")).await;
    let mut rocket = Sse::new(server.events_via(Via::Rocket, &cookie, None).await);
    let mut listener = Sse::new(server.events_via(Via::Listener, &cookie, None).await);
    rocket.expect("transaction", Duration::from_secs(5)).await;
    listener.expect("transaction", Duration::from_secs(5)).await;
    let during = scrape(port).await;
    assert!(sample(&during, ok) >= sample(&before, ok) + 1.0, "{during}");
    assert_eq!(sample(&during, bad), sample(&before, bad) + 1.0);
    assert_eq!(sample(&during, second), sample(&before, second) + 1.0);
    assert_eq!(sample(&during, r#"redbank_event_streams_open{transport="rocket"}"#), 1.0);
    assert_eq!(sample(&during, r#"redbank_event_streams_open{transport="listener"}"#), 1.0);
    assert!(sample(&during, r#"redbank_sessions_active{kind="browser"}"#) >= 1.0, "{during}");
    assert!(
        sample(&during, "redbank_generator_transactions_total")
            > sample(&before, "redbank_generator_transactions_total")
    );
    assert!(sample(&during, "redbank_events_fanned_out_total") >= 1.0);
    assert!(sample(&during, "redbank_redis_command_duration_seconds_count") > 10.0);
    // Requests are counted by route template, never by raw path.
    let me = r#"redbank_http_requests_total{method="GET",route="/dashboard",status="200"}"#;
    assert!(sample(&during, me) >= 1.0, "{during}");
    server.http.get(server.url("/api/v1/sessions/abc")).send().await.unwrap();
    assert!(!scrape(port).await.contains("/api/v1/sessions/abc"), "a raw path became a series");
    drop((rocket, listener));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = scrape(port).await;
    assert_eq!(sample(&after, r#"redbank_event_streams_open{transport="listener"}"#), 0.0);
    // Not on the public port.
    let public = server.http.get(server.url("/metrics")).send().await.unwrap();
    assert_eq!(public.status(), 404);
    server.stop().await.unwrap();
}

/// The second outside review: the metrics server read one 4 KiB chunk and matched it as text, so
/// a request head split across TCP segments was a 404, and it held every silent connection until
/// file descriptors ran out. Now a real HTTP parser reads until the head is complete, at most
/// [`redbank::web::metrics::MAX_CONNECTIONS`] connections are served at once (more are closed at
/// once), and a silent one is dropped after the head timeout.
#[rocket::async_test]
async fn the_metrics_server_parses_split_heads_and_bounds_its_connections() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let port = free_port();
    let server = TestServer::start(shared_redis(), None, |f| f.merge(("metrics_port", port))).await;
    scrape(port).await;
    // A head in three segments.
    let mut socket = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    socket.set_nodelay(true).unwrap();
    for part in ["GET /met", "rics HTTP/1.1\r\nHost: metrics\r\n", "\r\n"] {
        socket.write_all(part.as_bytes()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let mut answer = String::new();
    socket.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{}", answer.lines().next().unwrap_or_default());
    // Twice the bound of silent connections: a scrape still answers.
    let mut silent = Vec::new();
    for _ in 0..2 * redbank::web::metrics::MAX_CONNECTIONS {
        silent.push(tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap());
    }
    let scraped = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Ok(res) = reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await {
                if res.status() == 200 {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(scraped.is_ok(), "silent connections held the metrics server");
    drop(silent);
    server.stop().await.unwrap();
}
