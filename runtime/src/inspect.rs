//! Inspecting a database for tenant-isolation gaps (what `tenantry doctor` reports).

use std::fmt;

use diesel::sql_types::{Bool, Nullable, Text};
use diesel::QueryableByName;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

/// One gap found by [`inspect`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// A declared tenant table no longer exists.
    DeclaredTableMissing {
        /// `schema.table`.
        table: String,
    },
    /// Row-level security is not enabled on a tenant table.
    RlsNotEnabled {
        /// `schema.table`.
        table: String,
    },
    /// Row-level security is enabled but not forced (the table owner would bypass it).
    RlsNotForced {
        /// `schema.table`.
        table: String,
    },
    /// The tenant policy is missing or does not check `app.tenant_id` in `USING` and `WITH CHECK`.
    PolicyMissing {
        /// `schema.table`.
        table: String,
    },
    /// Another permissive policy on a tenant table: PostgreSQL ORs permissive policies, so it
    /// can widen what the tenant policy allows.
    ExtraPermissivePolicy {
        /// `schema.table`.
        table: String,
        /// The other policy's name.
        policy: String,
    },
    /// No index leads with the tenant column.
    TenantIndexMissing {
        /// `schema.table`.
        table: String,
        /// The tenant column.
        column: String,
    },
    /// A table has a `tenant_id` column but is declared neither tenant nor global.
    UndeclaredTenantColumn {
        /// `schema.table`.
        table: String,
    },
    /// A table with a foreign key to `tenants` (whatever the column is called) that row-level
    /// security does not cover: RLS disabled or no policy. Declare it as a tenant table.
    TenantReferenceWithoutPolicy {
        /// `schema.table`.
        table: String,
        /// The foreign key's name.
        constraint: String,
    },
    /// The app role does not exist.
    AppRoleMissing {
        /// Role name.
        role: String,
    },
    /// The app role is a superuser or has `BYPASSRLS`, so row-level security does not apply to it.
    AppRolePrivileged {
        /// Role name.
        role: String,
        /// `rolsuper`.
        superuser: bool,
        /// `rolbypassrls`.
        bypassrls: bool,
    },
    /// tenantry's migrations have not been applied (no `tenantry_declared_tables`).
    NotMigrated,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Finding::DeclaredTableMissing { table } => {
                write!(f, "{table}: declared as a tenant table but does not exist")
            }
            Finding::RlsNotEnabled { table } => write!(
                f,
                "{table}: row-level security is not enabled (ALTER TABLE {table} ENABLE ROW LEVEL SECURITY)"
            ),
            Finding::RlsNotForced { table } => write!(
                f,
                "{table}: row-level security is not forced (ALTER TABLE {table} FORCE ROW LEVEL SECURITY)"
            ),
            Finding::PolicyMissing { table } => write!(
                f,
                "{table}: no tenant policy on app.tenant_id (run tenantry_declare_tenant_table('{table}'))"
            ),
            Finding::ExtraPermissivePolicy { table, policy } => write!(
                f,
                "{table}: permissive policy {policy} is ORed with the tenant policy and may widen it (drop it or make it RESTRICTIVE)"
            ),
            Finding::TenantIndexMissing { table, column } => {
                write!(f, "{table}: no index leads with {column}")
            }
            Finding::UndeclaredTenantColumn { table } => write!(
                f,
                "{table}: has a tenant_id column but is declared neither tenant nor global"
            ),
            Finding::TenantReferenceWithoutPolicy { table, constraint } => write!(
                f,
                "{table}: references tenants ({constraint}) but has no row-level security policy (declare it: tenantry_declare_tenant_table('{table}', '<column>'))"
            ),
            Finding::AppRoleMissing { role } => write!(f, "role {role} does not exist"),
            Finding::AppRolePrivileged {
                role,
                superuser,
                bypassrls,
            } => write!(
                f,
                "role {role} ignores row-level security (superuser: {superuser}, bypassrls: {bypassrls})"
            ),
            Finding::NotMigrated => write!(
                f,
                "tenantry's migrations have not been applied (run `tenantry migrate`)"
            ),
        }
    }
}

/// What [`inspect`] looked at and what it found.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Declared tenant tables that were checked (`schema.table`).
    pub tenant_tables: Vec<String>,
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
    policy: bool,
    #[diesel(sql_type = Bool)]
    index: bool,
}

