//! The integration tests of `tenantry`: one test binary (diesel's `diesel_tests` pattern), each
//! former `tests/<name>.rs` a module here, so the tree is linked once instead of once per file.
//!
//! Run one group with a filter on its module path: `cargo test --test it scoping::`. Every test
//! that touches PostgreSQL makes its own database (`common::TestDb`, `#[tenantry::test]`), and
//! the binary has one global `tracing` subscriber (`common::logs`) from which a test picks its
//! own lines, so modules that ran in separate processes before run side by side safely.

mod common;

mod adopting;
mod app_role;
mod audit_chain;
mod auth_cloudflare;
mod bypass;
mod citus;
mod compiles;
mod db_faults;
mod declarations;
mod directory;
mod harness;
mod hostile_sql;
mod identity;
mod identity_keys;
mod inspect;
mod inspect_policies;
mod inspect_privileges;
mod isolation;
mod job_queue;
mod jobs_capability;
mod migrations;
mod one_round_trip;
mod pgbouncer;
mod principal_cache;
mod request_life;
mod rls;
mod role_names;
mod schema_name;
mod scoping;
mod service_identities;
mod sql_fragments;
mod templates;
mod tls;
mod ui;
