//! Lua scripts are `.lua` files beside the code that runs them, compiled in and named by their
//! path under `src/`: `lua!("redis/lua/lease_hold")` is `src/redis/lua/lease_hold.lua`. Each is
//! hashed once per process (`EVALSHA`, with the script sent again only when Redis lost it).

/// The script at `src/<name>.lua`, as a `&'static redis::Script`.
#[macro_export]
macro_rules! lua {
    ($name:literal) => {{
        static SCRIPT: std::sync::LazyLock<::redis::Script> = std::sync::LazyLock::new(|| {
            ::redis::Script::new(include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/src/",
                $name,
                ".lua"
            )))
        });
        &*SCRIPT
    }};
}
