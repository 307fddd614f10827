//! End to end in a real browser: headless Debian Chromium driven over WebDriver (chromedriver)
//! against the real app on a loopback port with its own Redis and a fast generator.
//!
//! Needs `chromium` and `chromedriver` (scripts/test installs them). Screenshots of the login,
//! dashboard and transactions pages go to target/screenshots/. Every page it visits is checked
//! with axe-core (WCAG 2.1 A/AA): a serious or critical violation fails the test — banks in the EU
//! must meet EN 301 549 (the European Accessibility Act).

#![allow(clippy::unwrap_used)]

#[path = "all/common/mod.rs"]
mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::server::TestServer;
use fantoccini::{Client, ClientBuilder, Locator};
use redis::AsyncCommands;
use serde_json::{Value, json};

const BOB: &str = "1580783161";
/// The signed-in pages the phone and dark-theme steps visit.
const SIGNED_IN_PAGES: [&str; 5] =
    ["/dashboard", "/transactions", "/transfer", "/sessions", "/security"];
/// The browser's time zone (Pacific: PST or PDT, depending on the date).
const TIME_ZONE: &str = "America/Los_Angeles";
const ALICE: &str = "2734819056";

/// chromedriver on a free port; killed on drop.
struct Driver {
    child: Child,
    port: u16,
    profile: std::path::PathBuf,
}

impl Driver {
    fn start() -> Driver {
        let binary = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
        let port = common::free_port();
        // Chromium takes its time zone from TZ: one that is not UTC, so the pages' local times
        // are seen to be local.
        let child = Command::new(&binary)
            .env("TZ", TIME_ZONE)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {binary} ({e}): run scripts/test, which installs chromium + chromium-driver"));
        let profile =
            std::env::temp_dir().join(format!("redbank-chrome-{}-{port}", std::process::id()));
        Driver { child, port, profile }
    }

