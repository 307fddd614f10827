//! The `redbank` binary: everything lives in the library so tests and tools build the same Rocket.

/// See the `mimalloc` dependency in Cargo.toml for why.
#[cfg(target_os = "linux")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[rocket::launch]
fn rocket() -> _ {
    let figment = redbank::figment();
    redbank::logging::init(&figment);
    redbank::build(figment)
}
