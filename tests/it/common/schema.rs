//! The schema the integration tests use: two tenant tables and a global one, created and
//! declared by `tests/migrations/`.
#![allow(dead_code, unreachable_pub, missing_docs)]

use tenantry::bounds::Declared;
use tenantry::migrations::RenderedMigrations;
use tenantry::TableDecl;

#[path = "../../ui/support/schema.rs"]
mod shared;
pub use shared::*;

pub fn decls() -> Vec<TableDecl> {
    vec![
        <projects::table as Declared>::DECL,
        <invoices::table as Declared>::DECL,
        <currencies::table as Declared>::DECL,
    ]
}

/// The test schema's migrations (`tests/migrations/`), applied after tenantry's: written for the
/// schema `tenantry`, rendered for the one this build names (`TENANTRY_SCHEMA`).
pub const MIGRATIONS: RenderedMigrations = RenderedMigrations::new(&[
    (
        "0001_test_schema",
        include_str!("../../migrations/0001_test_schema/up.sql"),
    ),
    (
        "0002_citus_keys",
        include_str!("../../migrations/0002_citus_keys/up.sql"),
    ),
]);
