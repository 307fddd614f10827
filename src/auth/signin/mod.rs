//! Signing in: a password (throttled, hashed in a bounded queue), then every second factor the
//! user has, held in a pre-auth state between the steps; or a passkey alone.

pub mod code;
pub mod pages;
pub mod preauth;
pub mod routes;
pub mod service;
