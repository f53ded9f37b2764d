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
    AsyncPgConnection::establish(&url).await.unwrap_or_else(|e| {
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
        tenantry::migrate(&mut conn).await.expect("framework migrations");
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
        AsyncPgConnection::establish(&self.app_url()).await.expect("app role connects")
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
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build();
            if let Ok(rt) = rt {
                rt.block_on(async {
                    if let Ok(mut c) = AsyncPgConnection::establish(&with_db(&admin_url(), "postgres", None)).await {
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
