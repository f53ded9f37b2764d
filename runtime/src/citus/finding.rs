//! [`CitusFinding`]: one rule of Citus a schema breaks, and how `tenantry doctor --citus` says it.

use std::fmt;

use super::quote_ident;

/// One rule of Citus that the schema breaks, naming the table and the constraint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CitusFinding {
    /// A distributed table's primary key, unique constraint, unique index or exclusion
    /// constraint lacks the distribution column.
    KeyWithoutTenantColumn {
        /// `schema.table`.
        table: String,
        /// `primary key`, `unique constraint`, `unique index` or `exclusion constraint`.
        kind: &'static str,
        /// Its name.
        constraint: String,
        /// The distribution column it should include.
        column: String,
    },
    /// A foreign key between two distributed tables that does not pair their distribution
    /// columns.
    ForeignKeyWithoutTenantColumn {
        /// `schema.table` holding the foreign key.
        table: String,
        /// Its name.
        constraint: String,
        /// The referenced `schema.table`.
        references: String,
        /// The distribution column of the referencing table.
        column: String,
    },
    /// A foreign key Citus does not allow between these placements (a distributed table
    /// referencing a local one, a reference table referencing a distributed or local one, a
    /// local table referencing a distributed one).
    ForeignKeyAcrossPlacements {
        /// `schema.table` holding the foreign key.
        table: String,
        /// `distributed`, `reference` or `local`.
        placement: &'static str,
        /// Its name.
        constraint: String,
        /// The referenced `schema.table`.
        references: String,
        /// The referenced table's placement.
        referenced_placement: &'static str,
    },
    /// A policy of a table to distribute or replicate whose expression holds a subquery, which
    /// Citus refuses.
    PolicyWithSubquery {
        /// `schema.table`.
        table: String,
        /// `distributed` or `reference`.
        placement: &'static str,
        /// The policy's name.
        policy: String,
    },
    /// A trigger of the application's own on a table to distribute or replicate: Citus would
    /// run it on every shard or placement, inside its two-phase commit.
    Trigger {
        /// `schema.table`.
        table: String,
        /// `distributed` or `reference`.
        placement: &'static str,
        /// The trigger's name.
        trigger: String,
    },
    /// Citus is installed and tables are placed, but the app role does not propagate `SET
    /// LOCAL`: the seal does not reach the workers, and every tenant sees nothing there.
    SetCommandsNotPropagated {
        /// The app role.
        role: String,
        /// Its `citus.propagate_set_commands`, `None` when unset (Citus's default, `none`).
        value: Option<String>,
    },
}

impl fmt::Display for CitusFinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CitusFinding::KeyWithoutTenantColumn {
                table,
                kind,
                constraint,
                column,
            } => write!(
                f,
                "{table}: {kind} {constraint} does not include the distribution column {column} \
                 (Citus enforces uniqueness per shard: make it ({column}, ..))"
            ),
            CitusFinding::ForeignKeyWithoutTenantColumn {
                table,
                constraint,
                references,
                column,
            } => write!(
                f,
                "{table}: foreign key {constraint} to {references} does not pair the distribution \
                 columns (Citus checks it inside one shard: FOREIGN KEY ({column}, ..) REFERENCES \
                 {references} (<its tenant column>, ..))"
            ),
            CitusFinding::ForeignKeyAcrossPlacements {
                table,
                placement,
                constraint,
                references,
                referenced_placement,
            } => write!(
                f,
                "{table}: foreign key {constraint} from a {placement} table to the \
                 {referenced_placement} table {references}, which Citus does not allow"
            ),
            CitusFinding::PolicyWithSubquery {
                table,
                placement,
                policy,
            } => write!(
                f,
                "{table}: policy {policy} has a subquery, which Citus refuses in the policies of a \
                 {placement} table (move the subquery into a STABLE function and call it)"
            ),
            CitusFinding::Trigger {
                table,
                placement,
                trigger,
            } => write!(
                f,
                "{table}: trigger {trigger} on a {placement} table: Citus would run it on the shards, \
                 inside its two-phase commit (no NOTIFY there, no query of other tables); drop it or \
                 move its work to the application"
            ),
            CitusFinding::SetCommandsNotPropagated { role, value } => write!(
                f,
                "role {role}: citus.propagate_set_commands is {}, so the tenant seal does not reach \
                 the workers and every tenant sees nothing there (ALTER ROLE {} SET \
                 citus.propagate_set_commands = 'local')",
                value.as_deref().unwrap_or("not set (none)"),
                quote_ident(role)
            ),
        }
    }
}
