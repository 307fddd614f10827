//! Test harness: a real redis-server (8.x + RedisJSON + RediSearch) on a free loopback port, and the
//! real Rocket app built against it with an isolated key prefix per test, so tests run in parallel
//! without a global lock and without mocks.
//!
//! The binaries come from `$REDBANK_REDIS_DIR` or `scripts/redis path` (which downloads them once).
//! One shared server per test binary serves the ordinary tests; tests that stop, freeze or restart
//! Redis get a dedicated one. Every server is killed on drop, and a tiny watchdog kills the shared one
//! when the test process exits (statics are never dropped).

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod mail;
pub mod monitor;
pub mod passkey;
pub mod request;
pub mod server;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use redbank::bank::model::Transaction;
use redbank::money::Cents;
use redbank::redis::Keys;
use rocket::figment::Figment;
use rocket::http::{ContentType, Cookie, Header, Method, Status};
use rocket::local::asynchronous::{Client, LocalResponse};
use serde_json::{Value, json};

/// Folder with redis-server, rejson.so and redisearch.so.
pub fn redis_dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        if let Ok(dir) = std::env::var("REDBANK_REDIS_DIR") {
            return PathBuf::from(dir);
        }
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/redis");
        let out =
            Command::new("bash").arg(script).arg("path").output().expect("run scripts/redis path");
        assert!(
            out.status.success(),
            "scripts/redis path failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
    })
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Two different free ports (app and stream listener): two free ports in a row can be the same
/// one, since the first is released at once.
pub fn two_free_ports() -> (u16, u16) {
    let first = free_port();
    (first, std::iter::repeat_with(free_port).find(|p| *p != first).unwrap_or(0))
}

/// A redis-server child process on 127.0.0.1; killed on drop.
pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    modules: bool,
    /// AOF on, so a stop + restart keeps the data (for outage tests).
    persistent: bool,
    dir: PathBuf,
}

impl RedisServer {
    /// Redis with RedisJSON and RediSearch, no persistence.
    pub fn start() -> Self {
        Self::spawn(true)
    }

    /// Redis without the modules, to test the startup check.
    pub fn start_without_modules() -> Self {
        Self::spawn(false)
    }

    /// Redis with the modules and AOF persistence: [`RedisServer::stop`] + [`RedisServer::restart`]
    /// behave like a real server restart (data kept).
    pub fn start_persistent() -> Self {
        let mut server = Self::spawn_with(true, true);
        server.launch();
        server
    }

    fn spawn(modules: bool) -> Self {
        let mut server = Self::spawn_with(modules, false);
        server.launch();
        server
    }

    fn spawn_with(modules: bool, persistent: bool) -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "redbank-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        RedisServer { child: None, port: free_port(), modules, persistent, dir }
    }

    fn launch(&mut self) {
        let bin = redis_dir();
        let mut cmd = Command::new(bin.join("redis-server"));
        cmd.args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--save", "", "--protected-mode", "yes"])
            .args(["--appendonly", if self.persistent { "yes" } else { "no" }])
            .args(["--appendfsync", "always"])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if self.modules {
            cmd.arg("--loadmodule").arg(bin.join("rejson.so"));
            cmd.arg("--loadmodule").arg(bin.join("redisearch.so"));
        }
        let child = cmd.spawn().expect("spawn redis-server");
        // Kill the server if this test process dies without dropping it (shared server, panics).
        let _ = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "while kill -0 {} 2>/dev/null; do sleep 0.5; done; kill -9 {} 2>/dev/null",
                std::process::id(),
                child.id()
            ))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(15);
        while !self.pings() {
            assert!(Instant::now() < deadline, "redis-server on port {} did not start", self.port);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn pings(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else { return false };
        s.set_read_timeout(Some(Duration::from_millis(500))).ok();
        let mut buf = [0u8; 16];
        s.write_all(b"PING\r\n").is_ok()
            && s.read(&mut buf).is_ok_and(|n| buf[..n].starts_with(b"+PONG"))
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("server running").id()
    }

    /// Stops the server: SIGTERM (a clean shutdown, AOF flushed) for a persistent server, SIGKILL
    /// (a crash) otherwise.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if self.persistent {
                signal("TERM", child.id());
            } else {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    /// SIGSTOP: the port stays open but nothing answers — the nastiest failure for a client.
    pub fn freeze(&self) {
        signal("STOP", self.pid());
    }

    pub fn thaw(&self) {
        signal("CONT", self.pid());
    }

    /// Whether `key` exists (what the app kept or removed).
    pub async fn exists(&self, key: &str) -> bool {
        let mut conn = self.conn().await;
        redis::cmd("EXISTS").arg(key).query_async(&mut conn).await.unwrap()
    }

    /// A direct client connection, for assertions on what the app stored.
    pub async fn conn(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url()).unwrap().get_multiplexed_async_connection().await.unwrap()
    }
}

