//! Row-level security alone: what PostgreSQL enforces for `tenantry_app`, whatever the Rust
//! side does. Raw SQL (which no Rust-side scoping touches) is the probe throughout.

use crate::common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::schema::{Invoice, NewProject, Project};
use common::{ctx, viewer_ctx, CountRow, Route, TestDb};
use tenantry::prelude::*;
use tenantry::testing::on_both_routes;
use tenantry::{no_tenant_scope, DbConfig, DbError};
use uuid::Uuid;

const ACME_INVOICES: i64 = 2;
const GLOBEX_INVOICES: i64 = 3;

struct World {
    t: TestDb,
    acme: Uuid,
    globex: Uuid,
}

/// Tenants `acme` (2 invoices) and `globex` (3 invoices), with a tenant pool of `pool_size`
/// reaching the database by `route`.
async fn world_through(route: Route, pool_size: usize) -> World {
    let t = TestDb::through(route, pool_size).await;
    let acme = t.tenant("acme").await;
    let globex = t.tenant("globex").await;
    t.seed(acme, "acme-project", ACME_INVOICES as usize).await;
    t.seed(globex, "globex-project", GLOBEX_INVOICES as usize)
        .await;
    World { t, acme, globex }
}

// The cases that go through `Db`'s pools run twice: straight to PostgreSQL and through PgBouncer
// in transaction mode (`direct::..`, `pgbouncer::..`). The others test PostgreSQL alone.
on_both_routes!(
    raw_sql_in_a_tenant_transaction_sees_one_tenant_and_is_audited,
    a_one_connection_pool_alternating_tenants_never_leaks,
    a_dropped_transaction_future_leaks_nothing,
    read_only_contexts_run_read_only_transactions,
    compile_time_holes_are_closed_by_row_level_security,
    an_unscoped_value_subquery_reads_only_the_active_tenant,
);

/// What the database itself says about the transaction it is in.
#[derive(diesel::QueryableByName, Debug)]
struct Probe {
    /// `current_setting('app.tenant_id', true)`.
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    setting: Option<String>,
    /// Invoices visible to an unfiltered `SELECT` (row-level security alone decides).
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
    /// Distinct tenants among the visible invoices.
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    tenants: i64,
    #[diesel(sql_type = diesel::sql_types::Integer)]
    pid: i32,
}

const PROBE_SQL: &str = "SELECT tenantry.tenantry_tenant()::text AS setting, \
     (SELECT count(*) FROM invoices) AS n, \
     (SELECT count(DISTINCT tenant_id) FROM invoices) AS tenants, \
     pg_backend_pid() AS pid";

/// One tenant transaction that loads its invoices (scoped) and probes the database (raw).
#[allow(
    clippy::disallowed_methods,
    reason = "row-level security alone is under test: raw SQL is the probe"
)]
async fn scoped_and_probe(t: &TestDb, tenant: Uuid) -> (Vec<Invoice>, Probe) {
    t.db.tx(&ctx(tenant), async |conn| {
        let scoped: Vec<Invoice> = Invoice::scoped(conn).load(conn).await?;
        let mut probe: Vec<Probe> = conn
            .raw_load(
                no_tenant_scope!(&t.jobs.job("test"), "probe the tenant setting"),
                diesel::sql_query(common::sql(PROBE_SQL)),
            )
            .await?;
        assert_eq!(probe.len(), 1);
        Ok::<_, DbError>((scoped, probe.remove(0)))
    })
    .await
    .expect("tenant transaction")
}

/// `fut`, or a panic if it takes more than 30 s (a leaked pool slot would hang forever).
async fn within_30s<T>(fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), fut)
        .await
        .expect("the pool hands out its connection again")
}

