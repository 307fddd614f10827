//! The process's logger: Rocket's own format and levels, minus what is not an operator's problem.
//!
//! Rocket's server logs every client that closes its connection early — "Connection failed:
//! connection closed before message completed", "Remote left: …" — as a warning, so even at
//! `log_level = "critical"` health checks and impatient clients fill the log (hundreds of lines
//! per benchmark run). An ordinary disconnect is shown only at `debug`; everything else is printed
//! as Rocket prints it. The binary installs this logger before Rocket starts (Rocket then keeps
//! it); tests keep Rocket's.

use std::io::Write;

use log::{Level, LevelFilter, Log, Metadata, Record};
use rocket::config::LogLevel;
use rocket::figment::Figment;

/// Installs the logger at the figment's `log_level` (Rocket's default for the profile if unset).
pub fn init(figment: &Figment) {
    let level: LevelFilter =
        figment.extract_inner::<LogLevel>("log_level").unwrap_or(LogLevel::Normal).into();
    if log::set_boxed_logger(Box::new(Logger)).is_ok() {
        log::set_max_level(level);
    }
}

struct Logger;

/// Rocket's `launch_info!` records: shown at every level but `off`.
fn is_launch(metadata: &Metadata<'_>) -> bool {
    metadata.target().contains("rocket::launch")
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
        let quiet = from("hyper") || from("rustls") || from("r2d2") || is_client_disconnect(record);
        if quiet && !debug {
            return;
        }
        // Rocket marks continuation lines with a target ending in "_".
        let indented = record.target().ends_with('_');
        let level = if is_launch(record.metadata()) { Level::Info } else { record.level() };
        let args = record.args();
        let mut out = std::io::stdout().lock();
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
