//! High availability across hosts, with faults injected: a Redis primary, two replicas and three
//! sentinels, two app instances (the real binary) and nginx in front of them, each in its own
//! Linux network namespace with its own address, wired by veth pairs to two bridges — the front
//! network (client, nginx, apps) and the back one (apps, Redis, sentinels). A fault is what a
//! machine or a network does: a link cut (no clean shutdown: packets vanish), a process killed.
//!
//! Needs root (network namespaces) and nginx (scripts/test installs Debian's); set
//! `REDBANK_SKIP_HA=1` to skip. Each test prints what it measured. They run one at a time (one
//! lock): two topologies at once would share two CPUs and blur the timings.

#![allow(clippy::unwrap_used)]

#[path = "all/common/mod.rs"]
mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::server::{Next, Sse};
use redbank::redis::Keys;
use serde_json::{Value, json};

const BOB_ACCOUNT: &str = "1580783161";
const ALICE_ACCOUNT: &str = "2734819056";
const PREFIX: &str = "ha:";
/// The sentinels' `down-after-milliseconds`.
const DOWN_AFTER_MS: u64 = 2000;
const REDIS_TIMEOUT_MS: u64 = 500;

static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Whether `REDBANK_SKIP_HA` says to skip the HA tests; says so on stderr, naming the test (the
/// harness names each test's thread after it).
fn skip() -> bool {
    if std::env::var_os("REDBANK_SKIP_HA").is_some() {
        let test = std::thread::current().name().unwrap_or("an HA test").to_owned();
        let line = format!("SKIPPED {test}: REDBANK_SKIP_HA is set\n");
        std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes()).unwrap();
        return true;
    }
    false
}

/// The lab numbered `n`, an HTTP client and nginx's base URL; None when the HA tests are skipped.
async fn start_lab(n: u8) -> Option<(Lab, reqwest::Client, String)> {
    if skip() {
        return None;
    }
    let lab = Lab::start(n).await;
    let base = lab.base();
    Some((lab, http(), base))
}

fn report(line: String) {
    std::io::Write::write_all(&mut std::io::stderr(), format!("{line}\n").as_bytes()).unwrap();
}

