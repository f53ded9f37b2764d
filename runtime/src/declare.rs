//! Giving declared tables their row-level security, grants and index, from their declaration.

use diesel::sql_types::Text;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::table::TableDecl;

/// Applies each declaration to the database: for a tenant table, `ENABLE` and `FORCE ROW LEVEL
/// SECURITY`, the policy `tenantry_tenant_isolation` (`USING` and `WITH CHECK` comparing the tenant
/// column with `(SELECT tenant_id FROM tenantry_current_tenant)`, the tenant seal), an index
/// leading with the tenant
/// column if none exists, and grants to `tenantry_app` and `tenantry_bypass`; for a global table,
/// `SELECT` for the app role. Each table is recorded in `tenantry_declared_tables`, which
/// [`crate::inspect`] (and `tenantry doctor`) read.
///
/// Idempotent; run it after your own migrations, as the tables' owner.
#[allow(
    clippy::disallowed_methods,
    reason = "tenantry's own statements with literal text, binding the table names"
)]
pub async fn declare_tables(
    conn: &mut AsyncPgConnection,
    tables: &[TableDecl],
) -> diesel::QueryResult<()> {
    for decl in tables {
        match decl.tenant_column() {
            Some(tenant_column) => {
                diesel::sql_query("SELECT tenantry_declare_tenant_table($1::regclass, $2::name)")
                    .bind::<Text, _>(quote_ident(decl.table()))
                    .bind::<Text, _>(tenant_column)
                    .execute(conn)
                    .await?;
            }
            None => {
                diesel::sql_query("SELECT tenantry_declare_global_table($1::regclass)")
                    .bind::<Text, _>(quote_ident(decl.table()))
                    .execute(conn)
                    .await?;
            }
        }
    }
    Ok(())
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
