//! Sharding, honestly: every command, script and `MULTI` the app sends stays in one hash slot, so
//! each would run unchanged on one Redis Cluster shard. A real workload (the generator, sign-ins
//! with a password and with a second factor, a transfer with both legs, the pages, search, the
//! sessions list, a step-up, a passkey enrolment, an account opened and confirmed, a password
//! reset, the operator console ending a session, a sign-out) runs against a Redis watched with
//! `MONITOR`; for every command the
//! keys are those Redis itself names (`COMMAND GETKEYS`), a script's are its declared keys plus
//! the keys of every command it ran (`MONITOR` shows those as the client `lua`), and a `MULTI`
//! block's are all of its commands' keys. Search (`FT.*`) is the one exception, and
//! OPERATIONS.md says so: an index sees only its own node's keys.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use reqwest::Method;
use serde_json::json;

use crate::bank::ALICE;
use crate::common::RedisServer;
use crate::common::monitor::{Monitor, Seen};
use crate::common::request::RequestHelper;
use crate::common::server::TestServer;
use crate::{password, signup, transfers};

/// Redis Cluster's slot of `key`: CRC16 (XMODEM) of its hash tag (the text between the first
/// `{` and the next `}`, when not empty) or of the whole key, mod 16384.
fn slot(key: &[u8]) -> u16 {
    let tagged = key.iter().position(|&b| b == b'{').and_then(|open| {
        let len = key[open + 1..].iter().position(|&b| b == b'}')?;
        (len > 0).then(|| &key[open + 1..open + 1 + len])
    });
    let mut crc: u16 = 0;
    for &b in tagged.unwrap_or(key) {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 { (crc << 1) ^ 0x1021 } else { crc << 1 };
        }
    }
    crc % 16384
}

#[test]
fn slots_are_computed_as_redis_cluster_does() {
    // CLUSTER KEYSLOT's documented values.
    assert_eq!(slot(b"123456789"), 12739);
    assert_eq!(slot(b"{user1000}.following"), slot(b"{user1000}.followers"));
    assert_ne!(slot(b"foo{}{bar}"), slot(b"bar"));
    assert_eq!(slot(b"foo{{bar}}zap"), slot(b"{bar"));
    assert_eq!(slot(b"redbank:balance:{acct:1}"), slot(b"acct:1"));
}

/// One unit of work that must stay in one slot: a command, a script with what it ran, or a
/// `MULTI` block.
struct Unit<'a> {
    /// The command's name, `script <sha>` or `MULTI`.
    what: String,
    commands: Vec<&'a Seen>,
    /// A script's declared keys.
    declared: Vec<String>,
}

/// Groups the commands into units: a script call with the commands it ran after it, a `MULTI`
/// block with everything its client queued, any other command alone.
fn units(seen: &[Seen]) -> Vec<Unit<'_>> {
    let mut out = Vec::new();
    let mut open: HashMap<&str, Vec<&Seen>> = HashMap::new();
    let mut i = 0;
    while i < seen.len() {
        let s = &seen[i];
        let cmd = s.name();
        i += 1;
        if s.client == "lua" {
            continue; // counted with its script below
        }
        if let Some(block) = open.get_mut(s.client.as_str()) {
            if cmd == "EXEC" || cmd == "DISCARD" {
                let block = open.remove(s.client.as_str()).unwrap_or_default();
                out.push(Unit { what: "MULTI".into(), commands: block, declared: Vec::new() });
            } else {
                block.push(s);
            }
            continue;
        }
        match cmd.as_str() {
            "MULTI" => {
                open.insert(&s.client, Vec::new());
            }
            "EVAL" | "EVALSHA" | "EVAL_RO" | "EVALSHA_RO" | "FCALL" => {
                let n: usize = s.words.get(2).and_then(|n| n.parse().ok()).unwrap_or(0);
                let declared = s.words.iter().skip(3).take(n).cloned().collect();
                let mut ran = Vec::new();
                while i < seen.len() && seen[i].client == "lua" {
                    ran.push(&seen[i]);
                    i += 1;
                }
                let sha = s.words.get(1).map_or("", |w| &w[..8.min(w.len())]);
                out.push(Unit { what: format!("script {sha}"), commands: ran, declared });
            }
            _ => out.push(Unit { what: cmd, commands: vec![s], declared: Vec::new() }),
        }
    }
    out
}

/// The keys of one command, as Redis names them (none for a keyless command).
async fn keys_of(c: &mut redis::aio::MultiplexedConnection, seen: &Seen) -> Option<Vec<String>> {
    let mut cmd = redis::cmd("COMMAND");
    cmd.arg("GETKEYS");
    for w in &seen.words {
        cmd.arg(w);
    }
    match cmd.query_async::<_, Vec<String>>(c).await {
        Ok(keys) => Some(keys),
        Err(e) if e.to_string().contains("no key arguments") => Some(Vec::new()),
        // Redis cannot name them (a module command without key specs): unchecked.
        Err(_) => None,
    }
}

