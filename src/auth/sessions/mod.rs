//! A user's own sessions: the pages and API that list them, refresh the current one, and sign
//! out one, all others or this one.

pub mod pages;
pub mod routes;
pub mod service;
