//! What the app and bypass roles may do beyond their grants: own objects, act as privileged
//! roles, create temporary tables or objects in a schema; and who may run tenantry's
//! `SECURITY DEFINER` functions, on which search path.

use diesel::sql_types::{Array, Bool, Nullable, Text};
use diesel::QueryResult;
use diesel::QueryableByName;
use diesel_async::{AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};

use super::finding::{Finding, SearchPathProblem};
use crate::schema::roles_check::escalations;
use crate::schema::RolePower;

/// Who may execute each of tenantry's `SECURITY DEFINER` functions besides its owner: the
/// only list of it. A function of tenantry's schema named `tenantry_*` that is not listed here
/// may be executed by its owner alone. The directory's lookups belong to the directory role,
/// not to the app role, which reaches the directory through the active tenant only.
const DEFINER_GRANTEES: &[(&str, &[&str])] = &[
    ("tenantry_principal", &["tenantry_directory"]),
    ("tenantry_owner_tenant", &["tenantry_directory"]),
    ("tenantry_record_sub", &["tenantry_directory"]),
    ("tenantry_tenant_keys", &["tenantry_directory"]),
    ("tenantry_enter", &["tenantry_app"]),
    ("tenantry_audit_write", &["tenantry_app", "tenantry_bypass"]),
    // On Citus (migration `0012_citus`): the policies' checks, run as the querying role.
    ("tenantry_citus_tenant", &["tenantry_app"]),
    ("tenantry_citus_is_member", &["tenantry_app"]),
];

/// `SECURITY DEFINER` functions that name every object with its schema instead of pinning
/// `search_path` (a pinned path costs a GUC save and restore per call, on the request path): sound
/// as long as their body is exactly the one tenantry generates, which doctor checks by generating
/// it again in a transaction it rolls back (`tenantry_reseal_enter`).
const QUALIFIED_DEFINERS: &[(&str, &str)] = &[(
    concat!(
        schema_name!(),
        ".tenantry_enter(uuid,boolean,bigint,integer,bytea)"
    ),
    concat!("SELECT ", schema_name!(), ".tenantry_reseal_enter()"),
)];

#[derive(QueryableByName)]
struct Source {
    #[diesel(sql_type = Nullable<Text>)]
    source: Option<String>,
}

/// Whether `function`'s body is the one `generate` writes (generated in a transaction that is
/// rolled back).
async fn generated_body(
    conn: &mut AsyncPgConnection,
    function: &str,
    generate: &str,
) -> QueryResult<bool> {
    let sql =
        format!("SELECT prosrc AS source FROM pg_proc WHERE oid = to_regprocedure('{function}')");
    let current: Vec<Source> = diesel::sql_query(&sql).load(conn).await?;
    conn.batch_execute("BEGIN").await?;
    let regenerated = async {
        conn.batch_execute(generate).await?;
        diesel::sql_query(&sql).load::<Source>(conn).await
    }
    .await;
    conn.batch_execute("ROLLBACK").await?;
    let regenerated = regenerated?;
    Ok(matches!(
        (<[Source]>::first(&current), <[Source]>::first(&regenerated)),
        (Some(a), Some(b)) if a.source.is_some() && a.source == b.source
    ))
}

/// The roles besides its owner that may execute `function` (a signature, `name(args)`).
pub(super) fn allowed_executors(function: &str) -> &'static [&'static str] {
    let name = function.split('(').next().unwrap_or(function);
    let name = name.rsplit('.').next().unwrap_or(name);
    DEFINER_GRANTEES
        .iter()
        .find(|(f, _)| *f == name)
        .map_or(&[], |(_, roles)| roles)
}

#[derive(QueryableByName)]
struct RecordedRole {
    #[diesel(sql_type = Text)]
    purpose: String,
    #[diesel(sql_type = Text)]
    role_name: String,
}

