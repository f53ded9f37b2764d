//! What tenantry needs of the database: its own tables, the migrations and roles that make
//! them, and the inspection that checks a database for isolation gaps (`tenantry doctor`).

pub mod audit_chain;
pub(crate) mod inspect;
pub(crate) mod migrate;
#[cfg(test)]
mod name_rule;
pub(crate) mod placement;
pub(crate) mod render;
pub(crate) mod role_names;
pub(crate) mod roles_check;
pub mod tables;

pub use inspect::{inspect, inspect_roles, Finding, PolicyDifference, Report, SearchPathProblem};
pub use migrate::{
    migrate, migrate_roles, migrate_url, migrate_with, migrate_with_roles, MigrateError, Migrated,
    FRAMEWORK_MIGRATIONS,
};
pub use render::{render_sql, RenderedMigrations};
pub use role_names::{RoleNameError, RoleNames};
pub use roles_check::{RoleEscalation, RolePower};