fn assert_sees_only(tenant: Uuid, expected: i64, scoped: &[Invoice], probe: &Probe) {
    assert_eq!(scoped.len() as i64, expected, "scoped load");
    assert!(
        scoped.iter().all(|i| i.tenant_id == tenant),
        "scoped load: {scoped:?}"
    );
    assert_eq!(probe.setting.as_deref(), Some(tenant.to_string().as_str()));
    assert_eq!(
        probe.n, expected,
        "unfiltered SELECT under row-level security"
    );
    assert_eq!(probe.tenants, 1);
}

/// The database error's message (panics on any other error).
fn db_message(e: &diesel::result::Error) -> String {
    match e {
        diesel::result::Error::DatabaseError(_, info) => info.message().to_owned(),
        other => panic!("expected a database error, got {other:?}"),
    }
}

/// Raw statements on a plain connection, outside tenantry (its run methods are not in scope).
mod raw {
    use diesel::result::Error;
    use diesel_async::{AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};

    pub(crate) async fn count(conn: &mut AsyncPgConnection, sql: &str) -> i64 {
        super::common::count(conn, sql).await
    }

    #[allow(
        clippy::disallowed_methods,
        reason = "row-level security alone is under test: raw SQL is the probe"
    )]
    pub(crate) async fn exec(conn: &mut AsyncPgConnection, sql: &str) -> Result<usize, Error> {
        diesel::sql_query(sql).execute(conn).await
    }

    pub(crate) async fn batch(conn: &mut AsyncPgConnection, sql: &str) {
        conn.batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    #[derive(diesel::QueryableByName)]
    struct Setting {
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
        s: Option<String>,
    }

    /// The tenant row-level security sees (the verified tenant of the seal).
    #[allow(
        clippy::disallowed_methods,
        reason = "row-level security alone is under test: raw SQL is the probe"
    )]
    pub(crate) async fn tenant_setting(conn: &mut AsyncPgConnection) -> Option<String> {
        diesel::sql_query(crate::common::sql(
            "SELECT tenantry.tenantry_tenant()::text AS s",
        ))
        .get_result::<Setting>(conn)
        .await
        .expect("read the setting")
        .s
    }
}

#[allow(
    clippy::disallowed_methods,
    reason = "row-level security alone is under test: raw SQL is the probe"
)]
async fn raw_sql_in_a_tenant_transaction_sees_one_tenant_and_is_audited(route: Route) {
    let w = world_through(route, 4).await;
    for (tenant, expected) in [(w.acme, ACME_INVOICES), (w.globex, GLOBEX_INVOICES)] {
        let rows: Vec<CountRow> =
            w.t.db
                .tx(&ctx(tenant), async |conn| {
                    conn.raw_load::<CountRow>(
                        no_tenant_scope!(&w.t.jobs.job("test"), "count invoices"),
                        diesel::sql_query("SELECT count(*) AS n FROM invoices"),
                    )
                    .await
                })
                .await
                .unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].n, expected, "raw count in tenant {tenant}");
    }
    let mut admin = w.t.admin().await;
    assert_eq!(
        common::count(&mut admin, "SELECT count(*) AS n FROM invoices").await,
        5
    );
    assert_eq!(
        common::count(&mut admin, "SELECT count(*) AS n FROM tenantry.audit_log").await,
        2
    );
    for tenant in [w.acme, w.globex] {
        let sql = format!(
            "SELECT count(*) AS n FROM {}.audit_log WHERE tenant_id = '{tenant}' \
             AND actor_email = 'job:test' AND action = 'no_tenant_scope' \
             AND reason = 'count invoices' AND location LIKE '%tests/it/rls.rs:%'",
            tenantry::schema::NAME
        );
        assert_eq!(
            common::count(&mut admin, &sql).await,
            1,
            "one audit row for {tenant}"
        );
    }
}