/// The role names the migrations recorded (`tenantry_roles`, migration 00000000000009); the
/// defaults before it.
pub(super) async fn recorded_roles(
    conn: &mut AsyncPgConnection,
) -> QueryResult<crate::schema::RoleNames> {
    let mut roles = crate::schema::RoleNames::default();
    let rows: Vec<RecordedRole> = diesel::sql_query(concat!(
        "SELECT purpose, role_name::text AS role_name FROM ",
        schema_name!(),
        ".tenantry_roles WHERE to_regclass('",
        schema_name!(),
        ".tenantry_roles') IS NOT NULL"
    ))
    .load(conn)
    .await
    .or_else(|e| match e {
        // Not migrated that far: the defaults.
        diesel::result::Error::DatabaseError(..) => Ok(Vec::new()),
        e => Err(e),
    })?;
    for r in rows {
        match r.purpose.as_str() {
            "app" => roles.app = r.role_name,
            "bypass" => roles.bypass = r.role_name,
            "directory" => roles.directory = r.role_name,
            _ => {}
        }
    }
    Ok(roles)
}

/// Schemas PostgreSQL and the session own, left out of every check here.
const USER_SCHEMA: &str = "n.nspname NOT IN ('pg_catalog', 'information_schema') \
     AND n.nspname !~ '^pg_(toast|temp_|toast_temp_)'";

#[derive(QueryableByName)]
struct Owned {
    #[diesel(sql_type = Text)]
    kind: String,
    #[diesel(sql_type = Text)]
    object: String,
}

/// What `$1` owns: relations, schemas and functions outside PostgreSQL's schemas, and the
/// database.
fn owned_sql() -> String {
    format!(
        r#"
SELECT kind, object FROM (
    SELECT CASE c.relkind WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view'
                          WHEN 'f' THEN 'foreign table' ELSE 'table' END AS kind,
           n.nspname || '.' || c.relname AS object
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relowner = (SELECT oid FROM pg_roles WHERE rolname = $1)
      AND c.relkind IN ('r', 'p', 'v', 'm', 'f') AND {USER_SCHEMA}
  UNION ALL
    SELECT 'schema', n.nspname::text FROM pg_namespace n
    WHERE n.nspowner = (SELECT oid FROM pg_roles WHERE rolname = $1) AND {USER_SCHEMA}
  UNION ALL
    SELECT 'function', p.oid::regprocedure::text
    FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
    WHERE p.proowner = (SELECT oid FROM pg_roles WHERE rolname = $1) AND {USER_SCHEMA}
  UNION ALL
    SELECT 'database', d.datname::text FROM pg_database d
    WHERE d.datname = current_database()
      AND d.datdba = (SELECT oid FROM pg_roles WHERE rolname = $1)
) o ORDER BY 1, 2
"#
    )
}

#[derive(QueryableByName)]
struct Temp {
    #[diesel(sql_type = Bool)]
    allowed: bool,
    #[diesel(sql_type = Bool)]
    via_public: bool,
    #[diesel(sql_type = Text)]
    database: String,
}

/// Whether `$1` may create temporary tables here (itself, by inheritance or through `PUBLIC`,
/// which has it unless revoked), and whether `PUBLIC` has it.
const TEMP_SQL: &str = r#"
SELECT has_database_privilege($1, d.oid, 'TEMPORARY') AS allowed,
       EXISTS (SELECT 1 FROM aclexplode(COALESCE(d.datacl, acldefault('d', d.datdba))) a
               WHERE a.grantee = 0 AND a.privilege_type = 'TEMPORARY') AS via_public,
       d.datname::text AS database
FROM pg_database d WHERE d.datname = current_database()
"#;

#[derive(QueryableByName)]
struct Creatable {
    #[diesel(sql_type = Text)]
    schema: String,
    #[diesel(sql_type = Bool)]
    via_public: bool,
}

/// The schemas `$1` may create objects in, and whether `PUBLIC` may.
fn create_sql() -> String {
    format!(
        r#"
SELECT n.nspname::text AS schema,
       EXISTS (SELECT 1 FROM aclexplode(COALESCE(n.nspacl, acldefault('n', n.nspowner))) a
               WHERE a.grantee = 0 AND a.privilege_type = 'CREATE') AS via_public
FROM pg_namespace n
WHERE {USER_SCHEMA} AND has_schema_privilege($1, n.oid, 'CREATE')
ORDER BY 1
"#
    )
}

#[derive(QueryableByName)]
struct Definer {
    #[diesel(sql_type = Text)]
    function: String,
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Nullable<Text>)]
    search_path: Option<String>,
    #[diesel(sql_type = Array<Text>)]
    executors: Vec<String>,
}

