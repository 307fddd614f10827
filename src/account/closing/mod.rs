//! A customer's own data: a copy of all of it to take away (GDPR Art. 15 and 20), and closing the
//! account (Art. 17), with a payout of what is left in it. The rules are in [`service`]; the API
//! and Security's forms only parse, authorize and answer.

pub mod pages;
pub mod payout;
pub mod routes;
pub mod service;
