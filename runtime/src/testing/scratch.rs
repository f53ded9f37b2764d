//! Scratch databases: one fresh PostgreSQL database per test, dropped afterwards, so that tests
//! run in parallel without seeing each other's rows.
//!
//! The server is `TENANTRY_TEST_DATABASE_URL` (a superuser URL, which may create and drop
//! databases), by default `postgres://postgres@127.0.0.1:5432/postgres`. An unreachable server is
//! a loud failure that says what to start, never a skipped test. A database of a Citus
//! coordinator there makes every scratch database one of the whole cluster (`cluster.rs`).

use std::sync::atomic::{AtomicU32, Ordering};

use diesel_async::{AsyncPgConnection, SimpleAsyncConnection};

use super::cluster::{self, Node};

/// The superuser URL of the test server.
pub fn server_url() -> String {
    std::env::var("TENANTRY_TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// The test server's URL for `database`, as its superuser or as `role` (no password: the test
/// server trusts local logins).
pub fn database_url(database: &str, role: Option<&str>) -> String {
    let mut url = url::Url::parse(&server_url())
        .unwrap_or_else(|e| panic!("TENANTRY_TEST_DATABASE_URL is not a URL: {e}"));
    url.set_path(database);
    if let Some(role) = role {
        let _ = url.set_username(role);
        let _ = url.set_password(None);
    }
    url.to_string()
}

/// A superuser connection to `database`; panics with what to start when the server is down.
pub async fn connect_superuser(database: &str) -> AsyncPgConnection {
    let url = database_url(database, None);
    crate::pool::tls::establish(&url)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "the test PostgreSQL is not reachable at {} (TENANTRY_TEST_DATABASE_URL, \
                 default postgres://postgres@127.0.0.1:5432/postgres): {e}.\n\
                 Start it (pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start) \
                 or set TENANTRY_TEST_DATABASE_URL to a superuser URL of a running server.",
                crate::settings::redact(&url)
            )
        })
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// An empty database created for one test and dropped (`WITH (FORCE)`) with the value; on a
/// Citus coordinator, on every node of the cluster, with citus in it.
#[derive(Debug)]
pub struct ScratchDatabase {
    name: String,
    workers: &'static [Node],
}

impl ScratchDatabase {
    /// Creates `<prefix>_<pid>_<n>_<random>`.
    pub async fn create(prefix: &str) -> Self {
        Self::create_from(prefix, None).await
    }

    /// Creates `<prefix>_<pid>_<n>_<random>`, a copy of `template` if one is named (on Citus a
    /// copy on every node of the template made there by `from_template`).
    pub(super) async fn create_from(prefix: &str, template: Option<&str>) -> Self {
        let name = format!(
            "{prefix}_{}_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let mut admin = connect_superuser("postgres").await;
        let create = template.map_or(format!("CREATE DATABASE {name}"), |t| {
            format!("CREATE DATABASE {name} TEMPLATE {t}")
        });
        admin
            .batch_execute(&create)
            .await
            .unwrap_or_else(|e| panic!("cannot create the scratch database {name}: {e}"));
        if let Some(t) = template {
            // A copy does not inherit its template's settings (`ALTER DATABASE .. SET`, kept in
            // the shared catalog by database oid): copied here as they are, so a migration that
            // sets one (the example's search_path) holds in each test's copy too.
            admin
                .batch_execute(&format!(
                    "INSERT INTO pg_db_role_setting (setdatabase, setrole, setconfig) \
                     SELECT n.oid, s.setrole, s.setconfig FROM pg_db_role_setting s \
                     JOIN pg_database t ON t.oid = s.setdatabase, pg_database n \
                     WHERE t.datname = '{t}' AND n.datname = '{name}'"
                ))
                .await
                .unwrap_or_else(|e| panic!("cannot copy {t}'s settings to {name}: {e}"));
        }
        let workers = cluster::workers().await.unwrap_or_default();
        let db = ScratchDatabase { name, workers };
        match template {
            _ if workers.is_empty() => {}
            Some(template) => cluster::copy_to_workers(&db.name, template, workers).await,
            None => cluster::spread(&db.name, workers).await,
        }
        db
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its URL as the superuser, or as `role`.
    pub fn url(&self, role: Option<&str>) -> String {
        database_url(&self.name, role)
    }

    /// A superuser connection to it.
    pub async fn connect(&self) -> AsyncPgConnection {
        connect_superuser(&self.name).await
    }
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        let name = std::mem::take(&mut self.name);
        let workers = self.workers;
        // Drop cannot await, and may run inside a runtime: use a thread with its own.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                let admin = database_url("postgres", None);
                if !workers.is_empty() {
                    return cluster::drop_everywhere(&admin, &name, workers).await;
                }
                if let Ok(mut c) = crate::pool::tls::establish(&admin).await {
                    let _ = c
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                }
            });
        })
        .join();
    }
}

/// A role created for one test (`<prefix>_<pid>_<n>_<random>`) and dropped with the value, so
/// that tests which change roles (attributes, memberships: shared by every database of the
/// server) run in parallel without touching `tenantry_app` or `tenantry_bypass`.
///
/// Dropping it first hands what it owns in `database` (if that database still exists) to the
/// superuser and revokes its privileges there, then drops the role and its memberships.
#[derive(Debug)]
pub struct ScratchRole {
    name: String,
    database: String,
}

impl ScratchRole {
    /// `CREATE ROLE <name> <attributes>` (`"LOGIN NOINHERIT"`, `"NOLOGIN"`, ...), for tests in
    /// `database`.
    pub async fn create(prefix: &str, database: &str, attributes: &str) -> Self {
        let name = format!(
            "{prefix}_{}_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        connect_superuser("postgres")
            .await
            .batch_execute(&format!("CREATE ROLE {name} {attributes}"))
            .await
            .unwrap_or_else(|e| panic!("cannot create the scratch role {name}: {e}"));
        ScratchRole {
            name,
            database: database.to_owned(),
        }
    }

    /// The role's name (plain lowercase: no quoting needed).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The URL of its database as this role.
    pub fn url(&self) -> String {
        database_url(&self.database, Some(&self.name))
    }
}

impl Drop for ScratchRole {
    fn drop(&mut self) {
        let name = std::mem::take(&mut self.name);
        let database = std::mem::take(&mut self.database);
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                if let Ok(mut c) = crate::pool::tls::establish(&database_url(&database, None)).await
                {
                    let _ = c
                        .batch_execute(&format!(
                            "REASSIGN OWNED BY {name} TO CURRENT_USER; DROP OWNED BY {name}"
                        ))
                        .await;
                }
                if let Ok(mut c) =
                    crate::pool::tls::establish(&database_url("postgres", None)).await
                {
                    let _ = c
                        .batch_execute(&format!("DROP ROLE IF EXISTS {name}"))
                        .await;
                }
            });
        })
        .join();
    }
}
