//! Test harness: a real redis-server (8.x + RedisJSON + RediSearch) on a free loopback port, and the
//! real Rocket app built against it with an isolated key prefix per test, so tests run in parallel
//! without a global lock and without mocks.
//!
//! The binaries come from `$REDBANK_REDIS_DIR` or `scripts/redis path` (which downloads them once).
//! One shared server per test binary serves the ordinary tests; tests that stop, freeze or restart
//! Redis get a dedicated one. Every server is killed on drop, and a tiny watchdog kills the shared one
//! when the test process exits (statics are never dropped).

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rocket::figment::Figment;
use rocket::local::asynchronous::Client;

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

/// A redis-server child process on 127.0.0.1; killed on drop.
pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    modules: bool,
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

    fn spawn(modules: bool) -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "redbank-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let mut server = RedisServer { child: None, port: free_port(), modules, dir };
        server.launch();
        server
    }

    fn launch(&mut self) {
        let bin = redis_dir();
        let mut cmd = Command::new(bin.join("redis-server"));
        cmd.args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "yes"])
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

    /// Kills the server (like a crash); data is lost (no persistence in tests).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
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
        .merge(("log_level", "off"))
}

/// The real app on a local (in-process) client.
pub struct TestApp {
    pub client: Client,
    pub prefix: String,
}

impl TestApp {
    /// The app against the shared Redis with a fresh key prefix.
    pub async fn new() -> Self {
        Self::with(shared_redis(), |f| f).await
    }

    /// The app against `redis`, with extra configuration applied to the test figment.
    pub async fn with(redis: &RedisServer, tweak: impl FnOnce(Figment) -> Figment) -> Self {
        let prefix = unique_prefix();
        let figment = tweak(test_figment(redis, &prefix));
        let client = Client::tracked(redbank::build(figment)).await.expect("valid rocket");
        TestApp { client, prefix }
    }

    pub fn db(&self) -> &redbank::redis::Db {
        self.client.rocket().state::<redbank::redis::Db>().expect("Db state")
    }
}
