//! The process's logger: Rocket's own format and levels, minus what is not an operator's problem.
//!
//! Rocket's server logs every client that closes its connection early — "Connection failed:
//! connection closed before message completed", "Remote left: …" — as a warning, so even at
//! `log_level = "critical"` health checks and impatient clients fill the log (hundreds of lines
//! per benchmark run). An ordinary disconnect is shown only at `debug`, and so is Rocket's trace
//! of every request (the access log replaces it). Everything else is printed as Rocket prints it —
//! or, with `log_format = "json"`, as one JSON object per line (`ts`, `level`, `target`, `msg`,
//! and the record's fields, e.g. the access log's `request_id`) for a log pipeline. The binary
//! installs this logger before Rocket starts (Rocket then keeps it); tests keep Rocket's.

use std::io::Write;

use log::kv::{Key, Value, VisitSource};
use log::{Level, LevelFilter, Log, Metadata, Record};
use rocket::config::LogLevel;
use rocket::figment::Figment;
use serde_json::{Map, Value as Json};

use crate::clock::{now_ms, rfc3339_ms};
use crate::config::LogFormat;

/// Installs the logger at the figment's `log_level` (Rocket's default for the profile if unset)
/// and `log_format`.
pub fn init(figment: &Figment) {
    let level: LevelFilter =
        figment.extract_inner::<LogLevel>("log_level").unwrap_or(LogLevel::Normal).into();
    let format = figment.extract_inner::<LogFormat>("log_format").unwrap_or_default();
    if log::set_boxed_logger(Box::new(Logger { format })).is_ok() {
        log::set_max_level(level);
    }
}

struct Logger {
    format: LogFormat,
}

/// A record's key-value fields, in order.
fn fields(record: &Record<'_>) -> Vec<(String, Json)> {
    struct Collect(Vec<(String, Json)>);
    impl<'kvs> VisitSource<'kvs> for Collect {
        fn visit_pair(&mut self, key: Key<'kvs>, value: Value<'kvs>) -> Result<(), log::kv::Error> {
            let json = if let Some(n) = value.to_u64() {
                Json::from(n)
            } else if let Some(n) = value.to_i64() {
                Json::from(n)
            } else if let Some(x) = value.to_f64() {
                Json::from(x)
            } else {
                Json::from(value.to_string())
            };
            self.0.push((key.as_str().to_owned(), json));
            Ok(())
        }
    }
    let mut collect = Collect(Vec::new());
    let _ = record.key_values().visit(&mut collect);
    collect.0
}

/// One JSON object per record.
fn json_line(record: &Record<'_>, level: Level) -> String {
    let mut object = Map::new();
    object.insert("ts".into(), Json::from(rfc3339_ms(now_ms())));
    object.insert("level".into(), Json::from(level.as_str().to_ascii_lowercase()));
    object.insert("target".into(), Json::from(record.target().trim_end_matches(['_', ':'])));
    object.insert("msg".into(), Json::from(record.args().to_string()));
    for (key, value) in fields(record) {
        object.insert(key, value);
    }
    Json::Object(object).to_string()
}

/// Rocket's `launch_info!` records: shown at every level but `off`.
fn is_launch(metadata: &Metadata<'_>) -> bool {
    metadata.target().contains("rocket::launch")
}

/// Rocket's trace of each request — the request line with its full URI (queries carry search
/// terms), the route, the outcome, and for every 401 or 404 a catcher warning or even an *error*
/// ("No matching routes for …"); a request it cannot parse is dispatched to a catcher with its URI
/// in a warning. All of these show at `critical`'s threshold or below. The access log
/// (`crate::access`) says what an operator needs in one record per request instead. Everything
/// else Rocket's server says (shutdown, panics, failed writes) still shows.
fn is_request_trace(record: &Record<'_>) -> bool {
    if record.module_path() != Some("rocket::server") {
        return false;
    }
    let message = record.args().to_string();
    // The request line: `info!("{request}:")` (continuation lines have a target ending in `_`).
    if record.level() == Level::Info && !record.target().ends_with('_') && message.ends_with(':') {
        return true;
    }
    [
        "Matched: ",
        "Outcome:",
        "Response succeeded.",
        "Autohandling ",
        "No matching routes for ",
        "Responding with registered ",
        "catcher registered. Using Rocket default",
        "Bad incoming HTTP request.",
        "Dispatching salvaged request to catcher",
    ]
    .iter()
    .any(|phrase| message.contains(phrase))
}

/// A client that went away: Rocket's connection and response warnings for connections the client
/// closed (and the causes it indents under them).
fn is_client_disconnect(record: &Record<'_>) -> bool {
    if record.level() != Level::Warn
        || !record.module_path().is_some_and(|m| m.starts_with("rocket::server"))
    {
        return false;
    }
    let message = record.args().to_string();
    ["Connection failed: ", "Remote left: ", "Error: "].iter().any(|p| message.starts_with(p))
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        match log::max_level().to_level() {
            Some(max) => metadata.level() <= max || is_launch(metadata),
            None => false,
        }
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let debug = log::max_level() >= LevelFilter::Trace;
        let from = |path| record.module_path().is_some_and(|m| m.starts_with(path));
        // As Rocket does: the HTTP and TLS stacks speak only at debug.
        let quiet = from("hyper")
            || from("rustls")
            || from("r2d2")
            || is_client_disconnect(record)
            || is_request_trace(record);
        if quiet && !debug {
            return;
        }
        // Rocket marks continuation lines with a target ending in "_".
        let indented = record.target().ends_with('_');
        let level = if is_launch(record.metadata()) { Level::Info } else { record.level() };
        let mut out = std::io::stdout().lock();
        if self.format == LogFormat::Json {
            let _ = writeln!(out, "{}", json_line(record, level));
            return;
        }
        let mut args = record.args().to_string();
        for (key, value) in fields(record) {
            args.push_str(&format!(" {key}={value}"));
        }
        let _ = match (level, indented) {
            (_, true) => writeln!(out, "   >> {args}"),
            (Level::Error, false) => writeln!(out, "Error: {args}"),
            (Level::Warn, false) => writeln!(out, "Warning: {args}"),
            (Level::Debug, false) => {
                let (file, line) = (record.file().unwrap_or("?"), record.line().unwrap_or(0));
                writeln!(out, "\n--> {file}:{line}\n\t{args}")
            }
            (Level::Info | Level::Trace, false) => writeln!(out, "{args}"),
        };
    }

    fn flush(&self) {
        let _ = std::io::stdout().flush();
    }
}