#[tokio::test]
async fn app_role_without_a_tenant_sees_nothing() {
    let w = world_through(Route::Direct, 1).await;
    let mut app = w.t.app_conn().await;
    // A fresh connection: the setting was never set.
    assert_eq!(
        raw::count(&mut app, "SELECT count(*) AS n FROM invoices").await,
        0
    );
    assert_eq!(
        raw::count(&mut app, "SELECT count(*) AS n FROM projects").await,
        0
    );

    // Inside a transaction with the setting: exactly acme's rows.
    w.t.begin_tenant(&mut app, w.acme)
        .await
        .expect("enter the tenant");
    assert_eq!(
        raw::count(&mut app, "SELECT count(*) AS n FROM invoices").await,
        ACME_INVOICES
    );
    raw::batch(&mut app, "COMMIT").await;

    // After the commit, on the same connection: the setting is gone, and so are the rows.
    assert!(raw::tenant_setting(&mut app)
        .await
        .unwrap_or_default()
        .is_empty());
    assert_eq!(
        raw::count(&mut app, "SELECT count(*) AS n FROM invoices").await,
        0
    );
    assert_eq!(
        raw::count(&mut app, "SELECT count(*) AS n FROM projects").await,
        0
    );

    // The same after a rolled-back transaction.
    w.t.begin_tenant(&mut app, w.globex)
        .await
        .expect("enter the tenant");
    assert_eq!(
        raw::count(&mut app, "SELECT count(*) AS n FROM invoices").await,
        GLOBEX_INVOICES
    );
    raw::batch(&mut app, "ROLLBACK").await;
    assert_eq!(
        raw::count(&mut app, "SELECT count(*) AS n FROM invoices").await,
        0
    );

    // Without a tenant, writes are refused too.
    let err = raw::exec(
        &mut app,
        &format!(
            "INSERT INTO projects (tenant_id, name) VALUES ('{}', 'no tenant')",
            w.acme
        ),
    )
    .await
    .unwrap_err();
    assert!(db_message(&err).contains("row-level security"), "{err}");
}

#[tokio::test]
async fn with_check_rejects_rows_of_another_tenant() {
    let w = world_through(Route::Direct, 1).await;
    let (acme, globex) = (w.acme, w.globex);
    let mut app = w.t.app_conn().await;

    w.t.begin_tenant(&mut app, acme)
        .await
        .expect("enter the tenant");
    let sql = format!("INSERT INTO projects (tenant_id, name) VALUES ('{globex}', 'x')");
    let err = raw::exec(&mut app, &sql).await.unwrap_err();
    assert!(db_message(&err).contains("row-level security"), "{err}");
    raw::batch(&mut app, "ROLLBACK").await;

    w.t.begin_tenant(&mut app, acme)
        .await
        .expect("enter the tenant");
    let sql = format!("UPDATE projects SET tenant_id = '{globex}' WHERE tenant_id = '{acme}'");
    let err = raw::exec(&mut app, &sql).await.unwrap_err();
    // On Citus the tenant column is the distribution column, which Citus itself refuses to
    // change before row-level security is asked.
    let citus = tenantry::testing::on_citus().await;
    assert!(
        db_message(&err).contains("row-level security")
            || (citus && db_message(&err).contains("modifying the partition value")),
        "{err}"
    );
    raw::batch(&mut app, "ROLLBACK").await;

    // The same statements inside the row's own tenant are allowed (so the failures above are
    // the policy, not a missing grant).
    w.t.begin_tenant(&mut app, acme)
        .await
        .expect("enter the tenant");
    let sql = format!("INSERT INTO projects (tenant_id, name) VALUES ('{acme}', 'mine')");
    assert_eq!(raw::exec(&mut app, &sql).await.unwrap(), 1);
    let sql = format!("UPDATE projects SET name = 'renamed' WHERE tenant_id = '{acme}'");
    assert_eq!(raw::exec(&mut app, &sql).await.unwrap(), 2);
    raw::batch(&mut app, "ROLLBACK").await;

    let mut admin = w.t.admin().await;
    let sql = format!("SELECT count(*) AS n FROM projects WHERE tenant_id = '{globex}'");
    assert_eq!(
        common::count(&mut admin, &sql).await,
        1,
        "globex gained no project"
    );
    let sql = format!(
        "SELECT count(*) AS n FROM projects WHERE tenant_id = '{acme}' AND name = 'acme-project'"
    );
    assert_eq!(
        common::count(&mut admin, &sql).await,
        1,
        "acme's project did not move"
    );
}

