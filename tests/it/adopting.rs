//! Adopting tenantry in an existing database (`docs/adopting.md`): a service that already has
//! its own `users` and `tenants` tables runs tenantry's migrations beside them, gives an existing
//! table a tenant key by the guide's steps (nullable column, batched backfill, `NOT NULL` through
//! a validated `CHECK`, composite keys, then the declaration), and from then on `tenantry_app`
//! sees one tenant's rows only, while the service's own `users` and `tenants` are untouched.
#![allow(
    clippy::disallowed_methods,
    reason = "the database's own state is under test: raw SQL is the probe"
)]

use crate::common;

use common::{count, exec, try_text, EmptyDb, TestDb};
use diesel::sql_types::{BigInt, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use tenantry::bounds::Declared;
use tenantry::tenant_table;
use uuid::Uuid;

/// The service before tenantry: its own tenants (accounts, keyed by an integer), users and
/// orders, with data.
const EXISTING: &str = "
CREATE TABLE tenants (id serial PRIMARY KEY, name text NOT NULL UNIQUE, plan text NOT NULL);
CREATE TABLE users (id serial PRIMARY KEY, account int NOT NULL REFERENCES tenants (id),
                    email text NOT NULL UNIQUE);
CREATE TABLE orders (id bigserial PRIMARY KEY, user_id int NOT NULL REFERENCES users (id),
                     total_cents bigint NOT NULL);
CREATE TABLE order_lines (id bigserial PRIMARY KEY,
                          order_id bigint NOT NULL REFERENCES orders (id), sku text NOT NULL);
INSERT INTO tenants (name, plan) VALUES ('acme', 'gold'), ('globex', 'free');
INSERT INTO users (account, email) VALUES (1, 'ann@acme.test'), (2, 'gus@globex.test');
-- acme: 4 orders, globex: 6.
INSERT INTO orders (user_id, total_cents)
    SELECT CASE WHEN g <= 4 THEN 1 ELSE 2 END, 100 * g FROM generate_series(1, 10) g;
INSERT INTO order_lines (order_id, sku) SELECT id, 'sku-' || id FROM orders;
";

/// What tenantry could have changed of the service's own `users` and `tenants`: their rows,
/// columns, row-level security, policies, triggers and grants.
const SNAPSHOT: &str = "
SELECT concat_ws(' | ',
    (SELECT string_agg(t::text, ',' ORDER BY t.id) FROM public.tenants t),
    (SELECT string_agg(u::text, ',' ORDER BY u.id) FROM public.users u),
    (SELECT string_agg(c.relname || ':' || c.relrowsecurity || c.relforcerowsecurity
                       || ':' || coalesce(c.relacl::text, '-'), ',' ORDER BY c.relname)
     FROM pg_class c WHERE c.oid IN ('public.tenants'::regclass, 'public.users'::regclass)),
    (SELECT string_agg(a.attrelid::regclass || '.' || a.attname, ',' ORDER BY 1)
     FROM pg_attribute a
     WHERE a.attrelid IN ('public.tenants'::regclass, 'public.users'::regclass)
       AND a.attnum > 0 AND NOT a.attisdropped),
    (SELECT count(*) FROM pg_policy p
     WHERE p.polrelid IN ('public.tenants'::regclass, 'public.users'::regclass))::text,
    (SELECT count(*) FROM pg_trigger g
     WHERE g.tgrelid IN ('public.tenants'::regclass, 'public.users'::regclass))::text) AS v";

diesel::table! {
    orders (id) {
        id -> Int8,
        user_id -> Int4,
        total_cents -> Int8,
        tenant_id -> Uuid,
    }
}

/// The service's orders, declared to tenantry once they have a tenant key.
#[tenant_table(generated(id))]
#[derive(diesel::Queryable, diesel::Selectable, Debug)]
#[diesel(table_name = orders)]
struct Order {
    id: i64,
    user_id: i32,
    total_cents: i64,
    tenant_id: Uuid,
}

#[derive(diesel::QueryableByName)]
struct Tenant {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
}

async fn tenantry_tenant(conn: &mut AsyncPgConnection, slug: &str) -> Uuid {
    let query = diesel::sql_query(format!(
        "SELECT id FROM {}.tenants WHERE slug = '{slug}'",
        tenantry::schema::NAME
    ));
    RunQueryDsl::get_result::<Tenant>(query, conn)
        .await
        .expect("a tenantry tenant")
        .id
}

/// One batch of the backfill (the guide's step 3): at most `batch` orders without a tenant get
/// the tenantry tenant of their user's account. Returns how many were updated.
async fn backfill_batch(conn: &mut AsyncPgConnection, batch: i64) -> usize {
    let query = diesel::sql_query(common::sql(
        "UPDATE orders o SET tenant_id = tt.id
         FROM users u
         JOIN tenants a ON a.id = u.account
         JOIN tenantry.tenants tt ON tt.slug = a.name
         WHERE u.id = o.user_id
           AND o.id IN (SELECT id FROM orders WHERE tenant_id IS NULL ORDER BY id LIMIT $1)",
    ))
    .bind::<BigInt, _>(batch);
    RunQueryDsl::execute(query, conn)
        .await
        .expect("a batch of the backfill")
}

#[tokio::test]
async fn a_database_with_its_own_users_and_tenants_adopts_tenantry() {
    let db = EmptyDb::new().await;
    let mut conn = db.admin().await;
    exec(&mut conn, EXISTING).await;
    let before = try_text(&mut conn, SNAPSHOT).await.expect("snapshot");

    // 1. tenantry's migrations, beside the service's tables (they used to fail with `relation
    //    "users" already exists`).
    let mut conn = tenantry::migrate(conn).await.expect("migrates").conn;
    // The service's tenants become tenantry's (here by name: `slug`).
    exec(
        &mut conn,
        "INSERT INTO tenantry.tenants (slug, name) SELECT name, name FROM public.tenants",
    )
    .await;
    let acme = tenantry_tenant(&mut conn, "acme").await;
    let globex = tenantry_tenant(&mut conn, "globex").await;

    // 2. The tenant key: a nullable column (no table rewrite) and its foreign key, not yet
    //    validated (no long lock).
    exec(
        &mut conn,
        "ALTER TABLE orders ADD COLUMN tenant_id uuid;
         ALTER TABLE orders ADD CONSTRAINT orders_tenant_id_fkey
             FOREIGN KEY (tenant_id) REFERENCES tenantry.tenants (id) NOT VALID;
         ALTER TABLE order_lines ADD COLUMN tenant_id uuid;
         ALTER TABLE order_lines ADD CONSTRAINT order_lines_tenant_id_fkey
             FOREIGN KEY (tenant_id) REFERENCES tenantry.tenants (id) NOT VALID;",
    )
    .await;

    // 3. The backfill, in batches; the service keeps writing meanwhile, and its new code writes
    //    the tenant key.
    assert_eq!(backfill_batch(&mut conn, 3).await, 3);
    exec(
        &mut conn,
        &format!("INSERT INTO orders (user_id, total_cents, tenant_id) VALUES (1, 1100, '{acme}')"),
    )
    .await;
    while backfill_batch(&mut conn, 3).await > 0 {}
    exec(
        &mut conn,
        "UPDATE order_lines l SET tenant_id = o.tenant_id FROM orders o
         WHERE o.id = l.order_id AND l.tenant_id IS NULL",
    )
    .await;

    // 4. NOT NULL through a validated CHECK (the scan happens under a lock that lets writes
    //    through), then the foreign keys validated.
    for table in ["orders", "order_lines"] {
        exec(
            &mut conn,
            &format!(
                "ALTER TABLE {table} ADD CONSTRAINT {table}_tenant_id_not_null
                     CHECK (tenant_id IS NOT NULL) NOT VALID;
                 ALTER TABLE {table} VALIDATE CONSTRAINT {table}_tenant_id_not_null;
                 ALTER TABLE {table} ALTER COLUMN tenant_id SET NOT NULL;
                 ALTER TABLE {table} DROP CONSTRAINT {table}_tenant_id_not_null;
                 ALTER TABLE {table} VALIDATE CONSTRAINT {table}_tenant_id_fkey;"
            ),
        )
        .await;
    }

    // 5. Composite keys: (tenant_id, id) unique, built without blocking writes, and the lines
    //    reference their order within their tenant.
    exec(
        &mut conn,
        "CREATE UNIQUE INDEX CONCURRENTLY orders_tenant_id_id_key ON orders (tenant_id, id)",
    )
    .await;
    exec(
        &mut conn,
        "ALTER TABLE orders ADD CONSTRAINT orders_tenant_id_id_key
             UNIQUE USING INDEX orders_tenant_id_id_key;
         ALTER TABLE order_lines ADD CONSTRAINT order_lines_order_fkey
             FOREIGN KEY (tenant_id, order_id) REFERENCES orders (tenant_id, id) NOT VALID;
         ALTER TABLE order_lines VALIDATE CONSTRAINT order_lines_order_fkey;
         ALTER TABLE order_lines DROP CONSTRAINT order_lines_order_id_fkey;",
    )
    .await;
    let crossed = format!(
        "INSERT INTO order_lines (order_id, sku, tenant_id)
         SELECT id, 'stolen', '{globex}' FROM orders WHERE tenant_id = '{acme}' LIMIT 1"
    );
    let refused = diesel_async::SimpleAsyncConnection::batch_execute(&mut conn, &crossed)
        .await
        .expect_err("a line of globex on an order of acme");
    assert!(
        refused.to_string().contains("order_lines_order_fkey"),
        "{refused}"
    );

    // 6. The declaration: row-level security enabled and forced, tenantry's policy, grants.
    exec(
        &mut conn,
        "SELECT tenantry.tenantry_declare_tenant_table('orders');
         SELECT tenantry.tenantry_declare_tenant_table('order_lines');",
    )
    .await;
    // From Rust too (idempotent): what `declare_tables` does at the service's start.
    tenantry::declare_tables(&mut conn, &[<orders::table as Declared>::DECL])
        .await
        .expect("declared from Rust");
    let report = tenantry::doctor::inspect(&mut conn, "tenantry_app")
        .await
        .expect("doctor");
    assert!(report.is_ok(), "{:?}", report.findings);

    // The attack, as tenantry_app: in a transaction of acme, no query reaches globex's rows.
    let config = tenantry::DbConfig::new(
        TestDb::app_url_of(&db.name),
        Some(TestDb::bypass_url_of(&db.name)),
    );
    let (pools, _jobs) = tenantry::Db::connect_with_jobs(config)
        .await
        .expect("pools");
    let seen: Vec<Order> = pools
        .tx(&common::ctx(acme), async |c| {
            Ok::<_, tenantry::DbError>(Order::scoped(c).load(c).await?)
        })
        .await
        .expect("acme's orders");
    assert_eq!(
        seen.len(),
        5,
        "acme's 4 orders and the one written during the backfill"
    );
    assert!(seen.iter().all(|o| o.tenant_id == acme && o.user_id == 1));
    let total: i64 = seen.iter().map(|o| o.total_cents).sum();
    assert_eq!(total, 100 + 200 + 300 + 400 + 1100);
    assert!(seen.iter().all(|o| o.id > 0));

    let mut app = tenantry::tls::establish(&TestDb::app_url_of(&db.name))
        .await
        .expect("the app role connects");
    tenantry::testing::begin_tenant(&pools, &mut app, acme)
        .await
        .expect("enters acme");
    for (sql, n) in [
        ("SELECT count(*) AS n FROM orders".to_owned(), 5),
        (
            format!("SELECT count(*) AS n FROM orders WHERE tenant_id = '{globex}'"),
            0,
        ),
        ("SELECT count(*) AS n FROM order_lines".to_owned(), 4),
        (
            format!("SELECT count(*) AS n FROM order_lines WHERE tenant_id = '{globex}'"),
            0,
        ),
    ] {
        assert_eq!(count(&mut app, &sql).await, n, "{sql}");
    }
    let write =
        format!("INSERT INTO orders (user_id, total_cents, tenant_id) VALUES (2, 1, '{globex}')");
    let refused = diesel_async::SimpleAsyncConnection::batch_execute(&mut app, &write)
        .await
        .expect_err("acme writes no order of globex");
    assert!(
        refused.to_string().contains("row-level security"),
        "{refused}"
    );
    drop(app);

    // tenantry's own tables are its own; the service's `users` and `tenants` are untouched,
    // and its unqualified names still reach them.
    let after = try_text(&mut conn, SNAPSHOT).await.expect("snapshot");
    assert_eq!(after, before);
    assert_eq!(count(&mut conn, "SELECT count(*) AS n FROM users").await, 2);
    assert_eq!(
        count(&mut conn, "SELECT count(*) AS n FROM tenantry.users").await,
        0
    );
    let plan = try_text(
        &mut conn,
        "SELECT plan AS v FROM tenants WHERE name = 'acme'",
    )
    .await
    .expect("the service's tenants");
    assert_eq!(plan.as_deref(), Some("gold"));
}
