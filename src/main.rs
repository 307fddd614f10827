//! The `redbank` binary: everything lives in the library so tests and tools build the same Rocket.
//!
//! `redbank` serves; `redbank admin totp [--replace]` sets up the operator's first factor on the
//! machine (see `admin::cli`).

use std::process::ExitCode;

/// See the `mimalloc` dependency in Cargo.toml for why.
#[cfg(target_os = "linux")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const USAGE: &str =
    "usage: redbank                         serve (configuration: Rocket.toml, ROCKET_*)
       redbank admin totp [--replace]  set up the admin's authenticator app on this machine
       redbank admin totp-rekey        re-seal every TOTP secret with the first of totp_keys";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        [] => {
            let figment = redbank::figment();
            redbank::logging::init(&figment);
            // As `#[rocket::launch]` does: a failed launch reports itself when dropped.
            let _ = rocket::execute(redbank::build(figment).launch());
            ExitCode::SUCCESS
        }
        ["admin", "totp"] => rocket::execute(redbank::admin::cli::totp(redbank::figment(), false)),
        ["admin", "totp", "--replace"] => {
            rocket::execute(redbank::admin::cli::totp(redbank::figment(), true))
        }
        ["admin", "totp-rekey"] => {
            rocket::execute(redbank::admin::cli::totp_rekey(redbank::figment()))
        }
        ["--help" | "-h" | "help"] => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}
