//! Audited bypass: cross-tenant work runs only with one `audit_log` row in the same
//! transaction, and the audit log cannot be rewritten.

use crate::common;

use std::sync::atomic::{AtomicBool, Ordering};

use common::schema::MIGRATIONS;
use common::schema::{Invoice, NewProject, Project};
use common::{count, seed};
use tenantry::testing::TestDb;
use tenantry::{no_tenant_scope, DbConfig, DbError, ScopeError};
use uuid::Uuid;

const ACME_INVOICES: i64 = 2;
const GLOBEX_INVOICES: i64 = 3;

struct World {
    t: TestDb,
    acme: Uuid,
    globex: Uuid,
}

async fn world(t: TestDb) -> World {
    let (acme, globex) = (t.acme.id, t.globex.id);
    let mut admin = t.admin().await;
    seed(&mut admin, acme, "acme-project", ACME_INVOICES as usize).await;
    seed(
        &mut admin,
        globex,
        "globex-project",
        GLOBEX_INVOICES as usize,
    )
    .await;
    World { t, acme, globex }
}

/// Queries on a bypass connection (`BypassConn::diesel`), with Diesel's own run methods.
mod raw {
    use diesel::result::Error;
    use diesel::QueryDsl;
    use diesel_async::{AsyncPgConnection, RunQueryDsl};

    use super::common::schema::invoices;

    pub(crate) async fn invoice_tenants(
        conn: &mut &AsyncPgConnection,
    ) -> Result<Vec<uuid::Uuid>, Error> {
        invoices::table.select(invoices::tenant_id).load(conn).await
    }

    pub(crate) async fn delete_all_invoices(conn: &mut &AsyncPgConnection) -> Result<usize, Error> {
        diesel::delete(invoices::table).execute(conn).await
    }

    pub(crate) async fn connect(url: &str) -> AsyncPgConnection {
        tenantry::tls::establish(url)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {url}: {e}"))
    }

    #[allow(
        clippy::disallowed_methods,
        reason = "raw SQL as the superuser or the app role, the probe of what a bypass did"
    )]
    pub(crate) async fn exec(conn: &mut AsyncPgConnection, sql: &str) -> Result<usize, Error> {
        diesel::sql_query(sql).execute(conn).await
    }
}

/// The database error's message (panics on any other error).
fn db_message(e: &diesel::result::Error) -> String {
    match e {
        diesel::result::Error::DatabaseError(_, info) => info.message().to_owned(),
        other => panic!("expected a database error, got {other:?}"),
    }
}

#[derive(Debug)]
enum JobError {
    Db(DbError),
    Scope(ScopeError),
}

impl From<DbError> for JobError {
    fn from(e: DbError) -> Self {
        JobError::Db(e)
    }
}

impl From<ScopeError> for JobError {
    fn from(e: ScopeError) -> Self {
        JobError::Scope(e)
    }
}

impl From<diesel::result::Error> for JobError {
    fn from(e: diesel::result::Error) -> Self {
        JobError::Db(e.into())
    }
}

#[tenantry::test(migrations = MIGRATIONS)]
async fn bypass_sees_every_tenant_and_writes_one_audit_row(t: TestDb) {
    let w = world(t).await;
    let mut tenants =
        w.t.db
            .bypass(
                no_tenant_scope!(&w.t.jobs.job("report"), "monthly report"),
                async |conn| {
                    raw::invoice_tenants(conn.diesel())
                        .await
                        .map_err(DbError::from)
                },
            )
            .await
            .unwrap();
    tenants.sort();
    let mut expected = [
        [w.acme; ACME_INVOICES as usize].as_slice(),
        &[w.globex; GLOBEX_INVOICES as usize],
    ]
    .concat();
    expected.sort();
    assert_eq!(tenants, expected);

    let mut admin = w.t.admin().await;
    assert_eq!(
        count(&mut admin, "SELECT count(*) AS n FROM tenantry.audit_log").await,
        1
    );
    let sql = "SELECT count(*) AS n FROM tenantry.audit_log WHERE actor_email = 'job:report' \
               AND actor_user_id IS NULL AND action = 'no_tenant_scope' AND reason = 'monthly report' \
               AND tenant_id IS NULL AND location LIKE '%tests/it/bypass.rs:%' \
               AND at > now() - interval '5 minutes'";
    assert_eq!(count(&mut admin, sql).await, 1);

    // A named action is recorded as such.
    w.t.db
        .bypass(
            no_tenant_scope!(&w.t.jobs.job("report"), "yearly report").action("yearly_report"),
            async |conn| {
                raw::invoice_tenants(conn.diesel())
                    .await
                    .map_err(DbError::from)
            },
        )
        .await
        .unwrap();
    let sql = "SELECT count(*) AS n FROM tenantry.audit_log WHERE action = 'yearly_report' AND reason = 'yearly report'";
    assert_eq!(count(&mut admin, sql).await, 1);
}