#[rocket::async_test]
async fn no_command_script_or_multi_spans_two_slots() {
    let redis = RedisServer::start();
    let server = TestServer::start(&redis, None, |f| f.merge(("generator_interval_ms", 100))).await;
    let mut monitor = Monitor::start(&redis).await;

    // The workload.
    let bob = server.api_login("bob", "foobared").await;
    let alice = server.api_login("alice", "wonderland").await; // TOTP second factor
    let (cookie, _) = server.login("bob", "foobared").await;
    let as_bob = server.as_token(&bob);
    let body = json!({"to_account": ALICE, "amount": 3, "reference": "Slots"});
    let (status, t) = transfers::transfer(&server, &bob, &transfers::key(), body).await;
    assert_eq!(status, 201, "{t}");
    for path in
        ["/api/v1/me", "/api/v1/account", "/api/v1/sessions", "/api/v1/transactions?q=Slots"]
    {
        let (status, body) = as_bob.get(path).await;
        assert_eq!(status, 200, "{path}: {body}");
    }
    for path in ["/dashboard", "/transactions?q=Slots", "/sessions"] {
        let res = server.http.get(server.url(path)).header("Cookie", &cookie).send().await.unwrap();
        assert_eq!(res.status(), 200, "{path}");
    }
    let (status, _) = server.as_token(&alice).get("/api/v1/me").await;
    assert_eq!(status, 200);
    // A step-up (merged into the session), then a passkey enrolled with the mailed code.
    let (status, body) =
        as_bob.post("/api/v1/step-up/password", &json!({"password": "foobared"})).await;
    assert_eq!(status, 200, "{body}");
    transfers::bob_with_passkey(&server).await;
    // An account opened and confirmed, then its password reset by the mailed link.
    let (email, password) = ("sam.slots@example.com", "violet quartz river lamp");
    assert_eq!(signup::open(&server, "Sam Slots", email, password).await.0, 201);
    assert_eq!(signup::confirm(&server, email, Some(password)).await.0, 204);
    let token = password::reset_token(&server, email, email).await;
    let body = json!({"token": token, "password": "amber falcon over the hill"});
    let (status, body) = server.anon().post("/api/v1/password/reset", &body).await;
    assert_eq!(status, 204, "{body}");
    // The console: the operator (signed in with the machine's authenticator app) lists the
    // sessions and ends alice's.
    let (operator, _) = server.operator().await;
    let (status, _) = server.as_token(&operator).get("/api/v1/admin/sessions").await;
    assert_eq!(status, 200);
    let alices = format!("/api/v1/admin/sessions/{}", crate::common::session_id(&alice));
    let (status, body) = server.as_token(&operator).delete(&alices).await;
    assert!(status.is_success(), "{body}");
    let (status, body) = as_bob.call(Method::DELETE, "/api/v1/session").await.pair();
    assert!(status.is_success(), "{body}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.stop().await.unwrap();
    let seen = monitor.until_quiet(Duration::from_millis(500)).await;

    let mut c = redis.conn().await;
    let mut checked = 0;
    let mut unchecked: BTreeMap<String, usize> = BTreeMap::new();
    let mut spans = Vec::new();
    let mut kinds: BTreeSet<String> = BTreeSet::new();
    let mut scripts = 0;
    for unit in units(&seen) {
        let mut keys: BTreeSet<String> = unit.declared.into_iter().collect();
        for s in &unit.commands {
            match keys_of(&mut c, s).await {
                Some(named) => keys.extend(named),
                None => *unchecked.entry(s.name()).or_default() += 1,
            }
        }
        let slots: BTreeSet<u16> = keys.iter().map(|k| slot(k.as_bytes())).collect();
        if slots.len() > 1 {
            spans.push(format!("{}: {keys:?}", unit.what));
        }
        let kind = unit.what.split(' ').next().unwrap_or("").to_owned();
        scripts += usize::from(kind == "script");
        if !keys.is_empty() {
            checked += 1;
            kinds.insert(kind);
        }
    }
    assert!(spans.is_empty(), "units spanning two slots:\n{}", spans.join("\n"));
    // Only search is left unchecked: FT.* names an index, which the cluster routes by the
    // index name's slot (OPERATIONS.md, "Redis Cluster").
    assert!(
        unchecked.keys().all(|cmd| cmd.starts_with("FT.")),
        "commands whose keys Redis could not name: {unchecked:?}"
    );
    // The workload reached what it claims: scripts (the transaction script among them), `MULTI`
    // blocks and plain commands.
    assert!(checked > 100, "only {checked} units with keys");
    assert!(kinds.contains("script") && kinds.contains("MULTI"), "{kinds:?}");
    assert!(scripts >= 10, "only {scripts} script calls");
}
