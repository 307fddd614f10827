//! One way to call a running test server, after crates.io's `RequestHelper`: who calls (a
//! bearer-token user, a browser with its cookie and CSRF token, or nobody) decides how a request
//! is authorized; every test reads the same answer (status, JSON body, headers).

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::IpAddr;
use std::time::Duration;

use redbank::audit::ClientInfo;
use redbank::auth::model::{Assurance, SessionKind};
use redbank::auth::store;
use reqwest::header::HeaderMap;
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::{Value, json};

use crate::common::RedisServer;
use crate::common::passkey::Device;
use crate::common::server::TestServer;

/// What came back: the status, the JSON body (null when there is none) and the headers.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub json: Value,
    pub headers: HeaderMap,
}

impl Answer {
    /// `(status, json)`, the shape most assertions compare.
    pub fn pair(self) -> (StatusCode, Value) {
        (self.status, self.json)
    }
}

/// A caller of the server: how it authorizes a request is all that differs.
pub trait RequestHelper {
    fn server(&self) -> &TestServer;

    /// Adds this caller's credential (and CSRF token) to a request.
    fn authorize(&self, req: RequestBuilder) -> RequestBuilder;

    /// A request to `path` as this caller, to add headers or a body to before [`Self::send`].
    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let server = self.server();
        self.authorize(server.http.request(method, server.url(path)))
    }

    async fn send(&self, req: RequestBuilder) -> Answer {
        let res = req.send().await.unwrap();
        let (status, headers) = (res.status(), res.headers().clone());
        Answer { status, headers, json: res.json().await.unwrap_or(Value::Null) }
    }

    /// A request without a body, with everything that came back (headers included).
    async fn call(&self, method: Method, path: &str) -> Answer {
        self.send(self.request(method, path)).await
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.send(self.request(Method::GET, path)).await.pair()
    }

    async fn post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        self.send(self.request(Method::POST, path).json(body)).await.pair()
    }

    /// A POST without a body (starting a ceremony, say).
    async fn post_empty(&self, path: &str) -> (StatusCode, Value) {
        self.send(self.request(Method::POST, path)).await.pair()
    }

    async fn put(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        self.send(self.request(Method::PUT, path).json(body)).await.pair()
    }

    async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.send(self.request(Method::DELETE, path)).await.pair()
    }
}

/// Nobody signed in.
pub struct Anon<'a>(pub &'a TestServer);

impl RequestHelper for Anon<'_> {
    fn server(&self) -> &TestServer {
        self.0
    }

    fn authorize(&self, req: RequestBuilder) -> RequestBuilder {
        req
    }
}

/// A mobile client: its bearer token on every request.
pub struct TokenUser<'a> {
    pub server: &'a TestServer,
    pub token: String,
}

impl RequestHelper for TokenUser<'_> {
    fn server(&self) -> &TestServer {
        self.server
    }

    fn authorize(&self, req: RequestBuilder) -> RequestBuilder {
        req.bearer_auth(&self.token)
    }
}

/// A browser: its session cookie, and its CSRF token as the header the pages' scripts send.
pub struct CookieUser<'a> {
    pub server: &'a TestServer,
    pub cookie: String,
    pub csrf: String,
}

impl RequestHelper for CookieUser<'_> {
    fn server(&self) -> &TestServer {
        self.server
    }

    fn authorize(&self, req: RequestBuilder) -> RequestBuilder {
        req.header("Cookie", &self.cookie)
            .header("X-CSRF-Token", &self.csrf)
            .header("Origin", &self.server.base)
    }
}

impl TestServer {
    /// Nobody signed in.
    pub fn anon(&self) -> Anon<'_> {
        Anon(self)
    }

    /// The caller holding bearer `token`.
    pub fn as_token(&self, token: &str) -> TokenUser<'_> {
        TokenUser { server: self, token: token.to_owned() }
    }

    /// `user` signed in through the mobile API.
    pub async fn token_user(&self, user: &str, password: &str) -> TokenUser<'_> {
        let token = self.api_login(user, password).await;
        TokenUser { server: self, token }
    }

    /// `user` signed in through the browser's form.
    pub async fn cookie_user(&self, user: &str, password: &str) -> CookieUser<'_> {
        let (cookie, csrf) = self.login(user, password).await;
        CookieUser { server: self, cookie, csrf }
    }
}

// ---- callers from a given address, and sessions made in the store ----------------------------

/// An HTTP client whose connections come from `ip` (any 127.x.y.z is a distinct client address).
pub fn client_from(ip: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .local_address(ip.parse::<IpAddr>().unwrap())
        .build()
        .unwrap()
}

/// `POST /api/v1/login` from `http`'s address; the status and the JSON body.
pub async fn api_login_from(
    http: &reqwest::Client,
    server: &TestServer,
    body: Value,
) -> (reqwest::StatusCode, Value) {
    crate::common::server::post_api_login(http, &server.base, &body).await
}

/// A session made directly in the store (no hashing), as `kind`; returns its token.
pub async fn session_token(
    server: &TestServer,
    redis: &RedisServer,
    user: &str,
    kind: SessionKind,
) -> String {
    let db =
        redbank::redis::Db::connect(&redis.url(), &server.prefix, Duration::from_secs(2)).unwrap();
    let config = redbank::Config { key_prefix: server.prefix.clone(), ..Default::default() };
    let user = redbank::auth::users::get_user(&db, user).await.unwrap().unwrap();
    let client = ClientInfo { ip: "127.0.0.1".into(), user_agent: "test".into() };
    store::create_session(&db, &config, &user, kind, &client, Assurance::password(0))
        .await
        .unwrap()
        .0
        .as_str()
        .to_owned()
}

/// The status of `GET /api/v1/me` with this cookie and/or bearer token.
pub async fn status_of_me(server: &TestServer, cookie: Option<&str>, bearer: Option<&str>) -> u16 {
    let mut req = server.http.get(server.url("/api/v1/me"));
    if let Some(cookie) = cookie {
        req = req.header("Cookie", cookie);
    }
    if let Some(token) = bearer {
        req = req.bearer_auth(token);
    }
    req.send().await.unwrap().status().as_u16()
}

// ---- enrolling a first passkey ---------------------------------------------------------------

/// Starts the enrolment of a first passkey (named `name`, or left to the server) for `user`, who
/// has no factor yet, so the server mails a code to `address`: the registration options and that
/// code.
pub async fn begin_first_passkey(
    user: &impl RequestHelper,
    name: Option<&str>,
    address: &str,
) -> (Value, String) {
    let mail = &user.server().mail;
    let seen = mail.to(address).len();
    let body = name.map_or_else(|| json!({}), |name| json!({ "name": name }));
    let (status, options) = user.post("/api/v1/passkeys/options", &body).await;
    assert_eq!(status, 200, "{options}");
    (options, mail.code_to(address, seen).await)
}

/// Enrols a new credential of `device` as `user`'s first passkey, confirmed with the code mailed
/// to `address`; the server's answer (a 201).
pub async fn enrol_first_passkey(
    user: &impl RequestHelper,
    device: &mut Device,
    name: Option<&str>,
    address: &str,
) -> Value {
    let (options, code) = begin_first_passkey(user, name, address).await;
    let mut answer = device.register(&options);
    answer["email_code"] = json!(code);
    let (status, added) = user.post("/api/v1/passkeys", &answer).await;
    assert_eq!(status, 201, "{added}");
    added
}
