//! Migrated template databases: a migration set is applied once, to a template database, and
//! each test's scratch database is a copy of it (`CREATE DATABASE .. TEMPLATE ..`), which costs
//! what creating an empty database costs instead of running every migration again.
//!
//! A template is made once per migration set and test binary, under an exclusive advisory lock
//! (concurrent tests and test binaries wait for the one that builds it); copies are made under
//! the shared side of the same lock, so that a template is never dropped while it is copied.
//! Its name is a hash of the set's name and of the test binary (its path, size and modification
//! time): the binary embeds the migrations, so any change to them is a rebuild and a new
//! template, never a stale copy. Only the newest few templates are kept.
//!
//! On a Citus coordinator the template is a database of the whole cluster, migrated and
//! distributed once, and each copy is made on every node (`cluster.rs`).

use std::future::Future;
use std::hash::{DefaultHasher, Hash, Hasher};

use diesel::sql_types::Text;
use diesel_async::{AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};

use super::cluster::{self, Node};
use super::scratch::{connect_superuser, ScratchDatabase};

/// The advisory lock (on the server's `postgres` database) that templates are made under.
const LOCK: &str = "hashtext('tenantry_test_templates')";
/// Every template's name starts so.
const PREFIX: &str = "tenantry_tmpl_";
/// How many templates are kept (the newest); older ones are dropped when a new one is made. One
/// CI run makes about six (the sets of each test binary).
const KEEP: usize = 8;

impl ScratchDatabase {
    /// A scratch database (`<prefix>_<pid>_<n>_<random>`) that is a copy of the template of
    /// migration set `set`, made first if this test binary has not made it yet: `prepare`
    /// receives a superuser connection to the new, empty template and migrates it (then drops
    /// the connection).
    ///
    /// What a copy does not take from its template is per-database: the grants on the database
    /// itself (`CONNECT`, `TEMPORARY`) and `ALTER DATABASE .. SET` settings. Apply those to the
    /// copy again (running the migrations again does: it applies nothing and grants).
    ///
    /// On a Citus coordinator (`TENANTRY_TEST_DATABASE_URL`) the template is made on every
    /// node, `prepare` migrates it and `tenantry citus-plan`'s script distributes it; each copy
    /// is made from it on every node under one name, so the test runs with its rows on the
    /// workers.
    pub async fn from_template<F, Fut>(prefix: &str, set: &str, prepare: F) -> Self
    where
        F: FnOnce(AsyncPgConnection) -> Fut,
        Fut: Future<Output = ()>,
    {
        let workers = cluster::workers().await.unwrap_or_default();
        let template = template_name(set);
        let mut admin = connect_superuser("postgres").await;
        lock(&mut admin, "pg_advisory_lock_shared").await;
        if !is_ready(&mut admin, &template).await {
            lock(&mut admin, "pg_advisory_unlock_shared").await;
            lock(&mut admin, "pg_advisory_lock").await;
            // Whoever held the lock before may have made it.
            if !is_ready(&mut admin, &template).await {
                if workers.is_empty() {
                    build(&mut admin, &template, prepare).await;
                } else {
                    cluster::build_template(&template, workers, prepare).await;
                }
                drop_old_templates(&mut admin, workers).await;
            }
            lock(&mut admin, "pg_advisory_unlock").await;
            lock(&mut admin, "pg_advisory_lock_shared").await;
        }
        let copy = ScratchDatabase::create_from(prefix, Some(&template)).await;
        lock(&mut admin, "pg_advisory_unlock_shared").await;
        copy
    }
}

/// `tenantry_tmpl_<set>_<hash>`: the set's name (lowercase letters, digits and `_`, at most 24)
/// and a hash of the set's name and of this test binary.
fn template_name(set: &str) -> String {
    let mut hasher = DefaultHasher::new();
    set.hash(&mut hasher);
    binary_fingerprint().hash(&mut hasher);
    let readable: String = set
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(24)
        .collect();
    format!("{PREFIX}{readable}_{:016x}", hasher.finish())
}

