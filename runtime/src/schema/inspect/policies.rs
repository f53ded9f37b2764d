//! The policies of tenant tables and of the directory, compared exactly with the ones tenantry
//! generates.
//!
//! A text match (`LIKE '%app.tenant_id%'`) passes a policy that ends `OR true`. So each policy
//! is compared, as PostgreSQL deparses it (`pg_get_expr`), with the policy tenantry itself
//! generates: same name, `PERMISSIVE`, command, roles, `USING` and `WITH CHECK`, and no other
//! permissive policy (PostgreSQL ORs permissive policies, so any other one widens the tenant
//! policy). Restrictive policies are allowed beside it: PostgreSQL ANDs them with the
//! permissive ones, so they can only hide rows or refuse writes, never show or accept another
//! tenant's.
//!
//! **Where the expected policy comes from: the database itself.** Inside a transaction that it
//! always rolls back, [`reference`] creates a scratch table keyed on `tenants (id)` and declares
//! it with `tenantry_declare_tenant_table`, the very function that declared every tenant
//! table, then reads that policy back. Whatever expression the latest migration gives that
//! function is what every tenant table is compared with, so the expression is written in one
//! place only (the function), and neither doctor nor its tests spell it out. The scratch
//! table's tenant column has a name of its own ([`REFERENCE_COLUMN`]), replaced in the deparsed
//! text by each table's tenant column. It takes a brief `SHARE ROW EXCLUSIVE` lock on `tenants`
//! (the foreign key), bounded by `lock_timeout`, and needs the migration role (`DATABASE_URL`):
//! the owner that may create tables and run the declaring function.
//!
//! The directory's policies (migration `00000000000002_directory`) apply the same tenant check
//! to `tenants.id` and `memberships.tenant_id`, and `users`' wraps the check of `m.tenant_id`
//! in an `EXISTS` over `memberships`: [`DIRECTORY_POLICIES`] says so, with the check itself
//! taken from the same reference. A migration that gives the directory policies another shape
//! changes that table too.

use std::collections::BTreeMap;
use std::convert::Infallible;

use diesel::sql_types::{Bool, Nullable, Text};
use diesel::QueryableByName;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};

use super::finding::{Finding, PolicyDifference};
use crate::schema::tables::NAME;

/// The scratch table [`reference`] declares (and rolls back).
const REFERENCE_TABLE: &str = "tenantry_doctor_reference";
/// Its tenant column: a name no expression tenantry generates contains otherwise.
const REFERENCE_COLUMN: &str = "tenantry_doctor_column";

/// One policy as the catalog holds it.
#[derive(QueryableByName, Debug, Clone)]
struct PolicyRow {
    /// `schema.table`.
    #[diesel(sql_type = Text)]
    table: String,
    #[diesel(sql_type = Text)]
    policy: String,
    #[diesel(sql_type = Bool)]
    permissive: bool,
    #[diesel(sql_type = Text)]
    command: String,
    #[diesel(sql_type = Text)]
    roles: String,
    #[diesel(sql_type = Nullable<Text>)]
    using: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    with_check: Option<String>,
}

/// The policies of the tables `{tables}` selects (a condition on `c`), deparsed.
const POLICIES_SQL: &str = r#"
SELECT n.nspname || '.' || c.relname AS "table", p.polname::text AS policy,
       p.polpermissive AS permissive,
       CASE p.polcmd WHEN '*' THEN 'ALL' WHEN 'r' THEN 'SELECT' WHEN 'a' THEN 'INSERT'
                     WHEN 'w' THEN 'UPDATE' WHEN 'd' THEN 'DELETE' ELSE p.polcmd::text END AS command,
       array_to_string(ARRAY(
           SELECT CASE r WHEN 0 THEN 'PUBLIC' ELSE pg_get_userbyid(r)::text END
           FROM unnest(p.polroles) AS r ORDER BY 1), ', ') AS roles,
       pg_get_expr(p.polqual, p.polrelid) AS "using",
       pg_get_expr(p.polwithcheck, p.polrelid) AS with_check
FROM pg_policy p
JOIN pg_class c ON c.oid = p.polrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE {tables}
ORDER BY 1, 2
"#;

