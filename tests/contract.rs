//! schemathesis against a live app: every operation of the OpenAPI document, with a bearer token,
//! fuzzed from the document's own schemas. No 5xx, and every status code, content type, body and
//! header must be what the document says. Whatever it finds is fixed in the app or the document,
//! never excluded here.
//!
//! And a client generated from the document by openapi-python-client, as a mobile developer would
//! make one: it must generate without a warning and carry a session from sign-in to a transfer.
//!
//! Needs schemathesis and openapi-python-client (scripts/test installs the pinned versions into
//! ~/.cache/redbank and names them in `REDBANK_SCHEMATHESIS` and `REDBANK_OPENAPI_CLIENT`). Its own
//! binary, like the browser test: the fuzzer's load would skew the timing-sensitive tests in
//! `tests/all`.

#![allow(clippy::unwrap_used)]

#[path = "all/common/mod.rs"]
mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use common::server::TestServer;

const BOB_PASSWORD: &str = "foobared";
/// alice's account number (the demo's payee).
const ALICE: &str = "2734819056";

/// The installed tool `var` names (scripts/test sets it).
fn tool(var: &str) -> PathBuf {
    match std::env::var_os(var) {
        Some(path) => PathBuf::from(path),
        None => {
            panic!("{var} is not set: run scripts/test, which installs the tool and names it there")
        }
    }
}

/// A client generated from the live document by openapi-python-client (pinned) generates without
/// a warning, compiles, and drives sign-in → account → transactions → a transfer → search →
/// sessions → security activity, every answer parsed into its generated model
/// (tests/client/flow.py).
#[rocket::async_test]
async fn a_generated_python_client_signs_in_and_sends_money() {
    let generator = tool("REDBANK_OPENAPI_CLIENT");
    let bin = generator.parent().unwrap().to_path_buf();
    // The generator formats its output with ruff, from the same virtualenv.
    let path = std::env::join_paths(
        std::iter::once(bin.clone())
            .chain(std::env::split_paths(&std::env::var_os("PATH").unwrap())),
    )
    .unwrap();
    let server = TestServer::start(common::shared_redis(), None, |f| f).await;
    let doc = server.http.get(server.url("/api/v1/openapi.json")).send().await.unwrap();
    let doc = doc.text().await.unwrap();
    let work = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("python-client");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    std::fs::write(work.join("openapi.json"), doc).unwrap();
    let generated = work.join("client");
    let out = Command::new(&generator)
        .current_dir(&work)
        .env("PATH", &path)
        .args(["generate", "--path", "openapi.json", "--output-path"])
        .arg(&generated)
        .output()
        .unwrap();
    let said =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "openapi-python-client failed:\n{said}");
    let warned: Vec<&str> = said
        .lines()
        .filter(|l| {
            ["warning", "error", "unable", "skipping"].iter().any(|w| l.to_lowercase().contains(w))
        })
        .collect();
    assert!(warned.is_empty(), "the generator warned:\n{said}");
    let python = bin.join("python");
    let compiled = Command::new(&python)
        .args(["-W", "error", "-m", "compileall", "-q"])
        .arg(&generated)
        .output()
        .unwrap();
    assert!(compiled.status.success(), "{}", String::from_utf8_lossy(&compiled.stdout));
    let flow = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/client/flow.py");
    let ran = Command::new(&python)
        .env("PYTHONPATH", &generated)
        .arg("-W")
        .arg("error")
        .arg(&flow)
        .args([&server.base, "bob", BOB_PASSWORD, ALICE])
        .output()
        .unwrap();
    let (stdout, stderr) =
        (String::from_utf8_lossy(&ran.stdout), String::from_utf8_lossy(&ran.stderr));
    assert!(ran.status.success(), "the generated client's flow failed:\n{stdout}\n{stderr}");
    assert!(stdout.starts_with("ok:"), "{stdout}");
    server.stop().await.unwrap();
}