/// The running binary's path, size and modification time: they change with every rebuild.
fn binary_fingerprint() -> (String, u64, Option<std::time::SystemTime>) {
    let exe = std::env::current_exe().unwrap_or_default();
    let meta = std::fs::metadata(&exe).ok();
    (
        exe.display().to_string(),
        meta.as_ref().map_or(0, std::fs::Metadata::len),
        meta.and_then(|m| m.modified().ok()),
    )
}

async fn lock(admin: &mut AsyncPgConnection, function: &str) {
    admin
        .batch_execute(&format!("SELECT {function}({LOCK})"))
        .await
        .unwrap_or_else(|e| panic!("{function} on the test templates' lock: {e}"));
}

#[derive(diesel::QueryableByName)]
struct Name {
    #[diesel(sql_type = Text)]
    datname: String,
}

/// Whether `template` exists and is complete (marked a template only once migrated).
#[allow(
    clippy::disallowed_methods,
    reason = "the test server's catalog, read as the superuser; the name is a bound parameter"
)]
async fn is_ready(admin: &mut AsyncPgConnection, template: &str) -> bool {
    !diesel::sql_query("SELECT datname FROM pg_database WHERE datname = $1 AND datistemplate")
        .bind::<Text, _>(template)
        .load::<Name>(admin)
        .await
        .unwrap_or_else(|e| panic!("reading pg_database: {e}"))
        .is_empty()
}

/// Makes `template`: drops what an interrupted build left, creates it, lets `prepare` migrate
/// it, and marks it a template that nobody connects to.
async fn build<F, Fut>(admin: &mut AsyncPgConnection, template: &str, prepare: F)
where
    F: FnOnce(AsyncPgConnection) -> Fut,
    Fut: Future<Output = ()>,
{
    // One statement per call: `CREATE`/`DROP DATABASE` refuse to run in a transaction block,
    // which several statements in one simple query are.
    for sql in [
        format!("DROP DATABASE IF EXISTS {template} WITH (FORCE)"),
        format!("CREATE DATABASE {template}"),
    ] {
        admin
            .batch_execute(&sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    prepare(connect_superuser(template).await).await;
    admin
        .batch_execute(&format!(
            "ALTER DATABASE {template} WITH IS_TEMPLATE true ALLOW_CONNECTIONS false"
        ))
        .await
        .unwrap_or_else(|e| panic!("marking {template} a template: {e}"));
}

/// Drops every template but the newest [`KEEP`], and what interrupted builds left (called under
/// the exclusive lock: no copy is being made, no other build runs); on Citus on every node.
#[allow(
    clippy::disallowed_methods,
    reason = "the test server's catalog, read as the superuser; no input in the SQL"
)]
async fn drop_old_templates(admin: &mut AsyncPgConnection, workers: &[Node]) {
    let old = diesel::sql_query(format!(
        "SELECT datname FROM pg_database WHERE starts_with(datname, '{PREFIX}') \
         AND (NOT datistemplate OR oid NOT IN (SELECT oid FROM pg_database \
           WHERE starts_with(datname, '{PREFIX}') AND datistemplate ORDER BY oid DESC LIMIT {KEEP}))"
    ))
    .load::<Name>(admin)
    .await
    .unwrap_or_else(|e| panic!("reading pg_database: {e}"));
    for Name { datname } in old {
        // What an interrupted build left still takes connections: closed on every node first.
        cluster::close_everywhere(admin, &datname, workers).await;
        for sql in [
            format!("ALTER DATABASE {datname} WITH IS_TEMPLATE false"),
            format!("DROP DATABASE IF EXISTS {datname} WITH (FORCE)"),
        ] {
            admin
                .batch_execute(&sql)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
        cluster::drop_template_on_workers(&datname, workers).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_template_name_is_a_valid_identifier_that_depends_on_the_set() {
        let a = template_name("tenantry + tests/migrations");
        assert!(
            a.starts_with("tenantry_tmpl_tenantrytestsmigrations_"),
            "{a}"
        );
        assert!(a.len() <= 63, "{a}");
        assert!(a
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'));
        assert_eq!(a, template_name("tenantry + tests/migrations"));
        assert_ne!(a, template_name("tenantry + examples/migrations"));
    }
}