fn signal(sig: &str, pid: u32) {
    let ok = Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status().unwrap();
    assert!(ok.success(), "kill -{sig} {pid}");
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(child) = &self.child {
            signal("CONT", child.id());
        }
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The key tests seal TOTP secrets with (`totp_keys`).
pub const TEST_TOTP_KEY: &str = "test:dGVzdC1rZXktdGVzdC1rZXktdGVzdC1rZXktdGVzdCE=";

/// The admin password tests configure (the real default is random).
pub const ADMIN_PASSWORD: &str = "test-admin-password";

/// The Redis server shared by every test of this test binary.
pub fn shared_redis() -> &'static RedisServer {
    static SERVER: OnceLock<RedisServer> = OnceLock::new();
    SERVER.get_or_init(RedisServer::start)
}

/// A unique key prefix so tests sharing a server never see each other's keys.
pub fn unique_prefix() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!("t{}x{}:", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// The app's figment pointed at `redis`, with test defaults (no generator, quiet logs).
pub fn test_figment(redis: &RedisServer, prefix: &str) -> Figment {
    redbank::figment()
        .merge(("databases.redis.url", redis.url()))
        .merge(("databases.redis.connect_timeout", 1))
        .merge(("key_prefix", prefix))
        .merge(("generator_interval_ms", 0))
        // Many sign-ins run at once here, beside other test programs: the production bound on
        // the wait for a password hash (3 s, then 503) would make a busy machine fail them. The
        // tests of that bound set their own.
        .merge(("login_queue_max_ms", 30_000))
        .merge(("log_level", "off"))
        .merge(("admin_password", ADMIN_PASSWORD))
        // TOTP secrets sealed with a test key (not the demo's).
        .merge(("totp_keys", [TEST_TOTP_KEY]))
        // A test that turns SMTP off writes its `.eml` files here, never into the checkout.
        .merge(("mail_dir", std::env::temp_dir().join(format!("redbank-mail-{prefix}"))))
}

/// The real app on a local (in-process) client.
pub struct TestApp {
    pub client: Client,
    pub prefix: String,
    /// The SMTP server the app sends its mail through.
    pub mail: mail::Mailbox,
}

impl TestApp {
    /// The app against the shared Redis with a fresh key prefix.
    pub async fn new() -> Self {
        Self::with(shared_redis(), |f| f).await
    }

    /// The app against `redis`, with extra configuration applied to the test figment.
    pub async fn with(redis: &RedisServer, tweak: impl FnOnce(Figment) -> Figment) -> Self {
        Self::with_prefix(redis, &unique_prefix(), tweak).await
    }

    pub fn db(&self) -> &redbank::redis::Db {
        self.client.rocket().state::<redbank::redis::Db>().expect("Db state")
    }

    pub fn config(&self) -> &redbank::Config {
        self.client.rocket().state::<redbank::Config>().expect("Config state")
    }

    /// Name of the session cookie under this app's config.
    pub fn cookie_name(&self) -> &'static str {
        redbank::auth::guard::cookie_name(self.config())
    }

    /// Signs in through the real login form (GET for the CSRF cookie + token, then POST), and
    /// through `/login/verify` with a code from the demo authenticator app when the user has one.
    pub async fn login_browser(&self, username: &str, password: &str) -> Browser {
        let res = self.try_login_browser(username, password).await;
        assert_eq!(res.status, Status::SeeOther, "login of {username} failed: {}", res.body);
        let session = match res.location.as_deref() {
            Some("/login/verify") => self.verify_with_demo_app(&res).await,
            _ => res.session.expect("session cookie set"),
        };
        let page =
            self.client.get("/dashboard").header(cookie_header(self.cookie_name(), &session));
        let html = page.dispatch().await.into_string().await.unwrap_or_default();
        Browser {
            session,
            csrf: hidden_csrf(&html).expect("csrf token on the dashboard"),
            name: self.cookie_name(),
        }
    }

    /// The second step of a browser sign-in (`res` answered the password with `/login/verify`):
    /// the demo app's codes around now, until one is accepted (one already used is refused);
    /// returns the session token.
    pub async fn verify_with_demo_app(&self, res: &LoginAttempt) -> String {
        let pre_auth = set_cookie_value(&res.set_cookie, "redbank_mfa").expect("pre-auth cookie");
        for code in demo_app_codes() {
            let res = self
                .client
                .post("/login/verify")
                .header(ContentType::Form)
                .cookie(Cookie::new(LoginForm::CSRF_COOKIE, res.csrf_cookie.clone()))
                .header(cookie_header("redbank_mfa", &pre_auth))
                .body(format!("csrf={}&method=totp&code={code}", res.csrf_cookie))
                .dispatch()
                .await;
            if res.status() == Status::SeeOther {
                return res.cookies().get(self.cookie_name()).expect("session").value().to_owned();
            }
        }
        panic!("no code of the demo app was accepted");
    }

    /// One attempt through the login form; returns what the browser would see.
    pub async fn try_login_browser(&self, username: &str, password: &str) -> LoginAttempt {
        self.login_with(username, password, None).await
    }

    /// A login form POST carrying an existing session cookie (to check fixation handling).
    pub async fn login_with(
        &self,
        username: &str,
        password: &str,
        old: Option<&str>,
    ) -> LoginAttempt {
        let page = self.client.get("/login").dispatch().await;
        let csrf_cookie = page.cookies().get(LoginForm::CSRF_COOKIE).map(|c| c.value().to_owned());
        let form = LoginForm::new(csrf_cookie, &page.into_string().await.unwrap_or_default());
        // The local client puts `.cookie()` in Rocket's jar (what the CSRF check reads) but never
        // in the raw header (what the session guard reads): one of each, as in the app.
        let csrf = Cookie::new(LoginForm::CSRF_COOKIE, form.csrf_cookie.clone());
        let mut req = self
            .client
            .post("/login")
            .header(ContentType::Form)
            .cookie(csrf)
            .body(form.body(username, password));
        if let Some(old) = old {
            req = req.header(cookie_header(self.cookie_name(), old));
        }
        let res = req.dispatch().await;
        let status = res.status();
        let location = res.headers().get_one("Location").map(str::to_owned);
        let retry_after = res.headers().get_one("Retry-After").map(str::to_owned);
        let set_cookie: Vec<String> = res.headers().get("Set-Cookie").map(str::to_owned).collect();
        let session = res.cookies().get(self.cookie_name()).map(|c| c.value().to_owned());
        let body = res.into_string().await.unwrap_or_default();
        let csrf_cookie = form.csrf_cookie;
        LoginAttempt { status, location, retry_after, session, set_cookie, body, csrf_cookie }
    }

    /// A same-origin form POST from a signed-in browser carrying its CSRF token.
    pub async fn post_form(
        &self,
        path: impl std::fmt::Display,
        browser: &Browser,
    ) -> LocalResponse<'_> {
        self.client
            .post(path.to_string())
            .header(browser.cookie())
            .header(ContentType::Form)
            .body(format!("csrf={}", browser.csrf))
            .dispatch()
            .await
    }

    /// A request as the pages' scripts send it from a signed-in `browser`: its session cookie and
    /// its CSRF token in the `X-CSRF-Token` header.
    pub async fn script_request(
        &self,
        method: Method,
        path: &str,
        browser: &Browser,
    ) -> LocalResponse<'_> {
        self.client
            .req(method, path.to_owned())
            .header(browser.cookie())
            .header(Header::new("X-CSRF-Token", browser.csrf.clone()))
            .dispatch()
            .await
    }

    /// `POST /api/v1/login` with any JSON `body` (tests of the login itself send odd ones), from
    /// the client address `ip` when given (the socket peer Rocket sees; IPv4 or IPv6).
    pub async fn post_api_login(&self, body: &Value, ip: Option<&str>) -> LocalResponse<'_> {
        let mut req = self.client.post("/api/v1/login").header(ContentType::JSON);
        if let Some(ip) = ip {
            let ip: std::net::IpAddr = ip.parse().expect("an IP address");
            req = req.remote(std::net::SocketAddr::new(ip, 40000));
        }
        req.body(body.to_string()).dispatch().await
    }

    /// One mobile sign-in attempt (from `ip` when given); its status.
    pub async fn try_api_login(&self, username: &str, password: &str, ip: Option<&str>) -> Status {
        self.post_api_login(&credentials(username, password), ip).await.status()
    }

    /// Signs in through the mobile API (with a code from the demo authenticator app when the
    /// user has one); returns the bearer token.
    pub async fn api_login(&self, username: &str, password: &str) -> String {
        let res = self.post_api_login(&credentials(username, password), None).await;
        assert_eq!(res.status(), Status::Ok, "mobile login of {username}");
        let body: Value = serde_json::from_str(&res.into_string().await.unwrap()).unwrap();
        if body["mfa_required"] == true {
            let mfa_token = body["mfa_token"].as_str().unwrap();
            for code in demo_app_codes() {
                let res = self
                    .post_json(
                        "/api/v1/login/totp",
                        None,
                        &json!({"mfa_token": mfa_token, "code": code}),
                    )
                    .await;
                if res.status() == Status::Ok {
                    let body: Value =
                        serde_json::from_str(&res.into_string().await.unwrap()).unwrap();
                    return body["token"].as_str().expect("token").to_owned();
                }
            }
            panic!("no code of the demo app was accepted");
        }
        body["token"].as_str().expect("token").to_owned()
    }

    /// A JSON POST, with a bearer token when given.
    pub async fn post_json(
        &self,
        path: &str,
        token: Option<&str>,
        body: &Value,
    ) -> LocalResponse<'_> {
        let mut req = self.client.post(path.to_owned()).header(ContentType::JSON);
        if let Some(token) = token {
            req = req.header(bearer(token));
        }
        req.body(body.to_string()).dispatch().await
    }

    /// GET `uri` without a session, which must answer `status` with `content_type`; the response.
    pub async fn get_expecting(
        &self,
        uri: &str,
        status: Status,
        content_type: ContentType,
    ) -> LocalResponse<'_> {
        let res = self.client.get(uri.to_owned()).dispatch().await;
        assert_eq!(res.status(), status, "{uri}");
        assert_eq!(res.content_type(), Some(content_type), "{uri}");
        res
    }

    /// GET `uri` as the signed-in `browser` (its session cookie); the status and the body.
    pub async fn page(&self, uri: &str, browser: &Browser) -> (Status, String) {
        let res = self.client.get(uri.to_owned()).header(browser.cookie()).dispatch().await;
        let status = res.status();
        (status, res.into_string().await.unwrap_or_default())
    }

    /// The names of this app's keys.
    pub fn keys(&self) -> Keys {
        Keys::new(&self.prefix)
    }

    /// Every key under this test's prefix that exists in `redis`.
    pub async fn stored_keys(&self, redis: &RedisServer) -> Vec<String> {
        let mut conn = redis.conn().await;
        let mut keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}*", self.prefix))
            .query_async(&mut conn)
            .await
            .unwrap();
        keys.sort();
        keys
    }
}

