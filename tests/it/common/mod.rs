//! Test support: a fresh PostgreSQL database per test, migrated, with two pools (app and bypass).
#![allow(
    clippy::disallowed_methods,
    reason = "test setup and probes: literal SQL as the superuser or the roles under test"
)]
#![allow(dead_code, unreachable_pub, missing_docs)]

pub mod framer;
pub mod logs;
pub mod schema;

use diesel_async::AsyncPgConnection;
use tenantry::pooler::Pooler;
use tenantry::testing::{connect_superuser, database_url, server_url, PgBouncer, ScratchDatabase};
use tenantry::{Actor, Db, DbConfig, Jobs, TenantCtx};
use uuid::Uuid;

pub use tenantry::testing::Route;

/// The server tests run against; a superuser URL (it creates and drops databases).
pub fn admin_url() -> String {
    server_url()
}

/// A superuser connection to database `db` (fails loudly, saying what to start).
pub async fn admin_conn(db: &str) -> AsyncPgConnection {
    connect_superuser(db).await
}

/// A superuser URL of database `name`.
pub fn admin_url_of(name: &str) -> String {
    database_url(name, None)
}

/// A migrated scratch database with the test schema and its pools; dropped with the value.
pub struct TestDb {
    pub name: String,
    pub db: Db,
    /// The system-job capability of this database (tests open audited bypasses with its jobs).
    pub jobs: Jobs,
    _scratch: ScratchDatabase,
}

impl TestDb {
    /// A migrated database with the test schema, tenants `acme` and `globex`, pools of `size`.
    pub async fn new() -> Self {
        Self::with_pool_size(4).await
    }

    pub async fn with_pool_size(size: usize) -> Self {
        Self::through(Route::Direct, size).await
    }

    /// A migrated database whose pools (of `size`) reach it by `route`.
    pub async fn through(route: Route, size: usize) -> Self {
        let scratch = ScratchDatabase::from_template("tenantry_t", "tests", async |conn| {
            let mut conn = tenantry::migrate_with(conn, schema::MIGRATIONS)
                .await
                .expect("migrations")
                .conn;
            tenantry::declare_tables(&mut conn, &schema::decls())
                .await
                .expect("declare tables");
        })
        .await;
        let name = scratch.name().to_owned();
        // A copy of the migrated template: running the migrations again applies nothing and
        // grants the roles this database, which a copy does not inherit.
        drop(
            tenantry::migrate_with(scratch.connect().await, schema::MIGRATIONS)
                .await
                .expect("migrations"),
        );
        let mut config = match route {
            Route::Direct => {
                DbConfig::new(Self::app_url_of(&name), Some(Self::bypass_url_of(&name)))
            }
            Route::PgBouncer => {
                let pooler = PgBouncer::shared().await;
                let mut config = DbConfig::new(
                    pooler.url(&name, "tenantry_app"),
                    Some(pooler.url(&name, "tenantry_bypass")),
                );
                config.pooler = Pooler::Transaction;
                config
            }
        };
        config.max_connections = size;
        let (db, jobs) = Db::connect_with_jobs(config).await.expect("pools");
        TestDb {
            name,
            db,
            jobs,
            _scratch: scratch,
        }
    }

    pub fn app_url_of(name: &str) -> String {
        database_url(name, Some("tenantry_app"))
    }

    pub fn bypass_url_of(name: &str) -> String {
        database_url(name, Some("tenantry_bypass"))
    }

    pub fn app_url(&self) -> String {
        Self::app_url_of(&self.name)
    }

    pub async fn admin(&self) -> AsyncPgConnection {
        admin_conn(&self.name).await
    }

    /// A raw connection as the app role (for tests of row-level security alone).
    pub async fn app_conn(&self) -> AsyncPgConnection {
        tenantry::tls::establish(&self.app_url())
            .await
            .expect("app role connects")
    }

    /// A raw connection as the directory role (which alone may call the directory functions).
    pub async fn directory_conn(&self) -> AsyncPgConnection {
        let url = url::Url::parse(&self.app_url())
            .map(|mut u| {
                u.set_username("tenantry_directory").expect("a user");
                u.to_string()
            })
            .expect("the app URL");
        tenantry::tls::establish(&url)
            .await
            .expect("directory role connects")
    }

    /// Opens a transaction on a raw app-role connection and enters `tenant` with a signed proof,
    /// as tenantry's transactions do.
    pub async fn begin_tenant(
        &self,
        conn: &mut AsyncPgConnection,
        tenant: Uuid,
    ) -> diesel::QueryResult<()> {
        tenantry::testing::begin_tenant(&self.db, conn, tenant).await
    }

    /// Creates a tenant and returns its id.
    #[allow(
        clippy::disallowed_methods,
        reason = "test setup and probes as the superuser, with raw SQL on purpose"
    )]
    pub async fn tenant(&self, slug: &str) -> Uuid {
        use diesel_async::RunQueryDsl;
        let mut conn = self.admin().await;
        diesel::sql_query(sql(
            "INSERT INTO tenantry.tenants (slug, name) VALUES ($1, $1) RETURNING id",
        ))
        .bind::<diesel::sql_types::Text, _>(slug)
        .get_result::<IdRow>(&mut conn)
        .await
        .expect("tenant")
        .id
    }
}

#[derive(diesel::QueryableByName)]
pub struct IdRow {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    pub id: Uuid,
}