async fn a_one_connection_pool_alternating_tenants_never_leaks(route: Route) {
    let w = world_through(route, 1).await;
    let mut admin = w.t.admin().await;
    let mut pids = Vec::new();
    for i in 0..20 {
        let (tenant, expected) = if i % 2 == 0 {
            (w.acme, ACME_INVOICES)
        } else {
            (w.globex, GLOBEX_INVOICES)
        };
        // Every other transaction also runs a raw probe: its connection is closed afterwards
        // (raw SQL may leave state in the session), so the next one starts on a fresh session.
        if i % 4 == 0 {
            let (scoped, probe) = scoped_and_probe(&w.t, tenant).await;
            assert_sees_only(tenant, expected, &scoped, &probe);
            pids.push(probe.pid);
        } else {
            let (scoped, verified, pid) =
                w.t.db
                    .tx(&ctx(tenant), async |conn| {
                        let scoped: Vec<Invoice> = Invoice::scoped(conn).load(conn).await?;
                        let verified = conn.verified_tenant().await?;
                        // The session in this transaction, seen from outside.
                        let pid = common::app_backend_pid(&mut admin, &w.t.name).await;
                        Ok::<_, DbError>((scoped, verified, pid))
                    })
                    .await
                    .expect("tenant transaction");
            assert_eq!(scoped.len() as i64, expected);
            assert!(scoped.iter().all(|i| i.tenant_id == tenant), "{scoped:?}");
            assert_eq!(verified, Some(tenant));
            pids.push(pid);
        }
    }
    // Straight to PostgreSQL, one server session served the transactions between two raw
    // probes: the leak this test looks for was possible. (Through PgBouncer,
    // `tests/it/pgbouncer.rs` pins one server connection and alternates clients on it.)
    if route == Route::Direct {
        pids.dedup();
        // Raw probes in transactions 0, 4, 8, 12 and 16 close their session after them: six
        // sessions, each serving up to four transactions in turn of both tenants.
        assert_eq!(
            pids.len(),
            6,
            "a new session after each raw probe, none in between: {pids:?}"
        );
    }
}

async fn a_dropped_transaction_future_leaks_nothing(route: Route) {
    let w = world_through(route, 1).await;
    let reached = tokio::sync::Notify::new();
    let queried = AtomicBool::new(false);
    let c = ctx(w.acme);
    let abandoned = w.t.db.tx(&c, async |conn| {
        Project::insert(
            conn,
            NewProject {
                name: "abandoned".into(),
            },
        )
        .execute(conn)
        .await?;
        let _: Vec<Invoice> = Invoice::scoped(conn).load(conn).await?;
        queried.store(true, Ordering::SeqCst);
        reached.notify_one();
        std::future::pending::<()>().await;
        Ok::<_, DbError>(())
    });
    // Run the transaction until its closure hangs, then drop it mid-transaction.
    let finished = tokio::time::timeout(Duration::from_secs(30), async {
        tokio::select! {
            r = abandoned => Some(r),
            () = reached.notified() => None,
        }
    })
    .await
    .expect("the transaction reached its endless await");
    assert!(
        finished.is_none(),
        "the transaction cannot finish: {finished:?}"
    );
    // (`RunTenantQuery` is implemented for every type, so name `AtomicBool::load` explicitly.)
    assert!(AtomicBool::load(&queried, Ordering::SeqCst));

    // The single pool slot serves tenant B, which sees only its own rows...
    let (scoped, probe) = within_30s(scoped_and_probe(&w.t, w.globex)).await;
    assert_sees_only(w.globex, GLOBEX_INVOICES, &scoped, &probe);
    // ...and the pool is not poisoned: the next transactions work too.
    let (scoped, probe) = within_30s(scoped_and_probe(&w.t, w.globex)).await;
    assert_sees_only(w.globex, GLOBEX_INVOICES, &scoped, &probe);
    let (scoped, probe) = within_30s(scoped_and_probe(&w.t, w.acme)).await;
    assert_sees_only(w.acme, ACME_INVOICES, &scoped, &probe);

    // The abandoned transaction's insert never committed (had its open transaction gone back to
    // the pool, the next COMMIT would have committed it).
    let mut admin = w.t.admin().await;
    let n = common::count(
        &mut admin,
        "SELECT count(*) AS n FROM projects WHERE name = 'abandoned'",
    )
    .await;
    assert_eq!(n, 0);
}