/// A signed-in browser: its session cookie value and the page's CSRF token.
#[derive(Debug, Clone)]
pub struct Browser {
    pub session: String,
    pub csrf: String,
    pub name: &'static str,
}

impl Browser {
    /// The session cookie as a raw `Cookie` header (the app reads the raw header, as a real
    /// request carries it; the local client's cookie jar never becomes one).
    pub fn cookie(&self) -> Header<'static> {
        cookie_header(self.name, &self.session)
    }

    /// Base64url SHA-256 of the token: the session's key suffix.
    pub fn id(&self) -> String {
        session_id(&self.session)
    }
}

/// The session id (base64url SHA-256) of a token, bare or as a `name=token` cookie pair: what its key
/// is named after.
pub fn session_id(token: &str) -> String {
    let token = token.rsplit_once('=').map_or(token, |(_, value)| value);
    redbank::auth::model::SessionToken::parse(token).expect("token").id().as_str().to_owned()
}

/// The JSON body of a plain mobile sign-in.
pub fn credentials(username: &str, password: &str) -> Value {
    json!({"username": username, "password": password})
}

/// The login form as a browser fills it in, for the in-process client and for reqwest alike: the
/// double-submit CSRF cookie and the hidden token from `GET /login`, then the POST's `Cookie`
/// header and body.
pub struct LoginForm {
    pub csrf_cookie: String,
    token: String,
}