#[derive(diesel::QueryableByName, Debug)]
pub struct CountRow {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub n: i64,
}

pub fn ctx(tenant: Uuid) -> TenantCtx<'static> {
    TenantCtx::for_test(tenant, Actor::user(Uuid::new_v4(), "tester@example.com"))
}

pub fn viewer_ctx(tenant: Uuid) -> TenantCtx<'static, tenantry::ReadOnly> {
    TenantCtx::for_test(tenant, Actor::user(Uuid::new_v4(), "viewer@example.com"))
}

impl TestDb {
    /// Inserts, as the superuser (row-level security does not apply to it), one project named
    /// `project` in `tenant` and `invoices` invoices in it (`INV-1`, `INV-2`, ..., 100 cents
    /// each). Returns the project's id.
    pub async fn seed(&self, tenant: Uuid, project: &str, invoices: usize) -> Uuid {
        seed(&mut self.admin().await, tenant, project, invoices).await
    }
}

/// [`TestDb::seed`] on any superuser connection (a `tenantry::testing::TestDb`'s `admin()`).
#[allow(
    clippy::disallowed_methods,
    reason = "test setup and probes as the superuser, with raw SQL on purpose"
)]
pub async fn seed(
    conn: &mut AsyncPgConnection,
    tenant: Uuid,
    project: &str,
    invoices: usize,
) -> Uuid {
    use diesel::sql_types::{Integer, Text, Uuid as SqlUuid};
    use diesel_async::RunQueryDsl;
    let id =
        diesel::sql_query("INSERT INTO projects (tenant_id, name) VALUES ($1, $2) RETURNING id")
            .bind::<SqlUuid, _>(tenant)
            .bind::<Text, _>(project)
            .get_result::<IdRow>(conn)
            .await
            .expect("seed project")
            .id;
    diesel::sql_query(
        "INSERT INTO invoices (tenant_id, project_id, number, amount_cents, currency)
         SELECT $1, $2, 'INV-' || i, 100, 'EUR' FROM generate_series(1, $3) AS i",
    )
    .bind::<SqlUuid, _>(tenant)
    .bind::<SqlUuid, _>(id)
    .bind::<Integer, _>(i32::try_from(invoices).expect("a small number of invoices"))
    .execute(conn)
    .await
    .expect("seed invoices");
    id
}

/// Runs `sql` (which must return one row with a `bigint` column `n`) and returns `n`.
#[allow(
    clippy::disallowed_methods,
    reason = "test setup and probes as the superuser, with raw SQL on purpose"
)]
pub async fn count(conn: &mut AsyncPgConnection, sql: &str) -> i64 {
    use diesel_async::RunQueryDsl;
    let sql = self::sql(sql);
    diesel::sql_query(&sql)
        .get_result::<CountRow>(conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .n
}

/// An empty scratch database (no migrations), dropped when the value is dropped.
pub struct EmptyDb {
    pub name: String,
    _scratch: ScratchDatabase,
}

impl EmptyDb {
    pub async fn new() -> Self {
        let scratch = ScratchDatabase::create("tenantry_t").await;
        EmptyDb {
            name: scratch.name().to_owned(),
            _scratch: scratch,
        }
    }

    pub async fn admin(&self) -> AsyncPgConnection {
        admin_conn(&self.name).await
    }
}

/// The backend pid of the app-role session that is inside a transaction on database `db` (there
/// must be exactly one).
pub async fn app_backend_pid(admin: &mut AsyncPgConnection, db: &str) -> i32 {
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Pid {
        #[diesel(sql_type = diesel::sql_types::Integer)]
        pid: i32,
    }
    diesel::sql_query(
        "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND usename = 'tenantry_app' \
         AND state LIKE 'idle in transaction%'",
    )
    .bind::<diesel::sql_types::Text, _>(db)
    .get_result::<Pid>(admin)
    .await
    .expect("one app-role session")
    .pid
}

/// Runs `sql` (any statement; `tenantry.` names rendered, see [`sql`]) and panics naming it if
/// it fails.
pub async fn exec(conn: &mut AsyncPgConnection, sql: &str) {
    use diesel_async::SimpleAsyncConnection;
    let sql = self::sql(sql);
    conn.batch_execute(&sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// Runs `sql` (rendered, see [`sql`]), which returns at most one row with a nullable text
/// column `v`.
pub async fn try_text(
    conn: &mut AsyncPgConnection,
    sql: &str,
) -> diesel::QueryResult<Option<String>> {
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct V {
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
        v: Option<String>,
    }
    let rows: Vec<V> = diesel::sql_query(self::sql(sql)).load(conn).await?;
    Ok(rows.into_iter().next().and_then(|r| r.v))
}

/// The names of tenantry's own migrations, in order (`00000000000001_framework`, ..).
pub fn framework_migrations() -> Vec<String> {
    use diesel::migration::MigrationSource;
    MigrationSource::<diesel::pg::Pg>::migrations(&tenantry::migrations::FRAMEWORK_MIGRATIONS)
        .expect("embedded migrations")
        .iter()
        .map(|m| m.name().to_string())
        .collect()
}

/// `text`, written for tenantry's default schema (`tenantry.tenants`), for the one this build
/// names (`TENANTRY_SCHEMA`): the tests run with either.
pub fn sql(text: &str) -> String {
    tenantry::migrations::render_sql(text).into_owned()
}
