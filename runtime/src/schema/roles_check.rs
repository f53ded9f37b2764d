//! What a role can make of itself: the tenant tables it owns and the privileged roles it can act
//! as. [`Db::connect`](crate::db::Db::connect) refuses an app role with any such power, and
//! [`inspect`](crate::schema::inspect) (`tenantry doctor`) reports the same.
//!
//! Row-level security holds for a role only while it cannot step outside it. Superuser and
//! `BYPASSRLS` are the obvious ways out; these are the others:
//!
//! - owning a table: its owner may `ALTER TABLE .. DISABLE ROW LEVEL SECURITY`, drop or rewrite
//!   its policies, and (tenantry's directory is not `FORCE`d) reads and writes every row of
//!   `tenants`, `users` and `memberships`, so it can make anyone an Owner;
//! - being a member of a role that has a way out, directly or through other roles: a member may
//!   `SET ROLE` to it, or `SELECT set_config('role', .., false)` from inside any statement, whether
//!   the membership inherits (`INHERIT`) or not;
//! - `CREATEROLE`: before PostgreSQL 16 it grants membership in every non-superuser role,
//!   `tenantry_bypass` and the tables' owner included;
//! - the predefined roles that reach the server's files and programs
//!   (`pg_read_server_files`, `pg_write_server_files`, `pg_execute_server_program`): the tables'
//!   files lie beneath row-level security.
//!
//! The tables guarded here are tenantry's own (`tenants`, `users`, `memberships`, `audit_log`,
//! `tenantry_declared_tables`), every declared table, and every table with row-level security
//! enabled or a policy. Owning some other table (one a library creates at start, say) is not a
//! way out of tenant isolation, so it is not refused; `tenantry doctor` still reports it.

#![allow(
    clippy::disallowed_methods,
    reason = "a start check's catalog query: literal SQL on the check's own connection"
)]

use std::fmt;

use diesel::sql_types::{Array, Bool, Nullable, Text};
use diesel::QueryableByName;
use diesel_async::AsyncPgConnection;

/// A power that puts a role beyond row-level security, or lets it take such a power.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RolePower {
    /// A superuser: row-level security does not apply.
    Superuser,
    /// `BYPASSRLS`: row-level security does not apply.
    BypassRls,
    /// Membership of a predefined role that reads or writes the server's files or runs its
    /// programs.
    ServerFiles,
    /// `CREATEROLE`: it may grant itself any non-superuser role.
    CreateRole,
    /// Owns this table (`schema.table`): it may disable the table's row-level security or
    /// rewrite its policies.
    OwnsTable(String),
}

impl RolePower {
    fn name(&self) -> &'static str {
        match self {
            RolePower::Superuser => "superuser",
            RolePower::BypassRls => "bypassrls",
            RolePower::ServerFiles => "server_files",
            RolePower::CreateRole => "createrole",
            RolePower::OwnsTable(_) => "owns_table",
        }
    }
}

impl fmt::Display for RolePower {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RolePower::Superuser => {
                write!(
                    f,
                    "is a superuser (row-level security does not apply to it)"
                )
            }
            RolePower::BypassRls => {
                write!(f, "has BYPASSRLS (row-level security does not apply to it)")
            }
            RolePower::ServerFiles => write!(
                f,
                "reaches the server's files or programs (the tables' files lie beneath \
                 row-level security)"
            ),
            RolePower::CreateRole => write!(
                f,
                "has CREATEROLE (it can grant itself any non-superuser role: tenantry_bypass, \
                 a table's owner)"
            ),
            RolePower::OwnsTable(table) => write!(
                f,
                "owns table {table} (an owner can disable its row-level security and rewrite \
                 its policies)"
            ),
        }
    }
}

/// How a role can step outside row-level security: a power of its own, or one of a role it is a
/// member of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleEscalation {
    /// The role checked.
    pub role: String,
    /// The roles between it and the power, in order of membership: empty when the power is the
    /// role's own; otherwise the last one holds the power, and `role` is a member of the first.
    pub via: Vec<String>,
    /// The power.
    pub power: RolePower,
}

impl RoleEscalation {
    /// The statement that takes the power away.
    pub fn fix(&self) -> String {
        let role = &self.role;
        match (self.via.first(), &self.power) {
            (Some(first), _) => format!("REVOKE {first} FROM {role}"),
            (None, RolePower::OwnsTable(table)) => {
                format!("ALTER TABLE {table} OWNER TO <the migration role>")
            }
            (None, RolePower::Superuser) => format!("ALTER ROLE {role} NOSUPERUSER"),
            (None, RolePower::BypassRls) => format!("ALTER ROLE {role} NOBYPASSRLS"),
            (None, RolePower::CreateRole) => format!("ALTER ROLE {role} NOCREATEROLE"),
            (None, RolePower::ServerFiles) => "connect as another role".to_owned(),
        }
    }
}

impl fmt::Display for RoleEscalation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let role = &self.role;
        match self.via.split_last() {
            None => write!(f, "role `{role}` {}", self.power),
            Some((holder, [])) => write!(
                f,
                "role `{role}` is a member of `{holder}`, which {}, and can act as it with SET \
                 ROLE or set_config('role', ..)",
                self.power
            ),
            Some((holder, through)) => write!(
                f,
                "role `{role}` is a member of `{holder}` through `{}`; `{holder}` {}, and a \
                 member can act as it with SET ROLE or set_config('role', ..)",
                through.join("` then `"),
                self.power
            ),
        }
    }
}

