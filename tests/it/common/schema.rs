//! The schema the integration tests use: two tenant tables and a global one, created and
//! declared by `tests/migrations/`.
#![allow(dead_code, unreachable_pub, missing_docs)]

use diesel_migrations::{embed_migrations, EmbeddedMigrations};
use tenantry::bounds::Declared;
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

/// The test schema's migrations (`tests/migrations/`), applied after tenantry's.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("tests/migrations");
