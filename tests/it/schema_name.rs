//! tenantry's schema is the one this build names (`TENANTRY_SCHEMA`, `tenantry::schema::NAME`):
//! every object of tenantry's is there and none in `public`, an application's own schema named
//! like another build's would be keeps its tables, isolation holds, and a database migrated
//! into another schema stops the start, `migrate` and `doctor`, naming both schemas.
//!
//! CI runs this module with the default name and again built with `TENANTRY_SCHEMA=app_tenantry`.

use crate::common;

use common::schema::{decls, MIGRATIONS};
use common::{EmptyDb, TestDb};
use diesel_async::{AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use tenantry::schema::NAME;
use tenantry::{Db, DbConfig};
use uuid::Uuid;

/// tenantry's relations (tables, views) and its domain, by name.
const RELATIONS: &[&str] = &[
    "tenants",
    "users",
    "memberships",
    "audit_log",
    "audit_log_chain",
    "audit_log_chain_head",
    "tenantry_declared_tables",
    "tenantry_tenant_keys",
    "tenantry_roles",
    "tenantry_jobs",
    "tenantry_current_tenant",
];

/// An application schema named as another build's tenantry schema would be: `tenantry` when
/// this build's is not, `app_tenantry` when it is.
fn lookalike() -> &'static str {
    if NAME == "tenantry" {
        "app_tenantry"
    } else {
        "tenantry"
    }
}

// The SQL here names schemas itself: run as written, not through `common::sql`'s rendering (which
// would turn the application's `tenantry` into this build's schema).

async fn exec(conn: &mut AsyncPgConnection, sql: &str) {
    conn.batch_execute(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

#[allow(
    clippy::disallowed_methods,
    reason = "catalog probes as the superuser, with raw SQL on purpose"
)]
async fn try_text(conn: &mut AsyncPgConnection, sql: &str) -> diesel::QueryResult<Option<String>> {
    #[derive(diesel::QueryableByName)]
    struct V {
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
        v: Option<String>,
    }
    let rows: Vec<V> = diesel::sql_query(sql).load(conn).await?;
    Ok(rows.into_iter().next().and_then(|r| r.v))
}

async fn count(conn: &mut AsyncPgConnection, sql: &str) -> i64 {
    try_text(conn, &format!("SELECT ({sql})::text AS v"))
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{sql}: no count"))
}

