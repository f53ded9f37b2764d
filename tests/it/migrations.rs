//! Migrations through `diesel_migrations`: a database of tenantry's earlier runner
//! (`tenantry_migrations`) is adopted once, nothing lost and nothing applied twice; a database
//! of the earlier layout (tenantry's objects in `public`) is moved to the schema `tenantry`.

use crate::common;

use common::schema::MIGRATIONS;
use common::{count, EmptyDb};
use diesel_async::{AsyncPgConnection, SimpleAsyncConnection};

const FRAMEWORK_0001: &str =
    include_str!("../../runtime/migrations/00000000000001_framework/up.sql");
const FRAMEWORK_0002: &str =
    include_str!("../../runtime/migrations/00000000000002_directory/up.sql");
const ROLES: &str = include_str!("../../runtime/migrations/roles.sql");
const TEST_SCHEMA: &str = include_str!("../migrations/0001_test_schema/up.sql");

/// A migration as tenantry's releases before `00000000000013_own_schema` wrote it: without the
/// lines that put `tenantry` first on the search path (so its objects land in `public`), and,
/// for an application's, naming tenantry's objects unqualified.
fn earlier_layout(sql: &str) -> String {
    sql.lines()
        .filter(|l| {
            !l.starts_with("CREATE SCHEMA IF NOT EXISTS tenantry;")
                && !l.starts_with("SELECT pg_catalog.set_config('search_path'")
        })
        .collect::<Vec<_>>()
        .join("\n")
        .replace("tenantry.tenants", "tenants")
        .replace("tenantry.tenantry_declare", "tenantry_declare")
}

/// What tenantry's earlier runner left: its table, tenantry's 0001 and 0002 under set
/// `tenantry`, and the application's `0001_test_schema` under `sets`.
async fn migrated_by_the_earlier_runner(conn: &mut AsyncPgConnection, sets: &[&str]) {
    let mut sql = format!(
        "{ROLES};
         CREATE TABLE tenantry_migrations (
             migration_set text NOT NULL, version text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now(),
             PRIMARY KEY (migration_set, version));
         {};
         {};
         INSERT INTO tenantry_migrations (migration_set, version)
             VALUES ('tenantry', '0001_framework'), ('tenantry', '0002_directory');
         {};",
        earlier_layout(FRAMEWORK_0001),
        earlier_layout(FRAMEWORK_0002),
        earlier_layout(TEST_SCHEMA)
    );
    for set in sets {
        sql.push_str(&format!(
            "INSERT INTO tenantry_migrations (migration_set, version) VALUES ('{set}', '0001_test_schema');"
        ));
    }
    conn.batch_execute(&sql)
        .await
        .expect("the earlier runner's database");
}

#[tokio::test]
async fn an_earlier_runners_database_is_adopted_once() {
    let db = EmptyDb::new().await;
    let mut conn = db.admin().await;
    migrated_by_the_earlier_runner(&mut conn, &["app"]).await;
    // The earlier layout: tenantry's tables in `public`.
    let sql = "INSERT INTO public.tenants (slug, name) VALUES ('kept', 'Kept')";
    conn.batch_execute(sql).await.expect("a row");

    let first = tenantry::migrate_with(conn, MIGRATIONS)
        .await
        .expect("migrates");
    let mut expected = common::framework_migrations()[2..].to_vec();
    expected.push("0002_citus_keys".to_owned());
    assert_eq!(
        first.applied, expected,
        "only what the earlier runner had not applied"
    );
    let mut conn = first.conn;
    let versions = "SELECT count(*) AS n FROM __diesel_schema_migrations WHERE version IN \
                    ('00000000000001', '00000000000002', '00000000000003', '00000000000004', '0001')";
    assert_eq!(count(&mut conn, versions).await, 5);
    let adopted = "SELECT count(*) AS n FROM tenantry_migrations WHERE adopted_at IS NOT NULL";
    assert_eq!(
        count(&mut conn, adopted).await,
        3,
        "kept, and marked adopted"
    );
    assert_eq!(
        count(&mut conn, "SELECT count(*) AS n FROM tenantry.tenants").await,
        1
    );

    let again = tenantry::migrate_with(conn, MIGRATIONS)
        .await
        .expect("again");
    assert!(again.applied.is_empty(), "{:?}", again.applied);

    // After `diesel migration revert` of the application's migration, the next run applies it
    // again: the adoption happened once and is not repeated.
    let mut conn = again.conn;
    conn.batch_execute(&common::sql(
        "DROP TABLE invoices, projects, currencies;
         DELETE FROM tenantry.tenantry_declared_tables WHERE table_name IN ('invoices', 'projects', 'currencies');
         DELETE FROM __diesel_schema_migrations WHERE version = '0001';",
    ))
    .await
    .expect("reverted");
    let reapplied = tenantry::migrate_with(conn, MIGRATIONS)
        .await
        .expect("re-applies");
    assert_eq!(reapplied.applied, ["0001_test_schema"]);
}

