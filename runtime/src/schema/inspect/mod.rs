//! Inspecting a database for tenant-isolation gaps (what `tenantry doctor` reports).

#![allow(
    clippy::disallowed_methods,
    reason = "tenantry doctor's catalog queries: literal SQL on the inspecting connection"
)]

mod finding;
mod policies;
mod privileges;

use diesel::sql_types::{Bool, Nullable, Text};
use diesel::QueryableByName;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

pub use finding::{Finding, PolicyDifference, SearchPathProblem};
use policies::TenantTable;
use privileges::CheckedRole;

/// What [`inspect`] looked at and what it found.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Declared tenant tables that were checked (`schema.table`).
    pub tenant_tables: Vec<String>,
    /// The directory's tables whose policies were checked (`schema.table`).
    pub directory_tables: Vec<String>,
    /// The roles checked: the app role, then the bypass role if it exists.
    pub roles: Vec<String>,
    /// Every gap found; empty when the database is sound.
    pub findings: Vec<Finding>,
}

impl Report {
    /// Whether nothing was found.
    pub fn is_ok(&self) -> bool {
        self.findings.is_empty()
    }
}

#[derive(QueryableByName)]
struct TenantTableState {
    #[diesel(sql_type = Text)]
    table: String,
    #[diesel(sql_type = Text)]
    column: String,
    #[diesel(sql_type = Bool)]
    exists: bool,
    #[diesel(sql_type = Bool)]
    enabled: bool,
    #[diesel(sql_type = Bool)]
    forced: bool,
    #[diesel(sql_type = Bool)]
    index: bool,
    /// The tenant column as PostgreSQL's deparser writes it.
    #[diesel(sql_type = Text)]
    quoted_column: String,
}

#[derive(QueryableByName)]
struct TableName {
    #[diesel(sql_type = Text)]
    table: String,
}

#[derive(QueryableByName)]
struct TenantReference {
    #[diesel(sql_type = Text)]
    table: String,
    #[diesel(sql_type = Text)]
    constraint: String,
}

#[derive(QueryableByName)]
struct RoleState {
    #[diesel(sql_type = Nullable<Bool>)]
    superuser: Option<bool>,
    #[diesel(sql_type = Nullable<Bool>)]
    bypassrls: Option<bool>,
}

const TENANT_TABLES_SQL: &str = concat!(
    r#"
SELECT d.table_schema || '.' || d.table_name AS "table",
       d.tenant_column AS "column",
       c.oid IS NOT NULL AS "exists",
       COALESCE(c.relrowsecurity, false) AS enabled,
       COALESCE(c.relforcerowsecurity, false) AS forced,
       EXISTS (
         SELECT 1 FROM pg_index i JOIN pg_attribute a
           ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
         WHERE i.indrelid = c.oid AND a.attname = d.tenant_column
       ) AS "index",
       quote_ident(d.tenant_column) AS quoted_column
FROM "#,
    schema_name!(),
    r#".tenantry_declared_tables d
LEFT JOIN pg_namespace n ON n.nspname = d.table_schema
LEFT JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = d.table_name AND c.relkind IN ('r', 'p')
WHERE d.kind = 'tenant'
ORDER BY 1
"#
);

const UNDECLARED_SQL: &str = concat!(
    r#"
SELECT n.nspname || '.' || c.relname AS "table"
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped
WHERE c.relkind IN ('r', 'p')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'
  AND NOT EXISTS (SELECT 1 FROM "#,
    schema_name!(),
    r#".tenantry_declared_tables d
                  WHERE d.table_schema = n.nspname AND d.table_name = c.relname)
ORDER BY 1
"#
);

/// Tables with a foreign key to `tenants` that row-level security does not cover (declared tenant
/// tables have their own, finer findings above).
const UNCOVERED_REFERENCES_SQL: &str = concat!(
    r#"
SELECT DISTINCT ON (c.oid) n.nspname || '.' || c.relname AS "table", k.conname::text AS "constraint"
FROM pg_constraint k
JOIN pg_class c ON c.oid = k.conrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE k.contype = 'f' AND k.confrelid = to_regclass('"#,
    schema_name!(),
    r#".tenants')
  AND NOT (c.relrowsecurity AND EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid))
  AND NOT EXISTS (SELECT 1 FROM "#,
    schema_name!(),
    r#".tenantry_declared_tables d
                  WHERE d.kind = 'tenant' AND d.table_schema = n.nspname AND d.table_name = c.relname)
ORDER BY c.oid, k.conname
"#
);

/// Inspects the database `conn` is connected to, with `app_role` as the app role and the bypass
/// role the migrations recorded (`tenantry_bypass` unless `TENANTRY_BYPASS_ROLE` or
/// `TENANTRY_ROLE_PREFIX` named another; see [`inspect_roles`]).
pub async fn inspect(conn: &mut AsyncPgConnection, app_role: &str) -> diesel::QueryResult<Report> {
    let roles = privileges::recorded_roles(conn).await?;
    inspect_roles(conn, app_role, &roles.bypass).await
}