fn quoted(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("'{n}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The relations, functions and types of schema `schema`, one `kind name` per line, sorted.
async fn objects_of(conn: &mut AsyncPgConnection, schema: &str) -> String {
    let sql = format!(
        "SELECT string_agg(o, E'\\n' ORDER BY o) AS v FROM (
             SELECT 'rel ' || c.relname AS o FROM pg_class c
             WHERE c.relnamespace = to_regnamespace('{schema}')
             UNION ALL
             SELECT 'fn ' || p.proname FROM pg_proc p
             WHERE p.pronamespace = to_regnamespace('{schema}')
             UNION ALL
             SELECT 'type ' || t.typname FROM pg_type t
             WHERE t.typnamespace = to_regnamespace('{schema}') AND t.typtype = 'd') x"
    );
    try_text(conn, &sql)
        .await
        .expect("the catalog")
        .unwrap_or_default()
}

#[tokio::test]
async fn every_object_of_tenantry_is_in_the_compiled_schema_and_none_in_public() {
    let t = TestDb::new().await;
    let mut admin = t.admin().await;
    let list = quoted(RELATIONS);
    let sql = format!(
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relname IN ({list}) AND c.relkind IN ('r', 'v') AND n.nspname = '{NAME}'"
    );
    assert_eq!(count(&mut admin, &sql).await, RELATIONS.len() as i64);
    let elsewhere = format!(
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relname IN ({list}) AND n.nspname <> '{NAME}'"
    );
    assert_eq!(count(&mut admin, &elsewhere).await, 0);
    // Functions: every `tenantry_` function is in the schema (the Citus test kit's own helper
    // aside), the ones the request path calls among them.
    let functions = format!(
        "SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
         WHERE p.proname LIKE 'tenantry\\_%' AND p.proname NOT LIKE 'tenantry\\_test\\_%'
           AND n.nspname <> '{NAME}'"
    );
    assert_eq!(count(&mut admin, &functions).await, 0);
    let objects = objects_of(&mut admin, NAME).await;
    for expected in [
        "fn tenantry_enter",
        "fn tenantry_declare_tenant_table",
        "fn tenantry_tenant",
        "fn tenantry_audit_write",
        "type tenantry_tenant_check",
        "rel tenantry_current_tenant",
    ] {
        assert!(
            objects.lines().any(|l| l == expected),
            "{expected}: {objects}"
        );
    }
    let public = objects_of(&mut admin, "public").await;
    assert!(
        !public.lines().any(|l| l.contains(" tenantry_")
            && !l.contains("tenantry_test_")
            && !l.contains("tenantry_tenant_isolation")),
        "tenantry's objects in public: {public}"
    );
    // Functions pinned to a search path name this schema (or pg_catalog alone).
    let pinned = format!(
        "SELECT count(*) FROM pg_proc p, unnest(p.proconfig) AS s
         WHERE p.pronamespace = to_regnamespace('{NAME}') AND s LIKE 'search\\_path=%'
           AND s NOT IN ('search_path={NAME}, pg_temp', 'search_path=pg_catalog, pg_temp')"
    );
    assert_eq!(count(&mut admin, &pinned).await, 0);
}

#[tokio::test]
async fn an_application_schema_named_like_tenantry_keeps_its_tables_and_isolation_holds() {
    let empty = EmptyDb::new().await;
    let mut admin = empty.admin().await;
    let app = lookalike();
    exec(
        &mut admin,
        &format!(
            "CREATE SCHEMA {app};
             CREATE TABLE {app}.users (id serial PRIMARY KEY, email text NOT NULL UNIQUE, plan text);
             CREATE TABLE {app}.tenants (id int PRIMARY KEY, name text NOT NULL);
             INSERT INTO {app}.users (email, plan) VALUES ('a@example.com', 'gold'), ('b@example.com', NULL);
             INSERT INTO {app}.tenants VALUES (1, 'acme')"
        ),
    )
    .await;
    let rows = format!(
        "SELECT string_agg(u.email || ':' || coalesce(u.plan, '-'), ',' ORDER BY u.id)
                || '|' || (SELECT string_agg(name, ',') FROM {app}.tenants) AS v
         FROM {app}.users u"
    );
    let before = (
        objects_of(&mut admin, app).await,
        try_text(&mut admin, &rows).await.expect("rows"),
    );

    let migrated = tenantry::migrate_with(admin, MIGRATIONS)
        .await
        .expect("tenantry migrates beside the application's schema");
    let mut admin = migrated.conn;
    tenantry::declare_tables(&mut admin, &decls())
        .await
        .expect("declarations");
    let after = (
        objects_of(&mut admin, app).await,
        try_text(&mut admin, &rows).await.expect("rows"),
    );
    assert_eq!(after, before, "the application's schema `{app}` changed");
    assert!(
        objects_of(&mut admin, NAME)
            .await
            .lines()
            .any(|l| l == "rel tenantry_declared_tables"),
        "tenantry's objects are in `{NAME}`"
    );

    // Two tenants, rows in each; tenant A, as the app role, reaches none of B's.
    let db = Db::connect(DbConfig::new(
        TestDb::app_url_of(&empty.name),
        Some(TestDb::bypass_url_of(&empty.name)),
    ))
    .await
    .expect("the application starts");
    let mut ids = Vec::new();
    for slug in ["a", "b"] {
        let id: Uuid = try_text(
            &mut admin,
            &format!(
                "INSERT INTO {NAME}.tenants (slug, name) VALUES ('{slug}', '{slug}') \
                 RETURNING id::text AS v"
            ),
        )
        .await
        .expect("a tenant")
        .and_then(|v| v.parse().ok())
        .expect("its id");
        common::seed(&mut admin, id, slug, 3).await;
        ids.push(id);
    }
    let (a, b) = (ids[0], ids[1]);
    let mut app_conn = tenantry::tls::establish(&TestDb::app_url_of(&empty.name))
        .await
        .expect("the app role connects");
    tenantry::testing::begin_tenant(&db, &mut app_conn, a)
        .await
        .expect("enter tenant a");
    let theirs = format!(
        "SELECT (SELECT count(*) FROM invoices WHERE tenant_id = '{b}')
              + (SELECT count(*) FROM projects WHERE tenant_id = '{b}')
              + (SELECT count(*) FROM {NAME}.tenants WHERE id = '{b}')"
    );
    let mine = "SELECT count(*) FROM invoices";
    assert_eq!(count(&mut app_conn, &theirs).await, 0, "b's rows from a");
    assert_eq!(count(&mut app_conn, mine).await, 3, "a's own invoices");
}

#[tokio::test]
async fn a_database_migrated_into_another_schema_stops_start_migrate_and_doctor() {
    let empty = EmptyDb::new().await;
    let admin = empty.admin().await;
    let mut admin = tenantry::migrate(admin).await.expect("migrated").conn;
    // As if a CLI built with another TENANTRY_SCHEMA had migrated it.
    let other = format!("{}_other", NAME);
    exec(
        &mut admin,
        &format!("ALTER SCHEMA {NAME} RENAME TO {other}"),
    )
    .await;
    let expect_names = |message: &str| {
        for part in [
            "TENANTRY_SCHEMA",
            &format!("`{other}`"),
            &format!("`{NAME}`"),
        ] {
            assert!(message.contains(part), "{part} in: {message}");
        }
    };

    let start = Db::connect(DbConfig::new(
        TestDb::app_url_of(&empty.name),
        Some(TestDb::bypass_url_of(&empty.name)),
    ))
    .await
    .expect_err("the start fails");
    expect_names(&start.to_string());

    let report = tenantry::doctor::inspect_roles(&mut admin, "tenantry_app", "tenantry_bypass")
        .await
        .expect("doctor runs");
    assert_eq!(
        report.findings,
        [tenantry::doctor::Finding::OtherSchema {
            found: other.clone()
        }]
    );
    expect_names(&report.findings[0].to_string());

    let migrate = tenantry::migrate(admin).await.expect_err("migrate refuses");
    assert!(
        matches!(&migrate, tenantry::MigrateError::OtherSchema { found } if *found == other),
        "{migrate}"
    );
    expect_names(&migrate.to_string());
}
