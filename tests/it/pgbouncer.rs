//! Behind PgBouncer in transaction mode (`TENANTRY_DB_POOLER=transaction`): clients of different
//! tenants sharing ONE server connection, turn after turn, never see each other's setting,
//! statement or transaction; and each way a pooler can break what the runtime needs is refused
//! at start, or named when it shows under load, with one line naming the setting.
//!
//! The shared pooler is `bash .ci/pgbouncer start` (127.0.0.1:6432); the tests that need a
//! configuration of their own start a PgBouncer of their own (`PgBouncer::start_own`). Both
//! fail loudly, saying what to start or install, when PgBouncer is missing.

use crate::common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::schema::{Invoice, NewProject, Project};
use common::{ctx, viewer_ctx, Route, TestDb};
use tenantry::pooler::Pooler;
use tenantry::testing::PgBouncer;
use tenantry::{no_tenant_scope, Db, DbConfig, DbError};
use uuid::Uuid;

/// What the server says about the transaction a probe runs in.
#[derive(diesel::QueryableByName, Debug)]
struct Probe {
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    setting: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Text)]
    statement_timeout: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    read_only: String,
    /// Invoices visible to an unfiltered `SELECT` (row-level security alone decides).
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    invoices: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    tenants: i64,
    /// Prepared statements on this server session: the probe's own, and nothing left over.
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    statements: i64,
    /// Projects named `rolled back` or `abandoned`: work that must never have committed.
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    uncommitted: i64,
    #[diesel(sql_type = diesel::sql_types::Integer)]
    pid: i32,
}

const PROBE_SQL: &str = "SELECT tenantry.tenantry_tenant()::text AS setting, \
     current_setting('statement_timeout') AS statement_timeout, \
     current_setting('transaction_read_only') AS read_only, \
     (SELECT count(*) FROM invoices) AS invoices, \
     (SELECT count(DISTINCT tenant_id) FROM invoices) AS tenants, \
     (SELECT count(*) FROM pg_prepared_statements) AS statements, \
     (SELECT count(*) FROM projects WHERE name IN ('rolled back', 'abandoned')) AS uncommitted, \
     pg_backend_pid() AS pid";

/// One client of the shared server connection: its own pools (`Db`), tenant and timeout.
struct Client {
    db: Db,
    tenant: Uuid,
    invoices: i64,
    /// Its `statement_timeout`, as the server shows it (`4s`, `5s`, ..).
    timeout: String,
}

/// A tenant transaction of `client` that loads its invoices (scoped), probes the server (raw),
/// and, when `fail` is set, inserts a project and rolls back.
#[allow(
    clippy::disallowed_methods,
    reason = "raw SQL through the pooler on purpose: the probe of what the backend saw"
)]
async fn turn(t: &TestDb, client: &Client, read_only: bool, fail: bool) -> Probe {
    let probe = |conn_probe: Vec<Probe>| conn_probe.into_iter().next().expect("one row");
    let job = t.jobs.job("pgbouncer-probe");
    let result = if read_only {
        client
            .db
            .tx(&viewer_ctx(client.tenant), async |conn| {
                let scoped: Vec<Invoice> = Invoice::scoped(conn).load(conn).await?;
                assert_eq!(scoped.len() as i64, client.invoices);
                let rows = conn
                    .raw_load::<Probe>(
                        no_tenant_scope!(&job, "probe the server session"),
                        diesel::sql_query(PROBE_SQL),
                    )
                    .await;
                // A read-only transaction cannot write the audit row of a raw statement.
                assert!(rows.is_err(), "the viewer's transaction is read-only");
                Ok::<_, DbError>(None)
            })
            .await
    } else {
        client
            .db
            .tx(&ctx(client.tenant), async |conn| {
                let scoped: Vec<Invoice> = Invoice::scoped(conn).load(conn).await?;
                assert!(scoped.iter().all(|i| i.tenant_id == client.tenant));
                assert_eq!(scoped.len() as i64, client.invoices);
                let rows: Vec<Probe> = conn
                    .raw_load(
                        no_tenant_scope!(&job, "probe the server session"),
                        diesel::sql_query(PROBE_SQL),
                    )
                    .await?;
                if fail {
                    Project::insert(
                        conn,
                        NewProject {
                            name: "rolled back".into(),
                        },
                    )
                    .execute(conn)
                    .await?;
                    return Err(DbError::Config("roll back".into()));
                }
                Ok(Some(probe(rows)))
            })
            .await
    };
    match (result, fail) {
        (Ok(Some(p)), false) => p,
        // The viewer's failed raw statement aborted its transaction, which the work did not
        // report: PostgreSQL rolled it back, and tenantry says so.
        (Err(DbError::RolledBack), _) if read_only => read_only_probe(t, client).await,
        (Err(DbError::Config(m)), true) if m == "roll back" => read_only_probe(t, client).await,
        (other, _) => panic!("unexpected outcome: {:?}", other.map(|_| ())),
    }
}

