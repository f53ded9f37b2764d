//! What a database that already has the citus extension says about itself: the tables Citus
//! already places (the plan skips them), the app role's `citus.propagate_set_commands`, and what
//! Citus refuses that the plan cannot fix by itself (policies with subqueries, triggers of the
//! application's own on tables to distribute or replicate). Plain catalog reads: on a database
//! without citus they find no metadata and nothing to report about it.

use std::collections::BTreeMap;

use diesel::sql_types::{Bool, Nullable, Text};
use diesel::QueryableByName;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

#[derive(QueryableByName)]
pub(super) struct TableObject {
    /// `schema.table`.
    #[diesel(sql_type = Text)]
    pub(super) table: String,
    /// The policy's or the trigger's name.
    #[diesel(sql_type = Text)]
    pub(super) name: String,
}

#[derive(QueryableByName)]
struct Installed {
    #[diesel(sql_type = Bool)]
    installed: bool,
}

#[derive(QueryableByName)]
struct RoleSetting {
    #[diesel(sql_type = Nullable<Text>)]
    value: Option<String>,
}

/// Whether the citus extension is installed in this database.
#[allow(clippy::disallowed_methods, reason = "a literal catalog query")]
pub(super) async fn installed(conn: &mut AsyncPgConnection) -> diesel::QueryResult<bool> {
    let row: Installed = diesel::sql_query(
        "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus') AS installed",
    )
    .get_result(conn)
    .await?;
    Ok(row.installed)
}

/// How Citus already holds a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Held {
    /// Hash-distributed.
    Distributed,
    /// A reference table.
    Reference,
    /// A Citus local table: added on purpose (`audit_log`), or converted by Citus when a
    /// local table referenced a reference table (still to distribute, then).
    Local,
}

#[derive(QueryableByName)]
struct HeldRow {
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Text)]
    kind: String,
}

/// The tables already in Citus's metadata, `schema.table`, and how.
#[allow(
    clippy::disallowed_methods,
    reason = "a literal catalog query, only when citus is installed"
)]
pub(super) async fn placed(
    conn: &mut AsyncPgConnection,
) -> diesel::QueryResult<BTreeMap<String, Held>> {
    let rows: Vec<HeldRow> = diesel::sql_query(
        "SELECT n.nspname || '.' || c.relname AS name,
                CASE WHEN p.partmethod = 'h' THEN 'd' WHEN p.repmodel = 't' THEN 'r' ELSE 'l' END AS kind
         FROM pg_dist_partition p
         JOIN pg_class c ON c.oid = p.logicalrelid JOIN pg_namespace n ON n.oid = c.relnamespace",
    )
    .load(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let held = match r.kind.as_str() {
                "d" => Held::Distributed,
                "r" => Held::Reference,
                _ => Held::Local,
            };
            (r.name, held)
        })
        .collect())
}

/// The app role's `citus.propagate_set_commands` as `ALTER ROLE .. SET` left it for this
/// database (or for all), `None` when unset.
#[allow(clippy::disallowed_methods, reason = "a literal catalog query")]
pub(super) async fn propagate_set_commands(
    conn: &mut AsyncPgConnection,
    role: &str,
) -> diesel::QueryResult<Option<String>> {
    let row: RoleSetting = diesel::sql_query(
        "SELECT (SELECT substr(s, length('citus.propagate_set_commands=') + 1)
                 FROM pg_db_role_setting d JOIN pg_roles r ON r.oid = d.setrole,
                      unnest(d.setconfig) AS s
                 WHERE r.rolname = $1 AND d.setdatabase IN (0, (SELECT oid FROM pg_database
                                                               WHERE datname = current_database()))
                   AND s LIKE 'citus.propagate\\_set\\_commands=%'
                 ORDER BY d.setdatabase DESC LIMIT 1) AS value",
    )
    .bind::<Text, _>(role)
    .get_result(conn)
    .await?;
    Ok(row.value)
}

/// Policies whose expressions hold a subquery, except tenantry's own (which
/// `tenantry_citus_prepare()` rewrites as function calls).
#[allow(clippy::disallowed_methods, reason = "a literal catalog query")]
pub(super) async fn policies_with_subqueries(
    conn: &mut AsyncPgConnection,
) -> diesel::QueryResult<Vec<TableObject>> {
    diesel::sql_query(
        "SELECT n.nspname || '.' || c.relname AS \"table\", p.polname::text AS name
         FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid
         JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE (p.polqual::text LIKE '%{SUBLINK %' OR p.polwithcheck::text LIKE '%{SUBLINK %')
           AND p.polname NOT IN ('tenantry_tenant_isolation', 'tenantry_directory_tenant',
                                 'tenantry_directory_membership', 'tenantry_directory_member')
         ORDER BY 1, 2",
    )
    .load(conn)
    .await
}

/// Triggers of the application's own (not tenantry's, not internal).
#[allow(clippy::disallowed_methods, reason = "a literal catalog query")]
pub(super) async fn triggers(
    conn: &mut AsyncPgConnection,
) -> diesel::QueryResult<Vec<TableObject>> {
    diesel::sql_query(
        "SELECT n.nspname || '.' || c.relname AS \"table\", t.tgname::text AS name
         FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
         JOIN pg_namespace n ON n.oid = c.relnamespace
         JOIN pg_proc f ON f.oid = t.tgfoid
         WHERE NOT t.tgisinternal AND f.proname NOT LIKE 'tenantry\\_%'
           AND f.proname <> 'citus_truncate_trigger'
           AND n.nspname NOT IN ('pg_catalog', 'information_schema')
         ORDER BY 1, 2",
    )
    .load(conn)
    .await
}