#[tenantry::test(migrations = MIGRATIONS)]
async fn a_failing_audit_insert_stops_the_bypassed_work(t: TestDb) {
    let w = world(t).await;
    let mut admin = w.t.admin().await;
    raw::exec(
        &mut admin,
        "ALTER TABLE tenantry.audit_log ADD CONSTRAINT test_rejects_a_reason CHECK (reason <> 'rejected by the audit log')",
    )
    .await
    .unwrap();
    let ran = AtomicBool::new(false);
    let err =
        w.t.db
            .bypass(
                no_tenant_scope!(&w.t.jobs.job("cleanup"), "rejected by the audit log"),
                async |conn| {
                    ran.store(true, Ordering::SeqCst);
                    raw::delete_all_invoices(conn.diesel())
                        .await
                        .map_err(DbError::from)
                },
            )
            .await
            .unwrap_err();
    match &err {
        DbError::Query(e) => assert!(db_message(e).contains("test_rejects_a_reason"), "{err}"),
        other => panic!("expected the audit insert's error, got {other:?}"),
    }
    // (`RunTenantQuery` is implemented for every type, so name `AtomicBool::load` explicitly.)
    assert!(
        !AtomicBool::load(&ran, Ordering::SeqCst),
        "the work must not run without its audit row"
    );
    assert_eq!(
        count(&mut admin, "SELECT count(*) AS n FROM invoices").await,
        5
    );
    assert_eq!(
        count(&mut admin, "SELECT count(*) AS n FROM tenantry.audit_log").await,
        0
    );

    // The bypass pool still works afterwards.
    let tenants =
        w.t.db
            .bypass(
                no_tenant_scope!(&w.t.jobs.job("cleanup"), "accepted by the audit log"),
                async |conn| {
                    raw::invoice_tenants(conn.diesel())
                        .await
                        .map_err(DbError::from)
                },
            )
            .await
            .unwrap();
    assert_eq!(tenants.len(), 5);
    assert_eq!(
        count(&mut admin, "SELECT count(*) AS n FROM tenantry.audit_log").await,
        1
    );
}

#[tenantry::test(migrations = MIGRATIONS)]
async fn a_failing_closure_rolls_back_work_and_audit_row(t: TestDb) {
    let w = world(t).await;
    let result: Result<(), DbError> =
        w.t.db
            .bypass(
                no_tenant_scope!(&w.t.jobs.job("cleanup"), "delete then fail"),
                async |conn| {
                    let deleted = raw::delete_all_invoices(conn.diesel()).await?;
                    assert_eq!(deleted, 5);
                    Err(DbError::Config("boom".into()))
                },
            )
            .await;
    assert!(
        matches!(&result, Err(DbError::Config(m)) if m == "boom"),
        "{result:?}"
    );
    let mut admin = w.t.admin().await;
    assert_eq!(
        count(&mut admin, "SELECT count(*) AS n FROM invoices").await,
        5
    );
    assert_eq!(
        count(&mut admin, "SELECT count(*) AS n FROM tenantry.audit_log").await,
        0
    );
}