/// The probe as a job of `client`'s tenant on its pools is not possible (jobs run on the test's
/// own direct pools), so a read-only turn is followed by a read-write probe of the same client.
async fn read_only_probe(t: &TestDb, client: &Client) -> Probe {
    Box::pin(turn(t, client, false, false)).await
}

fn check(client: &Client, probe: &Probe) {
    assert_eq!(
        probe.setting.as_deref(),
        Some(client.tenant.to_string().as_str()),
        "the tenant setting is this client's"
    );
    assert_eq!(probe.statement_timeout, client.timeout, "its own timeouts");
    assert_eq!(probe.read_only, "off", "a read-only turn did not leak");
    assert_eq!(
        probe.invoices, client.invoices,
        "row-level security: own rows"
    );
    assert_eq!(probe.tenants, 1);
    assert_eq!(probe.statements, 1, "no prepared statement left over");
    assert_eq!(probe.uncommitted, 0, "no uncommitted work of another turn");
}

#[tokio::test]
async fn one_server_connection_shared_by_tenants_turn_after_turn_leaks_nothing() {
    let t = TestDb::through(Route::Direct, 2).await;
    let bouncer = PgBouncer::start_own(&t.name, 1).await;
    let url = bouncer.url(PgBouncer::OWN_DATABASE, "tenantry_app");
    let mut clients = Vec::new();
    for (i, slug) in ["acme", "globex", "initech"].into_iter().enumerate() {
        let tenant = t.tenant(slug).await;
        t.seed(tenant, &format!("{slug}-project"), i + 1).await;
        let mut config = DbConfig::new(url.clone(), None);
        config.pooler = Pooler::Transaction;
        config.max_connections = 2;
        config.statement_timeout = Duration::from_secs(4 + i as u64);
        clients.push(Client {
            db: Db::connect(config)
                .await
                .expect("a client through PgBouncer"),
            tenant,
            invoices: i as i64 + 1,
            timeout: format!("{}s", 4 + i),
        });
    }

    // Turn after turn, client after client, on the one server connection: plain turns,
    // read-only turns and rolled-back turns.
    let mut pids = Vec::new();
    for round in 0..40 {
        for client in &clients {
            let probe = turn(&t, client, round % 3 == 1, round % 5 == 2).await;
            check(client, &probe);
            pids.push(probe.pid);
        }
    }
    // All at once: the pooler queues 3 × 15 transactions for its one server connection.
    let all = clients.iter().map(|client| async {
        let mut pids = Vec::new();
        for i in 0..15 {
            let probe = turn(&t, client, i % 4 == 0, i % 6 == 3).await;
            check(client, &probe);
            pids.push(probe.pid);
        }
        pids
    });
    for more in futures_util::future::join_all(all).await {
        pids.extend(more);
    }
    pids.sort_unstable();
    pids.dedup();
    assert_eq!(
        pids.len(),
        1,
        "one server session served every turn: {pids:?}"
    );
    assert_eq!(
        bouncer
            .server_connections_of(PgBouncer::OWN_DATABASE, "tenantry_app")
            .await,
        1
    );

    // A transaction abandoned mid-statement on the shared server connection: the next client
    // sees neither its open transaction nor its insert.
    let reached = tokio::sync::Notify::new();
    let queried = AtomicBool::new(false);
    let first = &clients[0];
    let first_ctx = ctx(first.tenant);
    let abandoned = first.db.tx(&first_ctx, async |conn| {
        Project::insert(
            conn,
            NewProject {
                name: "abandoned".into(),
            },
        )
        .execute(conn)
        .await?;
        queried.store(true, Ordering::SeqCst);
        reached.notify_one();
        std::future::pending::<()>().await;
        Ok::<_, DbError>(())
    });
    tokio::time::timeout(Duration::from_secs(30), async {
        tokio::select! {
            r = abandoned => panic!("cannot finish: {r:?}"),
            () = reached.notified() => {}
        }
    })
    .await
    .expect("the transaction reached its endless await");
    assert!(AtomicBool::load(&queried, Ordering::SeqCst));
    for round in 0..6 {
        let client = &clients[(round + 1) % clients.len()];
        let probe = tokio::time::timeout(Duration::from_secs(30), turn(&t, client, false, false))
            .await
            .expect("the server connection serves the next client");
        check(client, &probe);
    }
    let mut admin = t.admin().await;
    let n = common::count(
        &mut admin,
        "SELECT count(*) AS n FROM projects WHERE name IN ('rolled back', 'abandoned')",
    )
    .await;
    assert_eq!(n, 0);
}

