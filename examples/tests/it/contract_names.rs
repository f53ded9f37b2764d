//! The example's contract (`shared/spec/example-app.md`) names tenantry's tables `tenants`,
//! `users`, `memberships` and `audit_log`, and the tools that work on the example's database
//! write them unqualified: the HTTP benchmark (`shared/bench/run_bench.py`) seeds with
//! `INSERT INTO tenants ..`, an operator reads `audit_log` in psql. tenantry keeps them in its
//! own schema; the example's migration `0003_contract_names` puts that schema on the database's
//! search path, after `public`. Checked on a database the example's migrations made (what the
//! app does at start) and on the test kit's copy of one (what every other test gets).

#![allow(
    clippy::disallowed_methods,
    reason = "the superuser inspects and seeds the database as the contract's tools do, outside any tenant"
)]

use diesel::sql_types::{Bool, Text};
use diesel::QueryableByName;
use diesel_async::{AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use tenantry::testing::{ScratchDatabase, TestDb};
use tenantry_example::models::MIGRATIONS;

#[derive(QueryableByName)]
struct Resolved {
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Bool)]
    tenantrys: bool,
}

/// In a new session: each name resolves, unqualified, to tenantry's table of that name; and the
/// benchmark's seeding statements, as it writes them, go in.
async fn the_contracts_names_resolve(mut conn: AsyncPgConnection) {
    let resolved: Vec<Resolved> = diesel::sql_query(
        "SELECT n AS name, coalesce(to_regclass(n) = to_regclass('tenantry.' || n), false) AS tenantrys \
         FROM unnest(ARRAY['tenants', 'users', 'memberships', 'audit_log']) AS n",
    )
    .load(&mut conn)
    .await
    .unwrap();
    for r in &resolved {
        assert!(
            r.tenantrys,
            "`{}` does not resolve to tenantry.{}",
            r.name, r.name
        );
    }
    assert_eq!(resolved.len(), 4);
    // run_bench.py's seeding, as it sends it (two tenants instead of 50).
    conn.batch_execute(
        "INSERT INTO tenants (id, slug, name, created_at) \
         SELECT gen_random_uuid(), 'bench-' || g, 'Bench Tenant ' || g, now() FROM generate_series(1, 2) g; \
         INSERT INTO users (id, email, display_name, is_owner, created_at) \
         SELECT gen_random_uuid(), 'partner' || g || '@bench.test', 'Partner ' || g, false, now() \
         FROM generate_series(1, 2) g; \
         INSERT INTO memberships (user_id, tenant_id, role) \
         SELECT u.id, t.id, 'partner' FROM generate_series(1, 2) g \
         JOIN users u ON u.email = 'partner' || g || '@bench.test' \
         JOIN tenants t ON t.slug = 'bench-' || g",
    )
    .await
    .unwrap();
    let n: i64 = diesel::select(diesel::dsl::sql::<diesel::sql_types::BigInt>(
        "(SELECT count(*) FROM tenantry.memberships m JOIN tenantry.tenants t ON t.id = m.tenant_id WHERE t.slug LIKE 'bench-%')",
    ))
    .get_result(&mut conn)
    .await
    .unwrap();
    assert_eq!(n, 2, "the seeded memberships landed in tenantry's tables");
}

#[tokio::test]
async fn a_database_the_examples_migrations_made_resolves_the_contracts_table_names() {
    let scratch = ScratchDatabase::create("tenantry_contract").await;
    drop(
        tenantry::migrate_with(scratch.connect().await, MIGRATIONS)
            .await
            .unwrap(),
    );
    the_contracts_names_resolve(scratch.connect().await).await;
}

#[tenantry::test(migrations = MIGRATIONS)]
async fn the_test_kits_copy_of_the_examples_database_resolves_them_too(t: TestDb) {
    the_contracts_names_resolve(t.admin().await).await;
}