/// The declared tenant tables that exist, and the directory's tables.
const CHECKED_TABLES: &str = concat!(
    "c.oid IN (
    SELECT c2.oid FROM ",
    schema_name!(),
    ".tenantry_declared_tables d
    JOIN pg_namespace n2 ON n2.nspname = d.table_schema
    JOIN pg_class c2 ON c2.relnamespace = n2.oid AND c2.relname = d.table_name
    WHERE d.kind = 'tenant'
    UNION ALL
    SELECT t FROM unnest(ARRAY[to_regclass('",
    schema_name!(),
    ".tenants'), to_regclass('",
    schema_name!(),
    ".users'),
                               to_regclass('",
    schema_name!(),
    ".memberships')]) AS t)"
);

fn policies_sql(tables: &str) -> String {
    POLICIES_SQL.replace("{tables}", tables)
}

/// A policy tenantry generates, its expressions with [`REFERENCE_COLUMN`] where the tenant
/// column goes.
#[derive(Debug, Clone)]
pub(super) struct Expected {
    policy: String,
    permissive: bool,
    command: String,
    roles: String,
    using: Option<String>,
    with_check: Option<String>,
}

impl Expected {
    /// For a table whose tenant column deparses as `column`.
    fn for_column(&self, column: &str) -> Expected {
        let put = |e: &Option<String>| e.as_ref().map(|e| e.replace(REFERENCE_COLUMN, column));
        Expected {
            using: put(&self.using),
            with_check: put(&self.with_check),
            ..self.clone()
        }
    }
}

/// Ends the reference transaction: PostgreSQL rolls it back, and the policies come out.
enum RolledBack {
    Reference(Vec<PolicyRow>),
    Failed(diesel::result::Error),
}

impl From<diesel::result::Error> for RolledBack {
    fn from(e: diesel::result::Error) -> Self {
        RolledBack::Failed(e)
    }
}

/// The policies `tenantry_declare_tenant_table` gives a table, read from a scratch table it
/// declares inside a transaction that is always rolled back (see the module's docs).
pub(super) async fn reference(conn: &mut AsyncPgConnection) -> diesel::QueryResult<Vec<Expected>> {
    // Formatted from this module's two constants and the schema's name (`NAME`, checked as an
    // identifier when the crate is built) only; nothing from outside reaches the text.
    let setup = format!(
        "SET LOCAL lock_timeout = '5s';
         SET LOCAL client_min_messages = warning;
         CREATE TABLE {REFERENCE_TABLE} ({REFERENCE_COLUMN} uuid NOT NULL REFERENCES {NAME}.tenants (id));
         SELECT {NAME}.tenantry_declare_tenant_table('{REFERENCE_TABLE}', '{REFERENCE_COLUMN}');"
    );
    let read = policies_sql(&format!("c.oid = '{REFERENCE_TABLE}'::regclass"));
    let ended = conn
        .transaction::<Infallible, RolledBack, _>(async |c| {
            c.batch_execute(&setup).await?;
            let rows: Vec<PolicyRow> = diesel::sql_query(read).load(c).await?;
            Err(RolledBack::Reference(rows))
        })
        .await;
    match ended {
        Ok(never) => match never {},
        Err(RolledBack::Failed(e)) => Err(e),
        Err(RolledBack::Reference(rows)) => Ok(rows
            .into_iter()
            .map(|p| Expected {
                policy: p.policy,
                permissive: p.permissive,
                command: p.command,
                roles: p.roles,
                using: p.using,
                with_check: p.with_check,
            })
            .collect()),
    }
}

/// An expression of a directory policy.
enum DirectoryExpr {
    /// tenantry's tenant check on this column.
    TenantCheck(&'static str),
    /// `users`' policy: the user has a membership in the tenant (the check on `m.tenant_id`);
    /// `{memberships}` is where the deparser names the table.
    Members,
    /// This expression.
    Literal(&'static str),
}

/// One of the directory's policies, as migration `00000000000002_directory` creates it:
/// `PERMISSIVE`, `FOR ALL`, `TO PUBLIC`.
struct DirectoryPolicy {
    table: &'static str,
    policy: &'static str,
    using: DirectoryExpr,
    with_check: DirectoryExpr,
}

/// The directory's policies: the tables and what each expression is (see the module's docs).
const DIRECTORY_POLICIES: [DirectoryPolicy; 3] = [
    DirectoryPolicy {
        table: "tenants",
        policy: "tenantry_directory_tenant",
        using: DirectoryExpr::TenantCheck("id"),
        with_check: DirectoryExpr::TenantCheck("id"),
    },
    DirectoryPolicy {
        table: "memberships",
        policy: "tenantry_directory_membership",
        using: DirectoryExpr::TenantCheck("tenant_id"),
        with_check: DirectoryExpr::TenantCheck("tenant_id"),
    },
    DirectoryPolicy {
        table: "users",
        policy: "tenantry_directory_member",
        using: DirectoryExpr::Members,
        with_check: DirectoryExpr::Literal("false"),
    },
];

/// How PostgreSQL deparses `users`' policy (migration `00000000000002_directory`); `{check}` is
/// the tenant check of `m.tenant_id`.
const MEMBERS_EXPR: &str = "(EXISTS ( SELECT 1
   FROM {memberships} m
  WHERE ((m.user_id = users.id) AND {check})))";

/// The tenant check of a database prepared for Citus (migration `00000000000012_citus`), and
/// `users`' policy there: a function call, since Citus refuses subqueries in policies.
const CITUS_TENANT: &str = "tenantry_citus_tenant()";
const CITUS_MEMBERS_EXPR: &str = concat!(schema_name!(), ".tenantry_citus_is_member(id)");

#[derive(QueryableByName)]
struct DirectoryTable {
    /// `schema.table`.
    #[diesel(sql_type = Text)]
    table: String,
    #[diesel(sql_type = Text)]
    name: String,
    /// As the deparser names it (qualified only when off the search path).
    #[diesel(sql_type = Text)]
    shown: String,
    #[diesel(sql_type = Bool)]
    enabled: bool,
}

const DIRECTORY_TABLES_SQL: &str = concat!(
    r#"
SELECT n.nspname || '.' || c.relname AS "table", c.relname::text AS name,
       c.oid::regclass::text AS shown, c.relrowsecurity AS enabled
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.oid IN (to_regclass('"#,
    schema_name!(),
    r#".tenants'), to_regclass('"#,
    schema_name!(),
    r#".users'), to_regclass('"#,
    schema_name!(),
    r#".memberships'))
ORDER BY 1
"#
);

/// A declared tenant table that exists, with its tenant column as the deparser writes it.
pub(super) struct TenantTable {
    pub(super) table: String,
    pub(super) quoted_column: String,
}

/// Which findings a table's policies raise.
#[derive(Clone, Copy)]
enum Kind {
    Tenant,
    Directory,
}

/// Compares the policies of the declared tenant tables and of the directory with the ones
/// tenantry generates. Returns the findings and the directory's tables (`schema.table`).
pub(super) async fn check(
    conn: &mut AsyncPgConnection,
    tenant_tables: &[TenantTable],
) -> diesel::QueryResult<(Vec<Finding>, Vec<String>)> {
    let reference = reference(conn).await?;
    let rows: Vec<PolicyRow> = diesel::sql_query(policies_sql(CHECKED_TABLES))
        .load(conn)
        .await?;
    let mut by_table: BTreeMap<&str, Vec<&PolicyRow>> = BTreeMap::new();
    for row in &rows {
        by_table.entry(&row.table).or_default().push(row);
    }
    let mut findings = Vec::new();
    for t in tenant_tables {
        let expected: Vec<Expected> = reference
            .iter()
            .map(|e| e.for_column(&t.quoted_column))
            .collect();
        let found = by_table.get(t.table.as_str()).map_or(&[][..], |v| v);
        compare(&t.table, Kind::Tenant, &expected, found, &mut findings);
    }

    let directory: Vec<DirectoryTable> = diesel::sql_query(DIRECTORY_TABLES_SQL).load(conn).await?;
    let memberships = directory
        .iter()
        .find(|d| d.name == "memberships")
        .map_or("memberships", |d| d.shown.as_str());
    // The directory's policies apply the tenant check of tenantry's (first) tenant policy.
    // (`<[_]>::first`: diesel's `RunQueryDsl::first` is in scope.)
    let check = <[Expected]>::first(&reference);
    let expr = |e: &DirectoryExpr, of: fn(&Expected) -> &Option<String>| -> Option<String> {
        let check_of = |column: &str| check.and_then(|c| of(&c.for_column(column)).clone());
        match e {
            DirectoryExpr::TenantCheck(column) => check_of(column),
            DirectoryExpr::Members => check_of("m.tenant_id").map(|check| {
                if check.contains(CITUS_TENANT) {
                    CITUS_MEMBERS_EXPR.to_owned()
                } else {
                    MEMBERS_EXPR
                        .replace("{memberships}", memberships)
                        .replace("{check}", &check)
                }
            }),
            DirectoryExpr::Literal(text) => Some((*text).to_owned()),
        }
    };
    for d in &directory {
        if !d.enabled {
            findings.push(Finding::RlsNotEnabled {
                table: d.table.clone(),
            });
        }
        let Some(policy) = DIRECTORY_POLICIES.iter().find(|p| p.table == d.name) else {
            continue;
        };
        let expected = Expected {
            policy: policy.policy.to_owned(),
            permissive: true,
            command: "ALL".to_owned(),
            roles: "PUBLIC".to_owned(),
            using: expr(&policy.using, |e| &e.using),
            with_check: expr(&policy.with_check, |e| &e.with_check),
        };
        let found = by_table.get(d.table.as_str()).map_or(&[][..], |v| v);
        compare(&d.table, Kind::Directory, &[expected], found, &mut findings);
    }
    Ok((findings, directory.into_iter().map(|d| d.table).collect()))
}

/// The findings of one table: each expected policy missing or different, and every other
/// permissive policy.
fn compare(
    table: &str,
    kind: Kind,
    expected: &[Expected],
    found: &[&PolicyRow],
    findings: &mut Vec<Finding>,
) {
    for e in expected {
        let Some(p) = found.iter().find(|p| p.policy == e.policy) else {
            findings.push(match kind {
                Kind::Tenant => Finding::PolicyMissing {
                    table: table.to_owned(),
                },
                Kind::Directory => Finding::DirectoryPolicyMissing {
                    table: table.to_owned(),
                    policy: e.policy.clone(),
                },
            });
            continue;
        };
        for difference in differences(e, p) {
            let (table, policy) = (table.to_owned(), p.policy.clone());
            findings.push(match kind {
                Kind::Tenant => Finding::PolicyDiffers {
                    table,
                    policy,
                    difference,
                },
                Kind::Directory => Finding::DirectoryPolicyDiffers {
                    table,
                    policy,
                    difference,
                },
            });
        }
    }
    for p in found {
        if p.permissive && !expected.iter().any(|e| e.policy == p.policy) {
            findings.push(Finding::ExtraPermissivePolicy {
                table: table.to_owned(),
                policy: p.policy.clone(),
            });
        }
    }
}

/// The same expression, as PostgreSQL deparses it: equal but for the indentation of nested
/// subqueries, which depends on how deep the expression sits.
fn same(found: &Option<String>, expected: &Option<String>) -> bool {
    fn words(s: &Option<String>) -> Option<Vec<&str>> {
        s.as_deref().map(|s| s.split_whitespace().collect())
    }
    words(found) == words(expected)
}

fn differences(e: &Expected, p: &PolicyRow) -> Vec<PolicyDifference> {
    let mut out = Vec::new();
    if p.permissive != e.permissive {
        out.push(PolicyDifference::Permissive {
            expected: e.permissive,
        });
    }
    if p.command != e.command {
        out.push(PolicyDifference::Command {
            found: p.command.clone(),
            expected: e.command.clone(),
        });
    }
    if p.roles != e.roles {
        out.push(PolicyDifference::Roles {
            found: p.roles.clone(),
            expected: e.roles.clone(),
        });
    }
    if !same(&p.using, &e.using) {
        out.push(PolicyDifference::Using {
            found: p.using.clone(),
            expected: e.using.clone(),
        });
    }
    if !same(&p.with_check, &e.with_check) {
        out.push(PolicyDifference::WithCheck {
            found: p.with_check.clone(),
            expected: e.with_check.clone(),
        });
    }
    out
}
