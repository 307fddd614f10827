//! The floor for the server-sent events benchmark: the least a server can do to deliver redbank's
//! events — accept, read the request head, answer 200, then write the same pre-framed bytes to
//! every open socket as they are made. No sessions, no Redis, no limits, no heartbeats. What
//! redbank's stream costs above this, on the same machine in the same run, is its own overhead;
//! what the floor itself costs is the machine's (client and server share its cores).
//!
//! ```sh
//! cargo run --release --example sse_floor -- --port 9000 --interval-ms 1000
//! cargo run --release --example sse_bench -- --no-login --events-base http://127.0.0.1:9000 \
//!     --clients 1000 --events 5
//! ```
//!
//! Each interval it frames one transaction of bob's with redbank's own code
//! (`Frame::from_transaction`: `transaction`, `balance` and `spenders` events, dated now, so
//! `sse_bench` measures receipt − date as it does against the app) and sends the bytes to every
//! connection over a broadcast channel, one task per connection — the shape of redbank's stream
//! listener without its checks. Runs until killed.

use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use redbank::bank::model::{Spenders, Transaction};
use redbank::clock::{now_ms, rfc3339_ms};
use redbank::live::event::{Frame, StreamId};
use redbank::money::Cents;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;

const USAGE: &str = "usage: sse_floor --port PORT [--interval-ms 1000]";
#[path = "common/exit.rs"]
mod exit;

fn main() -> ExitCode {
    let mut port = None;
    let mut interval_ms = 1000u64;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().and_then(|v| v.parse().ok());
        match (flag.as_str(), value) {
            ("--port", Some(v)) => port = u16::try_from(v).ok(),
            ("--interval-ms", Some(v)) if v > 0 => interval_ms = v,
            _ => {
                eprintln!("{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    let Some(port) = port else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build();
    let result =
        runtime.map_err(|e| e.to_string()).and_then(|rt| rt.block_on(serve(port, interval_ms)));
    exit::exit("sse_floor", result)
}

async fn serve(port: u16, interval_ms: u64) -> Result<(), String> {
    let listener = TcpListener::bind(("127.0.0.1", port)).await.map_err(|e| e.to_string())?;
    let (events, _) = broadcast::channel::<Bytes>(64);
    tokio::spawn(publish(events.clone(), interval_ms));
    eprintln!("sse_floor: listening on 127.0.0.1:{port}, one event every {interval_ms} ms");
    loop {
        let Ok((socket, _)) = listener.accept().await else { continue };
        tokio::spawn(stream(socket, events.subscribe()));
    }
}

/// One of bob's transactions per interval, framed once, sent to every connection.
async fn publish(events: broadcast::Sender<Bytes>, interval_ms: u64) {
    let mut tick = tokio::time::interval(Duration::from_millis(interval_ms));
    let mut balance = Cents(10_000_000);
    let spenders = Spenders {
        labels: ["Starbucks", "Amazon", "Uber", "Safeway", "Netflix"].map(String::from).to_vec(),
        series: vec![Cents(123_456), Cents(98_765), Cents(54_321), Cents(12_345), Cents(1_599)],
    };
    for seq in 1u64.. {
        tick.tick().await;
        let date = now_ms();
        balance = Cents(balance.0 - 655);
        let tx = Transaction {
            id: date as u64 * 1000 + seq % 1000,
            account_id: "1580783161".into(),
            from_account: "1580783161".into(),
            from_account_name: "Starbucks".into(),
            to_account: "1580783161".into(),
            to_account_name: "Bob Smith".into(),
            amount: Cents(-655),
            description: "STARBUCKS STORE 05412 SAN FRANCISCO CA".into(),
            transaction_date: rfc3339_ms(date),
            date,
            transaction_type: "contactless".into(),
            balance_after: balance,
        };
        let id = StreamId(date as u64, 0);
        if let Ok(frame) = Frame::from_transaction(id, &tx, Some(&spenders)) {
            // No receivers yet is fine.
            let _ = events.send(frame.wire);
        }
    }
}

/// Reads the request head (whatever it asks for), answers 200, then writes every event.
async fn stream(mut socket: TcpStream, mut events: broadcast::Receiver<Bytes>) {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 512];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match socket.read(&mut buf).await {
            Ok(n) if n > 0 && head.len() < 16 * 1024 => head.extend_from_slice(&buf[..n]),
            _ => return,
        }
    }
    drop(head);
    let ok = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\n\
              Connection: close\r\n\r\n";
    if socket.write_all(ok.as_bytes()).await.is_err() {
        return;
    }
    loop {
        match events.recv().await {
            Ok(bytes) => {
                if socket.write_all(&bytes).await.is_err() {
                    return;
                }
            }
            Err(broadcast::error::RecvError::Lagged(_)) => continue,
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}
