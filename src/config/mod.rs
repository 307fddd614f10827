//! Typed application configuration, read once from Rocket's figment and reached as `&State<Config>`.
//!
//! Every key can be set in `Rocket.toml` (per profile) or as `ROCKET_<KEY>`; there is no global
//! config so tests can build apps with their own values side by side. The keys are flat (as
//! documented in `docs/OPERATIONS.md`); inside, they are grouped in one section per concern, each
//! with its defaults and its own `validate`. What only a feature can check (a mail server URL, the
//! origin passkeys are bound to) is checked by that feature's stage at ignite.

mod sections;

use rocket::fairing::AdHoc;
use serde::{Deserialize, Serialize};

pub use sections::{
    BankConfig, LiveConfig, LogFormat, MailConfig, RedisConfig, SessionConfig, SignInConfig,
    TransferConfig, WebConfig,
};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct Config {
    /// Prepended to every Redis key, channel and index name this instance uses.
    pub key_prefix: String,
    #[serde(flatten)]
    pub redis: RedisConfig,
    #[serde(flatten)]
    pub session: SessionConfig,
    #[serde(flatten)]
    pub sign_in: SignInConfig,
    #[serde(flatten)]
    pub mail: MailConfig,
    #[serde(flatten)]
    pub bank: BankConfig,
    #[serde(flatten)]
    pub transfer: TransferConfig,
    #[serde(flatten)]
    pub live: LiveConfig,
    #[serde(flatten)]
    pub web: WebConfig,
    /// Password of the `admin` user; no admin user exists unless it is set (never logged).
    pub admin_password: Option<String>,
    /// Create the demo users (bob, alice) and their accounts, and hint at them on the login page.
    pub demo_users: bool,
    /// Anyone may open an account (`/signup`). Unset: on with `demo_users`, off otherwise.
    pub open_registration: Option<bool>,
    /// Keys that seal TOTP secrets at rest, `id:base64` (32 bytes: `openssl rand -base64 32`);
    /// the first seals, all open (rotation: put the new one first, run `redbank admin
    /// totp-rekey`, then drop the old one). Unset: the public demo key while `demo_users` is on,
    /// and no start otherwise. Never logged.
    pub totp_keys: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            key_prefix: "redbank:".into(),
            redis: RedisConfig::default(),
            session: SessionConfig::default(),
            sign_in: SignInConfig::default(),
            mail: MailConfig::default(),
            bank: BankConfig::default(),
            transfer: TransferConfig::default(),
            live: LiveConfig::default(),
            web: WebConfig::default(),
            admin_password: None,
            demo_users: true,
            open_registration: None,
            totp_keys: Vec::new(),
        }
    }
}

/// The keys outside any section, read on their own (see [`Config::from_figment`]).
#[derive(Deserialize)]
#[serde(default)]
struct Unsectioned {
    key_prefix: String,
    admin_password: Option<String>,
    demo_users: bool,
    open_registration: Option<bool>,
    totp_keys: Vec<String>,
}

impl Default for Unsectioned {
    fn default() -> Self {
        let Config { key_prefix, admin_password, demo_users, open_registration, totp_keys, .. } =
            Config::default();
        Unsectioned { key_prefix, admin_password, demo_users, open_registration, totp_keys }
    }
}

impl Config {
    /// Reads every section from `figment` on its own: a value of the wrong type is reported
    /// with its key and where it came from (a flattened read would lose both).
    pub fn from_figment(figment: &rocket::figment::Figment) -> Result<Config, String> {
        Self::read(figment).map_err(|e| e.to_string())
    }

    fn read(figment: &rocket::figment::Figment) -> Result<Config, Box<rocket::figment::Error>> {
        let top: Unsectioned = figment.extract()?;
        Ok(Config {
            key_prefix: top.key_prefix,
            redis: figment.extract()?,
            session: figment.extract()?,
            sign_in: figment.extract()?,
            mail: figment.extract()?,
            bank: figment.extract()?,
            transfer: figment.extract()?,
            live: figment.extract()?,
            web: figment.extract()?,
            admin_password: top.admin_password,
            demo_users: top.demo_users,
            open_registration: top.open_registration,
            totp_keys: top.totp_keys,
        })
    }

    /// Whether anyone may open an account: `open_registration`, or `demo_users` when unset.
    pub fn registration_open(&self) -> bool {
        self.open_registration.unwrap_or(self.demo_users)
    }

