//! What [`inspect`](crate::schema::inspect) can find, each with the message `tenantry doctor` prints: what
//! is wrong, why it matters, and the statement that fixes it.

use std::fmt;

use crate::schema::tables::NAME;
use crate::schema::RoleEscalation;

use super::privileges::allowed_executors;

/// One gap found by [`inspect`](crate::schema::inspect).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// A declared tenant table no longer exists.
    DeclaredTableMissing {
        /// `schema.table`.
        table: String,
    },
    /// Row-level security is not enabled on a tenant table or a directory table.
    RlsNotEnabled {
        /// `schema.table`.
        table: String,
    },
    /// Row-level security is enabled but not forced (the table owner would bypass it).
    RlsNotForced {
        /// `schema.table`.
        table: String,
    },
    /// A declared tenant table lacks a policy `tenantry_declare_tenant_table` creates.
    PolicyMissing {
        /// `schema.table`.
        table: String,
    },
    /// A tenant table's tenantry policy is not exactly the one `tenantry_declare_tenant_table`
    /// creates.
    PolicyDiffers {
        /// `schema.table`.
        table: String,
        /// The policy's name.
        policy: String,
        /// How it differs.
        difference: PolicyDifference,
    },
    /// One of the directory's policies (on `tenants`, `users`, `memberships`) is missing.
    DirectoryPolicyMissing {
        /// `schema.table`.
        table: String,
        /// The policy tenantry's migrations create.
        policy: String,
    },
    /// One of the directory's policies is not exactly the one tenantry's migrations create.
    DirectoryPolicyDiffers {
        /// `schema.table`.
        table: String,
        /// The policy's name.
        policy: String,
        /// How it differs.
        difference: PolicyDifference,
    },
    /// Another permissive policy on a tenant or directory table: PostgreSQL ORs permissive
    /// policies, so it can widen what the tenant policy allows.
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
    /// The app or bypass role owns something in the database: an owner can change or drop it
    /// beyond what grants allow, and a table's owner can lift its row-level security.
    RoleOwns {
        /// The app or bypass role.
        role: String,
        /// `table`, `view`, `materialized view`, `foreign table`, `schema`, `function` or
        /// `database`.
        kind: String,
        /// `schema.name`, a function's signature, or a schema's or database's name.
        object: String,
    },
    /// The app or bypass role can take a power that lifts row-level security: as a member
    /// (directly or through other roles) of a superuser, `BYPASSRLS`, `CREATEROLE` role or a
    /// tenant table's owner, or with `CREATEROLE` itself.
    RoleEscalates {
        /// How.
        escalation: RoleEscalation,
    },
    /// The app or bypass role may create temporary tables in the database (PostgreSQL grants
    /// it to `PUBLIC` by default): a temporary table shadows a table of the same name for the
    /// rest of the session, which a pool hands to the next request.
    TempAllowed {
        /// The app or bypass role.
        role: String,
        /// The database.
        database: String,
        /// Granted to `PUBLIC` (else to the role or a role it inherits from).
        via_public: bool,
    },
    /// The app or bypass role may create objects in a schema: a table, function or operator
    /// there can shadow what tenantry's functions and the application's queries name.
    CreateAllowed {
        /// The app or bypass role.
        role: String,
        /// The schema.
        schema: String,
        /// Granted to `PUBLIC` (else to the role, a role it inherits from, or it owns the
        /// schema).
        via_public: bool,
    },
    /// A role may execute one of tenantry's `SECURITY DEFINER` functions (which run with their
    /// owner's rights, beneath row-level security) that tenantry does not grant it.
    DefinerExecutable {
        /// The function's signature.
        function: String,
        /// The grantee (`PUBLIC` for everyone).
        grantee: String,
    },
    /// A `SECURITY DEFINER` function in tenantry's schema resolves names on a search path a
    /// caller can plant objects on.
    DefinerSearchPath {
        /// The function's signature.
        function: String,
        /// Its pinned `search_path`, if any.
        search_path: Option<String>,
        /// What is wrong with it.
        problem: SearchPathProblem,
    },
    /// tenantry's migrations have not been applied (no `tenantry_declared_tables`).
    NotMigrated,
    /// tenantry's objects are in another schema than this build's
    /// ([`schema::NAME`](crate::schema::tables::NAME), `TENANTRY_SCHEMA` at build time): a CLI
    /// built with another `TENANTRY_SCHEMA` migrated the database (or, `public`, tenantry's
    /// migrations before `00000000000013` did).
    OtherSchema {
        /// The schema that holds them.
        found: String,
    },
}

/// How a policy differs from the one tenantry generates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyDifference {
    /// `RESTRICTIVE` where tenantry's is `PERMISSIVE`, or the reverse.
    Permissive {
        /// Whether tenantry's is permissive.
        expected: bool,
    },
    /// Another command (`ALL`, `SELECT`, `INSERT`, `UPDATE`, `DELETE`).
    Command {
        /// The policy's.
        found: String,
        /// tenantry's.
        expected: String,
    },
    /// Other roles (`PUBLIC` for all).
    Roles {
        /// The policy's, comma-separated.
        found: String,
        /// tenantry's.
        expected: String,
    },
    /// Another `USING` expression (as PostgreSQL deparses it).
    Using {
        /// The policy's.
        found: Option<String>,
        /// tenantry's.
        expected: Option<String>,
    },
    /// Another `WITH CHECK` expression (as PostgreSQL deparses it).
    WithCheck {
        /// The policy's.
        found: Option<String>,
        /// tenantry's.
        expected: Option<String>,
    },
}

