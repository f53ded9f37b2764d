//! Test support: a fresh PostgreSQL database per test, migrated, with two pools (app and bypass).
#![allow(dead_code, unreachable_pub, missing_docs)]

pub mod schema;

use std::sync::atomic::{AtomicU32, Ordering};

use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use tenantry::{Actor, Db, DbConfig, TenantCtx};
use uuid::Uuid;

/// The server tests run against; a superuser URL (it creates and drops databases).
pub fn admin_url() -> String {
    std::env::var("TENANTRY_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

fn with_db(url: &str, db: &str, user: Option<&str>) -> String {
    let (scheme_auth, rest) = url.split_once('@').expect("URL has user@host");
    let host = rest.split('/').next().expect("host");
    let auth = match user {
        Some(u) => format!("postgres://{u}"),
        None => scheme_auth.to_owned(),
    };
    format!("{auth}@{host}/{db}")
}

pub async fn admin_conn(db: &str) -> AsyncPgConnection {
    let url = with_db(&admin_url(), db, None);
    AsyncPgConnection::establish(&url)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "PostgreSQL is not reachable at {url} ({e}).\n\
             Start it: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start\n\
             or point TENANTRY_TEST_DATABASE_URL at a superuser URL."
            )
        })
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A scratch database, dropped when the value is dropped.
pub struct TestDb {
    pub name: String,
    pub db: Db,
}

impl TestDb {
    /// A migrated database with the test schema, tenants `acme` and `globex`, pools of `size`.
    pub async fn new() -> Self {
        Self::with_pool_size(4).await
    }

    pub async fn with_pool_size(size: usize) -> Self {
        let name = Self::create_empty().await;
        let mut conn = admin_conn(&name).await;
        tenantry::migrate(&mut conn)
            .await
            .expect("framework migrations");
        schema::apply(&mut conn).await;
        drop(conn);
        let mut config = DbConfig::new(Self::app_url_of(&name), Some(Self::bypass_url_of(&name)));
        config.max_connections = size;
        let db = Db::connect(config).await.expect("pools");
        TestDb { name, db }
    }

    /// Creates an empty database and returns its name.
    pub async fn create_empty() -> String {
        let name = format!(
            "tenantry_t_{}_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            &Uuid::new_v4().simple().to_string()[..8]
        );
        let mut conn = admin_conn("postgres").await;
        conn.batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create database");
        name
    }

    pub fn app_url_of(name: &str) -> String {
        with_db(&admin_url(), name, Some("tenantry_app"))
    }

    pub fn bypass_url_of(name: &str) -> String {
        with_db(&admin_url(), name, Some("tenantry_bypass"))
    }

    pub fn app_url(&self) -> String {
        Self::app_url_of(&self.name)
    }

    pub async fn admin(&self) -> AsyncPgConnection {
        admin_conn(&self.name).await
    }

    /// A raw connection as the app role (for tests of row-level security alone).
    pub async fn app_conn(&self) -> AsyncPgConnection {
        AsyncPgConnection::establish(&self.app_url())
            .await
            .expect("app role connects")
    }

    /// Creates a tenant and returns its id.
    pub async fn tenant(&self, slug: &str) -> Uuid {
        use diesel_async::RunQueryDsl;
        let mut conn = self.admin().await;
        diesel::sql_query("INSERT INTO tenants (slug, name) VALUES ($1, $1) RETURNING id")
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

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop the scratch database from another thread: Drop cannot await.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(rt) = rt {
                rt.block_on(async {
                    if let Ok(mut c) =
                        AsyncPgConnection::establish(&with_db(&admin_url(), "postgres", None)).await
                    {
                        let _ = c
                            .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                            .await;
                    }
                });
            }
        })
        .join();
    }
}

pub fn ctx(tenant: Uuid) -> TenantCtx {
    TenantCtx::for_test(tenant, Actor::user(Uuid::new_v4(), "tester@example.com"))
}

pub fn viewer_ctx(tenant: Uuid) -> TenantCtx<tenantry::ReadOnly> {
    TenantCtx::for_test(tenant, Actor::user(Uuid::new_v4(), "viewer@example.com"))
}

/// A superuser URL of database `name` (for tests that need a privileged role on it).
pub fn admin_url_of(name: &str) -> String {
    with_db(&admin_url(), name, None)
}

impl TestDb {
    /// Inserts, as the superuser (row-level security does not apply to it), one project named
    /// `project` in `tenant` and `invoices` invoices in it (`INV-1`, `INV-2`, ..., 100 cents
    /// each). Returns the project's id.
    pub async fn seed(&self, tenant: Uuid, project: &str, invoices: usize) -> Uuid {
        use diesel::sql_types::{Integer, Text, Uuid as SqlUuid};
        use diesel_async::RunQueryDsl;
        let mut conn = self.admin().await;
        let id = diesel::sql_query(
            "INSERT INTO projects (tenant_id, name) VALUES ($1, $2) RETURNING id",
        )
        .bind::<SqlUuid, _>(tenant)
        .bind::<Text, _>(project)
        .get_result::<IdRow>(&mut conn)
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
        .execute(&mut conn)
        .await
        .expect("seed invoices");
        id
    }
}

/// Runs `sql` (which must return one row with a `bigint` column `n`) and returns `n`.
pub async fn count(conn: &mut AsyncPgConnection, sql: &str) -> i64 {
    use diesel_async::RunQueryDsl;
    diesel::sql_query(sql)
        .get_result::<CountRow>(conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .n
}

/// An empty scratch database (no migrations), dropped when the value is dropped.
pub struct EmptyDb {
    pub name: String,
}

impl EmptyDb {
    pub async fn new() -> Self {
        EmptyDb {
            name: TestDb::create_empty().await,
        }
    }

    pub async fn admin(&self) -> AsyncPgConnection {
        admin_conn(&self.name).await
    }
}

impl Drop for EmptyDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(rt) = rt {
                rt.block_on(async {
                    if let Ok(mut c) =
                        AsyncPgConnection::establish(&with_db(&admin_url(), "postgres", None)).await
                    {
                        let _ = c
                            .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                            .await;
                    }
                });
            }
        })
        .join();
    }
}