#[tokio::test]
#[allow(
    clippy::disallowed_methods,
    reason = "raw SQL through the pooler on purpose: the probe of what the backend saw"
)]
async fn session_timeouts_hold_behind_the_pooler() {
    // PgBouncer refuses them in the startup packet; they are set in each transaction instead.
    let t = TestDb::through(Route::PgBouncer, 2).await;
    let acme = t.tenant("acme").await;
    let bouncer = PgBouncer::shared().await;
    let mut config = DbConfig::new(bouncer.url(&t.name, "tenantry_app"), None);
    config.pooler = Pooler::Transaction;
    config.statement_timeout = Duration::from_millis(300);
    let db = Db::connect(config).await.expect("pools through PgBouncer");
    let job = t.jobs.job("timeouts");
    let err = db
        .tx(&ctx(acme), async |conn| {
            conn.raw_execute(
                no_tenant_scope!(&job, "sleep past the statement timeout"),
                diesel::sql_query("SELECT pg_sleep(3)"),
            )
            .await
        })
        .await
        .expect_err("cancelled by statement_timeout");
    assert!(err.is_unavailable(), "{err}");
    assert!(err.to_string().contains("statement timeout"), "{err}");
}

#[tokio::test]
async fn the_statement_cache_behind_a_transaction_pooler_is_refused_at_start() {
    let t = TestDb::through(Route::Direct, 1).await;
    // PgBouncer as installed: it refuses the session timeouts of the startup packet.
    let strict = PgBouncer::start_own(&t.name, 2).await;
    let url = strict.url(PgBouncer::OWN_DATABASE, "tenantry_app");
    let err = Db::connect(DbConfig::new(url.clone(), None))
        .await
        .expect_err("refused");
    let line = err.to_string();
    assert!(matches!(err, DbError::Pooler(_)), "{err:?}");
    assert!(line.contains("TENANTRY_APP_DATABASE_URL"), "{line}");
    assert!(line.contains("TENANTRY_DB_POOLER=transaction"), "{line}");
    assert!(line.contains("unsupported startup parameter"), "{line}");
    assert!(!line.contains('\n'), "one line: {line}");
    // The same URL with the setting works.
    let mut config = DbConfig::new(url, None);
    config.pooler = Pooler::Transaction;
    Db::connect(config)
        .await
        .expect("TENANTRY_DB_POOLER=transaction");

    // A PgBouncer told to ignore `options` (as the old advice went): the sessions are shared,
    // and the start sees it.
    let lenient = PgBouncer::start_own_with(
        &t.name,
        2,
        "ignore_startup_parameters = extra_float_digits, options",
    )
    .await;
    let url = lenient.url(PgBouncer::OWN_DATABASE, "tenantry_app");
    for size in [1, 4] {
        let mut config = DbConfig::new(url.clone(), None);
        config.max_connections = size;
        let err = Db::connect(config).await.expect_err("refused");
        let line = err.to_string();
        assert!(matches!(err, DbError::Pooler(_)), "{err:?}");
        // Either the shared backends are seen, or the tenant seal's statements, prepared on
        // every new connection, turn out to be there already (another client's).
        assert!(
            line.contains("leads to a transaction pooler")
                || line.contains("a transaction pooler sits between"),
            "{line}"
        );
        assert!(line.contains("TENANTRY_DB_POOLER=transaction"), "{line}");
        assert!(!line.contains('\n'), "one line: {line}");
    }
}