impl LoginForm {
    pub const CSRF_COOKIE: &str = "redbank_csrf";

    /// From the CSRF cookie `GET /login` set and the page it returned.
    pub fn new(csrf_cookie: Option<String>, page: &str) -> Self {
        let csrf_cookie = csrf_cookie.expect("the login page sets a CSRF cookie");
        LoginForm { csrf_cookie, token: hidden_csrf(page).expect("a CSRF token in the login form") }
    }

    /// The POST's `Cookie` header: the CSRF cookie, then `extra` (cookies the browser also holds).
    pub fn cookie(&self, extra: Option<&str>) -> String {
        let csrf = format!("{}={}", Self::CSRF_COOKIE, self.csrf_cookie);
        extra.map_or(csrf.clone(), |extra| format!("{csrf}; {extra}"))
    }

    pub fn body(&self, username: &str, password: &str) -> String {
        format!("username={}&password={}&csrf={}", enc(username), enc(password), self.token)
    }
}

/// The codes alice's demo authenticator app shows for the time steps around now, oldest first:
/// the app accepts each step once, so a caller tries them in turn, as a user types the next code.
pub fn demo_app_codes() -> Vec<String> {
    use redbank::auth::factors::totp::{TotpSecret, step_of};
    let secret = TotpSecret::from_base32(redbank::auth::demo::ALICE_TOTP_SECRET).unwrap();
    let now = step_of(redbank::clock::now_ms() / 1000);
    (now - 1..=now + 1).map(|step| secret.code_at(step)).collect()
}

