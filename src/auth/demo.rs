//! The users redbank creates by itself: the demo customers (when `demo_users` is on) and the
//! `admin` (only when `admin_password` is set), with their checking accounts. Read by the session
//! feature (users) and the bank (accounts).

use super::model::Role;
use crate::config::Config;

/// The users created at start when missing (passwords hashed at creation, never stored in clear
/// and never logged): the demo users when `demo_users` is on, and `admin` only when
/// `admin_password` is set — there is no generated password to leak.
pub struct DemoUser {
    pub username: &'static str,
    pub password: Option<&'static str>,
    pub display_name: &'static str,
    pub role: Role,
    pub account: &'static str,
    pub city: &'static str,
    /// A TOTP secret (base32) enrolled for this demo user — printed in the README, so demo only.
    pub totp: Option<&'static str>,
    /// Where the user's mail goes (`admin`: `admin_email`).
    pub email: Option<&'static str>,
}

/// alice's authenticator-app secret in demo mode (README: add it to an app, or compute codes
/// with `oathtool --totp -b`). Public, so it protects nothing: never outside `demo_users`.
pub const ALICE_TOTP_SECRET: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";

pub const DEMO_USERS: [DemoUser; 3] = [
    DemoUser {
        username: "bob",
        password: Some("foobared"),
        display_name: "Bob Jones",
        role: Role::User,
        account: "1580783161",
        city: "San Francisco, CA",
        totp: None,
        email: Some("bob@example.com"),
    },
    DemoUser {
        username: "alice",
        password: Some("wonderland"),
        display_name: "Alice Liddell",
        role: Role::User,
        account: "2734819056",
        city: "Oxford, UK",
        totp: Some(ALICE_TOTP_SECRET),
        email: Some("alice@example.com"),
    },
    DemoUser {
        username: "admin",
        password: None, // admin_password; no admin without it
        display_name: "Bank Administrator",
        role: Role::Admin,
        account: "9000000001",
        city: "New York, NY",
        totp: None,
        email: None, // admin_email
    },
];

/// The users this configuration creates, each with its password.
pub fn configured_users(config: &Config) -> impl Iterator<Item = (&'static DemoUser, &str)> {
    DEMO_USERS.iter().filter_map(|user| match user.password {
        Some(password) => config.demo_users.then_some((user, password)),
        None => config.admin_password.as_deref().map(|password| (user, password)),
    })
}

/// The address `user` gets under `config`.
pub fn email_of<'a>(user: &'a DemoUser, config: &'a Config) -> Option<&'a str> {
    user.email.or(config.mail.admin_email.as_deref().filter(|_| user.role == Role::Admin))
}

/// The checking accounts of the users this configuration creates: (account number, username,
/// holder, city).
pub fn accounts(
    config: &Config,
) -> impl Iterator<Item = (&'static str, &'static str, &'static str, &'static str)> {
    configured_users(config).map(|(u, _)| (u.account, u.username, u.display_name, u.city))
}
