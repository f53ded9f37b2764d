//! `#[tenantry::test]`: the fixture it hands a test, the database dropped afterwards (also after
//! a panic), and one clear failure when PostgreSQL is missing.

use crate::common;

use std::sync::Mutex;

use common::schema::{invoices, Invoice, NewProject, Project};
use common::{count, CountRow};
use tenantry::prelude::*;
use tenantry::testing::TestDb;
use tenantry::DbError;

#[tenantry::test(migrations = common::schema::MIGRATIONS)]
async fn the_fixture_has_two_tenants_with_a_partner_and_a_viewer_each(t: TestDb) {
    assert_ne!(t.acme.id, t.globex.id);
    assert_eq!(
        (t.acme.slug.as_str(), t.globex.slug.as_str()),
        ("acme", "globex")
    );
    assert_eq!(t.acme.partner.email, "partner@acme.test");
    assert_eq!(t.globex.viewer.email, "viewer@globex.test");
    let mut admin = t.admin().await;
    let roles = "SELECT count(*) AS n FROM tenantry.memberships m JOIN tenantry.users u ON u.id = m.user_id \
                 WHERE (u.email, m.role) IN (('partner@acme.test', 'partner'), \
                 ('viewer@acme.test', 'client_viewer'), ('partner@globex.test', 'partner'), \
                 ('viewer@globex.test', 'client_viewer'))";
    assert_eq!(count(&mut admin, roles).await, 4);
    let owner =
        "SELECT count(*) AS n FROM tenantry.users WHERE is_owner AND email = 'owner@tenantry.test'";
    assert_eq!(count(&mut admin, owner).await, 1);
    // The test's own migrations ran after tenantry's: its tables exist and are declared.
    let declared = "SELECT count(*) AS n FROM tenantry.tenantry_declared_tables \
                    WHERE table_name IN ('projects', 'invoices') AND kind = 'tenant'";
    assert_eq!(count(&mut admin, declared).await, 2);
    // The pool is the app role's: a tenant transaction sees its own tenant only.
    let acme = t.acme.as_partner();
    let project: Project =
        t.db.tx(&acme, async |conn| {
            let p: Project = Project::insert(conn, NewProject { name: "p".into() })
                .get_result(conn)
                .await?;
            Ok::<_, DbError>(p)
        })
        .await
        .expect("a partner writes");
    assert_eq!(project.tenant_id, t.acme.id);
    let seen: i64 =
        t.db.tx(&t.globex.as_viewer(), async |conn| {
            Ok::<i64, DbError>(Project::scoped(conn).count().get_result(conn).await?)
        })
        .await
        .expect("a viewer reads");
    assert_eq!(seen, 0, "globex sees none of acme's projects");
    // The jobs capability and the bypass pool are there too.
    let job = t.jobs.job("harness");
    let n: i64 =
        t.db.bypass(
            tenantry::no_tenant_scope!(&job, "count all projects"),
            async |conn| {
                Ok::<_, DbError>(
                    conn.get_result(common::schema::projects::table.count())
                        .await?,
                )
            },
        )
        .await
        .expect("bypass");
    assert_eq!(n, 1);
}

#[tenantry::test]
async fn without_migrations_the_fixture_has_tenantrys_tables_alone(t: TestDb) {
    let mut admin = t.admin().await;
    let sql = "SELECT count(*) AS n FROM pg_tables WHERE schemaname = 'public' \
               AND tablename IN ('invoices', 'projects')";
    assert_eq!(count(&mut admin, sql).await, 0);
    assert_eq!(
        count(&mut admin, "SELECT count(*) AS n FROM tenantry.tenants").await,
        2
    );
}

#[tenantry::test(migrations = common::schema::MIGRATIONS)]
async fn a_test_may_return_a_result(t: TestDb) -> Result<(), DbError> {
    let n: i64 =
        t.db.tx(&t.acme.as_viewer(), async |conn| {
            let n: i64 = Invoice::scoped(conn)
                .filter(invoices::amount_cents.gt(0))
                .count()
                .get_result(conn)
                .await?;
            Ok::<_, DbError>(n)
        })
        .await?;
    assert_eq!(n, 0);
    Ok(())
}

/// The database of the panicking test below, read after it unwound.
static PANICKED_IN: Mutex<Option<String>> = Mutex::new(None);

#[test]
fn the_database_is_dropped_after_a_test_that_panics() {
    let outcome = std::panic::catch_unwind(|| {
        tenantry::testing::run_test(tenantry::testing::NoMigrations, async |t: TestDb| {
            *PANICKED_IN.lock().unwrap() = Some(t.name().to_owned());
            panic!("on purpose");
        })
    });
    assert!(outcome.is_err(), "the test panicked");
    let name = PANICKED_IN.lock().unwrap().take().expect("the test ran");
    assert!(!database_exists(&name), "{name} was dropped");
}

#[test]
fn the_database_is_dropped_after_a_test_that_passes() {
    let name = tenantry::testing::run_test(tenantry::testing::NoMigrations, async |t: TestDb| {
        assert!(database_exists_async(t.name()).await);
        t.name().to_owned()
    });
    assert!(!database_exists(&name), "{name} was dropped");
}

/// A missing server fails the test, once, with a message that names the variable to set.
/// Runs the first test of this module in a child process whose server URL points at a closed
/// port.
#[test]
fn a_missing_postgres_is_one_failure_naming_the_variable() {
    let out = std::process::Command::new(std::env::current_exe().expect("the test binary"))
        .args([
            "--exact",
            "harness::the_fixture_has_two_tenants_with_a_partner_and_a_viewer_each",
            "--test-threads=1",
        ])
        .env(
            "TENANTRY_TEST_DATABASE_URL",
            "postgres://postgres@127.0.0.1:1/postgres",
        )
        .output()
        .expect("the test binary runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("1 failed"), "{text}");
    assert!(
        text.contains("the test PostgreSQL is not reachable at postgres://postgres@127.0.0.1:1/postgres (TENANTRY_TEST_DATABASE_URL"),
        "{text}"
    );
    assert!(
        text.contains("set TENANTRY_TEST_DATABASE_URL to a superuser URL"),
        "{text}"
    );
}

fn database_exists(name: &str) -> bool {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(database_exists_async(name))
}

#[allow(
    clippy::disallowed_methods,
    reason = "the test harness's own databases, probed as the superuser"
)]
async fn database_exists_async(name: &str) -> bool {
    let mut conn = common::admin_conn("postgres").await;
    let query = diesel::sql_query("SELECT count(*) AS n FROM pg_database WHERE datname = $1")
        .bind::<diesel::sql_types::Text, _>(name);
    diesel_async::RunQueryDsl::get_result::<CountRow>(query, &mut conn)
        .await
        .expect("pg_database")
        .n
        == 1
}