/// Inspects the database `conn` is connected to:
///
/// - every declared tenant table must exist, have row-level security enabled and forced,
///   exactly the policies `tenantry_declare_tenant_table` generates (compared as PostgreSQL
///   deparses them, see `inspect/policies.rs`), no other permissive policy, and an index
///   leading with its tenant column;
/// - the directory (`tenants`, `users`, `memberships`) must have row-level security enabled
///   and exactly tenantry's policies, and no other permissive one;
/// - every other table with a `tenant_id` column must be declared, and every table with a
///   foreign key to `tenants` (whatever the column is called) covered by row-level security;
/// - `app_role` must exist and be neither superuser nor `BYPASSRLS`; neither it nor
///   `bypass_role` (when it exists) may own anything, be a member (directly or through other
///   roles) of a superuser, `BYPASSRLS` (for the app role), `CREATEROLE` or tenant-table-owning
///   role, have `CREATEROLE`, create temporary tables or create in any schema;
/// - tenantry's `SECURITY DEFINER` functions may be executed only by the roles tenantry grants
///   them to, and every `SECURITY DEFINER` function of tenantry's schema pins a `search_path`
///   that ends with `pg_temp` and puts no schema those roles may create in before the end.
///
/// Run it as the migration role (`DATABASE_URL`): to learn the policy tenantry generates, it
/// declares a scratch table in a transaction that it rolls back.
pub async fn inspect_roles(
    conn: &mut AsyncPgConnection,
    app_role: &str,
    bypass_role: &str,
) -> diesel::QueryResult<Report> {
    let mut report = Report::default();

    let migrated: bool = diesel::select(diesel::dsl::sql::<Bool>(concat!(
        "to_regclass('",
        schema_name!(),
        ".tenantry_declared_tables') IS NOT NULL"
    )))
    .get_result(conn)
    .await?;
    if !migrated {
        match crate::schema::placement::elsewhere(conn).await? {
            Some(found) => report.findings.push(Finding::OtherSchema { found }),
            None => report.findings.push(Finding::NotMigrated),
        }
    } else {
        let tables: Vec<TenantTableState> = diesel::sql_query(TENANT_TABLES_SQL).load(conn).await?;
        let mut present = Vec::new();
        for t in tables {
            report.tenant_tables.push(t.table.clone());
            if !t.exists {
                report
                    .findings
                    .push(Finding::DeclaredTableMissing { table: t.table });
                continue;
            }
            if !t.enabled {
                report.findings.push(Finding::RlsNotEnabled {
                    table: t.table.clone(),
                });
            }
            if !t.forced {
                report.findings.push(Finding::RlsNotForced {
                    table: t.table.clone(),
                });
            }
            if !t.index {
                report.findings.push(Finding::TenantIndexMissing {
                    table: t.table.clone(),
                    column: t.column,
                });
            }
            present.push(TenantTable {
                table: t.table,
                quoted_column: t.quoted_column,
            });
        }
        let (policy_findings, directory) = policies::check(conn, &present).await?;
        report.findings.extend(policy_findings);
        report.directory_tables = directory;
        let undeclared: Vec<TableName> = diesel::sql_query(UNDECLARED_SQL).load(conn).await?;
        report.findings.extend(
            undeclared
                .into_iter()
                .map(|t| Finding::UndeclaredTenantColumn { table: t.table }),
        );
        let uncovered: Vec<TenantReference> = diesel::sql_query(UNCOVERED_REFERENCES_SQL)
            .load(conn)
            .await?;
        let already = |table: &str| {
            report
                .findings
                .iter()
                .any(|f| matches!(f, Finding::UndeclaredTenantColumn { table: t } if t == table))
        };
        let uncovered: Vec<Finding> = uncovered
            .into_iter()
            .filter(|r| !already(&r.table))
            .map(|r| Finding::TenantReferenceWithoutPolicy {
                table: r.table,
                constraint: r.constraint,
            })
            .collect();
        report.findings.extend(uncovered);
    }

    let role: Vec<RoleState> = diesel::sql_query(
        "SELECT rolsuper AS superuser, rolbypassrls AS bypassrls FROM pg_roles WHERE rolname = $1",
    )
    .bind::<Text, _>(app_role)
    .load(conn)
    .await?;
    match role.into_iter().next() {
        None => report.findings.push(Finding::AppRoleMissing {
            role: app_role.to_owned(),
        }),
        Some(r) => {
            let (superuser, bypassrls) =
                (r.superuser.unwrap_or(false), r.bypassrls.unwrap_or(false));
            if superuser || bypassrls {
                report.findings.push(Finding::AppRolePrivileged {
                    role: app_role.to_owned(),
                    superuser,
                    bypassrls,
                });
            }
        }
    }
    let mut checked = vec![CheckedRole {
        name: app_role,
        app: true,
    }];
    if bypass_role != app_role {
        checked.push(CheckedRole {
            name: bypass_role,
            app: false,
        });
    }
    let (role_findings, roles) = privileges::check(conn, &checked).await?;
    report.roles = roles;
    report.findings.extend(role_findings);
    Ok(report)
}