/// The `SECURITY DEFINER` functions of tenantry's schema (where `tenantry_declared_tables`
/// is) and of the application's (those of its declared tables): signature, pinned `search_path`, and who besides the owner may execute them (a `NULL`
/// ACL is PostgreSQL's default: `EXECUTE` for `PUBLIC`).
const DEFINERS_SQL: &str = concat!(
    r#"
SELECT p.oid::regprocedure::text AS function, p.proname::text AS name,
       (SELECT substr(s, length('search_path=') + 1) FROM unnest(p.proconfig) AS s
        WHERE s LIKE 'search\_path=%') AS search_path,
       ARRAY(SELECT CASE a.grantee WHEN 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee)::text END
             FROM aclexplode(COALESCE(p.proacl, acldefault('f', p.proowner))) a
             WHERE a.privilege_type = 'EXECUTE' AND a.grantee <> p.proowner
             ORDER BY 1) AS executors
FROM pg_proc p
WHERE p.prosecdef
  AND (p.pronamespace = (SELECT t.relnamespace FROM pg_class t
                         WHERE t.oid = to_regclass('"#,
    schema_name!(),
    r#".tenantry_declared_tables'))
       OR p.pronamespace IN (SELECT n.oid FROM pg_namespace n
                             JOIN "#,
    schema_name!(),
    r#".tenantry_declared_tables d ON d.table_schema = n.nspname))
ORDER BY 1
"#
);

#[derive(QueryableByName)]
struct Exists {
    #[diesel(sql_type = Bool)]
    exists: bool,
}

/// One role to check, and whether it is the app role (the bypass role's own `BYPASSRLS` is
/// expected).
pub(super) struct CheckedRole<'a> {
    pub(super) name: &'a str,
    pub(super) app: bool,
}

/// The findings about `roles` and tenantry's `SECURITY DEFINER` functions, and the roles that
/// exist (the others are skipped).
pub(super) async fn check(
    conn: &mut AsyncPgConnection,
    roles: &[CheckedRole<'_>],
) -> diesel::QueryResult<(Vec<Finding>, Vec<String>)> {
    let mut findings = Vec::new();
    let mut existing = Vec::new();
    let mut writable: Vec<String> = Vec::new();
    for role in roles {
        let exists: Exists = diesel::sql_query(
            "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1) AS exists",
        )
        .bind::<Text, _>(role.name)
        .get_result(conn)
        .await?;
        if !exists.exists {
            continue;
        }
        existing.push(role.name.to_owned());
        let owned: Vec<Owned> = diesel::sql_query(owned_sql())
            .bind::<Text, _>(role.name)
            .load(conn)
            .await?;
        findings.extend(owned.into_iter().map(|o| Finding::RoleOwns {
            role: role.name.to_owned(),
            kind: o.kind,
            object: o.object,
        }));

        let ignored: &[RolePower] = if role.app {
            &[]
        } else {
            &[RolePower::BypassRls]
        };
        let found = escalations(conn, role.name, ignored).await?;
        findings.extend(
            found
                .into_iter()
                .filter(|e| {
                    // The role's own table ownership is a `RoleOwns` above; the app role's own
                    // superuser or BYPASSRLS is `AppRolePrivileged`.
                    let reported_elsewhere = match e.power {
                        RolePower::OwnsTable(_) => true,
                        RolePower::Superuser | RolePower::BypassRls => role.app,
                        RolePower::ServerFiles | RolePower::CreateRole => false,
                    };
                    !(e.via.is_empty() && reported_elsewhere)
                })
                .map(|escalation| Finding::RoleEscalates { escalation }),
        );

        let temp: Temp = diesel::sql_query(TEMP_SQL)
            .bind::<Text, _>(role.name)
            .get_result(conn)
            .await?;
        if temp.allowed {
            findings.push(Finding::TempAllowed {
                role: role.name.to_owned(),
                database: temp.database,
                via_public: temp.via_public,
            });
        }

        let creatable: Vec<Creatable> = diesel::sql_query(create_sql())
            .bind::<Text, _>(role.name)
            .load(conn)
            .await?;
        for c in creatable {
            if !writable.contains(&c.schema) {
                writable.push(c.schema.clone());
            }
            findings.push(Finding::CreateAllowed {
                role: role.name.to_owned(),
                schema: c.schema,
                via_public: c.via_public,
            });
        }
    }

    // Before tenantry's migrations there is no schema of tenantry's to look in.
    let migrated = diesel::sql_query(concat!(
        "SELECT to_regclass('",
        schema_name!(),
        ".tenantry_declared_tables') IS NOT NULL AS exists"
    ))
    .get_result::<Exists>(conn)
    .await?
    .exists;
    let definers: Vec<Definer> = if migrated {
        diesel::sql_query(DEFINERS_SQL).load(conn).await?
    } else {
        Vec::new()
    };
    let mut qualified = Vec::new();
    for (function, generate) in QUALIFIED_DEFINERS {
        if definers.iter().any(|d| d.function == *function)
            && generated_body(conn, function, generate).await?
        {
            qualified.push(*function);
        }
    }
    let roles = recorded_roles(conn).await?;
    for d in definers {
        if d.name.starts_with("tenantry_") {
            let allowed = allowed_executors(&d.function);
            for grantee in &d.executors {
                if !allowed.contains(&roles.canonical(grantee)) {
                    findings.push(Finding::DefinerExecutable {
                        function: d.function.clone(),
                        grantee: grantee.clone(),
                    });
                }
            }
        }
        if d.search_path.is_none() && qualified.contains(&d.function.as_str()) {
            continue;
        }
        for problem in search_path_problems(d.search_path.as_deref(), &writable) {
            findings.push(Finding::DefinerSearchPath {
                function: d.function.clone(),
                search_path: d.search_path.clone(),
                problem,
            });
        }
    }
    Ok((findings, existing))
}

/// What is wrong with a `SECURITY DEFINER` function's pinned `search_path` (`None`: none is
/// pinned): `pg_temp` must come last, and no schema in `writable` may come before the end.
fn search_path_problems(path: Option<&str>, writable: &[String]) -> Vec<SearchPathProblem> {
    let Some(path) = path else {
        return vec![SearchPathProblem::NotPinned];
    };
    let entries: Vec<&str> = path
        .split(',')
        .map(|s| s.trim().trim_matches('"'))
        .filter(|s| !s.is_empty())
        .collect();
    let mut problems = Vec::new();
    let Some((last, before)) = entries.split_last() else {
        return vec![SearchPathProblem::TempNotLast];
    };
    if *last != "pg_temp" || before.contains(&"pg_temp") {
        problems.push(SearchPathProblem::TempNotLast);
    }
    for schema in before {
        if writable.iter().any(|w| w == schema) {
            problems.push(SearchPathProblem::Writable {
                schema: (*schema).to_owned(),
            });
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writable() -> Vec<String> {
        vec!["scratch".to_owned()]
    }

    #[test]
    fn a_search_path_ending_with_pg_temp_over_trusted_schemas_is_sound() {
        assert_eq!(
            search_path_problems(Some("public, pg_temp"), &writable()),
            vec![]
        );
        assert_eq!(
            search_path_problems(Some("\"public\", pg_temp"), &writable()),
            vec![]
        );
    }

    #[test]
    fn search_path_problems_are_named() {
        assert_eq!(
            search_path_problems(None, &writable()),
            vec![SearchPathProblem::NotPinned]
        );
        assert_eq!(
            search_path_problems(Some("public"), &writable()),
            vec![SearchPathProblem::TempNotLast]
        );
        assert_eq!(
            search_path_problems(Some("pg_temp, public"), &writable()),
            vec![SearchPathProblem::TempNotLast]
        );
        assert_eq!(
            search_path_problems(Some("scratch, public, pg_temp"), &writable()),
            vec![SearchPathProblem::Writable {
                schema: "scratch".into()
            }]
        );
    }

    #[test]
    fn the_directory_functions_belong_to_the_directory_role() {
        assert_eq!(
            allowed_executors("tenantry_principal(text,text)"),
            ["tenantry_directory"]
        );
        assert_eq!(
            allowed_executors("public.tenantry_record_sub(uuid,text)"),
            ["tenantry_directory"]
        );
        assert!(allowed_executors("tenantry_something_new()").is_empty());
    }
}
