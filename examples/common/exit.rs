//! How a bench tool ends: on an error, the error on stderr after the tool's name, and a failing
//! exit code (so `scripts/bench` stops instead of reporting a row it did not measure).

use std::fmt::Display;
use std::process::ExitCode;

pub fn exit<E: Display>(tool: &str, result: Result<(), E>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{tool}: {e}");
            ExitCode::FAILURE
        }
    }
}