#[allow(
    clippy::disallowed_methods,
    reason = "row-level security alone is under test: raw SQL is the probe"
)]
async fn read_only_contexts_run_read_only_transactions(route: Route) {
    let w = world_through(route, 4).await;
    let acme = w.acme;
    // Reads work.
    let n: i64 =
        w.t.db
            .tx(&viewer_ctx(acme), async |conn| {
                Invoice::scoped(conn)
                    .count()
                    .get_result(conn)
                    .await
                    .map_err(DbError::from)
            })
            .await
            .unwrap();
    assert_eq!(n, ACME_INVOICES);

    // A raw write, even with a bypass token, is refused by PostgreSQL.
    let insert =
        format!("INSERT INTO projects (tenant_id, name) VALUES ('{acme}', 'written by a viewer')");
    let err =
        w.t.db
            .tx(&viewer_ctx(acme), async |conn| {
                conn.raw_execute(
                    no_tenant_scope!(&w.t.jobs.job("test"), "write inside a viewer transaction"),
                    diesel::sql_query(insert.as_str()),
                )
                .await
            })
            .await
            .unwrap_err();
    match &err {
        DbError::Query(e) => assert!(db_message(e).contains("read-only transaction"), "{err}"),
        other => panic!("expected a read-only error, got {other:?}"),
    }
    let mut admin = w.t.admin().await;
    let persisted = "SELECT count(*) AS n FROM projects WHERE name = 'written by a viewer'";
    assert_eq!(common::count(&mut admin, persisted).await, 0);
    assert_eq!(
        common::count(&mut admin, "SELECT count(*) AS n FROM tenantry.audit_log").await,
        0
    );

    // The same statement in a read-write context goes through: the refusal above was READ ONLY.
    let written =
        w.t.db
            .tx(&ctx(acme), async |conn| {
                conn.raw_execute(
                    no_tenant_scope!(&w.t.jobs.job("test"), "write inside a partner transaction"),
                    diesel::sql_query(insert.as_str()),
                )
                .await
            })
            .await
            .unwrap();
    assert_eq!(written, 1);
    assert_eq!(common::count(&mut admin, persisted).await, 1);
}

#[tokio::test]
async fn connect_refuses_a_privileged_app_role() {
    let t = TestDb::new().await;
    let superuser = tenantry::Db::connect(DbConfig::new(common::admin_url_of(&t.name), None))
        .await
        .unwrap_err();
    assert!(
        matches!(superuser, DbError::PrivilegedAppRole { .. }),
        "{superuser:?}"
    );
    let bypassrls = tenantry::Db::connect(DbConfig::new(TestDb::bypass_url_of(&t.name), None))
        .await
        .unwrap_err();
    assert!(
        matches!(&bypassrls, DbError::PrivilegedAppRole { role } if role == "tenantry_bypass"),
        "{bypassrls:?}"
    );
    // The unprivileged role is accepted.
    tenantry::Db::connect(DbConfig::new(t.app_url(), None))
        .await
        .expect("tenantry_app is accepted");
}

