//! The example app's integration tests: one test binary (diesel's `diesel_tests` pattern), each
//! former `tests/<name>.rs` a module here, so the app and tenantry are linked into one test
//! binary instead of one per file.
//!
//! Run one group with a filter on its module path: `cargo test -p tenantry-example --test it
//! http::`. Every test makes its own database (`common`), and `common` installs the binary's one
//! `tracing` subscriber.

mod common;

mod browser;
mod citus;
mod citus_cluster;
mod cloudflare;
mod contract_names;
mod directory_cache;
mod error_bodies;
mod getting_started;
mod http;
mod instances;
mod isolation;
mod log_flood;
mod noisy_neighbour;
mod plans;
mod quickstart;
mod rbac;
mod resilience;
mod shutdown;
mod slow_clients;
mod startup;