/// The value a response's `Set-Cookie` headers give cookie `name`.
pub fn set_cookie_value(set_cookie: &[String], name: &str) -> Option<String> {
    set_cookie.iter().find_map(|c| {
        let value = c.strip_prefix(name)?.strip_prefix('=')?;
        Some(value.split(';').next()?.to_owned())
    })
}

#[derive(Debug)]
pub struct LoginAttempt {
    pub status: Status,
    pub location: Option<String>,
    pub retry_after: Option<String>,
    pub session: Option<String>,
    pub set_cookie: Vec<String>,
    pub body: String,
    /// The login form's double-submit CSRF cookie (the second step posts it again).
    pub csrf_cookie: String,
}

/// The value of the first hidden `csrf` input in a page.
pub fn hidden_csrf(html: &str) -> Option<String> {
    let at = html.find("name=\"csrf\" value=\"")? + "name=\"csrf\" value=\"".len();
    Some(html[at..].split('"').next()?.to_owned())
}

/// Minimal x-www-form-urlencoded encoding for test input.
pub fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A raw `Cookie: name=value` header.
pub fn cookie_header(name: &str, value: &str) -> Header<'static> {
    Header::new("Cookie", format!("{name}={value}"))
}

pub fn bearer(token: &str) -> Header<'static> {
    Header::new("Authorization", format!("Bearer {token}"))
}

impl TestApp {
    /// The app against `redis` under an exact key `prefix` (a second instance sharing another app's
    /// data, or a prefix prepared before the start), with extra configuration.
    pub async fn with_prefix(
        redis: &RedisServer,
        prefix: &str,
        tweak: impl FnOnce(Figment) -> Figment,
    ) -> Self {
        let mail = mail::Mailbox::start();
        let figment = tweak(test_figment(redis, prefix).merge(("smtp_url", mail.url())));
        let client = Client::untracked(redbank::build(figment)).await.expect("valid rocket");
        TestApp { client, prefix: prefix.to_owned(), mail }
    }
}

/// A transaction's text: its description, vendor and kind.
pub type Text<'a> = (&'a str, &'a str, &'a str);

/// A transaction with known text for `store::record` (`balance` is the current balance; the id is
/// derived from `date`, so dates must be unique per account).
pub fn transaction(
    number: &str,
    text: Text<'_>,
    cents: i64,
    date: i64,
    balance: Cents,
) -> Transaction {
    let (description, vendor, kind) = text;
    Transaction {
        id: date as u64 * 1000 + 7,
        account_id: number.into(),
        from_account: "0000004242".into(),
        from_account_name: vendor.into(),
        to_account: number.into(),
        to_account_name: "Test Holder".into(),
        amount: Cents(cents),
        description: description.into(),
        transaction_date: redbank::clock::rfc3339_ms(date),
        date,
        transaction_type: kind.into(),
        balance_after: Cents(balance.0 + cents),
    }
}

/// Sets `path` of the JSON document at `key` (a test reaching into Redis: to age a session, say,
/// or to store a document the app would never write).
pub async fn json_set(
    conn: &mut redis::aio::MultiplexedConnection,
    key: &str,
    path: &str,
    value: impl redis::ToRedisArgs + Send + Sync,
) {
    let _: () =
        redis::cmd("JSON.SET").arg(key).arg(path).arg(value).query_async(conn).await.unwrap();
}
