//! A real SMTP server (mailin-embedded) on a free loopback port, one per app under test: the app
//! sends through it exactly as through a bank's relay (`smtp_url`), and tests read what arrived —
//! the codes and links a user would read in their mailbox.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mailin_embedded::{Handler, Response, Server, SslConfig, response};

/// One message as the server received it.
#[derive(Debug, Clone)]
pub struct Mail {
    /// The envelope's recipients (`RCPT TO`).
    pub to: Vec<String>,
    /// The message as sent (headers and body).
    pub raw: String,
}

impl Mail {
    /// The body (after the blank line that ends the headers), with CRLF as LF.
    pub fn body(&self) -> String {
        let raw = self.raw.replace("\r\n", "\n");
        raw.split_once("\n\n").map(|(_, body)| body.to_owned()).unwrap_or_default()
    }

    /// The value of header `name` (first occurrence).
    pub fn header(&self, name: &str) -> Option<String> {
        let raw = self.raw.replace("\r\n", "\n");
        let head = raw.split_once("\n\n").map_or(raw.as_str(), |(head, _)| head).to_owned();
        head.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name).then(|| value.trim().to_owned())
        })
    }

    /// The first run of exactly `digits` digits in the body (a one-time code).
    pub fn code(&self, digits: usize) -> Option<String> {
        let body = self.body();
        let bytes = body.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i].is_ascii_digit() {
                let start = i;
                while i < bytes.len() && bytes[i].is_ascii_digit() {
                    i += 1;
                }
                if i - start == digits {
                    return Some(body[start..i].to_owned());
                }
            } else {
                i += 1;
            }
        }
        None
    }

    /// The first link in the body starting with `prefix` (e.g. `http://localhost:8080/`).
    pub fn link(&self, prefix: &str) -> Option<String> {
        let body = self.body();
        let at = body.find(prefix)?;
        Some(body[at..].split_whitespace().next()?.to_owned())
    }
}

#[derive(Clone, Default)]
struct Collector {
    received: Arc<Mutex<Vec<Mail>>>,
    to: Vec<String>,
    data: Vec<u8>,
}

impl Handler for Collector {
    fn data_start(&mut self, _domain: &str, _from: &str, _is8bit: bool, to: &[String]) -> Response {
        self.to = to.to_vec();
        self.data.clear();
        response::OK
    }

    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.data.extend_from_slice(buf);
        Ok(())
    }

    fn data_end(&mut self) -> Response {
        let mail = Mail {
            to: std::mem::take(&mut self.to),
            raw: String::from_utf8_lossy(&self.data).into_owned(),
        };
        self.received.lock().unwrap().push(mail);
        response::OK
    }
}

/// The SMTP server and what it received. Its threads live until the test process exits.
#[derive(Clone)]
pub struct Mailbox {
    pub port: u16,
    received: Arc<Mutex<Vec<Mail>>>,
}

impl Mailbox {
    pub fn start() -> Mailbox {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let collector = Collector::default();
        let received = collector.received.clone();
        let mut server = Server::new(collector);
        server
            .with_name("mail.test")
            .with_num_threads(2)
            .with_tcp_listener(listener)
            .with_ssl(SslConfig::None)
            .unwrap();
        std::thread::spawn(move || {
            let _ = server.serve();
        });
        Mailbox { port, received }
    }

    /// `smtp_url` for the app.
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Everything received so far, oldest first.
    pub fn all(&self) -> Vec<Mail> {
        self.received.lock().unwrap().clone()
    }

    /// Messages to `address` so far, oldest first.
    pub fn to(&self, address: &str) -> Vec<Mail> {
        self.all().into_iter().filter(|m| m.to.iter().any(|t| t == address)).collect()
    }

    /// Waits (up to 10 s) until `address` has received more than `seen` messages; the newest.
    pub async fn next_to(&self, address: &str, seen: usize) -> Mail {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mails = self.to(address);
            if mails.len() > seen {
                return mails.last().unwrap().clone();
            }
            assert!(Instant::now() < deadline, "no new mail to {address} (had {seen})");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits (up to 10 s) until `address` has more than `seen` messages whose subject contains
    /// `subject`; the newest of them.
    pub async fn about(&self, address: &str, subject: &str, seen: usize) -> Mail {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let about: Vec<Mail> = self
                .to(address)
                .into_iter()
                .filter(|m| m.header("Subject").is_some_and(|s| s.contains(subject)))
                .collect();
            if about.len() > seen {
                return about.last().unwrap().clone();
            }
            let all: Vec<_> =
                self.all().iter().map(|m| (m.to.clone(), m.header("Subject"))).collect();
            assert!(Instant::now() < deadline, "no mail about {subject:?} to {address}: {all:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The newest confirmation-code mail to `address` among those after the first `seen`,
    /// waiting (up to 10 s) for one: security notices may arrive in between.
    pub async fn code_mail(&self, address: &str, seen: usize) -> Mail {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let found = self
                .to(address)
                .into_iter()
                .skip(seen)
                .rev()
                .find(|m| m.header("Subject").is_some_and(|s| s.contains("confirmation code")));
            if let Some(mail) = found {
                return mail;
            }
            assert!(Instant::now() < deadline, "no code mailed to {address} (after {seen})");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The 8-digit code of [`Mailbox::code_mail`].
    pub async fn code_to(&self, address: &str, seen: usize) -> String {
        let mail = self.code_mail(address, seen).await;
        mail.code(8).unwrap_or_else(|| panic!("no 8-digit code in: {}", mail.raw))
    }
}