#[derive(QueryableByName)]
struct ExtraPolicy {
    #[diesel(sql_type = Text)]
    table: String,
    #[diesel(sql_type = Text)]
    policy: String,
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

const TENANT_TABLES_SQL: &str = r#"
SELECT d.table_schema || '.' || d.table_name AS "table",
       d.tenant_column AS "column",
       c.oid IS NOT NULL AS "exists",
       COALESCE(c.relrowsecurity, false) AS enabled,
       COALESCE(c.relforcerowsecurity, false) AS forced,
       EXISTS (
         SELECT 1 FROM pg_policies p
         WHERE p.schemaname = d.table_schema AND p.tablename = d.table_name
           AND p.cmd = 'ALL' AND p.permissive = 'PERMISSIVE'
           AND p.qual LIKE '%current_setting(''app.tenant_id''%'
           AND p.qual LIKE '%' || d.tenant_column || '%'
           AND p.with_check LIKE '%current_setting(''app.tenant_id''%'
           AND p.with_check LIKE '%' || d.tenant_column || '%'
       ) AS policy,
       EXISTS (
         SELECT 1 FROM pg_index i JOIN pg_attribute a
           ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
         WHERE i.indrelid = c.oid AND a.attname = d.tenant_column
       ) AS "index"
FROM tenantry_declared_tables d
LEFT JOIN pg_namespace n ON n.nspname = d.table_schema
LEFT JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = d.table_name AND c.relkind IN ('r', 'p')
WHERE d.kind = 'tenant'
ORDER BY 1
"#;

const EXTRA_POLICIES_SQL: &str = r#"
SELECT p.schemaname || '.' || p.tablename AS "table", p.policyname::text AS policy
FROM pg_policies p
JOIN tenantry_declared_tables d ON d.table_schema = p.schemaname AND d.table_name = p.tablename
WHERE d.kind = 'tenant' AND p.permissive = 'PERMISSIVE' AND p.policyname <> 'tenantry_tenant_isolation'
ORDER BY 1, 2
"#;

const UNDECLARED_SQL: &str = r#"
SELECT n.nspname || '.' || c.relname AS "table"
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped
WHERE c.relkind IN ('r', 'p')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'
  AND NOT EXISTS (SELECT 1 FROM tenantry_declared_tables d
                  WHERE d.table_schema = n.nspname AND d.table_name = c.relname)
ORDER BY 1
"#;

/// Tables with a foreign key to `tenants` that row-level security does not cover (declared tenant
/// tables have their own, finer findings above).
const UNCOVERED_REFERENCES_SQL: &str = r#"
SELECT DISTINCT ON (c.oid) n.nspname || '.' || c.relname AS "table", k.conname::text AS "constraint"
FROM pg_constraint k
JOIN pg_class c ON c.oid = k.conrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE k.contype = 'f' AND k.confrelid = to_regclass('tenants')
  AND NOT (c.relrowsecurity AND EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid))
  AND NOT EXISTS (SELECT 1 FROM tenantry_declared_tables d
                  WHERE d.kind = 'tenant' AND d.table_schema = n.nspname AND d.table_name = c.relname)
ORDER BY c.oid, k.conname
"#;

/// Inspects the database `conn` is connected to: every declared tenant table must have
/// row-level security enabled and forced, the tenant policy and an index leading with its
/// tenant column; every other table with a `tenant_id` column must be declared, and every
/// table with a foreign key to `tenants` (whatever the column is called) must be covered by
/// row-level security;
/// `app_role` must exist and be neither superuser nor `BYPASSRLS`.
///
/// Run it as any role that can read the catalogs (the migration role, say).
#[allow(
    clippy::disallowed_methods,
    reason = "tenantry doctor's catalog queries, literal SQL on the inspecting connection"
)]
pub async fn inspect(conn: &mut AsyncPgConnection, app_role: &str) -> diesel::QueryResult<Report> {
    let mut report = Report::default();

    let migrated: bool = diesel::select(diesel::dsl::sql::<Bool>(
        "to_regclass('tenantry_declared_tables') IS NOT NULL",
    ))
    .get_result(conn)
    .await?;
    if !migrated {
        report.findings.push(Finding::NotMigrated);
    } else {
        let tables: Vec<TenantTableState> = diesel::sql_query(TENANT_TABLES_SQL).load(conn).await?;
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
            if !t.policy {
                report.findings.push(Finding::PolicyMissing {
                    table: t.table.clone(),
                });
            }
            if !t.index {
                report.findings.push(Finding::TenantIndexMissing {
                    table: t.table,
                    column: t.column,
                });
            }
        }
        let extra: Vec<ExtraPolicy> = diesel::sql_query(EXTRA_POLICIES_SQL).load(conn).await?;
        report
            .findings
            .extend(extra.into_iter().map(|p| Finding::ExtraPermissivePolicy {
                table: p.table,
                policy: p.policy,
            }));
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
    Ok(report)
}
