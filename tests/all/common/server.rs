//! The real app on a real loopback port (for server-sent events over real HTTP), plus a minimal SSE
//! client, and the real binary.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use redbank::redis::Keys;
use rocket::figment::Figment;
use serde_json::Value;

use crate::common::request::RequestHelper;
use crate::common::{
    LoginForm, RedisServer, credentials, shared_redis, test_figment, two_free_ports, unique_prefix,
};

/// Which server carries `/events`: Rocket's own port or the stream listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Rocket,
    Listener,
}

pub struct TestServer {
    pub base: String,
    /// The stream listener (`stream_port`), which serves only `GET /events`.
    pub stream_base: String,
    /// `http://localhost:<port>`: the `public_origin` passkeys are bound to (unless a tweak set
    /// another).
    pub origin: String,
    pub prefix: String,
    shutdown: rocket::Shutdown,
    handle: tokio::task::JoinHandle<Result<(), String>>,
    pub http: reqwest::Client,
    /// The SMTP server the app sends its mail through.
    pub mail: crate::common::mail::Mailbox,
    /// The Redis it runs against (for the binary's tools).
    pub redis_url: String,
    /// Its `totp_keys` (the binary's tools seal with the same).
    pub totp_keys: Vec<String>,
}

impl TestServer {
    /// The app on a real port against the shared Redis, with its own prefix and the test
    /// configuration as it is.
    pub async fn new() -> Self {
        Self::start(shared_redis(), None, |f| f).await
    }

    /// [`new`](Self::new), and bob signed in from the mobile app: his bearer token.
    pub async fn with_bob() -> (Self, String) {
        let server = Self::new().await;
        let token = server.api_login("bob", "foobared").await;
        (server, token)
    }