/// The holes the compiler cannot see, closed by row-level security: a literal SQL fragment that
/// breaks out of the tenant condition, and a boxed unscoped subquery inside a scoped filter.
async fn compile_time_holes_are_closed_by_row_level_security(route: Route) {
    use common::schema::{invoices, projects};
    let w = world_through(route, 2).await;
    let (escaped, via_subquery) =
        w.t.db
            .tx(&ctx(w.acme), async |conn| {
                // renders: WHERE (tenant_id = $1) AND (TRUE) OR (TRUE); a literal written on
                // purpose (text built at run time is refused: `tests/it/sql_fragments.rs`)
                let escaped: Vec<Invoice> = Invoice::scoped(conn)
                    .filter(tenantry::sql!("TRUE) OR (TRUE"))
                    .load(conn)
                    .await?;
                // an unscoped subquery over another tenant table (boxed: an unboxed one does not
                // compile, `filter_with_an_unscoped_subquery`)
                let all_projects = projects::table
                    .select(projects::id)
                    .into_boxed::<diesel::pg::Pg>();
                let via_subquery: Vec<Invoice> = Invoice::scoped(conn)
                    .filter(invoices::project_id.eq_any(all_projects))
                    .load(conn)
                    .await?;
                Ok::<_, DbError>((escaped, via_subquery))
            })
            .await
            .unwrap();
    assert_eq!(
        escaped.len() as i64,
        ACME_INVOICES,
        "the fragment widened the SQL, RLS did not"
    );
    assert!(escaped.iter().all(|i| i.tenant_id == w.acme));
    assert_eq!(via_subquery.len() as i64, ACME_INVOICES);
    assert!(via_subquery.iter().all(|i| i.tenant_id == w.acme));
    // and the fragment really does widen the SQL: as the superuser the same query sees everything
    let mut admin = w.t.admin().await;
    let sql = format!(
        "SELECT count(*) AS n FROM invoices WHERE (tenant_id = '{}') AND (TRUE) OR (TRUE)",
        w.acme
    );
    let n = common::count(&mut admin, &sql).await;
    assert_eq!(n, ACME_INVOICES + GLOBEX_INVOICES);
}

/// The update-side hole the compiler cannot see: an unscoped subquery as an update's value that
/// is boxed (an unboxed one does not compile: `update_value_from_an_unscoped_subquery`).
/// Row-level security shows it the active tenant's rows only, so no value of another tenant can
/// be copied in.
async fn an_unscoped_value_subquery_reads_only_the_active_tenant(route: Route) {
    use common::schema::{invoices, projects};
    let w = world_through(route, 2).await;
    let mut admin = w.t.admin().await;
    // globex's only project gets a name that must never reach acme's rows.
    raw::batch(
        &mut admin,
        &format!(
            "UPDATE projects SET name = 'globex-secret' WHERE tenant_id = '{}'",
            w.globex
        ),
    )
    .await;
    let numbers: Vec<String> =
        w.t.db
            .tx(&ctx(w.acme), async |conn| {
                // every project name, largest first: 'globex-secret' sorts after 'acme-project'
                let largest_name = projects::table
                    .select(projects::name)
                    .order(projects::name.desc())
                    .into_boxed::<diesel::pg::Pg>()
                    .single_value()
                    .assume_not_null();
                let updated =
                    diesel::update(Invoice::scoped(conn).filter(invoices::number.eq("INV-1")))
                        .set(invoices::number.to(largest_name))
                        .execute(conn)
                        .await?;
                assert_eq!(updated, 1);
                Ok::<_, DbError>(
                    Invoice::scoped(conn)
                        .select(invoices::number)
                        .load(conn)
                        .await?,
                )
            })
            .await
            .unwrap();
    assert_eq!(numbers.len() as i64, ACME_INVOICES);
    assert!(numbers.iter().any(|n| n == "acme-project"), "{numbers:?}");
    assert!(!numbers.iter().any(|n| n == "globex-secret"), "{numbers:?}");
    // As the superuser the same subquery sees globex's project.
    let n = common::count(
        &mut admin,
        "SELECT count(*) AS n FROM projects WHERE name = (SELECT name FROM projects ORDER BY name DESC LIMIT 1) AND name = 'globex-secret'",
    )
    .await;
    assert_eq!(n, 1);
}