#[tenantry::test(migrations = MIGRATIONS)]
async fn a_blank_run_time_reason_is_refused(t: TestDb) {
    let w = world(t).await;
    let job = w.t.jobs.job("x");
    for blank in ["", "   ", " \t\n "] {
        assert_eq!(
            tenantry::no_tenant_scope(&job, blank).unwrap_err(),
            ScopeError::EmptyReason
        );
    }
    let ok = tenantry::no_tenant_scope(&job, format!("reason {}", 42)).unwrap();
    assert_eq!(ok.reason(), "reason 42");
    assert_eq!(ok.actor().email(), "job:x");
    assert!(
        ok.location().starts_with("tests/it/bypass.rs:"),
        "{}",
        ok.location()
    );
}

#[tenantry::test(migrations = MIGRATIONS)]
async fn a_system_job_acts_inside_one_tenant_with_one_audit_row(t: TestDb) {
    let w = world(t).await;
    let acme = w.acme;
    let job = w.t.jobs.job("nightly");
    let (invoices, project) = job
        .tx(acme, "send reminders", async |conn| {
            assert_eq!(conn.tenant_id(), acme);
            let invoices: Vec<Invoice> = Invoice::scoped(conn).load(conn).await?;
            let project: Project = Project::insert(
                conn,
                NewProject {
                    name: "from the job".into(),
                },
            )
            .get_result(conn)
            .await?;
            Ok::<_, JobError>((invoices, project))
        })
        .await
        .unwrap();
    assert_eq!(invoices.len() as i64, ACME_INVOICES);
    assert!(invoices.iter().all(|i| i.tenant_id == acme));
    assert_eq!(project.tenant_id, acme);

    let mut admin = w.t.admin().await;
    assert_eq!(
        count(&mut admin, "SELECT count(*) AS n FROM tenantry.audit_log").await,
        1
    );
    let sql = format!(
        "SELECT count(*) AS n FROM tenantry.audit_log WHERE action = 'job' AND actor_email = 'job:nightly' \
         AND actor_user_id IS NULL AND reason = 'send reminders' AND tenant_id = '{acme}'"
    );
    assert_eq!(count(&mut admin, &sql).await, 1);

    // A failing job leaves neither its work nor its audit row.
    let failed = job
        .tx(w.globex, "fail on purpose", async |conn| {
            Project::insert(
                conn,
                NewProject {
                    name: "rolled back".into(),
                },
            )
            .execute(conn)
            .await?;
            Err::<(), _>(JobError::Db(DbError::Config("boom".into())))
        })
        .await;
    assert!(
        matches!(failed, Err(JobError::Db(DbError::Config(_)))),
        "{failed:?}"
    );
    // A blank reason is refused before anything runs.
    let blank = job
        .tx(acme, "  ", async |_conn| Ok::<_, JobError>(()))
        .await;
    assert!(
        matches!(blank, Err(JobError::Scope(ScopeError::EmptyReason))),
        "{blank:?}"
    );
    assert_eq!(
        count(&mut admin, "SELECT count(*) AS n FROM tenantry.audit_log").await,
        1
    );
    let sql = "SELECT count(*) AS n FROM projects WHERE name = 'rolled back'";
    assert_eq!(count(&mut admin, sql).await, 0);
}