fn run(cmd: &str, args: &[&str]) {
    let out = Command::new(cmd).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn quiet(cmd: &str, args: &[&str]) {
    let _ = Command::new(cmd).args(args).stdout(Stdio::null()).stderr(Stdio::null()).status();
}

/// A host: its namespace and the root-side ends of its links (front, back).
struct Host {
    ns: String,
    front: Option<String>,
    back: Option<String>,
}

/// The machines, their links, and the processes on them; all removed on drop.
struct Lab {
    n: u8,
    dir: PathBuf,
    hosts: Vec<(&'static str, Host)>,
    procs: Vec<(&'static str, Child)>,
    /// One lab at a time: held until the lab is torn down (fields drop after `Drop::drop`).
    _one: tokio::sync::MutexGuard<'static, ()>,
}

/// Host name → (last octet, on the front network, on the back network).
const HOSTS: [(&str, u8, bool, bool); 9] = [
    ("primary", 11, false, true),
    ("replica1", 12, false, true),
    ("replica2", 13, false, true),
    ("sentinel1", 21, false, true),
    ("sentinel2", 22, false, true),
    ("sentinel3", 23, false, true),
    ("app1", 31, true, true),
    ("app2", 32, true, true),
    ("nginx", 40, true, false),
];

impl Lab {
    fn front_ip(&self, octet: u8) -> String {
        format!("10.78.{}.{octet}", self.n)
    }

    fn back_ip(&self, octet: u8) -> String {
        format!("10.77.{}.{octet}", self.n)
    }

    fn octet(name: &str) -> u8 {
        HOSTS.iter().find(|h| h.0 == name).unwrap().1
    }

    fn host(&self, name: &str) -> &Host {
        &self.hosts.iter().find(|h| h.0 == name).unwrap().1
    }

    fn bridges(&self) -> [String; 2] {
        [format!("rbf{}", self.n), format!("rbb{}", self.n)]
    }

    /// Namespaces, bridges and links; the root namespace sits on both networks (.1) as the
    /// client and the observer.
    fn build(n: u8, one: tokio::sync::MutexGuard<'static, ()>) -> Lab {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("ha{n}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut lab = Lab { n, dir, hosts: Vec::new(), procs: Vec::new(), _one: one };
        lab.teardown_network();
        for (bridge, net) in lab.bridges().iter().zip([78, 77]) {
            run("ip", &["link", "add", bridge, "type", "bridge"]);
            run("ip", &["addr", "add", &format!("10.{net}.{n}.1/24"), "dev", bridge]);
            run("ip", &["link", "set", bridge, "up"]);
        }
        for (name, octet, front, back) in HOSTS {
            let ns = format!("rbha{n}-{name}");
            run("ip", &["netns", "add", &ns]);
            run("ip", &["-n", &ns, "link", "set", "lo", "up"]);
            let mut host = Host { ns: ns.clone(), front: None, back: None };
            for (wanted, net, bridge, dev) in
                [(front, 78, &lab.bridges()[0], "eth0"), (back, 77, &lab.bridges()[1], "eth1")]
            {
                if !wanted {
                    continue;
                }
                let root_end = Lab::link_name(n, name, if net == 78 { 'f' } else { 'b' });
                run(
                    "ip",
                    &["link", "add", &root_end, "type", "veth", "peer", "name", dev, "netns", &ns],
                );
                run("ip", &["link", "set", &root_end, "master", bridge, "up"]);
                let ip = format!("10.{net}.{n}.{octet}/24");
                run("ip", &["-n", &ns, "addr", "add", &ip, "dev", dev]);
                run("ip", &["-n", &ns, "link", "set", dev, "up"]);
                if net == 78 {
                    host.front = Some(root_end);
                } else {
                    host.back = Some(root_end);
                }
            }
            lab.hosts.push((name, host));
        }
        lab
    }

    /// Root-side name of a host's link to the front (`f`) or back (`b`) network.
    fn link_name(n: u8, host: &str, net: char) -> String {
        format!("rb{n}{}{}{net}", &host[..1], &host[host.len() - 1..])
    }

    fn teardown_network(&self) {
        for (name, _, front, back) in HOSTS {
            let ns = format!("rbha{}-{name}", self.n);
            // Whatever still runs there (an nginx worker outlives its master's SIGKILL) keeps
            // the namespace, and so its links, alive.
            let pids = Command::new("ip").args(["netns", "pids", &ns]).output();
            for pid in pids
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default()
                .split_whitespace()
            {
                quiet("kill", &["-9", pid]);
            }
            quiet("ip", &["netns", "del", &ns]);
            for (on, net) in [(front, 'f'), (back, 'b')] {
                if on {
                    quiet("ip", &["link", "del", &Lab::link_name(self.n, name, net)]);
                }
            }
        }
        for bridge in self.bridges() {
            quiet("ip", &["link", "del", &bridge]);
        }
    }

    fn spawn(
        &mut self,
        host: &'static str,
        program: &Path,
        args: &[String],
        env: &[(&str, String)],
    ) {
        let log = std::fs::File::create(self.dir.join(format!("{host}.log"))).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &self.host(host).ns])
            .arg(program)
            .args(args)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        self.procs.push((host, child));
    }

    fn kill(&mut self, host: &str) {
        for (name, child) in &mut self.procs {
            if *name == host {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }

    /// Cuts (`up = false`) or restores one of a host's links.
    fn link(&self, host: &str, back: bool, up: bool) {
        let h = self.host(host);
        let end = if back { h.back.as_ref() } else { h.front.as_ref() }.unwrap();
        run("ip", &["link", "set", end, if up { "up" } else { "down" }]);
    }

    /// Redis on the data hosts (the first one primary), three sentinels, two apps, nginx.
    async fn start(n: u8) -> Lab {
        let mut lab = Lab::build(n, ONE_AT_A_TIME.lock().await);
        let bin = common::redis_dir().clone();
        let primary_ip = lab.back_ip(Lab::octet("primary"));
        for host in ["primary", "replica1", "replica2"] {
            let ip = lab.back_ip(Lab::octet(host));
            let data = lab.dir.join(host);
            std::fs::create_dir_all(&data).unwrap();
            let mut args: Vec<String> = [
                "--bind",
                &ip,
                "--port",
                "6379",
                "--protected-mode",
                "no",
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--min-replicas-to-write",
                "1",
                "--min-replicas-max-lag",
                "10",
                "--repl-timeout",
                "5",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            args.extend(["--dir".into(), data.display().to_string()]);
            for module in ["rejson.so", "redisearch.so"] {
                args.extend(["--loadmodule".into(), bin.join(module).display().to_string()]);
            }
            if host != "primary" {
                args.extend(["--replicaof".into(), primary_ip.clone(), "6379".into()]);
            }
            lab.spawn(host, &bin.join("redis-server"), &args, &[]);
        }
        for host in ["sentinel1", "sentinel2", "sentinel3"] {
            let ip = lab.back_ip(Lab::octet(host));
            let conf = lab.dir.join(format!("{host}.conf"));
            std::fs::write(
                &conf,
                format!(
                    "bind {ip}\nport 26379\nprotected-mode no\ndir {dir}\n\
                     sentinel monitor redbank {primary_ip} 6379 2\n\
                     sentinel down-after-milliseconds redbank {DOWN_AFTER_MS}\n\
                     sentinel failover-timeout redbank 10000\n\
                     sentinel parallel-syncs redbank 1\n",
                    dir = lab.dir.display()
                ),
            )
            .unwrap();
            let args = [conf.display().to_string(), "--sentinel".into()];
            lab.spawn(host, &bin.join("redis-server"), &args, &[]);
        }
        // The replicas must be in sync before the apps write (min-replicas-to-write).
        let deadline = Instant::now() + Duration::from_secs(20);
        while lab.role(&primary_ip).await.as_deref() != Some("master")
            || lab.synced_replicas(&primary_ip).await < 2
        {
            assert!(Instant::now() < deadline, "the replicas did not sync");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // And every sentinel must know both replicas (it learns them from the primary's INFO,
        // every 10 s) and the other sentinels, or a failover finds no one to promote.
        for s in ["sentinel1", "sentinel2", "sentinel3"] {
            let ip = lab.back_ip(Lab::octet(s));
            let replicas = redis::cmd("SENTINEL").arg("REPLICAS").arg("redbank").clone();
            let peers = redis::cmd("SENTINEL").arg("SENTINELS").arg("redbank").clone();
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let known: Option<Vec<redis::Value>> = lab.query(&ip, 26379, &replicas).await;
                let others: Option<Vec<redis::Value>> = lab.query(&ip, 26379, &peers).await;
                if known.is_some_and(|r| r.len() == 2) && others.is_some_and(|o| o.len() == 2) {
                    break;
                }
                assert!(Instant::now() < deadline, "{s} does not know the topology");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        for app in ["app1", "app2"] {
            lab.start_app(app);
        }
        lab.start_nginx();
        for base in [lab.app_base("app1"), lab.app_base("app2"), lab.base()] {
            common::server::wait_healthy(&reqwest::Client::new(), &base, Duration::from_secs(30))
                .await;
        }
        lab
    }

    fn start_app(&mut self, app: &'static str) {
        let sentinels: Vec<String> = ["sentinel1", "sentinel2", "sentinel3"]
            .iter()
            .map(|s| format!("{}:26379", self.back_ip(Lab::octet(s))))
            .collect();
        let env = [
            ("ROCKET_ADDRESS", self.front_ip(Lab::octet(app))),
            ("ROCKET_PORT", "8080".into()),
            ("ROCKET_KEY_PREFIX", PREFIX.into()),
            ("ROCKET_REDIS_SENTINELS", serde_json::to_string(&sentinels).unwrap()),
            ("ROCKET_REDIS_TIMEOUT_MS", REDIS_TIMEOUT_MS.to_string()),
            ("ROCKET_GENERATOR_INTERVAL_MS", "300".into()),
            ("ROCKET_SSE_HEARTBEAT_SECS", "1".into()),
            ("ROCKET_IP_HEADER", "X-Real-IP".into()),
            ("ROCKET_COOKIE_SECURE", "false".into()),
            ("ROCKET_PUBLIC_ORIGIN", "http://localhost:8080".into()),
            ("ROCKET_LOG_LEVEL", "normal".into()),
            ("ROCKET_CLI_COLORS", "false".into()),
        ];
        self.spawn(app, Path::new(env!("CARGO_BIN_EXE_redbank")), &[], &env);
    }

    fn start_nginx(&mut self) {
        let conf = self.dir.join("nginx.conf");
        let (a1, a2) = (self.front_ip(31), self.front_ip(32));
        std::fs::write(
            &conf,
            format!(
                "user root;\nworker_processes 1;\ndaemon off;\npid {dir}/nginx.pid;\n\
                 error_log {dir}/nginx-error.log;\nevents {{ worker_connections 1024; }}\n\
                 http {{\n  access_log off;\n\
                 upstream redbank {{ server {a1}:8080 max_fails=0; \
                 server {a2}:8080 max_fails=0; keepalive 16; }}\n\
                 server {{\n    listen {ip}:80;\n    location / {{\n\
                 proxy_pass http://redbank;\n      proxy_http_version 1.1;\n\
                 proxy_set_header Connection \"\";\n      proxy_set_header Host $host;\n\
                 proxy_set_header X-Real-IP $remote_addr;\n      proxy_buffering off;\n\
                 proxy_read_timeout 1h;\n      proxy_connect_timeout 1s;\n\
                 proxy_next_upstream error timeout http_502 http_503;\n    }}\n  }}\n}}\n",
                dir = self.dir.display(),
                ip = self.front_ip(40),
            ),
        )
        .unwrap();
        let args =
            ["-p".into(), self.dir.display().to_string(), "-c".into(), conf.display().to_string()];
        self.spawn("nginx", Path::new("nginx"), &args, &[]);
    }

    fn base(&self) -> String {
        format!("http://{}", self.front_ip(40))
    }

    fn app_base(&self, app: &str) -> String {
        format!("http://{}:8080", self.front_ip(Lab::octet(app)))
    }

    /// A connection from the root namespace, bounded so a cut host cannot hang the test.
    async fn conn(&self, ip: &str, port: u16) -> Option<redis::aio::MultiplexedConnection> {
        let client = redis::Client::open(format!("redis://{ip}:{port}")).ok()?;
        let connect = client.get_multiplexed_async_connection();
        tokio::time::timeout(Duration::from_millis(500), connect).await.ok()?.ok()
    }

    async fn query<T: redis::FromRedisValue>(
        &self,
        ip: &str,
        port: u16,
        cmd: &redis::Cmd,
    ) -> Option<T> {
        let mut conn = self.conn(ip, port).await?;
        match tokio::time::timeout(Duration::from_millis(500), cmd.query_async(&mut conn)).await {
            Ok(Ok(value)) => Some(value),
            Ok(Err(e)) => {
                report(format!("ha: {ip}:{port}: {e}"));
                None
            }
            Err(_) => None,
        }
    }

    async fn role(&self, ip: &str) -> Option<String> {
        let reply: Vec<redis::Value> = self.query(ip, 6379, &redis::cmd("ROLE")).await?;
        reply.first().and_then(redbank::redis::value_text)
    }

    async fn synced_replicas(&self, ip: &str) -> usize {
        let info: String =
            self.query(ip, 6379, redis::cmd("INFO").arg("replication")).await.unwrap_or_default();
        info.lines().filter(|l| l.starts_with("slave") && l.contains("state=online")).count()
    }

    /// The primary as the sentinels name it now (its back-network address).
    async fn primary(&self) -> Option<String> {
        for s in ["sentinel1", "sentinel2", "sentinel3"] {
            let cmd = redis::cmd("SENTINEL").arg("get-master-addr-by-name").arg("redbank").clone();
            if let Some((ip, _port)) =
                self.query::<(String, String)>(&self.back_ip(Lab::octet(s)), 26379, &cmd).await
            {
                return Some(ip);
            }
        }
        None
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for (_, child) in &mut self.procs {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.teardown_network();
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(1))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn try_login(http: &reqwest::Client, base: &str, user: &str, pw: &str) -> reqwest::Response {
    let body = json!({"username": user, "password": pw});
    http.post(format!("{base}/api/v1/login")).json(&body).send().await.unwrap()
}

async fn login(http: &reqwest::Client, base: &str, user: &str, password: &str) -> String {
    let res = try_login(http, base, user, password).await;
    assert_eq!(res.status(), 200, "login {user}");
    res.json::<Value>().await.unwrap()["token"].as_str().unwrap().to_owned()
}

/// bob sends alice `amount` with `reference`, which is also the idempotency key.
async fn transfer(
    http: &reqwest::Client,
    base: &str,
    bob: &str,
    amount: &str,
    reference: &str,
) -> reqwest::Response {
    let body = json!({"to_account": ALICE_ACCOUNT, "amount": amount, "reference": reference});
    let req = http.post(format!("{base}/api/v1/transfers")).bearer_auth(bob);
    req.header("Idempotency-Key", reference).json(&body).send().await.unwrap()
}

/// A client following `/events` through nginx as a browser would: on any end it reconnects
/// with the last id it saw. It records every transaction event id and how often it reconnected.
struct Follower {
    seen: Arc<Mutex<Vec<String>>>,
    reconnects: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Follower {
    fn start(url: String, token: String) -> Follower {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let reconnects = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, r, st) = (seen.clone(), reconnects.clone(), stop.clone());
        let task = tokio::spawn(async move {
            let http = http();
            let mut last: Option<String> = None;
            while !st.load(Ordering::Relaxed) {
                let mut req = http.get(&url).bearer_auth(&token);
                if let Some(id) = &last {
                    req = req.header("Last-Event-ID", id);
                }
                if let Ok(res) = req.send().await {
                    if res.status() == 200 {
                        let mut sse = Sse::new(res);
                        loop {
                            match sse.next(Duration::from_millis(500)).await {
                                Next::Event(e) => {
                                    if let Some(id) = e.id {
                                        if e.event == "transaction" {
                                            s.lock().unwrap().push(id.clone());
                                        }
                                        last = Some(id);
                                    }
                                }
                                Next::Timeout if st.load(Ordering::Relaxed) => return,
                                Next::Timeout => {}
                                Next::Closed => break,
                            }
                        }
                    }
                }
                r.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        Follower { seen, reconnects, stop, task }
    }

    async fn finish(self) -> (Vec<String>, usize) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = tokio::time::timeout(Duration::from_secs(5), self.task).await;
        let seen = self.seen.lock().unwrap().clone();
        (seen, self.reconnects.load(Ordering::Relaxed))
    }
}

/// Every entry of `account`'s stream from the first id the follower saw to the last is an event
/// it received, exactly once.
async fn assert_no_gap_no_duplicate(lab: &Lab, account: &str, seen: &[String]) {
    assert!(seen.len() >= 3, "too few events followed: {seen:?}");
    let unique: BTreeSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "an event arrived twice: {seen:?}");
    let primary = lab.primary().await.unwrap();
    let key = Keys::new(PREFIX).stream(account);
    let (first, last) = (&seen[0], &seen[seen.len() - 1]);
    let cmd = redis::cmd("XRANGE").arg(&key).arg(first).arg(last).clone();
    let entries: Vec<Vec<redis::Value>> = lab.query(&primary, 6379, &cmd).await.unwrap();
    let stored = entry_ids(&entries);
    assert_eq!(seen, stored.as_slice(), "events missed or out of order");
}

/// The ids of an `XRANGE` reply's entries.
fn entry_ids(entries: &[Vec<redis::Value>]) -> Vec<String> {
    entries.iter().filter_map(|e| e.first().and_then(redbank::redis::value_text)).collect()
}

/// Polls `url` until it answers 200, recording the slowest answer on the way; every other answer
/// must be a 503 with `Retry-After` (an outage, said so), never a 500 or a hang.
async fn until_ok(
    http: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    within: Duration,
) -> (Duration, Duration) {
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    loop {
        let t = Instant::now();
        let mut req = http.get(url).timeout(Duration::from_secs(5));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        let res = req.send().await.unwrap_or_else(|e| panic!("{url}: {e}"));
        slowest = slowest.max(t.elapsed());
        if res.status() == 200 {
            return (started.elapsed(), slowest);
        }
        assert_eq!(res.status(), 503, "{url} during the outage");
        assert!(res.headers().contains_key("retry-after"), "{url}: a 503 without Retry-After");
        assert!(started.elapsed() < within, "{url} not back within {within:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[rocket::async_test]
async fn cutting_the_primarys_link_fails_over_and_loses_nothing_acknowledged() {
    let Some((mut lab, http, base)) = start_lab(1).await else { return };

    // Before the cut: sessions, transfers acknowledged, a live stream.
    let mut tokens = Vec::new();
    for _ in 0..8 {
        tokens.push(login(&http, &base, "bob", "foobared").await);
    }
    let bob = tokens[0].clone();
    let follower = Follower::start(format!("{base}/events"), bob.clone());
    let mut transfers = Vec::new();
    for i in 0..5 {
        let res = transfer(&http, &base, &bob, "10.00", &format!("ha-{i}")).await;
        assert_eq!(res.status(), 201);
        let t: Value = res.json().await.unwrap();
        assert_eq!((&t["status"], &t["replication"]), (&json!("completed"), &json!("confirmed")));
        transfers.push(t["id"].as_str().unwrap().to_owned());
    }
    tokio::time::sleep(Duration::from_secs(2)).await;

    // The cut: the primary's only link goes down; nothing is shut down.
    let old_primary = lab.back_ip(Lab::octet("primary"));
    let cut = Instant::now();
    lab.link("primary", true, false);
    // Requests meanwhile get fast answers (503 + Retry-After), never a hang.
    // Both instances, each asked directly: both must follow the new primary.
    let mut slowest = Duration::ZERO;
    for app in ["app1", "app2"] {
        let url = format!("{}/api/v1/account", lab.app_base(app));
        slowest = slowest.max(until_ok(&http, &url, Some(&bob), Duration::from_secs(30)).await.1);
    }
    let recovered = cut.elapsed();
    let promoted = lab.primary().await.unwrap();
    assert_ne!(promoted, old_primary, "no replica was promoted");
    let writes_back = cut.elapsed();
    // A write (a sign-in) works on the new primary.
    tokens.push(login(&http, &base, "bob", "foobared").await);
    report(format!(
        "ha: primary link cut → apps serving again after {:.1} s (down-after {DOWN_AFTER_MS} ms); \
         slowest answer meanwhile {} ms; writes back after {:.1} s; new primary {promoted}",
        recovered.as_secs_f64(),
        slowest.as_millis(),
        writes_back.as_secs_f64(),
    ));
    assert!(recovered < Duration::from_secs(10), "failover took {recovered:?}");
    assert!(slowest < Duration::from_millis(REDIS_TIMEOUT_MS * 4), "an answer took {slowest:?}");

    // Every session made before the cut still works.
    for token in &tokens[..8] {
        let res = http.get(format!("{base}/api/v1/me")).bearer_auth(token).send().await.unwrap();
        assert_eq!(res.status(), 200, "a session was lost");
    }
    // Every acknowledged transfer is there, exactly once, and the balance adds up.
    let res = http
        .get(format!("{base}/api/v1/transactions?limit=100"))
        .bearer_auth(&bob)
        .send()
        .await
        .unwrap();
    let txs: Vec<Value> = res.json().await.unwrap();
    for (i, id) in transfers.iter().enumerate() {
        let t: Value = http
            .get(format!("{base}/api/v1/transfers/{id}"))
            .bearer_auth(&bob)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(t["status"], "completed");
        let reference = format!("ha-{i}");
        let debits = txs.iter().filter(|t| t["description"] == reference.as_str()).count();
        assert_eq!(debits, 1, "transfer {reference} booked {debits} times");
    }
    // The balance invariant, on the new primary: opening balance + every stored transaction.
    let primary = lab.primary().await.unwrap();
    let stream = Keys::new(PREFIX).stream(BOB_ACCOUNT);
    let cmd = redis::cmd("XRANGE").arg(&stream).arg("-").arg("+").clone();
    let entries: Vec<Vec<redis::Value>> = lab.query(&primary, 6379, &cmd).await.unwrap();
    let sum: i64 = entries
        .iter()
        .map(|e| {
            let fields: Vec<String> = redis::from_redis_value(&e[1]).unwrap();
            let doc: Value = serde_json::from_str(&fields[1]).unwrap();
            (doc["amount"].as_f64().unwrap() * 100.0).round() as i64
        })
        .sum();
    let cmd = redis::cmd("GET").arg(Keys::new(PREFIX).balance(BOB_ACCOUNT)).clone();
    let balance: i64 = lab.query(&primary, 6379, &cmd).await.unwrap();
    assert_eq!(balance, 10_000_000 + sum, "balance != opening + Σ transactions");

    // The stream resumed through nginx and missed nothing.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (seen, reconnects) = follower.finish().await;
    assert!(reconnects >= 1, "the stream never had to reconnect");
    assert_no_gap_no_duplicate(&lab, BOB_ACCOUNT, &seen).await;
    report(format!(
        "ha: the stream followed {} events across the failover, {reconnects} reconnect(s), none lost or repeated",
        seen.len()
    ));

    // Heal: the old primary comes back as a replica of the new one; it took no writes meanwhile.
    let healed = Instant::now();
    lab.link("primary", true, true);
    // Until the sentinels demote it, the old primary still calls itself one: every write the
    // apps acknowledge meanwhile must land on the new primary (it would be thrown away on the old
    // one when it resyncs).
    let mut after_heal = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    // One a second, at most 8: with the 9 made before, under max_sessions_per_user (20).
    let mut next_sign_in = Instant::now();
    while lab.role(&old_primary).await.as_deref() != Some("slave") {
        assert!(Instant::now() < deadline, "the old primary did not rejoin as a replica");
        tokio::time::sleep(Duration::from_millis(200)).await;
        if after_heal.len() == 8 || Instant::now() < next_sign_in {
            continue;
        }
        next_sign_in = Instant::now() + Duration::from_secs(1);
        let res = try_login(&http, &base, "bob", "foobared").await;
        if res.status() == 200 {
            let body: Value = res.json().await.unwrap();
            after_heal.push(body["token"].as_str().unwrap().to_owned());
        }
    }
    report(format!(
        "ha: link healed → old primary a replica after {:.1} s; {} sign-ins meanwhile",
        healed.elapsed().as_secs_f64(),
        after_heal.len()
    ));
    assert!(!after_heal.is_empty(), "no sign-in was tried while the old primary rejoined");
    tokio::time::sleep(Duration::from_secs(2)).await;
    for token in &after_heal {
        let res = http.get(format!("{base}/api/v1/me")).bearer_auth(token).send().await.unwrap();
        assert_eq!(res.status(), 200, "a sign-in acknowledged during the heal was lost");
    }
    let balance = Keys::new(PREFIX).balance(BOB_ACCOUNT);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let old: Option<i64> = lab.query(&old_primary, 6379, redis::cmd("GET").arg(&balance)).await;
        let new: Option<i64> = lab.query(&promoted, 6379, redis::cmd("GET").arg(&balance)).await;
        if old.is_some() && old == new {
            break;
        }
        assert!(Instant::now() < deadline, "the old primary did not converge: {old:?} vs {new:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    lab.kill("nginx");
}

#[rocket::async_test]
async fn killing_an_app_moves_its_streams_and_the_generator_to_the_other() {
    let Some((mut lab, http, base)) = start_lab(2).await else { return };
    let bob = login(&http, &base, "bob", "foobared").await;
    let followers: Vec<Follower> =
        (0..4).map(|_| Follower::start(format!("{base}/events"), bob.clone())).collect();
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Kill the instance that runs the generator (its log says so; the lock holds its token).
    let primary = lab.primary().await.unwrap();
    let leader_key = Keys::new(PREFIX).generator_leader();
    let holder: String =
        lab.query(&primary, 6379, redis::cmd("GET").arg(&leader_key)).await.unwrap();
    let victim = if std::fs::read_to_string(lab.dir.join("app1.log"))
        .unwrap_or_default()
        .contains("this instance is now the leader")
    {
        "app1"
    } else {
        "app2"
    };
    let stream_key = Keys::new(PREFIX).stream(BOB_ACCOUNT);
    let killed = Instant::now();
    lab.kill(victim);
    // The generator resumes on the survivor within its lease.
    let newest =
        redis::cmd("XREVRANGE").arg(&stream_key).arg("+").arg("-").arg("COUNT").arg(1).clone();
    let newest_id = async || {
        entry_ids(&lab.query::<Vec<Vec<redis::Value>>>(&primary, 6379, &newest).await.unwrap())
    };
    let before = newest_id().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = newest_id().await;
        let owner: Option<String> =
            lab.query(&primary, 6379, redis::cmd("GET").arg(&leader_key)).await.flatten();
        if now != before && owner.as_ref().is_some_and(|o| *o != holder) {
            break;
        }
        assert!(Instant::now() < deadline, "the generator did not move");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let moved = killed.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut total = 0;
    for follower in followers {
        let (seen, reconnects) = follower.finish().await;
        assert_no_gap_no_duplicate(&lab, BOB_ACCOUNT, &seen).await;
        total += reconnects;
    }
    assert!(total >= 1, "no stream was on the killed instance");
    report(format!(
        "ha: {victim} killed → generator on the other instance after {:.1} s (lease {} ms); 4 streams resumed through nginx ({total} reconnects), none lost or repeated",
        moved.as_secs_f64(),
        300 * 5 / 2
    ));
}

#[rocket::async_test]
async fn an_app_cut_from_redis_answers_503_fast_while_the_other_serves() {
    let Some((lab, http, base)) = start_lab(3).await else { return };
    let bob = login(&http, &base, "bob", "foobared").await;
    lab.link("app1", true, false);
    // app1 itself: fast 503s with Retry-After.
    let mut slowest = Duration::ZERO;
    for _ in 0..10 {
        let t = Instant::now();
        let res = http
            .get(format!("{}/api/v1/account", lab.app_base("app1")))
            .bearer_auth(&bob)
            .send()
            .await
            .unwrap();
        slowest = slowest.max(t.elapsed());
        assert_eq!(res.status(), 503);
        assert!(res.headers().contains_key("retry-after"));
    }
    assert!(slowest < Duration::from_millis(REDIS_TIMEOUT_MS * 3), "{slowest:?}");
    // Through nginx, everything is served (by app2).
    for _ in 0..20 {
        let res =
            http.get(format!("{base}/api/v1/account")).bearer_auth(&bob).send().await.unwrap();
        assert_eq!(res.status(), 200);
    }
    lab.link("app1", true, true);
    let (back, _) = until_ok(
        &http,
        &format!("{}/api/v1/account", lab.app_base("app1")),
        Some(&bob),
        Duration::from_secs(15),
    )
    .await;
    // Both replicas cut off: the primary still takes writes for a while (min-replicas-max-lag),
    // but none is confirmed, so a transfer is answered 202 "pending", never plain success.
    lab.link("replica1", true, false);
    lab.link("replica2", true, false);
    let res = transfer(&http, &base, &bob, "5.00", "unconfirmed").await;
    let status = res.status();
    let t: Value = res.json().await.unwrap();
    assert_eq!((status.as_u16(), &t["replication"]), (202, &json!("pending")), "{t}");
    // Past min-replicas-max-lag (10 s) the primary refuses writes (NOREPLICAS): a fast 503 with
    // Retry-After, not a 500; reads go on.
    tokio::time::sleep(Duration::from_secs(11)).await;
    let res = try_login(&http, &base, "bob", "foobared").await;
    assert_eq!(res.status(), 503, "a write with no replica in sync");
    assert!(res.headers().contains_key("retry-after"));
    let res = http.get(format!("{base}/api/v1/me")).bearer_auth(&bob).send().await.unwrap();
    assert_eq!(res.status(), 200, "reads without replicas");
    lab.link("replica1", true, true);
    lab.link("replica2", true, true);

    report(format!(
        "ha: app1 cut from Redis → its answers 503 within {} ms (redis_timeout_ms {REDIS_TIMEOUT_MS}), nginx kept serving from app2; healed → app1 serving after {:.1} s",
        slowest.as_millis(),
        back.as_secs_f64()
    ));
}