    /// What an account a customer opens starts with (see `opening_balance_cents`).
    pub fn opening_balance_cents(&self) -> i64 {
        self.bank.opening_balance_cents.unwrap_or(if self.demo_users { 100_000 } else { 0 })
    }

    /// What seals TOTP secrets: `totp_keys`, or the public demo key in demo mode only.
    pub fn secret_box(&self) -> Result<crate::secret::SecretBox, String> {
        if self.totp_keys.is_empty() {
            if self.demo_users {
                return Ok(crate::secret::SecretBox::demo());
            }
            return Err("totp_keys must be set (`id:` + `openssl rand -base64 32`) unless \
                        demo_users is on"
                .into());
        }
        crate::secret::SecretBox::new(&self.totp_keys)
    }

    /// Rejects values that would make the app unsafe or meaningless, with a message naming the
    /// key: the prefix and the admin password here, then each section's own rules.
    pub fn validate(&self) -> Result<(), String> {
        if self.key_prefix.is_empty() || self.key_prefix.chars().any(|c| c.is_whitespace()) {
            return Err("key_prefix must be non-empty and contain no whitespace".into());
        }
        if self.key_prefix.contains(['{', '}', '*', '?', '[', ']']) {
            return Err(
                "key_prefix must not contain { } * ? [ ] (hash tags and glob patterns)".into()
            );
        }
        if self.admin_password.as_deref().is_some_and(|p| p.chars().count() < 12) {
            return Err("admin_password must have at least 12 characters".into());
        }
        self.redis.validate()?;
        self.session.validate()?;
        self.sign_in.validate()?;
        self.bank.validate()?;
        self.transfer.validate()?;
        self.live.validate()?;
        self.secret_box()?;
        Ok(())
    }
}

/// Reads and validates [`Config`]; a bad value stops the launch with a log line naming the key.
pub fn stage() -> AdHoc {
    AdHoc::try_on_ignite("Config", |rocket| async move {
        let config = match Config::from_figment(rocket.figment()) {
            Ok(config) => config,
            Err(e) => {
                rocket::error!("configuration: {e}");
                return Err(rocket);
            }
        };
        if let Err(e) = config.validate() {
            rocket::error!("configuration: {e}");
            return Err(rocket);
        }
        Ok(rocket.manage(config))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The configuration table in `docs/OPERATIONS.md` states the defaults of [`Config::default`]
    /// — the one place they are set — and documents every key.
    #[test]
    fn the_operations_guide_states_every_key_and_its_default() {
        let guide = include_str!("../../docs/OPERATIONS.md");
        let table = guide.split("## Configuration").nth(1).unwrap_or_default();
        let table = table.split("\n## ").next().unwrap_or_default();
        let defaults = match serde_json::to_value(Config::default()) {
            Ok(serde_json::Value::Object(map)) => map,
            other => panic!("Config does not serialize to an object: {other:?}"),
        };
        let plain = |cell: &str| {
            let cell = cell.trim();
            let inner = cell.strip_prefix('`')?.strip_suffix('`')?;
            (!inner.contains('`')).then_some(inner.to_owned())
        };
        let mut documented = Vec::new();
        let mut checked = 0;
        for row in table.lines().filter(|l| l.starts_with("| `")) {
            let cells: Vec<&str> = row.split('|').collect();
            let (Some(keys), Some(values)) = (cells.get(1), cells.get(2)) else { continue };
            let keys: Vec<Option<String>> = keys.split(" / ").map(plain).collect();
            let values: Vec<Option<String>> = values.split(" / ").map(plain).collect();
            documented.extend(keys.iter().flatten().cloned());
            if keys.len() != values.len() {
                continue;
            }
            for (key, value) in keys.iter().zip(&values) {
                let (Some(key), Some(value)) = (key, value) else { continue };
                let Some(default) = defaults.get(key) else { continue };
                let default = match default {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                // Money reads `10000.00` in docs/OPERATIONS.md and 10000.0 as a JSON value.
                let same_number = matches!(
                    (default.parse::<f64>(), value.parse::<f64>()),
                    (Ok(a), Ok(b)) if a == b
                );
                assert!(
                    &default == value || same_number,
                    "docs/OPERATIONS.md states {key} = {value}, Config::default has {default}"
                );
                checked += 1;
            }
        }
        for key in defaults.keys() {
            assert!(
                documented.contains(key),
                "{key} is missing from the configuration table of docs/OPERATIONS.md"
            );
        }
        assert!(checked >= 25, "only {checked} defaults compared");
    }
}