/// The tables an app role must not own, as `guarded(owner, "table")`. `{declared}` is replaced
/// by a condition on `tenantry_declared_tables`, or by nothing when the role may not read it;
/// `{schema}` by tenantry's schema.
///
/// Then every role `$1` reaches through `pg_auth_members` (itself included, at depth 0), and
/// for each the strongest power it holds (shortest path first), except the powers in `$2`.
/// PostgreSQL refuses circular memberships; the path check only keeps a damaged catalog from
/// looping.
const ESCALATIONS_SQL: &str = r#"
WITH RECURSIVE reach(oid, via) AS (
    SELECT r.oid, ARRAY[]::text[] FROM pg_roles r WHERE r.rolname = $1
  UNION ALL
    SELECT m.roleid, reach.via || (g.rolname::text COLLATE "default")
    FROM reach
    JOIN pg_auth_members m ON m.member = reach.oid
    JOIN pg_roles g ON g.oid = m.roleid
    WHERE NOT g.rolname::text = ANY (reach.via) AND g.rolname <> $1
),
guarded AS (
    SELECT c.relowner AS owner, n.nspname || '.' || c.relname AS "table"
    FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p')
      AND (c.relrowsecurity
           OR EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid)
           OR (c.relnamespace = (SELECT t.relnamespace FROM pg_class t
                                 WHERE t.oid = to_regclass('{schema}.tenantry_declared_tables'))
               AND c.relname IN ('tenants', 'users', 'memberships', 'audit_log',
                                 'tenantry_declared_tables'))
           {declared})
),
powers AS (
    SELECT DISTINCT ON (reach.oid) reach.via, p.power, p.detail
    FROM reach
    JOIN pg_roles g ON g.oid = reach.oid
    CROSS JOIN LATERAL (
        SELECT 1 AS rank, 'superuser' AS power, NULL::text AS detail WHERE g.rolsuper
        UNION ALL SELECT 2, 'bypassrls', NULL WHERE g.rolbypassrls
        UNION ALL SELECT 3, 'server_files', NULL
            WHERE g.rolname IN ('pg_read_server_files', 'pg_write_server_files',
                                'pg_execute_server_program')
        UNION ALL SELECT 4, 'createrole', NULL WHERE g.rolcreaterole
        UNION ALL SELECT 5, 'owns_table', t."table" FROM guarded t WHERE t.owner = reach.oid
    ) p
    WHERE NOT p.power = ANY ($2)
    ORDER BY reach.oid, p.rank, cardinality(reach.via), p.detail
)
SELECT via, power, detail FROM powers ORDER BY cardinality(via), via, power
"#;

const DECLARED_SQL: &str = concat!(
    "OR EXISTS (SELECT 1 FROM ",
    schema_name!(),
    ".tenantry_declared_tables d WHERE d.table_schema = n.nspname AND d.table_name = c.relname)"
);

#[derive(QueryableByName)]
struct EscalationRow {
    #[diesel(sql_type = Array<Text>)]
    via: Vec<String>,
    #[diesel(sql_type = Text)]
    power: String,
    #[diesel(sql_type = Nullable<Text>)]
    detail: Option<String>,
}

/// Every way `role` can step outside row-level security: for each role it reaches (itself
/// included), the strongest power that role holds, by the shortest chain of memberships; the
/// powers named in `ignored` (a bypass role's own `BYPASSRLS`, say) are left out. Empty for a
/// role that does not exist.
///
/// Runs as any role: it reads the catalogs, and `tenantry_declared_tables` when it may.
pub(crate) async fn escalations(
    conn: &AsyncPgConnection,
    role: &str,
    ignored: &[RolePower],
) -> diesel::QueryResult<Vec<RoleEscalation>> {
    use diesel_async::RunQueryDsl;
    let mut conn = conn;
    let declared: bool = diesel::select(diesel::dsl::sql::<Bool>(concat!(
        "COALESCE(has_table_privilege(to_regclass('",
        schema_name!(),
        ".tenantry_declared_tables'), 'SELECT'), false)"
    )))
    .get_result(&mut conn)
    .await?;
    let sql = ESCALATIONS_SQL
        .replace("{declared}", if declared { DECLARED_SQL } else { "" })
        .replace("{schema}", crate::schema::tables::NAME);
    let ignored: Vec<&str> = ignored.iter().map(RolePower::name).collect();
    let rows: Vec<EscalationRow> = diesel::sql_query(sql)
        .bind::<Text, _>(role)
        .bind::<Array<Text>, _>(ignored)
        .load(&mut conn)
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| RoleEscalation {
            role: role.to_owned(),
            via: r.via,
            power: match r.power.as_str() {
                "superuser" => RolePower::Superuser,
                "bypassrls" => RolePower::BypassRls,
                "server_files" => RolePower::ServerFiles,
                "createrole" => RolePower::CreateRole,
                _ => RolePower::OwnsTable(r.detail.unwrap_or_default()),
            },
        })
        .collect())
}
