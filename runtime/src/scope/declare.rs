//! Giving declared tables their row-level security, grants and index, from their declaration.

use diesel::sql_types::{Bool, Text};
use diesel::QueryableByName;
use diesel_async::{AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};

use crate::scope::table::TableDecl;

/// Applies each declaration to the database: for a tenant table, `ENABLE` and `FORCE ROW LEVEL
/// SECURITY`, the policy `tenantry_tenant_isolation` (`USING` and `WITH CHECK` comparing the tenant
/// column with `(SELECT tenant_id FROM tenantry.tenantry_current_tenant)` (`tenantry`: the schema
/// [`NAME`](crate::schema::tables::NAME)), the tenant seal), an index
/// leading with the tenant
/// column if none exists, and grants to `tenantry_app` and `tenantry_bypass`; for a global table,
/// `SELECT` for the app role. Each table is recorded in `tenantry_declared_tables`, which
/// [`crate::schema::inspect`] (and `tenantry doctor`) read.
///
/// A global declaration is refused, before anything is applied, when its SQL table (the
/// `#[sql_name]` of its `table!`, so a second `table!` for a tenant table is caught) is declared a
/// tenant table in the same list, has row-level security enabled (a tenant table), a
/// `tenant_id` column, or a foreign key to `tenantry.tenants` under any column name; the error
/// names the table and the fix.
///
/// Idempotent, under the migrations' advisory lock (instances that start together wait for each
/// other); run it after your own migrations, as the tables' owner.
#[allow(
    clippy::disallowed_methods,
    reason = "tenantry's own statements with literal text, binding the table names"
)]
pub async fn declare_tables(
    conn: &mut AsyncPgConnection,
    tables: &[TableDecl],
) -> diesel::QueryResult<()> {
    // Instances starting at once declare the same tables, and concurrent grants or policy changes
    // on one table fail ("tuple concurrently updated"): the migrations' lock makes them take
    // turns. A session lock (stacked if the caller holds it already), released on every outcome;
    // a lost connection releases it too.
    conn.batch_execute(LOCK_SQL).await?;
    let declared = declare_locked(conn, tables).await;
    let unlocked = conn.batch_execute(UNLOCK_SQL).await;
    declared.and(unlocked)
}

/// The lock `crate::schema::migrate` takes for the migrations.
const LOCK_SQL: &str = "SELECT pg_advisory_lock(hashtext('tenantry_migrations'))";
const UNLOCK_SQL: &str = "SELECT pg_advisory_unlock(hashtext('tenantry_migrations'))";

#[allow(
    clippy::disallowed_methods,
    reason = "tenantry's own statements with literal text, binding the table names"
)]
async fn declare_locked(
    conn: &mut AsyncPgConnection,
    tables: &[TableDecl],
) -> diesel::QueryResult<()> {
    for (i, decl) in tables.iter().enumerate() {
        let both_ways = tables[..i].iter().any(|other| {
            other.table() == decl.table()
                && other.tenant_column().is_some() != decl.tenant_column().is_some()
        });
        if both_ways {
            return Err(refused(
                decl.table(),
                "it is declared a tenant table in the same list",
            ));
        }
    }
    for decl in tables.iter().filter(|d| d.tenant_column().is_none()) {
        let found: Vec<RowSecurity> = diesel::sql_query(
            "SELECT c.relrowsecurity AS row_security FROM pg_class c WHERE c.oid = $1::regclass",
        )
        .bind::<Text, _>(quote_ident(decl.table()))
        .load(conn)
        .await?;
        if found.iter().any(|r| r.row_security) {
            return Err(refused(
                decl.table(),
                "it has row-level security enabled, as tenant tables do",
            ));
        }
    }
    // One statement at a time, not one transaction: on Citus, DDL on a reference table after
    // parallel DDL on a distributed one in the same transaction is refused.
    for decl in tables {
        declare_one(conn, decl).await?;
    }
    Ok(())
}

/// Runs the SQL declaration of one table.
#[allow(
    clippy::disallowed_methods,
    reason = "tenantry's own statements with literal text, binding the table names"
)]
async fn declare_one(conn: &mut AsyncPgConnection, decl: &TableDecl) -> diesel::QueryResult<()> {
    match decl.tenant_column() {
        Some(tenant_column) => {
            diesel::sql_query(concat!(
                "SELECT ",
                schema_name!(),
                ".tenantry_declare_tenant_table($1::regclass, $2::name)"
            ))
            .bind::<Text, _>(quote_ident(decl.table()))
            .bind::<Text, _>(tenant_column)
            .execute(conn)
            .await?;
        }
        None => {
            diesel::sql_query(concat!(
                "SELECT ",
                schema_name!(),
                ".tenantry_declare_global_table($1::regclass)"
            ))
            .bind::<Text, _>(quote_ident(decl.table()))
            .execute(conn)
            .await?;
        }
    }
    Ok(())
}

#[derive(QueryableByName)]
struct RowSecurity {
    #[diesel(sql_type = Bool)]
    row_security: bool,
}

/// Why `declare_tables` refused a global declaration.
#[derive(Debug)]
struct GlobalTableRefused {
    table: &'static str,
    why: &'static str,
}

impl std::fmt::Display for GlobalTableRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "table `{}` cannot be declared global ({}): a global table is read without a tenant \
             scope; declare its model with `#[tenant_table]`, and remove a second `table!` that \
             names the same SQL table (`#[sql_name = \"{}\"]`)",
            self.table, self.why, self.table
        )
    }
}

impl std::error::Error for GlobalTableRefused {}

fn refused(table: &'static str, why: &'static str) -> diesel::result::Error {
    diesel::result::Error::QueryBuilderError(Box::new(GlobalTableRefused { table, why }))
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
