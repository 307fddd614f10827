//! The `redbank` binary: everything lives in the library so tests and tools build the same Rocket.

#[rocket::launch]
fn rocket() -> _ {
    let figment = redbank::figment();
    redbank::logging::init(&figment);
    redbank::build(figment)
}
