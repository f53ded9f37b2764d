//! The plan as one SQL script for the coordinator (`tenantry citus-plan`), which applies as
//! printed on Citus 13.2 in one transaction:
//!
//! 1. `citus.enable_unsafe_triggers` for the transaction: tenantry's directory tables carry
//!    triggers (change notifications, the users' kind), which Citus otherwise refuses on reference
//!    tables; `tenantry_citus_prepare()` makes the notifying one fire on the coordinator only.
//! 2. Sequential shard modifications: DDL after distributing in the same transaction (the
//!    foreign keys put back) would otherwise conflict with the parallel connections.
//! 3. The app role's `citus.propagate_set_commands = 'local'`: the seal reaches the workers.
//! 4. `tenantry_citus_prepare()`: the seal, policies and notifications of migration
//!    `0012_citus`; then the functions that run commands on other nodes revoked from PUBLIC on
//!    every node.
//! 5. The foreign keys of the tables to distribute dropped: making a referenced table a
//!    reference table would otherwise turn them into Citus local tables, which then cannot be
//!    distributed. Put back, unchanged, once every table is placed.
//! 6. The steps (reference tables, `audit_log`, distributed tables), skipping tables already
//!    placed.

use super::{quote_ident, CitusReport};

/// A foreign key of a table to distribute, dropped before the steps and added back after them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForeignKeyStep {
    /// `schema.table` holding it.
    pub table: String,
    /// Its name.
    pub constraint: String,
    /// `pg_get_constraintdef`: `FOREIGN KEY (..) REFERENCES ..`.
    pub definition: String,
}

impl ForeignKeyStep {
    fn qualified_table(&self) -> String {
        match self.table.split_once('.') {
            Some((schema, table)) => format!("{}.{}", quote_ident(schema), quote_ident(table)),
            None => quote_ident(&self.table),
        }
    }

    /// `ALTER TABLE .. DROP CONSTRAINT ..;`
    pub fn drop_sql(&self) -> String {
        format!(
            "ALTER TABLE {} DROP CONSTRAINT {};",
            self.qualified_table(),
            quote_ident(&self.constraint)
        )
    }

    /// `ALTER TABLE .. ADD CONSTRAINT .. <definition>;`
    pub fn add_sql(&self) -> String {
        format!(
            "ALTER TABLE {} ADD CONSTRAINT {} {};",
            self.qualified_table(),
            quote_ident(&self.constraint),
            self.definition
        )
    }
}

/// The revocation `tenantry_citus_prepare()` does on the coordinator, on every worker (on the
/// coordinator another session would wait for this transaction's own revocation).
const REVOKE_EVERYWHERE: &str = concat!(
    "SELECT run_command_on_workers($$SELECT ",
    schema_name!(),
    ".tenantry_citus_revoke_remote_commands()$$);"
);

pub(super) fn render(report: &CitusReport, app_role: &str) -> String {
    let mut out = String::from(
        "-- tenantry on Citus: run on the coordinator as the tables' owner (a superuser), with\n\
         -- psql -v ON_ERROR_STOP=1, after `tenantry migrate` and the application's migrations.\n\
         -- The database must already exist on every node with citus installed in it (Citus\n\
         -- does not propagate CREATE DATABASE), and every worker must be added\n\
         -- (citus_add_node) and accept connections from the coordinator only (pg_hba.conf).\n\
         -- One transaction: nothing is placed unless everything is.\n\
         BEGIN;\n\
         -- tenantry's directory tables carry triggers, which tenantry_citus_prepare() makes safe.\n\
         SET LOCAL citus.enable_unsafe_triggers = on;\n\
         SET LOCAL citus.multi_shard_modify_mode = 'sequential';\n\
         -- The tenant seal is written with SET LOCAL, which Citus must send to the workers:\n",
    );
    out.push_str(&format!(
        "ALTER ROLE {} SET citus.propagate_set_commands = 'local';\n",
        quote_ident(app_role)
    ));
    out.push_str(concat!(
        "-- The seal bound to the distributed transaction, policies without subqueries, change\n\
         -- notifications from the coordinator only (migration 0012_citus); idempotent.\n\
         SELECT ",
        schema_name!(),
        ".tenantry_citus_prepare();\n\
         -- No SQL of the app role may run commands on other nodes in sessions of its own.\n",
    ));
    out.push_str(REVOKE_EVERYWHERE);
    out.push('\n');
    if !report.foreign_keys.is_empty() {
        out.push_str(
            "-- Foreign keys of the tables to distribute, put back below: a reference table would\n\
             -- otherwise turn the tables referencing it into Citus local tables.\n",
        );
        for fk in &report.foreign_keys {
            out.push_str(&fk.drop_sql());
            out.push('\n');
        }
    }
    out.push_str("-- Referenced tables first.\n");
    for step in &report.plan {
        if report.placed.contains(&step.table) {
            out.push_str(&format!(
                "-- {} is already in Citus's metadata\n",
                step.table
            ));
            continue;
        }
        out.push_str(&step.sql());
        out.push('\n');
    }
    for fk in &report.foreign_keys {
        out.push_str(&fk.add_sql());
        out.push('\n');
    }
    out.push_str("COMMIT;\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn foreign_keys_are_dropped_and_added_back_by_name() {
        let fk = ForeignKeyStep {
            table: "public.invoices".into(),
            constraint: "invoices_tenant_id_fkey".into(),
            definition: "FOREIGN KEY (tenant_id) REFERENCES tenantry.tenants(id) ON DELETE CASCADE"
                .into(),
        };
        assert_eq!(
            fk.drop_sql(),
            "ALTER TABLE public.invoices DROP CONSTRAINT invoices_tenant_id_fkey;"
        );
        assert_eq!(
            fk.add_sql(),
            "ALTER TABLE public.invoices ADD CONSTRAINT invoices_tenant_id_fkey \
             FOREIGN KEY (tenant_id) REFERENCES tenantry.tenants(id) ON DELETE CASCADE;"
        );
    }
}