    async fn connect(&self) -> Client {
        let chrome = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
        let caps = json!({
            "browserName": "chrome",
            "goog:loggingPrefs": { "browser": "ALL" },
            "goog:chromeOptions": {
                "binary": chrome,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
                    "--disable-dev-shm-usage", "--window-size=1280,1000",
                    format!("--user-data-dir={}", self.profile.display()),
                ],
            },
        });
        let caps = caps.as_object().unwrap().clone();
        let url = format!("http://127.0.0.1:{}", self.port);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let builder =
                ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                    .capabilities(caps.clone())
                    .connect(&url)
                    .await;
            match builder {
                Ok(client) => return client,
                Err(e) if Instant::now() > deadline => panic!("no WebDriver session: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // chromedriver's browser outlives a killed driver (e.g. after a failed assertion): end it
        // by its unique profile folder.
        let _ = Command::new("pkill").arg("-f").arg(&self.profile).status();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// A request to one of chromedriver's own endpoints under the session: a POST (`se/log`: the
/// browser console, with `goog:loggingPrefs`; `goog/cdp/execute`: a Chrome DevTools command;
/// `webauthn/authenticator`: a virtual authenticator), or a DELETE (WebDriver's "Remove All
/// Credentials").
#[derive(Debug)]
struct Chromedriver {
    method: http::Method,
    path: String,
    body: Option<Value>,
}

impl Chromedriver {
    fn post(path: &str, body: Value) -> Self {
        Chromedriver { method: http::Method::POST, path: path.to_owned(), body: Some(body) }
    }

    fn delete(path: String) -> Self {
        Chromedriver { method: http::Method::DELETE, path, body: None }
    }
}

impl fantoccini::wd::WebDriverCompatibleCommand for Chromedriver {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/{}", session.unwrap_or_default(), self.path))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (self.method.clone(), self.body.as_ref().map(Value::to_string))
    }
}

async fn console(client: &Client) -> Vec<String> {
    let log = client
        .issue_cmd(Chromedriver::post("se/log", json!({"type": "browser"})))
        .await
        .unwrap_or(Value::Null);
    log.as_array()
        .map(|entries| {
            entries.iter().filter_map(|e| e["message"].as_str().map(str::to_owned)).collect()
        })
        .unwrap_or_default()
}

async fn text(client: &Client, css: &str) -> String {
    client.find(Locator::Css(css)).await.unwrap().text().await.unwrap()
}

async fn js(client: &Client, script: &str) -> Value {
    client.execute(script, vec![]).await.unwrap()
}

/// Polls `script` (a JS expression) until it is truthy.
async fn wait_for(client: &Client, script: &str, within: Duration) {
    let deadline = Instant::now() + within;
    while !js(client, &format!("return !!({script});")).await.as_bool().unwrap_or(false) {
        assert!(Instant::now() < deadline, "timed out waiting for: {script}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits (up to `within`) until the first element matching `css` has `text` in its text.
async fn wait_for_text(client: &Client, css: &str, text: &str, within: Duration) {
    let script =
        format!("document.querySelector({}).textContent.includes({})", json!(css), json!(text));
    wait_for(client, &script, within).await;
}

/// Waits (up to `within`) until the element matching `css` is shown (no longer `hidden`).
async fn wait_for_shown(client: &Client, css: &str, within: Duration) {
    wait_for(client, &format!("!document.querySelector({}).hidden", json!(css)), within).await;
}

/// Waits (up to `within`) until exactly `n` elements match `css`.
async fn wait_for_count(client: &Client, css: &str, n: usize, within: Duration) {
    wait_for(client, &format!("document.querySelectorAll({}).length === {n}", json!(css)), within)
        .await;
}

/// axe-core, vendored for this test only by `scripts/vendor-js` (never served to users).
const AXE: &str = include_str!("vendor/axe.min.js");

/// axe-core's serious and critical WCAG 2.1 A/AA violations on the current page: the rule and the
/// first elements it found.
async fn violations(client: &Client) -> Vec<Value> {
    js(client, &format!("{AXE}\nreturn null;")).await;
    let found = client
        .execute_async(
            // Settled, as a reader sees it: a live row's slide-in (from transparent) ends first.
            r#"const done = arguments[arguments.length - 1];
            document.getAnimations().forEach(a => a.finish());
            axe.run(document, { runOnly: { type: 'tag',
                    values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] } })
              .then(r => done(r.violations
                .filter(v => v.impact === 'serious' || v.impact === 'critical')
                .map(v => ({ rule: v.id, impact: v.impact, help: v.help,
                             elements: v.nodes.slice(0, 3).map(n => n.html) }))))
              .catch(e => done([{ rule: 'axe failed to run', help: String(e) }]));"#,
            vec![],
        )
        .await
        .unwrap();
    found.as_array().cloned().unwrap_or_default()
}

/// axe finds nothing serious on the page as it is, and in the other colour scheme; and on a
/// phone (360×740, the page kept as it is, the window put back after) it fits, its targets are
/// large enough, and axe agrees in both schemes.
async fn assert_accessible(client: &Client, page: &str) {
    assert_no_violations(client, page).await;
    let (width, height) = client.get_window_size().await.unwrap();
    if width <= 430 {
        assert_fits(client, page).await;
        assert_tap_targets(client, page).await;
        return;
    }
    client.set_window_size(360, 740).await.unwrap();
    assert_fits(client, page).await;
    assert_tap_targets(client, page).await;
    assert_no_violations(client, &format!("{page} on a phone")).await;
    let restore = (u32::try_from(width).unwrap(), u32::try_from(height).unwrap());
    client.set_window_size(restore.0, restore.1).await.unwrap();
}

/// axe on the page in the scheme it is shown in, then in the other one (the page's own scheme is
/// put back after).
async fn assert_no_violations(client: &Client, page: &str) {
    let found = violations(client).await;
    assert!(found.is_empty(), "{page}: accessibility violations: {:#}", Value::Array(found));
    let dark = js(client, "return matchMedia('(prefers-color-scheme: dark)').matches;").await;
    let (other, back) = if dark == json!(true) { ("light", "dark") } else { ("dark", "") };
    set_scheme(client, other).await;
    let found = violations(client).await;
    set_scheme(client, back).await;
    assert!(
        found.is_empty(),
        "{page} ({other}): accessibility violations: {:#}",
        Value::Array(found)
    );
}

/// On a phone: buttons and navigation links at least 44×44 CSS px, every other control at least
/// WCAG 2.5.8's 24×24 (a box to tick counts its label, which is the target a finger hits).
async fn assert_tap_targets(client: &Client, page: &str) {
    let small = js(
        client,
        "return [...document.querySelectorAll('button, nav a, a.button, input:not([type=hidden]), \
               select, summary, textarea')]
            .map(e => {
              const box = e.matches('input[type=checkbox], input[type=radio]') && e.closest('label')
                ? e.closest('label') : e;
              const r = box.getBoundingClientRect();
              const big = e.matches('button, nav a, a.button, input[type=submit]');
              return [e.tagName + (e.id ? '#' + e.id : '') + '.' + e.className,
                      Math.round(r.width), Math.round(r.height), big];
            })
            .filter(([_, w, h]) => w > 0 && h > 0)
            .filter(([_, w, h, big]) => big ? (w < 44 || h < 44) : (w < 24 || h < 24));",
    )
    .await;
    assert_eq!(small, json!([]), "{page}: tap targets too small on a phone [name, w, h, button]");
}

/// Asserts the page does not scroll sideways, naming what sticks out when it does (after up to
/// 3 s: charts follow a new window size a few frames later).
async fn assert_fits(client: &Client, path: &str) {
    let deadline = Instant::now() + Duration::from_secs(3);
    let fitting = "return document.documentElement.scrollWidth <= window.innerWidth;";
    while !js(client, fitting).await.as_bool().unwrap_or(false) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let fits =
        js(client, "return [document.documentElement.scrollWidth, window.innerWidth];").await;
    let (scroll, width) = (fits[0].as_u64().unwrap(), fits[1].as_u64().unwrap());
    if scroll > width {
        let wide = js(client, "return [...document.querySelectorAll('body *')]
            .filter(e => e.getBoundingClientRect().right > window.innerWidth + 0.5)
            .slice(-5).map(e => e.tagName + '.' + e.className + ' ' + e.getBoundingClientRect().right
                + ': ' + (e.textContent || '').trim().slice(0, 60));").await;
        panic!("{path} scrolls sideways at {width} px: {scroll} px wide; widest: {wide}");
    }
}

/// Emulates `prefers-color-scheme: value` (`""`: the machine's own).
async fn set_scheme(client: &Client, value: &str) {
    let features = json!([{"name": "prefers-color-scheme", "value": value}]);
    let media = json!({"cmd": "Emulation.setEmulatedMedia", "params": {"features": features}});
    client.issue_cmd(Chromedriver::post("goog/cdp/execute", media)).await.unwrap();
}

async fn screenshot(client: &Client, name: &str) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{name}.png")), client.screenshot().await.unwrap()).unwrap();
}

/// Presses Tab until the focused element matches `selector` (at most 30 times), and checks that
/// keyboard focus is visible on it.
async fn tab_to(client: &Client, selector: &str) {
    let tab = String::from(char::from(fantoccini::key::Key::Tab));
    for _ in 0..30 {
        let matches = format!("return document.activeElement.matches({});", json!(selector));
        if js(client, &matches).await.as_bool().unwrap_or(false) {
            let visible = js(
                client,
                "const s = getComputedStyle(document.activeElement); \
                 return s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) >= 2;",
            );
            assert_eq!(visible.await, true, "no visible focus on {selector}");
            return;
        }
        client.active_element().await.unwrap().send_keys(&tab).await.unwrap();
    }
    panic!("Tab never reached {selector}");
}

/// Types into the focused element; `enter` then presses Enter.
async fn type_keys(client: &Client, text: &str, enter: bool) {
    let mut keys = text.to_owned();
    if enter {
        keys.push(char::from(fantoccini::key::Key::Enter));
    }
    client.active_element().await.unwrap().send_keys(&keys).await.unwrap();
}

/// A keyboard user's step: Tab to `selector`, type `keys` there and press Enter, then wait (up to
/// 5 s) until `until` (a JS expression) is truthy.
async fn tab_and_enter(client: &Client, selector: &str, keys: &str, until: &str) {
    tab_to(client, selector).await;
    type_keys(client, keys, true).await;
    wait_for(client, until, Duration::from_secs(5)).await;
}

async fn submit_login(client: &Client, user: &str, pass: &str) {
    client.find(Locator::Css("input[name=username]")).await.unwrap().clear().await.unwrap();
    client.find(Locator::Css("input[name=username]")).await.unwrap().send_keys(user).await.unwrap();
    client.find(Locator::Css("input[name=password]")).await.unwrap().send_keys(pass).await.unwrap();
    client.find(Locator::Css("#sign-in")).await.unwrap().click().await.unwrap();
}

/// Opens the sign-in page at `login`, signs in as `user` with `pass`, and waits (up to 5 s) for
/// the page the password leads to, `landing` (a path).
async fn sign_in(client: &Client, login: &str, user: &str, pass: &str, landing: &str) {
    client.goto(login).await.unwrap();
    submit_login(client, user, pass).await;
    wait_for(client, &format!("location.pathname === '{landing}'"), Duration::from_secs(5)).await;
}

/// Opens `url` and waits (up to 5 s) for an element matching `ready` (a CSS selector) on it.
async fn open_until(client: &Client, url: &str, ready: &str) {
    client.goto(url).await.unwrap();
    wait_for(client, &format!("document.querySelector('{ready}')"), Duration::from_secs(5)).await;
}

/// The link starting `{origin}{path}?token=` in the newest mail to `address` about `subject`
/// (waiting for it).
async fn mailed_link(server: &TestServer, address: &str, subject: &str, path: &str) -> String {
    let mail = server.mail.about(address, subject, 0).await;
    mail.link(&format!("{}{path}?token=", server.origin)).expect("a link")
}

/// Writes a transaction whose text is an XSS probe, through the real atomic write.
async fn inject_probe(server: &TestServer, description: &str) {
    let db = redbank::redis::Db::connect(
        &common::shared_redis().url(),
        &server.prefix,
        Duration::from_secs(2),
    )
    .unwrap();
    for _ in 0..20 {
        let balance = redbank::bank::store::balance(&db, BOB).await.unwrap();
        let now = redbank::clock::now_ms();
        let tx = common::transaction(
            BOB,
            (description, "<b>Probe</b> Insurance", "online"),
            -1234,
            now,
            balance,
        );
        // The generator may move the balance between our read and write: retry.
        if redbank::bank::store::record(&db, &redbank::Config::default(), balance, &tx)
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("could not inject the probe transaction");
}

/// Names the step a long flow is at, and says it when the flow fails there (the steps share one
/// browser session each, so they run as one test).
#[derive(Default)]
struct Steps(std::cell::Cell<&'static str>);

impl Steps {
    fn at(&self, name: &'static str) {
        self.0.set(name);
    }
}

impl Drop for Steps {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let failed = format!("browser flow: the step \"{}\" failed\n", self.0.get());
            let _ = std::io::Write::write_all(&mut std::io::stderr(), failed.as_bytes());
        }
    }
}

/// Runs one named step of the flow: a failure says which step it was before the panic goes on
/// (the steps share one browser, so the flow stops there).
async fn step<T>(name: &str, work: impl std::future::Future<Output = T>) -> T {
    use futures::FutureExt;
    match std::panic::AssertUnwindSafe(work).catch_unwind().await {
        Ok(done) => done,
        Err(panic) => {
            let failed = format!("browser flow: the step \"{name}\" failed\n");
            std::io::Write::write_all(&mut std::io::stderr(), failed.as_bytes()).unwrap();
            std::panic::resume_unwind(panic)
        }
    }
}

#[rocket::async_test]
async fn the_whole_flow_in_a_real_browser() {
    if std::env::var_os("REDBANK_SKIP_BROWSER").is_some() {
        // Straight to stderr: libtest swallows a passing test's `eprintln!`, which would turn
        // the skip into a silent pass.
        let skipped = "SKIPPED the_whole_flow_in_a_real_browser: REDBANK_SKIP_BROWSER is set\n";
        std::io::Write::write_all(&mut std::io::stderr(), skipped.as_bytes()).unwrap();
        return;
    }
    let server = TestServer::start(common::shared_redis(), None, |f| {
        f.merge(("generator_interval_ms", 700)).merge(("sse_heartbeat_secs", 2))
    })
    .await;
    let driver = Driver::start();
    let client = driver.connect().await;

    step("login page, a wrong password, the accessibility check", async {
        // / → login; a wrong password shows the generic error.
        client.goto(&server.url("/")).await.unwrap();
        assert!(client.current_url().await.unwrap().path().ends_with("/login"));
        screenshot(&client, "login").await;
        assert_accessible(&client, "login").await;
        // The check can fail: an image without a text alternative is a critical violation.
        js(&client, "document.body.insertAdjacentHTML('beforeend', '<img id=probe src=/favicon.ico>'); return null;").await;
        let found = violations(&client).await;
        assert!(found.iter().any(|v| v["rule"] == "image-alt"), "axe missed it: {found:?}");
        js(&client, "document.getElementById('probe').remove(); return null;").await;
        submit_login(&client, "bob", "not-the-password").await;
        wait_for(&client, "document.querySelector('#login-error')", Duration::from_secs(5)).await;
        assert_eq!(text(&client, "#login-error").await, "Invalid username or password");
        assert_accessible(&client, "login with an error").await;
    })
    .await;

    step(
        "opening an account and a forgotten password: the forms, the meter, accessibility",
        async {
            client.goto(&server.url("/login")).await.unwrap();
            client.find(Locator::Css("#signup-link")).await.unwrap().click().await.unwrap();
            wait_for(&client, "document.querySelector('#signup-form')", Duration::from_secs(5))
                .await;
            assert_accessible(&client, "signup").await;
            let field = |css: &'static str| client.find(Locator::Css(css));
            field("#signup-name").await.unwrap().send_keys("Ada Lovelace").await.unwrap();
            field("#signup-email").await.unwrap().send_keys("ada@example.com").await.unwrap();
            // The meter asks the server's rules as the password is typed: a common one is refused
            // with the reason, a few uncommon words pass.
            field("#signup-password").await.unwrap().send_keys("password12345678").await.unwrap();
            let meter = "document.querySelector('#signup-password-strength span').textContent";
            wait_for(&client, &format!("{meter}.includes('not accepted')"), Duration::from_secs(5))
                .await;
            assert!(text(&client, "#signup-password-strength span").await.contains("common"));
            field("#signup-password").await.unwrap().clear().await.unwrap();
            field("#signup-password")
                .await
                .unwrap()
                .send_keys("violet quartz river lamp")
                .await
                .unwrap();
            let strong = format!("{meter}.includes('trong') && !{meter}.includes('not accepted')");
            wait_for(&client, &strong, Duration::from_secs(5)).await;
            assert_accessible(&client, "signup with the meter").await;
            client.goto(&server.url("/password/forgot")).await.unwrap();
            assert_accessible(&client, "forgot password").await;
            client.goto(&server.url("/login")).await.unwrap();
        },
    )
    .await;

    let balance_before = step("sign in: the dashboard shows the account", async {
        // Log in: the dashboard shows the account and a balance.
        submit_login(&client, "bob", "foobared").await;
        wait_for(
            &client,
            "location.pathname === '/dashboard' && document.querySelector('#account-number')",
            Duration::from_secs(5),
        )
        .await;
        assert_eq!(text(&client, "#account-number").await, BOB);
        let balance_before = text(&client, "#balance").await;
        assert!(balance_before.starts_with('$'), "{balance_before}");
        balance_before
    })
    .await;

    step("live: a new row and a new balance without a reload", async {
        // Live: a new row arrives and the balance changes without a reload.
        js(&client, "window.__noReload = 'still here'; return null;").await;
        wait_for(
            &client,
            "document.querySelector('#live-status').dataset.state === 'live'",
            Duration::from_secs(10),
        )
        .await;
        let first_row = js(
            &client,
            "const r = document.querySelector('#recent tbody tr.tx'); return r ? r.dataset.id : null;",
        )
        .await;
        wait_for(
            &client,
            &format!(
                "(() => {{ const r = document.querySelector('#recent tbody tr.tx'); return r && r.dataset.id !== {first_row}; }})()"
            ),
            Duration::from_secs(10),
        )
        .await;
        wait_for(
            &client,
            &format!("document.querySelector('#balance').textContent !== {}", json!(balance_before)),
            Duration::from_secs(10),
        )
        .await;
        assert_eq!(js(&client, "return window.__noReload;").await, "still here", "the page reloaded");
        assert!(
            js(&client, "return document.querySelectorAll('#recent tbody tr.tx').length;")
                .await
                .as_u64()
                .unwrap()
                <= 10
        );
    })
    .await;

    step("charts and their text alternatives", async {
        // Charts drawn with data, and their text alternatives for screen readers.
        wait_for(&client, "window.Chart && Chart.getChart('balance-chart') && Chart.getChart('balance-chart').data.datasets[0].data.length > 0", Duration::from_secs(10)).await;
        wait_for(&client, "Chart.getChart('spenders-chart') && Chart.getChart('spenders-chart').data.labels.length > 0", Duration::from_secs(10)).await;
        wait_for(&client, "document.querySelector('#balance-summary').textContent.startsWith('Balance over the last 5 minutes: from $')", Duration::from_secs(5)).await;
        wait_for(&client, "document.querySelectorAll('#spenders-summary li').length === Chart.getChart('spenders-chart').data.labels.length", Duration::from_secs(5)).await;
        screenshot(&client, "dashboard").await;
        assert_accessible(&client, "dashboard").await;
    })
    .await;

    step("the dashboard's first load is under 100 KB on the wire", async {
        // A first visit: nothing cached. Everything the page fetched counts, headers included
        // (the live stream is still open, so it is not a finished resource yet).
        let clear = json!({"cmd": "Network.clearBrowserCache", "params": {}});
        client.issue_cmd(Chromedriver::post("goog/cdp/execute", clear)).await.unwrap();
        client.goto(&server.url("/dashboard")).await.unwrap();
        let charted = "document.readyState === 'complete' && window.Chart \
            && Chart.getChart('spenders-chart')";
        wait_for(&client, charted, Duration::from_secs(10)).await;
        let weight = js(
            &client,
            "return performance.getEntriesByType('navigation')
            .concat(performance.getEntriesByType('resource'))
            .map(e => [e.name, e.transferSize]);",
        )
        .await;
        let entries = weight.as_array().unwrap();
        let total: u64 = entries.iter().map(|e| e[1].as_u64().unwrap_or(0)).sum();
        println!("dashboard first load: {total} bytes on the wire: {weight}");
        assert!(entries.iter().any(|e| e[0].as_str().unwrap().contains("/static/vendor/chart")));
        assert!(total < 100_000, "the dashboard's first load is {total} bytes: {weight}");
    })
    .await;

    step("on a phone: every signed-in page fits 360 px, the menu holds every item", async {
        client.set_window_size(360, 740).await.unwrap();
        for path in SIGNED_IN_PAGES {
            client.goto(&server.url(path)).await.unwrap();
            assert_fits(&client, path).await;
            // Shown as blocks here, tables keep their semantics only through explicit roles
            // (rows the live updates add included).
            let bare = js(&client, "return [...document.querySelectorAll('table, thead, tbody, tr, th, td')]
                .filter(e => !e.getAttribute('role')).map(e => e.tagName + '.' + e.className).slice(0, 5);").await;
            assert_eq!(bare, json!([]), "{path}: table parts without a role at 360 px");
            if path == "/dashboard" || path == "/transactions" {
                if path == "/transactions" {
                    // The transactions as cards, under the search form.
                    js(&client, "document.querySelector('table.transactions').scrollIntoView();")
                        .await;
                }
                screenshot(&client, &format!("phone{}", path.replace('/', "-"))).await;
                js(&client, "window.scrollTo(0, 0);").await;
            }
            if path == "/dashboard" {
                // The charts fit the screen; the donut's legend is under it, not beside it.
                let legend = "Chart.getChart('spenders-chart') \
                    && Chart.getChart('spenders-chart').options.plugins.legend.position === 'bottom'";
                wait_for(&client, legend, Duration::from_secs(10)).await;
                let wide = "return Math.max(...['balance-chart', 'spenders-chart'].map(id => \
                    document.getElementById(id).getBoundingClientRect().right));";
                let right = js(&client, wide).await.as_f64().unwrap();
                assert!(right <= 360.0, "a chart reaches {right} px on a 360 px screen");
            }
            // Times read in the browser's time zone, the UTC time kept as their title; on the
            // dashboard, rows the live stream adds too.
            if path == "/transactions" || path == "/dashboard" {
                let row = if path == "/dashboard" { "#recent tr.tx.new time" } else { "#results tr.tx time" };
                wait_for(&client, &format!("document.querySelector('{row}')"), Duration::from_secs(10)).await;
                let time = js(&client, &format!("const t = document.querySelector('{row}'); return [t.textContent, t.title];")).await;
                let (text, title) = (time[0].as_str().unwrap(), time[1].as_str().unwrap());
                assert!(text.ends_with(" PST") || text.ends_with(" PDT"), "{path}: {text}");
                assert!(title.ends_with(" UTC"), "{path}: the UTC time is kept: {title:?}");
                // The same instant: "2026-12-06 12:13:09 UTC" reads "…, 4:13:09 AM PST".
                let hms: Vec<u32> = title[11..19].split(':').map(|n| n.parse().unwrap()).collect();
                let behind = if text.ends_with(" PST") { 8 } else { 7 };
                let hour = (hms[0] + 24 - behind) % 24;
                let half = if hour < 12 { "AM" } else { "PM" };
                let twelve = if hour % 12 == 0 { 12 } else { hour % 12 };
                let want = format!("{twelve}:{:02}:{:02} {half}", hms[1], hms[2]);
                assert!(text.contains(&want), "{path}: {text} is not {title} ({want})");
            }
            // The navigation is folded behind the menu button, which opens it.
            let folded = "return getComputedStyle(document.getElementById('site-nav')).display;";
            assert_eq!(js(&client, folded).await, "none", "{path}: the navigation is not folded");
            client.find(Locator::Css(".menu-toggle")).await.unwrap().click().await.unwrap();
            let items = js(
                &client,
                "return [...document.querySelectorAll('#site-nav a, #site-nav button')].map(e => { \
                   const r = e.getBoundingClientRect(); \
                   return [e.textContent.trim(), r.width, r.height, r.right <= window.innerWidth]; });",
            )
            .await;
            let items = items.as_array().unwrap();
            assert!(items.len() >= 6, "{path}: {items:?}");
            assert!(items.iter().any(|i| i[0] == "Sign out"), "{path}: no Sign out in {items:?}");
            for item in items {
                let (w, h) = (item[1].as_f64().unwrap(), item[2].as_f64().unwrap());
                assert!(w >= 44.0 && h >= 44.0 && item[3] == true, "{path}: tap target {item:?}");
            }
            let expanded = "return document.querySelector('.menu-toggle').getAttribute('aria-expanded');";
            assert_eq!(js(&client, expanded).await, "true");
            assert_accessible(&client, &format!("{path} on a phone, menu open")).await;
        }
        client.set_window_size(1280, 1000).await.unwrap();
        client.goto(&server.url("/dashboard")).await.unwrap();
    })
    .await;

    step("in the dark colour scheme every signed-in page keeps its contrast", async {
        // (On a phone too: `assert_accessible` checks each page at 360 px in both schemes.)
        set_scheme(&client, "dark").await;
        for path in SIGNED_IN_PAGES {
            client.goto(&server.url(path)).await.unwrap();
            let dark = "return matchMedia('(prefers-color-scheme: dark)').matches \
                        && getComputedStyle(document.body).backgroundColor;";
            assert_eq!(js(&client, dark).await, "rgb(18, 21, 28)", "{path} is not dark");
            assert_accessible(&client, &format!("{path} (dark)")).await;
            if path == "/dashboard" {
                screenshot(&client, "dark-dashboard").await;
            }
        }
        set_scheme(&client, "").await;
        client.goto(&server.url("/dashboard")).await.unwrap();
    })
    .await;

    step("an XSS probe through the live stream stays text", async {
        // XSS probe through the live stream: rendered as text, never as markup.
        let probe = "<img src=x onerror=\"window.__xss=1\"> Insurance premium";
        js(&client, "window.__xss = 0; return null;").await;
        inject_probe(&server, probe).await;
        wait_for(&client, "[...document.querySelectorAll('#recent td.desc')].some(td => td.textContent.includes('<img src=x'))", Duration::from_secs(10)).await;
        assert_eq!(js(&client, "return document.querySelectorAll('#recent img').length;").await, 0);
        assert_eq!(js(&client, "return window.__xss;").await, 0);
        // …and after a reload (server-rendered).
        client.refresh().await.unwrap();
        wait_for(&client, "[...document.querySelectorAll('#recent td.desc')].some(td => td.textContent.includes('<img src=x'))", Duration::from_secs(5)).await;
        assert_eq!(js(&client, "return document.querySelectorAll('#recent img').length;").await, 0);
    })
    .await;

    step("search highlights matches, the probe stays text", async {
        // Search finds a vendor and highlights it; the probe stays text.
        client.goto(&server.url("/transactions")).await.unwrap();
        client.find(Locator::Css("#search-q")).await.unwrap().send_keys("ins").await.unwrap();
        client.find(Locator::Css("#search-go")).await.unwrap().click().await.unwrap();
        wait_for(&client, "location.search.includes('q=ins')", Duration::from_secs(5)).await;
        let marks = js(
            &client,
            "return [...document.querySelectorAll('#results mark')].map(m => m.textContent);",
        )
        .await;
        let marks: Vec<String> = serde_json::from_value(marks).unwrap();
        assert!(!marks.is_empty(), "no highlighted match");
        assert!(marks.iter().all(|m| m.to_lowercase().starts_with("ins")), "{marks:?}");
        assert_eq!(
            js(&client, "return document.querySelectorAll('#results img, #results b').length;")
                .await,
            0
        );
        assert_eq!(
            js(&client, "return window.__xss === undefined || window.__xss === 0;").await,
            true
        );
        screenshot(&client, "transactions").await;
        assert_accessible(&client, "transactions with search results").await;
    })
    .await;

    step("the sessions page lists this browser", async {
        // The sessions page lists this browser.
        client.goto(&server.url("/sessions")).await.unwrap();
        let current = text(&client, "tr.session.current").await;
        assert!(current.contains("this device") && current.contains("Chrome"), "{current}");
        assert_accessible(&client, "sessions").await;
    })
    .await;

    step("sign out deletes the session document", async {
        // Log out: back on the login page, and the session document is gone from Redis.
        let cookie = client.get_named_cookie("redbank").await.unwrap();
        let key = server.keys().session(&common::session_id(cookie.value()));
        let mut redis = common::shared_redis().conn().await;
        assert!(redis.exists::<_, bool>(&key).await.unwrap());
        client.find(Locator::Css("#logout")).await.unwrap().click().await.unwrap();
        wait_for(&client, "location.pathname === '/login'", Duration::from_secs(5)).await;
        assert!(!redis.exists::<_, bool>(&key).await.unwrap(), "session document survived logout");
    })
    .await;

    step("keyboard only, with visible focus", async {
        // Keyboard only, with visible focus at each step: sign in, reach the transactions, search,
        // sign out. (A headless window never has the OS focus, and without it Chrome shows no
        // keyboard focus at all: emulate a focused window, as a user's would be.)
        let focused =
            json!({"cmd": "Emulation.setFocusEmulationEnabled", "params": {"enabled": true}});
        let focused = Chromedriver::post("goog/cdp/execute", focused);
        client.issue_cmd(focused).await.unwrap();
        tab_to(&client, "input[name=username]").await;
        type_keys(&client, "bob", false).await;
        let dashboard = "location.pathname === '/dashboard'";
        tab_and_enter(&client, "input[name=password]", "foobared", dashboard).await;
        let transactions = "location.pathname === '/transactions'";
        tab_and_enter(&client, "nav a[href='/transactions']", "", transactions).await;
        tab_and_enter(&client, "#search-q", "ins", "location.search.includes('q=ins')").await;
        tab_and_enter(&client, "#logout", "", "location.pathname === '/login'").await;
    })
    .await;

    step("no CSP violation or script error in the console", async {
        // No CSP violation (or any script error) was reported in the console.
        let log = console(&client).await;
        let bad: Vec<&String> = log
            .iter()
            .filter(|m| {
                m.contains("Content Security Policy")
                    || m.contains("Refused to")
                    || m.contains("Uncaught")
            })
            .collect();
        assert!(bad.is_empty(), "browser console: {bad:#?}");
    })
    .await;

    step(
        "strong authentication, the idle limit and the console",
        strong_authentication(&server, &client),
    )
    .await;

    step(
        "a new customer opens an account with a passkey and signs in through the autofill",
        passkey_customer(&server),
    )
    .await;

    step(
        "another customer forgets their password and resets it from the mailed link",
        forgetful_customer(&server),
    )
    .await;

    client.close().await.unwrap();
    server.stop().await.unwrap();
}

/// A new customer, in a browser of their own with a passkey device: applies without a password,
/// follows the link mailed to them in that browser, creates the passkey there — the account
/// opens — and the sign-in page's autofill signs them in with it, at two factors.
async fn passkey_customer(server: &TestServer) {
    let driver = Driver::start();
    let client = driver.connect().await;
    add_authenticator(&client).await;
    let url = |path: &str| format!("{}{path}", server.origin);
    let email =
        format!("grace.{}@example.com", redbank::secret::random_token()[..8].to_lowercase());
    client.goto(&url("/signup")).await.unwrap();
    let field = |css: &'static str| client.find(Locator::Css(css));
    field("#signup-name").await.unwrap().send_keys("Grace Passkey").await.unwrap();
    field("#signup-email").await.unwrap().send_keys(&email).await.unwrap();
    field("#signup-with-passkey").await.unwrap().click().await.unwrap();
    wait_for(&client, "document.querySelector('#signup-sent')", Duration::from_secs(5)).await;
    assert!(text(&client, "#signup").await.contains("create your passkey"));
    assert_accessible(&client, "signup sent, with a passkey").await;

    let link = mailed_link(server, &email, "Confirm your", "/email/verify").await;
    open_until(&client, &link, "#signup-passkey").await;
    assert_accessible(&client, "confirm the address with a passkey").await;
    screenshot(&client, "signup-passkey").await;
    field("#signup-passkey").await.unwrap().click().await.unwrap();
    wait_for(&client, "location.pathname === '/dashboard'", Duration::from_secs(15)).await;
    assert_eq!(text(&client, "#holder").await, "Grace Passkey");
    client.goto(&url("/sessions")).await.unwrap();
    let current = client.find(Locator::Css("tr.session.current td.aal")).await.unwrap();
    assert_eq!(current.attr("data-aal").await.unwrap().as_deref(), Some("2"));
    client.close().await.unwrap();
}

/// Gives the browser a virtual passkey device (WebDriver's WebAuthn extension: internal, with
/// resident keys and user verification, as a phone's or laptop's); its authenticator id.
async fn add_authenticator(client: &Client) -> String {
    let authenticator = json!({
        "protocol": "ctap2", "transport": "internal", "hasResidentKey": true,
        "hasUserVerification": true, "isUserVerified": true,
    });
    let added = client.issue_cmd(Chromedriver::post("webauthn/authenticator", authenticator)).await;
    added.unwrap().as_str().expect("an authenticator id").to_owned()
}

/// A customer who opened an account with a password (through the API) forgets it: "Forgot
/// password?" on the sign-in page, the link mailed to them, a new password by the rules, and a
/// sign-in with it — each page through axe.
async fn forgetful_customer(server: &TestServer) {
    let email = format!("hedy.{}@example.com", redbank::secret::random_token()[..8].to_lowercase());
    let signup =
        json!({"name": "Hedy Lamarr", "email": email, "password": "violet quartz river lamp"});
    let applied = server.http.post(server.url("/api/v1/signup")).json(&signup).send().await;
    assert_eq!(applied.unwrap().status(), 201);
    let link = mailed_link(server, &email, "Confirm your", "/email/verify").await;
    let token = link.split("token=").nth(1).unwrap().to_owned();
    let confirm = json!({"token": token, "password": "violet quartz river lamp"});
    let opened = server.http.post(server.url("/api/v1/email/verify")).json(&confirm).send().await;
    assert_eq!(opened.unwrap().status(), 204);

    let driver = Driver::start();
    let client = driver.connect().await;
    let url = |path: &str| format!("{}{path}", server.origin);
    // The signed-out pages fit, and axe passes, on a desktop and a phone, light and dark (the
    // phone and the other scheme are `assert_accessible`'s).
    for path in ["/login", "/signup", "/password/forgot", "/no-such-page"] {
        client.goto(&url(path)).await.unwrap();
        wait_for(&client, "document.readyState === 'complete'", Duration::from_secs(5)).await;
        assert_fits(&client, path).await;
        assert_accessible(&client, path).await;
    }
    client.goto(&url("/login")).await.unwrap();
    client.find(Locator::Css("#forgot-link")).await.unwrap().click().await.unwrap();
    wait_for(&client, "document.querySelector('#forgot-form')", Duration::from_secs(5)).await;
    client.find(Locator::Css("#forgot-login")).await.unwrap().send_keys(&email).await.unwrap();
    client.find(Locator::Css("#forgot-submit")).await.unwrap().click().await.unwrap();
    wait_for(&client, "document.querySelector('#forgot-sent')", Duration::from_secs(5)).await;
    assert_accessible(&client, "reset link sent").await;

    let link = mailed_link(server, &email, "Reset your redbank password", "/password/reset").await;
    open_until(&client, &link, "#reset-form").await;
    assert_accessible(&client, "choose a new password").await;
    let new = "amber willow canyon drum";
    client.find(Locator::Css("#reset-password")).await.unwrap().send_keys(new).await.unwrap();
    client.find(Locator::Css("#reset-submit")).await.unwrap().click().await.unwrap();
    let done = "document.querySelector('#reset h1')?.textContent.includes('is reset')";
    wait_for(&client, done, Duration::from_secs(10)).await;
    assert_accessible(&client, "password reset").await;
    client.goto(&url("/login")).await.unwrap();
    submit_login(&client, &email, new).await;
    wait_for(&client, "location.pathname === '/dashboard'", Duration::from_secs(10)).await;
    assert_eq!(text(&client, "#holder").await, "Hedy Lamarr");
    // Security's change-password page, and the closing form that asks where the balance goes:
    // on a desktop and a phone, light and dark.
    for (path, ready) in [("/security/password", "#change-current"), ("/security", "#payout-to")] {
        open_until(&client, &url(path), ready).await;
        assert_fits(&client, path).await;
        assert_accessible(&client, path).await;
    }
    client.set_window_size(360, 740).await.unwrap();
    set_scheme(&client, "dark").await;
    js(&client, "document.querySelector('#close-form').scrollIntoView();").await;
    screenshot(&client, "phone-dark-close").await;
    client.close().await.unwrap();
}

/// Types a code of alice's demo authenticator app into `/login/verify` (the app accepts each
/// time step once: a code refused because its step was used, the next one is tried).
async fn verify_with_demo_app(client: &Client) {
    verify_with_codes(client, common::demo_app_codes()).await;
}

/// Types `codes` into `/login/verify` in turn until one is accepted (the dashboard, or the new
/// password a compromised one needs).
async fn verify_with_codes(client: &Client, codes: Vec<String>) {
    for code in codes {
        let field = client.find(Locator::Css("#totp-code")).await.unwrap();
        field.clear().await.unwrap();
        field.send_keys(&code).await.unwrap();
        // Marks this page, so the wait below sees the next one (a wrong code shows the same page
        // again, with the same error element as before).
        js(client, "window.__old_page = true; return null;").await;
        client.find(Locator::Css("#totp-submit")).await.unwrap().click().await.unwrap();
        wait_for(
            client,
            "!window.__old_page && document.readyState === 'complete' && \
             (location.pathname === '/dashboard' || location.pathname === '/login/renew' || \
              document.querySelector('#verify-error'))",
            Duration::from_secs(5),
        )
        .await;
        if ["/dashboard", "/login/renew"].contains(&client.current_url().await.unwrap().path()) {
            return;
        }
    }
    panic!("no code of the demo app was accepted");
}

/// Passkeys with Chromium's virtual authenticator (WebDriver's WebAuthn extension), alice's
/// authenticator app, and the live notice of a new device's sign-in. On `localhost`: WebAuthn
/// needs a secure context, and passkeys are bound to the `public_origin`.
async fn strong_authentication(server: &TestServer, client: &Client) {
    let steps = Steps::default();
    let url = |path: &str| format!("{}{path}", server.origin);
    let authenticator_id = add_authenticator(client).await;

    steps.at("bob adds a passkey on /security");
    // bob adds a passkey on /security…
    sign_in(client, &url("/login"), "bob", "foobared", "/dashboard").await;
    client.goto(&url("/security")).await.unwrap();
    assert_accessible(client, "security").await;
    let name = client.find(Locator::Css("#passkey-name")).await.unwrap();
    name.send_keys("Test laptop").await.unwrap();
    client.find(Locator::Css("#passkey-add")).await.unwrap().click().await.unwrap();
    steps.at("his first factor needs the code mailed to him");
    // His first factor: the page asks for the code mailed to him (read from the SMTP server).
    wait_for_shown(client, "#passkey-email-step", Duration::from_secs(10)).await;
    assert_accessible(client, "security: the e-mailed code").await;
    let code = server.mail.code_to("bob@example.com", 0).await;
    let field = client.find(Locator::Css("#passkey-email-code")).await.unwrap();
    field.send_keys(&code).await.unwrap();
    client.find(Locator::Css("#passkey-email-continue")).await.unwrap().click().await.unwrap();
    wait_for_count(client, "tr.passkey", 1, Duration::from_secs(10)).await;
    assert!(text(client, "tr.passkey").await.contains("Test laptop"));
    screenshot(client, "security").await;
    steps.at("bob signs in with the passkey alone, through the autofill");
    // …signs out, and signs in with the passkey alone: two factors, no password. The sign-in
    // page offers passkeys in the username field's autofill (conditional mediation); Chromium's
    // virtual authenticator answers such a request by itself, as a person picking the passkey
    // there would — no button is pressed.
    client.find(Locator::Css("#logout")).await.unwrap().click().await.unwrap();
    let out_or_back_in = "location.pathname === '/login' || location.pathname === '/dashboard'";
    wait_for(client, out_or_back_in, Duration::from_secs(5)).await;
    let field = "document.querySelector('#login-username')?.autocomplete ?? 'signed in already'";
    let autocomplete = js(client, &format!("return {field};")).await;
    assert!(
        autocomplete == json!("username webauthn") || autocomplete == json!("signed in already"),
        "{autocomplete}"
    );
    wait_for(client, "location.pathname === '/dashboard'", Duration::from_secs(10)).await;
    client.goto(&url("/sessions")).await.unwrap();
    let current = client.find(Locator::Css("tr.session.current td.aal")).await.unwrap();
    assert_eq!(current.attr("data-aal").await.unwrap().as_deref(), Some("2"));
    assert!(current.text().await.unwrap().contains("aal 2"));

    steps.at("alice signs in with her app in a second browser");
    // alice, in a second browser, signs in with her password and a code from her app, and
    // watches her dashboard.
    // (Its own chromedriver and profile: a device alice's account has never seen.)
    let other_driver = Driver::start();
    let other = other_driver.connect().await;
    sign_in(&other, &url("/login"), "alice", "wonderland", "/login/verify").await;
    screenshot(&other, "verify").await;
    assert_accessible(&other, "verify").await;
    verify_with_demo_app(&other).await;
    let live = "document.querySelector('#live-status').dataset.state === 'live'";
    wait_for(&other, live, Duration::from_secs(10)).await;
    js(&other, "window.__noReload = 'still here'; return null;").await;

    steps.at("bob sends alice $42.00, confirmed with his passkey");
    // bob sends her $42.00 and confirms with his passkey; her dashboard shows it without a reload.
    client.goto(&url("/transfer")).await.unwrap();
    assert_accessible(client, "transfer").await;
    client.find(Locator::Css("#to-account")).await.unwrap().send_keys(ALICE).await.unwrap();
    client.find(Locator::Css("#amount")).await.unwrap().send_keys("42.00").await.unwrap();
    client.find(Locator::Css("#reference")).await.unwrap().send_keys("Dinner").await.unwrap();
    client.find(Locator::Css("#transfer-continue")).await.unwrap().click().await.unwrap();
    wait_for(client, "document.querySelector('#review')", Duration::from_secs(5)).await;
    let review = text(client, "#review-payee").await;
    assert!(review.contains("Alice Liddell") && review.contains(ALICE), "{review}");
    assert!(text(client, "#review-amount").await.contains("$42.00"));
    assert_accessible(client, "transfer review").await;
    screenshot(client, "transfer").await;
    client.find(Locator::Css("#confirm-passkey")).await.unwrap().click().await.unwrap();
    let completed = "document.querySelector('#receipt')?.dataset.status === 'completed'";
    wait_for(client, completed, Duration::from_secs(10)).await;
    assert_accessible(client, "transfer receipt").await;
    wait_for(
        &other,
        "[...document.querySelectorAll('#recent tbody tr.tx')].some(r => r.textContent.includes('Bob Jones') && r.textContent.includes('$42.00') && r.textContent.includes('Dinner'))",
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(
        js(&other, "return window.__noReload;").await,
        "still here",
        "alice's page reloaded"
    );

    steps.at("a new device's sign-in is announced on alice's other dashboard");
    // bob signs out; alice signs in on the first browser, a device new to her account: her
    // other dashboard is told at once and signs that session out with one click.
    // bob's passkey leaves this browser first, as when he hands the laptop over: Chromium's
    // virtual authenticator answers the sign-in page's autofill by itself, where a person would
    // have to pick the passkey.
    let credentials = format!("webauthn/authenticator/{authenticator_id}/credentials");
    client.issue_cmd(Chromedriver::delete(credentials)).await.unwrap();
    client.find(Locator::Css("#logout")).await.unwrap().click().await.unwrap();
    wait_for(client, "location.pathname === '/login'", Duration::from_secs(5)).await;
    submit_login(client, "alice", "wonderland").await;
    wait_for(client, "location.pathname === '/login/verify'", Duration::from_secs(5)).await;
    verify_with_demo_app(client).await;
    let cookie = client.get_named_cookie("redbank").await.unwrap();
    let key = server.keys().session(&common::session_id(cookie.value()));
    wait_for(&other, "document.querySelector('.security-notice')", Duration::from_secs(10)).await;
    let notice = text(&other, ".security-notice p").await;
    assert!(notice.starts_with("New sign-in: Chrome on Linux, 127.0.0.1, "), "{notice}");
    assert_accessible(&other, "dashboard with a security notice").await;
    let mut redis = common::shared_redis().conn().await;
    assert!(redis.exists::<_, bool>(&key).await.unwrap());
    other.find(Locator::Css(".security-notice .not-me")).await.unwrap().click().await.unwrap();
    wait_for_text(&other, ".security-notice p", "signed out", Duration::from_secs(5)).await;
    assert!(!redis.exists::<_, bool>(&key).await.unwrap(), "the other session survived 'not me'");

    steps.at("'this wasn't me' removes the factor a second browser added");
    // "This wasn't me" from the mail: the second browser signs in as alice again and adds a
    // passkey; alice opens the link the notice mailed her, in her own browser, and confirms:
    // the passkey is gone and so is that session.
    sign_in(client, &url("/login"), "alice", "wonderland", "/login/verify").await;
    verify_with_demo_app(client).await;
    let added = |mails: Vec<common::mail::Mail>| {
        mails
            .into_iter()
            .filter(|m| m.header("Subject").is_some_and(|s| s.contains("factor was added")))
            .collect::<Vec<_>>()
    };
    let seen = added(server.mail.to("alice@example.com")).len();
    client.goto(&url("/security")).await.unwrap();
    let name = client.find(Locator::Css("#passkey-name")).await.unwrap();
    name.send_keys("Not alice's").await.unwrap();
    client.find(Locator::Css("#passkey-add")).await.unwrap().click().await.unwrap();
    wait_for_count(client, "tr.passkey", 1, Duration::from_secs(10)).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let notice = loop {
        if let Some(mail) = added(server.mail.to("alice@example.com")).into_iter().nth(seen) {
            break mail;
        }
        assert!(Instant::now() < deadline, "no notice of the added passkey");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let link = notice.link(&format!("{}/not-me?token=", server.origin)).expect("a not-me link");
    open_until(&other, &link, "#not-me-confirm").await;
    screenshot(&other, "not-me").await;
    assert_accessible(&other, "this wasn't me").await;
    other.find(Locator::Css("#not-me-confirm")).await.unwrap().click().await.unwrap();
    wait_for_text(&other, "#not-me h1", "secured", Duration::from_secs(5)).await;
    assert!(text(&other, "#not-me").await.contains("Not alice's"));
    let passkeys: usize = redis.hlen(server.keys().passkeys("alice")).await.unwrap();
    assert_eq!(passkeys, 0, "the passkey added by the other browser survived");
    client.goto(&url("/dashboard")).await.unwrap();
    wait_for(client, "location.pathname === '/login'", Duration::from_secs(5)).await;
    steps.at("alice renews her password reported compromised");
    // alice signs in again: her password was marked compromised, so after her app's code she
    // is asked for the code mailed to her and a new password. (Her app's codes of the steps
    // around now were used: wait for the next time step.)
    let step = redbank::auth::factors::totp::step_of(redbank::clock::now_ms() / 1000);
    let next_step_ms = (step + 1) * 30_000 + 500 - redbank::clock::now_ms();
    tokio::time::sleep(Duration::from_millis(next_step_ms.max(0) as u64)).await;
    sign_in(&other, &url("/login"), "alice", "wonderland", "/login/verify").await;
    let seen = server.mail.to("alice@example.com").len();
    verify_with_codes(&other, common::demo_app_codes()).await;
    wait_for(&other, "location.pathname === '/login/renew'", Duration::from_secs(5)).await;
    assert_accessible(&other, "new password").await;
    let code = server.mail.code_to("alice@example.com", seen).await;
    other.find(Locator::Css("#renew-email-code")).await.unwrap().send_keys(&code).await.unwrap();
    let field = other.find(Locator::Css("#renew-password")).await.unwrap();
    field.send_keys("a looking-glass of my own").await.unwrap();
    other.find(Locator::Css("#renew-submit")).await.unwrap().click().await.unwrap();
    wait_for(&other, "location.pathname === '/dashboard'", Duration::from_secs(5)).await;
    steps.at("the idle limit warns and 'stay signed in' extends");
    // The idle limit: four minutes later (the page's clock moved on, and stands still there while
    // the page is checked on a phone and in both schemes), the warning says why and offers to
    // stay; staying is a real request that extends the session.
    js(
        &other,
        "window.__realNow = Date.now; const later = Date.now() + 250000; \
         Date.now = () => later; return null;",
    )
    .await;
    wait_for_shown(&other, "#idle-warning", Duration::from_secs(5)).await;
    assert!(text(&other, "#idle-why").await.contains("PSD2"));
    assert_accessible(&other, "idle warning").await;
    // Stay, then give the page its clock back: put back first, the page's next tick could hide
    // the warning (plenty of time left) before the click reaches the button.
    other.find(Locator::Css("#idle-stay")).await.unwrap().click().await.unwrap();
    wait_for(&other, "document.querySelector('#idle-warning').hidden", Duration::from_secs(5))
        .await;
    js(&other, "Date.now = window.__realNow; return null;").await;

    steps.at("the operator console with two factors");
    // The operator console: the admin (whose authenticator app is set up on the machine with
    // `redbank admin totp`) signs in with two factors and sees every session.
    let out = server.admin_totp(&[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let secret = common::server::printed_secret(&String::from_utf8_lossy(&out.stdout));
    let step = redbank::auth::factors::totp::step_of(redbank::clock::now_ms() / 1000);
    sign_in(client, &url("/login"), "admin", common::ADMIN_PASSWORD, "/login/verify").await;
    verify_with_codes(client, (0..=1).map(|o| secret.code_at(step + o)).collect()).await;
    open_until(client, &url("/admin"), "#admin-sessions").await;
    let users = js(
        client,
        "return [...document.querySelectorAll('tr.admin-session')].map(r => r.dataset.user);",
    )
    .await;
    assert!(users.as_array().is_some_and(|u| u.iter().any(|u| u == "alice")), "{users}");
    screenshot(client, "admin").await;
    assert_accessible(client, "operator console").await;
    other.close().await.unwrap();
}
