//! Lua scripts are `.lua` files beside the code that runs them, compiled in and named by their
//! path under `src/`: `lua!("redis/lua/lease_hold")` is `src/redis/lua/lease_hold.lua`. Each is
//! hashed once per process (`EVALSHA`, with the script sent again only when Redis lost it).

/// The script at `src/<name>.lua`, as a `&'static redis::Script`.
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
// Named by path (`crate::redis::lua::lua`) like any other item, rather than exported at the
// crate's root, so a feature's import of it points at `redis`, where it lives.
pub(crate) use lua;

/// A script call written out as the `EVALSHA` it sends, so it can go in one pipeline with the
/// commands that must follow it on the same connection (a money-moving write's `WAITAOF`):
/// `redis::ScriptInvocation` sends itself and nothing else.
pub struct Call<'a> {
    script: &'a redis::Script,
    keys: Vec<Vec<u8>>,
    args: Vec<Vec<u8>>,
}

impl<'a> Call<'a> {
    pub fn new(script: &'a redis::Script) -> Self {
        Call { script, keys: Vec::new(), args: Vec::new() }
    }

    /// Adds `KEYS[n]`.
    pub fn key(&mut self, key: impl redis::ToRedisArgs) -> &mut Self {
        key.write_redis_args(&mut self.keys);
        self
    }

    /// Adds `ARGV[n]` (a slice adds one argument per element).
    pub fn arg(&mut self, arg: impl redis::ToRedisArgs) -> &mut Self {
        arg.write_redis_args(&mut self.args);
        self
    }

    /// The `EVALSHA` of this call.
    pub fn evalsha(&self) -> redis::Cmd {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(self.script.get_hash()).arg(self.keys.len()).arg(&self.keys).arg(&self.args);
        cmd
    }

    /// Sends the script itself (`SCRIPT LOAD`), for when Redis answered `NOSCRIPT`: restarted,
    /// flushed, or a new primary.
    pub async fn load(&self, c: &mut impl redis::aio::ConnectionLike) -> redis::RedisResult<()> {
        self.script.prepare_invoke().load_async(c).await.map(drop)
    }
}