#[tenantry::test(migrations = MIGRATIONS)]
async fn audit_log_is_append_only_for_both_roles(t: TestDb) {
    let w = world(t).await;
    // At least one row, so that row-level triggers have something to fire on.
    w.t.db
        .bypass(
            no_tenant_scope!(&w.t.jobs.job("report"), "a row to tamper with"),
            async |conn| {
                raw::invoice_tenants(conn.diesel())
                    .await
                    .map_err(DbError::from)
            },
        )
        .await
        .unwrap();

    let mut bypass = raw::connect(&w.t.url(Some("tenantry_bypass"))).await;
    for sql in [
        "UPDATE tenantry.audit_log SET reason = 'rewritten'",
        "DELETE FROM tenantry.audit_log",
        "TRUNCATE tenantry.audit_log",
    ] {
        let err = raw::exec(&mut bypass, sql).await.unwrap_err();
        assert!(
            db_message(&err).contains("permission denied"),
            "{sql}: {err}"
        );
    }
    // The bypass role appends only through tenantry's function (tests/it/audit_chain.rs).
    let sql = "SELECT tenantry.tenantry_audit_write(NULL, 'job:test', 'test', 'appended', NULL, NULL, NULL)";
    assert_eq!(raw::exec(&mut bypass, sql).await.unwrap(), 1);

    // Even the owner (here a superuser) cannot rewrite it: the trigger refuses.
    let mut admin = w.t.admin().await;
    for (sql, op) in [
        (
            "UPDATE tenantry.audit_log SET reason = 'rewritten'",
            "UPDATE",
        ),
        ("DELETE FROM tenantry.audit_log", "DELETE"),
        ("TRUNCATE tenantry.audit_log", "TRUNCATE"),
    ] {
        let err = raw::exec(&mut admin, sql).await.unwrap_err();
        let message = db_message(&err);
        assert!(
            message.contains(&format!("append-only: {op}")),
            "{sql}: {message}"
        );
    }
    assert_eq!(
        count(&mut admin, "SELECT count(*) AS n FROM tenantry.audit_log").await,
        2
    );
    let sql = "SELECT count(*) AS n FROM tenantry.audit_log WHERE reason = 'rewritten'";
    assert_eq!(count(&mut admin, sql).await, 0);
}

#[tenantry::test(migrations = MIGRATIONS)]
async fn the_app_role_cannot_read_the_audit_log_or_become_the_bypass_role(t: TestDb) {
    let w = world(t).await;
    let mut app = w.t.app_conn().await;
    for sql in [
        "SELECT count(*) AS n FROM tenantry.audit_log",
        "UPDATE tenantry.audit_log SET reason = 'rewritten'",
        "DELETE FROM tenantry.audit_log",
        "TRUNCATE tenantry.audit_log",
    ] {
        let err = raw::exec(&mut app, sql).await.unwrap_err();
        assert!(
            db_message(&err).contains("permission denied"),
            "{sql}: {err}"
        );
    }
    for sql in [
        "SET ROLE tenantry_bypass",
        "SET SESSION AUTHORIZATION tenantry_bypass",
    ] {
        let err = raw::exec(&mut app, sql).await.unwrap_err();
        assert!(
            db_message(&err).contains("permission denied"),
            "{sql}: {err}"
        );
    }
    let who = "SELECT count(*) AS n FROM (SELECT 1) AS x WHERE current_user = 'tenantry_app'";
    assert_eq!(count(&mut app, who).await, 1, "still tenantry_app");
}

#[tenantry::test(migrations = MIGRATIONS)]
async fn a_db_without_a_bypass_url_refuses_every_bypass(t: TestDb) {
    let w = world(t).await;
    let db = tenantry::Db::connect(DbConfig::new(w.t.url(Some("tenantry_app")), None))
        .await
        .unwrap();
    let ran = AtomicBool::new(false);
    let err = db
        .bypass(
            no_tenant_scope!(&w.t.jobs.job("report"), "no bypass pool"),
            async |_conn| {
                ran.store(true, Ordering::SeqCst);
                Ok::<_, DbError>(())
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(err, DbError::NoBypassPool), "{err:?}");
    assert!(!AtomicBool::load(&ran, Ordering::SeqCst));
}

#[tenantry::test(migrations = MIGRATIONS)]
async fn every_bypass_emits_a_warn_event(t: TestDb) {
    let w = world(t).await;
    // The binary's one log; this test's event is the one line with its reason.
    let logs = common::logs::Logs::global();
    let job = w.t.jobs.job("warned");
    let n: i64 =
        w.t.db
            .bypass(
                no_tenant_scope!(&job, "count for the warning test"),
                async |conn| {
                    Ok::<_, DbError>(
                        conn.get_result(diesel::QueryDsl::count(common::schema::invoices::table))
                            .await?,
                    )
                },
            )
            .await
            .unwrap();
    assert!(n > 0);
    let lines = logs.lines_with("count for the warning test");
    let [line] = lines.as_slice() else {
        panic!("one event for this bypass: {lines:?}");
    };
    assert!(line.contains("WARN"), "{line}");
    assert!(line.contains("tenant isolation lifted"), "{line}");
    assert!(line.contains("job:warned"), "{line}");
}
