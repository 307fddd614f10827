//! The `redbank` binary: everything lives in the library so tests and tools build the same Rocket.

#[rocket::launch]
fn rocket() -> _ {
    redbank::rocket()
}
