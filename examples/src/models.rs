//! The example's models, declared once: two tenant tables and one global table.

use chrono::{DateTime, Utc};
use diesel::{Queryable, Selectable};
use diesel_migrations::{embed_migrations, EmbeddedMigrations};
use tenantry::bounds::Declared;
use tenantry::{global_table, tenant_table, TableDecl};
use uuid::Uuid;

use crate::schema::{currencies, invoices, projects};

/// A project of one tenant.
#[tenant_table(generated(id, created_at))]
#[derive(Queryable, Selectable, Debug, Clone)]
#[diesel(table_name = projects)]
pub struct Project {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

/// An invoice of one tenant.
#[tenant_table(generated(id, created_at))]
#[derive(Queryable, Selectable, Debug, Clone)]
#[diesel(table_name = invoices)]
pub struct Invoice {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub project_id: Uuid,
    pub number: String,
    pub amount_cents: i64,
    pub currency: String,
    pub status: String,
    pub created_at: DateTime<Utc>,
}

/// A currency, shared by all tenants.
#[global_table]
#[derive(Queryable, Selectable, Debug, Clone)]
#[diesel(table_name = currencies)]
pub struct Currency {
    pub code: String,
    pub name: String,
}

/// The example's migrations (`examples/migrations/`, Diesel's layout), applied after
/// tenantry's by `tenantry::migrate_with` at start; `diesel migration run` applies the same.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// The declarations `tenantry::declare_tables` applies (RLS, grants, registry).
pub fn declarations() -> [TableDecl; 3] {
    [
        <projects::table as Declared>::DECL,
        <invoices::table as Declared>::DECL,
        <currencies::table as Declared>::DECL,
    ]
}
