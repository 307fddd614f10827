//! The integration tests in one binary, as crates.io has them: one link instead of one per file,
//! and one shared Redis server. Each file is a feature; `common` is the harness. The browser test
//! is its own binary (`tests/browser.rs`), so chromium never competes with the timing-sensitive
//! tests here for the CPU.

#![allow(clippy::unwrap_used)]

mod common;

mod admin;
mod bank;
mod closing;
mod contract;
mod durability;
mod foundation;
mod live;
mod metrics;
mod mfa;
mod notices;
mod password;
mod sessions;
mod signup;
mod slots;
mod transfers;