/// What is wrong with a `SECURITY DEFINER` function's `search_path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SearchPathProblem {
    /// No `search_path` is pinned: the caller's applies.
    NotPinned,
    /// `pg_temp` is not last (unlisted, it is searched first for tables): anyone who may create
    /// temporary objects shadows what the function names.
    TempNotLast,
    /// A schema the app or bypass role may create in comes before the end.
    Writable {
        /// The schema.
        schema: String,
    },
}

/// An expression on one line (the deparser breaks lines in subqueries).
fn one_line(expr: &Option<String>) -> String {
    match expr {
        Some(e) => format!("`{}`", e.split_whitespace().collect::<Vec<_>>().join(" ")),
        None => "none".to_owned(),
    }
}

impl fmt::Display for PolicyDifference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = |permissive: bool| {
            if permissive {
                "PERMISSIVE"
            } else {
                "RESTRICTIVE"
            }
        };
        match self {
            PolicyDifference::Permissive { expected } => {
                write!(f, "is {}, not {}", kind(!expected), kind(*expected))
            }
            PolicyDifference::Command { found, expected } => {
                write!(f, "applies FOR {found}, not FOR {expected}")
            }
            PolicyDifference::Roles { found, expected } => {
                write!(f, "applies TO {found}, not TO {expected}")
            }
            PolicyDifference::Using { found, expected } => write!(
                f,
                "has USING {}, not tenantry's {}",
                one_line(found),
                one_line(expected)
            ),
            PolicyDifference::WithCheck { found, expected } => write!(
                f,
                "has WITH CHECK {}, not tenantry's {}",
                one_line(found),
                one_line(expected)
            ),
        }
    }
}

impl fmt::Display for SearchPathProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SearchPathProblem::NotPinned => write!(f, "has no pinned search_path"),
            SearchPathProblem::TempNotLast => write!(
                f,
                "does not put pg_temp last (unlisted, pg_temp is searched first)"
            ),
            SearchPathProblem::Writable { schema } => write!(
                f,
                "searches schema {schema}, where the app or bypass role may create objects, \
                 before the end"
            ),
        }
    }
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
                "{table}: no tenant policy (run {NAME}.tenantry_declare_tenant_table('{table}'))"
            ),
            Finding::PolicyDiffers {
                table,
                policy,
                difference,
            } => write!(
                f,
                "{table}: policy {policy} {difference}, so it may let a tenant see or write \
                 another's rows (re-declare the table: {NAME}.tenantry_declare_tenant_table('{table}', \
                 <its tenant column>) re-creates the policy)"
            ),
            Finding::DirectoryPolicyMissing { table, policy } => write!(
                f,
                "{table}: tenantry's policy {policy} is missing (re-create it as tenantry's \
                 migrations do)"
            ),
            Finding::DirectoryPolicyDiffers {
                table,
                policy,
                difference,
            } => write!(
                f,
                "{table}: policy {policy} {difference}, so it may show the app role another \
                 tenant's directory rows (drop it and re-create it as tenantry's migrations do)"
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
                "{table}: references {NAME}.tenants ({constraint}) but has no row-level security policy (declare it: {NAME}.tenantry_declare_tenant_table('{table}', '<column>'))"
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
            Finding::RoleOwns { role, kind, object } => {
                let statement = match kind.as_str() {
                    "function" => "ROUTINE".to_owned(),
                    other => other.to_uppercase(),
                };
                write!(
                    f,
                    "role {role} owns {kind} {object}: an owner can change or drop it whatever \
                     the grants, and a table's owner can lift its row-level security (ALTER \
                     {statement} {object} OWNER TO <the migration role>)"
                )
            }
            Finding::RoleEscalates { escalation } => {
                write!(f, "{escalation} ({})", escalation.fix())
            }
            Finding::TempAllowed {
                role,
                database,
                via_public,
            } => {
                let (via, from) = if *via_public {
                    (" (granted to PUBLIC)", "PUBLIC")
                } else {
                    ("", role.as_str())
                };
                write!(
                    f,
                    "role {role} may create temporary tables in database {database}{via}: one \
                     named like a table shadows it for the rest of a pooled session (REVOKE \
                     TEMPORARY ON DATABASE {database} FROM {from})"
                )
            }
            Finding::CreateAllowed {
                role,
                schema,
                via_public,
            } => {
                let (via, from) = if *via_public {
                    (" (granted to PUBLIC)", "PUBLIC")
                } else {
                    ("", role.as_str())
                };
                write!(
                    f,
                    "role {role} may create objects in schema {schema}{via}: a table, function \
                     or operator there can shadow what queries and tenantry's functions name \
                     (REVOKE CREATE ON SCHEMA {schema} FROM {from})"
                )
            }
            Finding::DefinerExecutable { function, grantee } => {
                let allowed = allowed_executors(function);
                let expected = if allowed.is_empty() {
                    "its owner alone".to_owned()
                } else {
                    format!("its owner and {}", allowed.join(", "))
                };
                write!(
                    f,
                    "function {function} runs as its owner (SECURITY DEFINER), beneath \
                     row-level security, and {grantee} may execute it; tenantry grants it to \
                     {expected} (REVOKE EXECUTE ON FUNCTION {function} FROM {grantee})"
                )
            }
            Finding::DefinerSearchPath {
                function,
                search_path,
                problem,
            } => {
                let shown = search_path.as_deref().unwrap_or("none");
                write!(
                    f,
                    "function {function} runs as its owner (SECURITY DEFINER) and {problem} \
                     (search_path: {shown}): a caller can plant an object it resolves to \
                     (ALTER FUNCTION {function} SET search_path = {NAME}, pg_temp)"
                )
            }
            Finding::NotMigrated => write!(
                f,
                "tenantry's migrations have not been applied (run `tenantry migrate`)"
            ),
            Finding::OtherSchema { found } => {
                f.write_str(&crate::schema::placement::mismatch(found))
            }
        }
    }
}
