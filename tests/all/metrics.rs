//! Prometheus metrics on their own port: the values move when logins, streams and transactions
//! happen, and the public port does not serve them.

use std::time::Duration;

use crate::common::server::{Sse, TestServer, Via, post_api_login};
use crate::common::{credentials, free_port, shared_redis};

/// The value of the sample `name{labels}` (labels exactly as exposed), 0 when absent.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0.0)
}

async fn scrape(port: u16) -> String {
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