#[rocket::async_test]
async fn schemathesis_finds_nothing() {
    let st = tool("REDBANK_SCHEMATHESIS");
    let server = TestServer::start(common::shared_redis(), None, |f| {
        // The fuzzer signs in (and fails to) far more often than a person: the throttle has its
        // own tests, here it would only hide the operations behind 429s.
        f.merge(("login_user_limit", 100_000))
            .merge(("login_ip_limit", 100_000))
            .merge(("login_account_limit", 100_000))
            .merge(("generator_interval_ms", 300))
    })
    .await;
    let (token, _) = server.operator().await;
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/contract");
    let report = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("schemathesis");
    let started = Instant::now();
    // Its working folder is the report's (it keeps a cache of findings in `.schemathesis/`).
    std::fs::create_dir_all(&report).unwrap();
    let run = || {
        Command::new(&st)
            .current_dir(&report)
            .arg("--config-file")
            .arg(dir.join("schemathesis.toml"))
            .arg("run")
            .arg(server.url("/api/v1/openapi.json"))
            .args([
                "--checks",
                "not_a_server_error,status_code_conformance,content_type_conformance,\
                 response_schema_conformance,response_headers_conformance",
                "--phases",
                "examples,coverage,fuzzing,stateful",
                "--max-examples",
                "50",
                "--seed",
                "20261130",
                "--generation-database",
                "none",
                "--workers",
                "2",
                "--request-timeout",
                "10",
                "--no-color",
                "--report",
                "junit",
                "--report-dir",
            ])
            .arg(&report)
            .env("SCHEMATHESIS_HOOKS", dir.join("hooks.py"))
            .env("REDBANK_BASE", &server.base)
            .env("REDBANK_TOKEN", &token)
            .env("REDBANK_BOB_PASSWORD", BOB_PASSWORD)
            .output()
            .unwrap_or_else(|e| panic!("{} did not start: {e}", st.display()))
    };
    let mut out = run();
    // CPython 3.11 before 3.11.8 can fail inside hypothesis with "AST constructor recursion
    // depth mismatch" (CPython gh-106905): a fault of the fuzzer's interpreter, reported as a
    // runtime error of whichever operation it was drawing for, not a finding about the API. Such
    // a run, and only such a run, is tried once more.
    let fault = "AST constructor recursion depth mismatch";
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() && text.contains(fault) && !text.contains("Failures:") {
        std::io::Write::write_all(
            &mut std::io::stderr(),
            format!("schemathesis: {fault}, run again\n").as_bytes(),
        )
        .unwrap();
        out = run();
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    std::fs::write(report.join("output.txt"), stdout.as_bytes()).unwrap();
    // Straight to stderr: the summary (operations, cases, time) belongs in the test log even
    // when it passes (the whole output is in target/tmp/schemathesis/output.txt).
    let summary = stdout.lines().rev().take(12).collect::<Vec<_>>();
    let summary = summary.into_iter().rev().collect::<Vec<_>>().join("\n");
    let took = started.elapsed().as_secs();
    let line = format!("schemathesis ({took} s):\n{summary}\n");
    std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes()).unwrap();
    // Its session lived through the run, so every operation was tried signed in, not refused.
    let me = server.http.get(server.url("/api/v1/me")).bearer_auth(&token).send().await.unwrap();
    if me.status() != 200 {
        let mut conn = common::shared_redis().conn().await;
        let key = server.keys().activity("admin");
        let activity: redis::Value =
            redis::cmd("XRANGE").arg(&key).arg("-").arg("+").query_async(&mut conn).await.unwrap();
        panic!("the operator's session ended during the run: {activity:?}");
    }
    assert!(out.status.success(), "schemathesis failed:\n{stdout}\n{stderr}");
    // And still an operator: the admin operations were tried with their rights, not refused.
    let stats = server.http.get(server.url("/api/v1/admin/stats")).bearer_auth(&token).send();
    assert_eq!(stats.await.unwrap().status(), 200, "the run took the operator's rights");
    server.stop().await.unwrap();
}