#[tokio::test]
async fn a_version_recorded_under_two_sets_is_refused() {
    let db = EmptyDb::new().await;
    let mut conn = db.admin().await;
    migrated_by_the_earlier_runner(&mut conn, &["billing", "app"]).await;
    let err = tenantry::migrate_with(conn, MIGRATIONS)
        .await
        .expect_err("ambiguous");
    let text = err.to_string();
    assert!(
        matches!(err, tenantry::MigrateError::AmbiguousLegacyVersion { .. }),
        "{text}"
    );
    assert!(
        text.contains("0001_test_schema under the sets app, billing"),
        "{text}"
    );
}

/// Every framework migration before `00000000000013_own_schema`, with its version.
const EARLIER: [(&str, &str); 10] = [
    ("00000000000001", FRAMEWORK_0001),
    ("00000000000002", FRAMEWORK_0002),
    (
        "00000000000003",
        include_str!("../../runtime/migrations/00000000000003_directory_notify/up.sql"),
    ),
    (
        "00000000000004",
        include_str!("../../runtime/migrations/00000000000004_service_identities/up.sql"),
    ),
    (
        "00000000000005",
        include_str!("../../runtime/migrations/00000000000005_tenant_seal/up.sql"),
    ),
    (
        "00000000000007",
        include_str!("../../runtime/migrations/00000000000007_audit_chain/up.sql"),
    ),
    (
        "00000000000008",
        include_str!("../../runtime/migrations/00000000000008_identity_keys/up.sql"),
    ),
    (
        "00000000000009",
        include_str!("../../runtime/migrations/00000000000009_role_names/up.sql"),
    ),
    (
        "00000000000011",
        include_str!("../../runtime/migrations/00000000000011_job_queue/up.sql"),
    ),
    (
        "00000000000012",
        include_str!("../../runtime/migrations/00000000000012_citus/up.sql"),
    ),
];

const ACME: &str = "00000000-0000-4000-8000-00000000000a";
const GLOBEX: &str = "00000000-0000-4000-8000-00000000000b";