    /// Launches the app against `redis` with `prefix` (a fresh one when None).
    pub async fn start(
        redis: &RedisServer,
        prefix: Option<&str>,
        tweak: impl FnOnce(Figment) -> Figment,
    ) -> Self {
        let prefix = prefix.map(str::to_owned).unwrap_or_else(unique_prefix);
        // The SMTP server first: it holds its port, so the app's free ports cannot be it (they
        // are only found free, then released until the app binds them).
        let mail = crate::common::mail::Mailbox::start();
        let (port, stream_port) = two_free_ports();
        // Passkeys are bound to the origin a browser reaches the app at (a tweak may share one
        // between instances, as behind one proxy).
        let origin = format!("http://localhost:{port}");
        let figment = test_figment(redis, &prefix)
            .merge(("stream_port", stream_port))
            .merge(("public_origin", origin))
            .merge(("smtp_url", mail.url()));
        let figment = tweak(figment)
            .merge(("port", port))
            .merge(("address", "127.0.0.1"))
            .merge(("shutdown.ctrlc", false))
            .merge(("shutdown.grace", 1))
            .merge(("shutdown.mercy", 1));
        let totp_keys: Vec<String> = figment.extract_inner("totp_keys").unwrap_or_default();
        let rocket = redbank::build(figment).ignite().await.expect("ignite");
        let shutdown = rocket.shutdown();
        let handle =
            tokio::spawn(
                async move { rocket.launch().await.map(|_| ()).map_err(|e| e.to_string()) },
            );
        let base = format!("http://127.0.0.1:{port}");
        let http =
            reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        wait_healthy(&http, &base, Duration::from_secs(15)).await;
        let stream_base = format!("http://127.0.0.1:{stream_port}");
        let origin = format!("http://localhost:{port}");
        let redis_url = redis.url();
        TestServer {
            base,
            stream_base,
            origin,
            prefix,
            shutdown,
            handle,
            http,
            mail,
            redis_url,
            totp_keys,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sets `path` of the session document of `token` (a bearer token or a `name=value` cookie)
    /// in Redis: what the app would never write, or what only time would.
    pub async fn set_in_session(
        &self,
        token: &str,
        path: &str,
        value: impl redis::ToRedisArgs + Send + Sync,
    ) {
        let key = self.keys().session(&crate::common::session_id(token));
        let client = redis::Client::open(self.redis_url.as_str()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        crate::common::json_set(&mut conn, &key, path, value).await;
    }

    /// Dates the last authentication of `token`'s session at `at` (ms), as if it signed in then.
    pub async fn authenticated_at(&self, token: &str, at: i64) {
        self.set_in_session(token, "$.auth_time", at).await;
    }

    /// A form POST of `body` (x-www-form-urlencoded) to `path`, from a browser that holds the
    /// `cookie` header when given.
    pub fn form_post(
        &self,
        path: &str,
        cookie: Option<&str>,
        body: impl Into<reqwest::Body>,
    ) -> reqwest::RequestBuilder {
        let mut req = self.http.post(self.url(path));
        if let Some(cookie) = cookie {
            req = req.header("Cookie", cookie);
        }
        req.header("Content-Type", "application/x-www-form-urlencoded").body(body)
    }

    /// The names of this server's keys.
    pub fn keys(&self) -> Keys {
        Keys::new(&self.prefix)
    }

    /// Runs `redbank admin totp <args…>` (the real binary) against this server's Redis and keys.
    pub fn admin_totp(&self, args: &[&str]) -> std::process::Output {
        self.admin_tool(&self.totp_keys, &[&["totp"][..], args].concat())
    }

    /// Runs `redbank admin <args…>` (the real binary) against this server's Redis, with
    /// `totp_keys`.
    pub fn admin_tool(&self, totp_keys: &[String], args: &[&str]) -> std::process::Output {
        let keys: Vec<String> = totp_keys.iter().map(|k| format!("{k:?}")).collect();
        Command::new(env!("CARGO_BIN_EXE_redbank"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("REDIS_URL", &self.redis_url)
            .env("ROCKET_KEY_PREFIX", &self.prefix)
            .env("ROCKET_TOTP_KEYS", format!("[{}]", keys.join(", ")))
            .arg("admin")
            .args(args)
            .output()
            .unwrap()
    }

    /// The admin with an authenticator app set up on the machine (`redbank admin totp`), signed
    /// in with it through the API (AAL2): the bearer token and the app's secret.
    pub async fn operator(&self) -> (String, redbank::auth::factors::totp::TotpSecret) {
        let out = self.admin_totp(&[]);
        let printed = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "admin totp: {printed}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let secret = printed_secret(&printed);
        let token = self.totp_login("admin", crate::common::ADMIN_PASSWORD, &secret).await;
        (token, secret)
    }

    /// A mobile sign-in with the password and then a code of `secret` (the current step, or the
    /// next one when the current one was used); returns the bearer token.
    pub async fn totp_login(
        &self,
        user: &str,
        pass: &str,
        secret: &redbank::auth::factors::totp::TotpSecret,
    ) -> String {
        let (status, body) = post_api_login(&self.http, &self.base, &credentials(user, pass)).await;
        assert_eq!((status.as_u16(), &body["mfa_required"]), (200, &Value::Bool(true)), "{body}");
        let now = redbank::auth::factors::totp::step_of(redbank::clock::now_ms() / 1000);
        for step in [now, now + 1] {
            let answer =
                serde_json::json!({"mfa_token": body["mfa_token"], "code": secret.code_at(step)});
            let res = self.http.post(self.url("/api/v1/login/totp")).json(&answer).send().await;
            let res = res.unwrap();
            if res.status() == 200 {
                let done: Value = res.json().await.unwrap();
                return done["token"].as_str().expect("token").to_owned();
            }
        }
        panic!("no code of {user}'s app was accepted");
    }

    /// The second step of a mobile sign-in (`mfa_token` from the password step) with the demo
    /// authenticator app's codes around now, in turn, as a user types the next one (a code already
    /// used is refused); the answer to the one accepted, None when none was.
    pub async fn totp_step_with_demo_app(&self, mfa_token: &str) -> Option<Value> {
        for code in crate::common::demo_app_codes() {
            let body = serde_json::json!({"mfa_token": mfa_token, "code": code});
            let (status, done) = self.anon().post("/api/v1/login/totp", &body).await;
            if status == 200 {
                return Some(done);
            }
        }
        None
    }

    /// Signs in through the mobile API; returns the bearer token.
    pub async fn api_login(&self, user: &str, pass: &str) -> String {
        api_token(&self.http, &self.base, user, pass).await
    }

    /// Browser sign-in through the form; returns the `Cookie` header value and the CSRF token.
    pub async fn login(&self, user: &str, pass: &str) -> (String, String) {
        let cookie = form_login(&self.http, &self.base, user, pass).await;
        let html =
            self.http.get(self.url("/dashboard")).header("Cookie", &cookie).send().await.unwrap();
        let csrf = crate::common::hidden_csrf(&html.text().await.unwrap()).expect("page csrf");
        (cookie, csrf)
    }

    /// `user` signed in through the browser's form and watching the live stream on Rocket's
    /// port: the `Cookie` header value, the page's CSRF token and the open stream.
    pub async fn watching(&self, user: &str, pass: &str) -> (String, String, Sse) {
        let (cookie, csrf) = self.login(user, pass).await;
        let stream = Sse::new(self.events(&cookie, None).await);
        (cookie, csrf, stream)
    }

    /// `/events` on Rocket's port or on the stream listener.
    pub fn events_url(&self, via: Via) -> String {
        match via {
            Via::Rocket => self.url("/events"),
            Via::Listener => format!("{}/events", self.stream_base),
        }
    }

    /// Opens `/events` on Rocket's port with a cookie (and optionally `Last-Event-ID`).
    pub async fn events(&self, cookie: &str, last_event_id: Option<&str>) -> reqwest::Response {
        self.events_via(Via::Rocket, cookie, last_event_id).await
    }

    /// Opens `/events` on the given server with a cookie (and optionally `Last-Event-ID`).
    pub async fn events_via(
        &self,
        via: Via,
        cookie: &str,
        last_event_id: Option<&str>,
    ) -> reqwest::Response {
        let mut req = self.http.get(self.events_url(via)).header("Cookie", cookie);
        if let Some(id) = last_event_id {
            req = req.header("Last-Event-ID", id);
        }
        req.send().await.unwrap()
    }

    /// Graceful shutdown (like SIGTERM); waits for the server to finish.
    pub async fn stop(self) -> Result<(), String> {
        self.shutdown.notify();
        tokio::time::timeout(Duration::from_secs(10), self.handle)
            .await
            .expect("shutdown within grace")
            .unwrap()
    }

    pub fn notify_shutdown(&self) {
        self.shutdown.clone().notify();
    }
}

/// A tweak for a heartbeat every second on the live stream: a test waiting for one (a closed
/// connection or an ended session is noticed at the next heartbeat) waits a second, not the
/// default.
pub fn fast_heartbeat(figment: Figment) -> Figment {
    figment.merge(("sse_heartbeat_secs", 1))
}

/// One sign-in through the login form of the app at `base` (GET for the CSRF cookie and token,
/// then POST with `extra` cookies next to the CSRF one); the POST's response.
pub async fn form_login_attempt(
    http: &reqwest::Client,
    base: &str,
    user: &str,
    pass: &str,
    extra: Option<&str>,
) -> reqwest::Response {
    let page = http.get(format!("{base}/login")).send().await.unwrap();
    let csrf_cookie =
        page.cookies().find(|c| c.name() == LoginForm::CSRF_COOKIE).map(|c| c.value().to_owned());
    let form = LoginForm::new(csrf_cookie, &page.text().await.unwrap());
    http.post(format!("{base}/login"))
        .header("Cookie", form.cookie(extra))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(form.body(user, pass))
        .send()
        .await
        .unwrap()
}

/// Signs in through the login form of the app at `base` (and `/login/verify` with a code from
/// the demo authenticator app when the user has one); returns the session's `Cookie` header value.
pub async fn form_login(http: &reqwest::Client, base: &str, user: &str, pass: &str) -> String {
    let page = http.get(format!("{base}/login")).send().await.unwrap();
    let csrf_cookie =
        page.cookies().find(|c| c.name() == LoginForm::CSRF_COOKIE).map(|c| c.value().to_owned());
    let form = LoginForm::new(csrf_cookie, &page.text().await.unwrap());
    let res = http
        .post(format!("{base}/login"))
        .header("Cookie", form.cookie(None))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(form.body(user, pass))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303, "form login of {user} failed");
    let session = |res: &reqwest::Response| {
        res.cookies().find(|c| c.name() == "redbank").map(|c| c.value().to_owned())
    };
    if res.headers().get("Location").is_some_and(|l| l == "/login/verify") {
        let pre_auth =
            res.cookies().find(|c| c.name() == "redbank_mfa").expect("pre-auth").value().to_owned();
        for code in crate::common::demo_app_codes() {
            let res = http
                .post(format!("{base}/login/verify"))
                .header("Cookie", form.cookie(Some(&format!("redbank_mfa={pre_auth}"))))
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body(format!("csrf={}&method=totp&code={code}", form.csrf_cookie))
                .send()
                .await
                .unwrap();
            if let Some(token) = session(&res) {
                return format!("redbank={token}");
            }
        }
        panic!("no code of the demo app was accepted");
    }
    format!("redbank={}", session(&res).expect("session cookie"))
}

/// `POST /api/v1/login` to the app at `base` with any JSON `body`; the status and the JSON body
/// (null when it is not JSON).
pub async fn post_api_login(
    http: &reqwest::Client,
    base: &str,
    body: &Value,
) -> (reqwest::StatusCode, Value) {
    let res = http.post(format!("{base}/api/v1/login")).json(body).send().await.unwrap();
    let status = res.status();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// Signs in through the mobile API of the app at `base` (with a code from the demo authenticator
/// app when the user has one); returns the bearer token.
pub async fn api_token(http: &reqwest::Client, base: &str, user: &str, pass: &str) -> String {
    let (status, body) = post_api_login(http, base, &credentials(user, pass)).await;
    assert_eq!(status, 200, "mobile login of {user}: {body}");
    if body["mfa_required"] == true {
        for code in crate::common::demo_app_codes() {
            let answer = serde_json::json!({"mfa_token": body["mfa_token"], "code": code});
            let res =
                http.post(format!("{base}/api/v1/login/totp")).json(&answer).send().await.unwrap();
            if res.status() == 200 {
                let done: Value = res.json().await.unwrap();
                return done["token"].as_str().expect("token").to_owned();
            }
        }
        panic!("no code of the demo app was accepted");
    }
    body["token"].as_str().expect("token").to_owned()
}

#[derive(Debug, Clone, PartialEq)]
pub struct SseEvent {
    pub id: Option<String>,
    pub event: String,
    pub data: String,
}

type Body = Pin<Box<dyn Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>;

/// Parses an event stream as a browser would (fields `event`, `data`, `id`; comments ignored).
pub struct Sse {
    body: Body,
    buf: String,
    pub retry: Option<u64>,
    pub comments: usize,
}

pub enum Next {
    Event(SseEvent),
    Timeout,
    Closed,
}

impl Sse {
    pub fn new(res: reqwest::Response) -> Self {
        assert_eq!(res.status(), 200);
        let ct = res.headers().get("content-type").unwrap().to_str().unwrap().to_owned();
        assert!(ct.starts_with("text/event-stream"), "{ct}");
        Sse { body: Box::pin(res.bytes_stream()), buf: String::new(), retry: None, comments: 0 }
    }

    /// The next event, or Timeout / Closed.
    pub async fn next(&mut self, within: Duration) -> Next {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(event) = self.take_event() {
                return Next::Event(event);
            }
            match tokio::time::timeout_at(deadline, self.body.next()).await {
                Err(_) => return Next::Timeout,
                Ok(None) | Ok(Some(Err(_))) => return Next::Closed,
                Ok(Some(Ok(chunk))) => self.buf.push_str(&String::from_utf8_lossy(&chunk)),
            }
        }
    }

    /// Next event named `name` (skipping others), panicking on timeout/close.
    pub async fn expect(&mut self, name: &str, within: Duration) -> SseEvent {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left).await {
                Next::Event(e) if e.event == name => return e,
                Next::Event(_) => continue,
                Next::Timeout => panic!("no {name} event within {within:?}"),
                Next::Closed => panic!("stream closed while waiting for {name}"),
            }
        }
    }

    /// Reads (and drops) events until the stream closes; panics with `what` when no event or close
    /// arrives within `within` of the previous one.
    pub async fn expect_closed(&mut self, within: Duration, what: &str) {
        loop {
            match self.next(within).await {
                Next::Closed => return,
                Next::Event(_) => continue,
                Next::Timeout => panic!("{what}"),
            }
        }
    }

    fn take_event(&mut self) -> Option<SseEvent> {
        loop {
            let end = self.buf.find("\n\n")?;
            let block: String = self.buf.drain(..end + 2).collect();
            let mut event = SseEvent { id: None, event: "message".into(), data: String::new() };
            let mut has_data = false;
            for line in block.lines() {
                if line.starts_with(':') {
                    self.comments += 1;
                    continue;
                }
                let (field, value) = line.split_once(':').unwrap_or((line, ""));
                let value = value.strip_prefix(' ').unwrap_or(value);
                match field {
                    "event" => event.event = value.to_owned(),
                    "id" => event.id = Some(value.to_owned()),
                    "retry" => self.retry = value.parse().ok(),
                    "data" => {
                        if has_data {
                            event.data.push('\n');
                        }
                        event.data.push_str(value);
                        has_data = true;
                    }
                    _ => {}
                }
            }
            if has_data {
                return Some(event);
            }
        }
    }
}

/// Writes `chunks` to the server at `addr` (host:port), pausing `pause` between them, and returns
/// everything it wrote back until it closed or `within` passed after the last chunk.
pub async fn raw_exchange(
    addr: &str,
    chunks: &[&[u8]],
    pause: Duration,
    within: Duration,
) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    for (i, chunk) in chunks.iter().enumerate() {
        if i > 0 {
            tokio::time::sleep(pause).await;
        }
        if tcp.write_all(chunk).await.is_err() {
            break;
        }
    }
    let mut out = Vec::new();
    let _ = tokio::time::timeout(within, tcp.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// The real `redbank` binary, started from the crate root against a Redis with a key prefix and
/// the other `ROCKET_*` settings given, on two free ports (app and stream listener); answering
/// `/healthz` once started, killed on drop.
pub struct Binary {
    child: Child,
    pub base: String,
    pub stream_base: String,
    pub http: reqwest::Client,
}

impl Binary {
    /// Starts it and waits until it is healthy; its output goes to `log` (else nowhere).
    pub async fn start(
        redis: &RedisServer,
        key_prefix: &str,
        env: &[(&str, &str)],
        log: Option<&std::path::Path>,
    ) -> Self {
        let (port, stream_port) = two_free_ports();
        let (out, err) = match log {
            Some(path) => {
                let file = std::fs::File::create(path).unwrap();
                (Stdio::from(file.try_clone().unwrap()), Stdio::from(file))
            }
            None => (Stdio::null(), Stdio::null()),
        };
        let child = Command::new(env!("CARGO_BIN_EXE_redbank"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("REDIS_URL", redis.url())
            .env("ROCKET_PORT", port.to_string())
            .env("ROCKET_STREAM_PORT", stream_port.to_string())
            .env("ROCKET_KEY_PREFIX", key_prefix)
            .envs(env.iter().copied())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap();
        let http =
            reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        let mut binary = Binary {
            child,
            base: format!("http://127.0.0.1:{port}"),
            stream_base: format!("http://127.0.0.1:{stream_port}"),
            http,
        };
        binary.wait_started(log).await;
        binary
    }

    /// Waits until it answers `/healthz` with 200. Its start compresses the static files, which
    /// takes a second alone but many more on two cores shared with the HA labs and the browser
    /// test (`scripts/test` runs them side by side), hence the generous bound. A binary that
    /// exits, or never answers, fails the test with its exit status and the end of its log.
    async fn wait_started(&mut self, log: Option<&std::path::Path>) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let healthz = self.http.get(format!("{}/healthz", self.base)).send().await;
            if healthz.is_ok_and(|r| r.status() == 200) {
                return;
            }
            let exited = self.child.try_wait().unwrap();
            if exited.is_some() || Instant::now() > deadline {
                let text = log.map(std::fs::read_to_string).and_then(Result::ok);
                let tail: Vec<&str> =
                    text.as_deref().unwrap_or("").lines().rev().take(30).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                panic!(
                    "{} did not come up ({}); its log ends:\n{}",
                    self.base,
                    exited.map_or("still running after 60 s".into(), |s| format!("exited: {s}")),
                    tail.join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGTERM, as a service manager stops it.
    pub fn terminate(&self) {
        let pid = self.child.id().to_string();
        let ok = Command::new("kill").arg("-TERM").arg(pid).status().unwrap();
        assert!(ok.success(), "kill -TERM");
    }

    /// Its exit status, once it has exited within `within`.
    pub async fn exit_status(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "still running after {within:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The TOTP secret `redbank admin totp` printed (its `Key:` line).
pub fn printed_secret(printed: &str) -> redbank::auth::factors::totp::TotpSecret {
    let key = printed.lines().find_map(|l| l.strip_prefix("Key: ")).expect("a Key: line");
    redbank::auth::factors::totp::TotpSecret::from_base32(key.trim()).expect("a base32 key")
}

/// Waits until the app at `base` answers `/healthz` with 200, for at most `within`.
pub async fn wait_healthy(http: &reqwest::Client, base: &str, within: Duration) {
    let deadline = Instant::now() + within;
    while http
        .get(format!("{base}/healthz"))
        .send()
        .await
        .map(|r| r.status() != 200)
        .unwrap_or(true)
    {
        assert!(Instant::now() < deadline, "{base} did not come up within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
