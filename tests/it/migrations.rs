//! Migrations through `diesel_migrations`: a database of tenantry's earlier runner
//! (`tenantry_migrations`) is adopted once, nothing lost and nothing applied twice.

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

/// What tenantry's earlier runner left: its table, tenantry's 0001 and 0002 under set
/// `tenantry`, and the application's `0001_test_schema` under `sets`.
async fn migrated_by_the_earlier_runner(conn: &mut AsyncPgConnection, sets: &[&str]) {
    let mut sql = format!(
        "{ROLES};
         CREATE TABLE tenantry_migrations (
             migration_set text NOT NULL, version text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now(),
             PRIMARY KEY (migration_set, version));
         {FRAMEWORK_0001};
         {FRAMEWORK_0002};
         INSERT INTO tenantry_migrations (migration_set, version)
             VALUES ('tenantry', '0001_framework'), ('tenantry', '0002_directory');
         {TEST_SCHEMA};"
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
    let sql = "INSERT INTO tenants (slug, name) VALUES ('kept', 'Kept')";
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
        count(&mut conn, "SELECT count(*) AS n FROM tenants").await,
        1
    );

    let again = tenantry::migrate_with(conn, MIGRATIONS)
        .await
        .expect("again");
    assert!(again.applied.is_empty(), "{:?}", again.applied);

    // After `diesel migration revert` of the application's migration, the next run applies it
    // again: the adoption happened once and is not repeated.
    let mut conn = again.conn;
    conn.batch_execute(
        "DROP TABLE invoices, projects, currencies;
         DELETE FROM tenantry_declared_tables WHERE table_name IN ('invoices', 'projects', 'currencies');
         DELETE FROM __diesel_schema_migrations WHERE version = '0001';",
    )
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