#[allow(
    clippy::disallowed_methods,
    reason = "the database's own state is under test: raw SQL is the probe"
)]
#[tokio::test]
async fn a_database_of_the_earlier_layout_moves_to_the_tenantry_schema() {
    use common::schema::Invoice;

    let db = EmptyDb::new().await;
    let mut conn = db.admin().await;
    // tenantry's migrations as they ran before `00000000000013_own_schema` (everything in
    // `public`), the application's, and rows of every kind.
    let mut sql = format!(
        "{ROLES};\n{};\n",
        diesel::migration::CREATE_MIGRATIONS_TABLE
    );
    for (version, up) in EARLIER {
        sql.push_str(&earlier_layout(up));
        sql.push_str(&format!(
            ";\nINSERT INTO __diesel_schema_migrations (version) VALUES ('{version}');\n"
        ));
    }
    sql.push_str(&earlier_layout(TEST_SCHEMA));
    sql.push_str(&format!(
        ";
        INSERT INTO __diesel_schema_migrations (version) VALUES ('0001');
        INSERT INTO tenants (id, slug, name) VALUES ('{ACME}', 'acme', 'Acme'), ('{GLOBEX}', 'globex', 'Globex');
        INSERT INTO users (email) VALUES ('pat@example.com');
        INSERT INTO memberships (user_id, tenant_id, role)
            SELECT id, '{ACME}', 'partner' FROM users;
        INSERT INTO projects (id, tenant_id, name) VALUES
            ('00000000-0000-4000-8000-0000000000a1', '{ACME}', 'a'),
            ('00000000-0000-4000-8000-0000000000b1', '{GLOBEX}', 'b');
        INSERT INTO invoices (tenant_id, project_id, number, amount_cents, currency) VALUES
            ('{ACME}', '00000000-0000-4000-8000-0000000000a1', 'A-1', 1, 'EUR'),
            ('{GLOBEX}', '00000000-0000-4000-8000-0000000000b1', 'B-1', 1, 'EUR'),
            ('{GLOBEX}', '00000000-0000-4000-8000-0000000000b1', 'B-2', 1, 'EUR');
        SELECT tenantry_audit_write(NULL, 'job:upgrade', 'job', 'before the move', NULL, NULL, NULL);"
    ));
    conn.batch_execute(&sql).await.expect("the earlier layout");
    let in_public = "SELECT count(*) AS n FROM pg_class \
                     WHERE relnamespace = 'public'::regnamespace AND relname = 'tenants'";
    assert_eq!(count(&mut conn, in_public).await, 1, "the earlier layout");

    let migrated = tenantry::migrate_with(conn, MIGRATIONS)
        .await
        .expect("migrates");
    // The test schema's later migration (0002_citus_keys) comes after it.
    assert_eq!(
        migrated.applied,
        ["00000000000013_own_schema", "0002_citus_keys"]
    );
    let mut conn = migrated.conn;

    // Nothing of tenantry's is left in `public`; every row moved with its table.
    let left = "SELECT (SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace
                  AND (relname IN ('tenants', 'users', 'memberships', 'audit_log', 'audit_log_chain',
                                   'audit_log_chain_head', 'audit_log_id_seq')
                       OR relname LIKE 'tenantry\\_%'))
              + (SELECT count(*) FROM pg_proc WHERE pronamespace = 'public'::regnamespace
                  AND proname LIKE 'tenantry\\_%')
              + (SELECT count(*) FROM pg_type WHERE typnamespace = 'public'::regnamespace
                  AND typname = 'tenantry_tenant_check') AS n";
    assert_eq!(count(&mut conn, left).await, 0);
    for (table, rows) in [
        ("tenantry.tenants", 2),
        ("tenantry.users", 1),
        ("tenantry.memberships", 1),
        ("tenantry.audit_log", 1),
        ("tenantry.audit_log_chain", 1),
        ("public.invoices", 3),
    ] {
        let sql = format!("SELECT count(*) AS n FROM {table}");
        assert_eq!(count(&mut conn, &sql).await, rows, "{table}");
    }
    let declared = "SELECT count(*) AS n FROM tenantry.tenantry_declared_tables \
                    WHERE table_schema = 'tenantry' AND table_name IN ('tenants', 'users', 'memberships', 'audit_log')";
    assert_eq!(count(&mut conn, declared).await, 4);

    // The functions name the new schema: the audit chain links a new row, a new declaration
    // works from an application's migration, and doctor finds nothing.
    conn.batch_execute(&common::sql(
        "SELECT tenantry.tenantry_audit_write(NULL, 'job:upgrade', 'job', 'after the move', NULL, NULL, NULL);
         CREATE TABLE notes (tenant_id uuid NOT NULL REFERENCES tenantry.tenants (id), body text);
         SELECT tenantry.tenantry_declare_tenant_table('notes');",
    ))
    .await
    .expect("tenantry's functions after the move");
    let chained = "SELECT count(*) AS n FROM tenantry.audit_log_chain";
    assert_eq!(count(&mut conn, chained).await, 2);
    let report = tenantry::doctor::inspect(&mut conn, "tenantry_app")
        .await
        .expect("doctor");
    assert!(report.is_ok(), "{:?}", report.findings);

    // And isolation holds, as the app role, through tenantry's seal.
    let config = tenantry::DbConfig::new(
        common::TestDb::app_url_of(&db.name),
        Some(common::TestDb::bypass_url_of(&db.name)),
    );
    let (pools, _jobs) = tenantry::Db::connect_with_jobs(config)
        .await
        .expect("pools");
    let acme: uuid::Uuid = ACME.parse().expect("a uuid");
    let seen: Vec<Invoice> = pools
        .tx(&common::ctx(acme), async |c| {
            Ok::<_, tenantry::DbError>(Invoice::scoped(c).load(c).await?)
        })
        .await
        .expect("acme's invoices");
    assert_eq!(seen.len(), 1);
    let mut app = tenantry::tls::establish(&common::TestDb::app_url_of(&db.name))
        .await
        .expect("the app role connects");
    tenantry::testing::begin_tenant(&pools, &mut app, acme)
        .await
        .expect("enters acme");
    let raw =
        format!("SELECT count(*) AS n FROM invoices WHERE tenant_id IN ('{ACME}', '{GLOBEX}')");
    assert_eq!(count(&mut app, &raw).await, 1, "row-level security alone");
}

/// `tenantry migrate` as the database's owner, a role without `SUPERUSER` or `BYPASSRLS` (as
/// hosted PostgreSQL and `../shared/bench/run_bench.py --db-role restricted` run it): every
/// migration applies. Migration `0012_citus` once attached `citus.allow_nested_distributed_execution`
/// to two functions where they were created, and on PostgreSQL without Citus that parameter is
/// an unknown placeholder, which PostgreSQL 15 attaches for a superuser only ("permission denied
/// to set parameter"); `tenantry_citus_prepare()` attaches it now, on Citus.
#[tokio::test]
async fn the_databases_owner_migrates_without_superuser() {
    let db = EmptyDb::new().await;
    let mut conn = db.admin().await;
    common::exec(
        &mut conn,
        &format!(
            "DO $$ BEGIN CREATE ROLE tenantry_test_owner NOLOGIN NOSUPERUSER NOBYPASSRLS; \
             EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$; \
             ALTER DATABASE {} OWNER TO tenantry_test_owner; \
             SET ROLE tenantry_test_owner",
            db.name
        ),
    )
    .await;
    let migrated = tenantry::migrate(conn).await;
    let mut conn = match migrated {
        Ok(m) => m.conn,
        Err(e) => panic!("the owner without SUPERUSER cannot migrate: {e}"),
    };
    let owner = count(
        &mut conn,
        "SELECT count(*) AS n FROM pg_roles WHERE rolname = current_user AND NOT rolsuper",
    )
    .await;
    assert_eq!(owner, 1, "the migrations ran as a role without SUPERUSER");
    let tables = count(
        &mut conn,
        "SELECT count(*) AS n FROM pg_tables WHERE schemaname = 'tenantry' \
         AND tableowner = 'tenantry_test_owner'",
    )
    .await;
    assert!(
        tables > 5,
        "tenantry's tables belong to the owner ({tables})"
    );
}