#[tokio::test]
#[allow(
    clippy::disallowed_methods,
    reason = "raw SQL through the pooler on purpose: the probe of what the backend saw"
)]
async fn a_prepared_statement_lost_under_load_names_the_setting() {
    // What a transaction pooler does to a statement cache, done by the server itself: the
    // cached statement is gone from the session (here `DEALLOCATE ALL`; behind PgBouncer, the
    // next transaction ran on another server connection).
    let t = TestDb::through(Route::Direct, 1).await;
    let acme = t.tenant("acme").await;
    t.seed(acme, "p", 2).await;
    let load = async |db: &Db| {
        db.tx(&ctx(acme), async |conn| {
            Ok::<_, DbError>(Invoice::scoped(conn).load::<Invoice>(conn).await?.len())
        })
        .await
    };
    assert_eq!(load(&t.db).await.expect("cached now"), 2);
    let job = t.jobs.job("lose");
    let err =
        t.db.tx(&ctx(acme), async |conn| {
            conn.raw_execute(
                no_tenant_scope!(&job, "drop the session's prepared statements"),
                diesel::sql_query("DEALLOCATE ALL"),
            )
            .await?;
            Ok::<_, DbError>(Invoice::scoped(conn).load::<Invoice>(conn).await?.len())
        })
        .await
        .expect_err("the cached statement is gone");
    let line = err.to_string();
    assert!(matches!(err, DbError::Pooler(_)), "{err:?}");
    assert!(line.contains("TENANTRY_DB_POOLER=transaction"), "{line}");
    // The confused connection was closed, not reused.
    assert_eq!(load(&t.db).await.expect("a fresh connection"), 2);
}

#[tokio::test]
async fn a_session_url_through_the_pooler_is_refused_naming_its_setting() {
    let t = TestDb::through(Route::Direct, 1).await;
    let bouncer = PgBouncer::shared().await;
    // A LISTEN, an advisory lock or a migration needs a session: straight to PostgreSQL is fine…
    tenantry::pooler::require_session(
        &common::admin_url_of(&t.name),
        "TENANTRY_LISTEN_DATABASE_URL",
    )
    .await
    .expect("a direct URL is a session");
    // …the pooler is not.
    let err = tenantry::pooler::require_session(
        &bouncer.url(&t.name, "tenantry_app"),
        "TENANTRY_LISTEN_DATABASE_URL",
    )
    .await
    .expect_err("a transaction pooler is no session");
    let line = err.to_string();
    assert!(matches!(err, DbError::Pooler(_)), "{err:?}");
    assert!(line.starts_with("TENANTRY_LISTEN_DATABASE_URL"), "{line}");
    assert!(line.contains("transaction pooler"), "{line}");
    assert!(!line.contains('\n'), "one line: {line}");
}

#[tokio::test]
async fn missing_or_wrong_roles_are_refused_at_start_naming_the_setting() {
    let t = TestDb::through(Route::Direct, 1).await;
    let nobody = common::admin_url_of(&t.name).replace("postgres@", "tenantry_nobody@");
    let err = Db::connect(DbConfig::new(nobody, None))
        .await
        .expect_err("no such role");
    let line = err.to_string();
    assert!(line.starts_with("TENANTRY_APP_DATABASE_URL"), "{line}");
    assert!(line.contains("tenantry_nobody"), "{line}");
    assert!(
        !err.is_unavailable(),
        "a configuration error, not an outage"
    );

    // A bypass role that does not bypass row-level security would make every cross-tenant
    // report empty.
    let err = Db::connect(DbConfig::new(t.app_url(), Some(t.app_url())))
        .await
        .expect_err("tenantry_app does not bypass RLS");
    let line = err.to_string();
    assert!(line.starts_with("TENANTRY_BYPASS_DATABASE_URL"), "{line}");
    assert!(line.contains("BYPASSRLS"), "{line}");

    // The same through the pooler.
    let bouncer = PgBouncer::shared().await;
    let mut config = DbConfig::new(
        bouncer.url(&t.name, "tenantry_app"),
        Some(bouncer.url(&t.name, "tenantry_app")),
    );
    config.pooler = Pooler::Transaction;
    let err = Db::connect(config).await.expect_err("refused");
    assert!(
        err.to_string().starts_with("TENANTRY_BYPASS_DATABASE_URL"),
        "{err}"
    );
}
