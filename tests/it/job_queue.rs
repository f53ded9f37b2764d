//! The durable per-tenant job queue (`tenantry::queue`): a request enqueues into its own tenant
//! whatever the payload says, the runner runs each job inside that tenant, audited, with its
//! completion in the same transaction; failed work rolls back and is retried until it is
//! `failed`; a job whose runner died is claimed again; a run that lost its lease commits nothing.
#![allow(
    clippy::disallowed_methods,
    reason = "test probes as the superuser and the attack's raw SQL as the app role"
)]

use crate::common;

use std::time::Duration;

use common::schema::{NewProject, Project, MIGRATIONS};
use diesel_async::{AsyncPgConnection, SimpleAsyncConnection};
use serde_json::json;
use tenantry::prelude::*;
use tenantry::queue::Outcome;
use tenantry::testing::TestDb;
use tenantry::DbError;

/// What is really in the queue (as the superuser): `(state, attempts, last_error)` of `id`.
async fn row(t: &TestDb, id: uuid::Uuid) -> (String, i32, Option<String>) {
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Text)]
        state: String,
        #[diesel(sql_type = diesel::sql_types::Integer)]
        attempts: i32,
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
        last_error: Option<String>,
    }
    let mut admin = t.admin().await;
    let r: Row = diesel_async::RunQueryDsl::get_result(
        diesel::sql_query(
            "SELECT state, attempts, last_error FROM tenantry.tenantry_jobs WHERE id = $1",
        )
        .bind::<diesel::sql_types::Uuid, _>(id),
        &mut admin,
    )
    .await
    .unwrap();
    (r.state, r.attempts, r.last_error)
}

/// Makes every queued job due now: the backoff's wait, without waiting.
async fn due_now(t: &TestDb) {
    t.admin()
        .await
        .batch_execute("UPDATE tenantry.tenantry_jobs SET run_after = now() WHERE state = 'queued'")
        .await
        .unwrap();
}

async fn project_count<A: tenantry::bounds::Access>(
    conn: &mut TenantConn<'_, A>,
) -> Result<i64, DbError> {
    Ok(Project::scoped(conn).count().get_result(conn).await?)
}

/// Acme's projects, as its viewer sees them.
async fn acme_projects(t: &TestDb) -> i64 {
    t.db.tx(&t.acme.as_viewer(), async |conn| project_count(conn).await)
        .await
        .unwrap()
}

#[tenantry::test(migrations = MIGRATIONS)]
async fn a_job_runs_in_the_tenant_that_queued_it_whatever_its_payload_names(t: TestDb) {
    let acme = t.acme.id;
    let globex = t.globex.id;
    // The payload names another tenant: it is only data.
    let id =
        t.db.tx(&t.acme.as_partner(), async |conn| {
            conn.enqueue(
                "make-project",
                &json!({ "tenant_id": globex, "name": "queued" }),
            )
            .await
        })
        .await
        .unwrap();

    let queue = t.jobs.queue(["make-project"]);
    let job = queue.next().await.unwrap().expect("the job is due");
    assert_eq!((job.id(), job.tenant_id(), job.attempt()), (id, acme, 1));
    let outcome = job
        .run(async |conn, payload| {
            assert_eq!(conn.tenant_id(), acme);
            let name = payload["name"].as_str().unwrap_or("?").to_owned();
            Project::insert(conn, NewProject { name })
                .execute(conn)
                .await?;
            Ok::<_, DbError>(())
        })
        .await
        .unwrap();
    assert_eq!(outcome, Outcome::Done);
    assert!(queue.next().await.unwrap().is_none(), "done is done");

    // The work landed in acme, none in globex; acme sees its job done, globex sees no job.
    let seen = |tenant: &tenantry::testing::TestTenant| {
        let ctx = tenant.as_viewer();
        let db = t.db.clone();
        async move {
            db.tx(&ctx, async |conn| {
                Ok::<_, DbError>((project_count(conn).await?, conn.queued_jobs().await?))
            })
            .await
            .unwrap()
        }
    };
    let (acme_projects, acme_jobs) = seen(&t.acme).await;
    let (globex_projects, globex_jobs) = seen(&t.globex).await;
    assert_eq!((acme_projects, globex_projects), (1, 0));
    assert_eq!(acme_jobs.len(), 1);
    assert_eq!(acme_jobs[0].state, "done");
    assert!(globex_jobs.is_empty(), "{globex_jobs:?}");

    // One audit row for the run, in acme, by the queue's job.
    let audited: i64 = diesel_async::RunQueryDsl::get_result(
        diesel::sql_query(
            "SELECT count(*) AS n FROM tenantry.audit_log WHERE actor_email = 'job:queue:make-project' AND tenant_id = $1",
        )
        .bind::<diesel::sql_types::Uuid, _>(acme),
        &mut t.admin().await,
    )
    .await
    .map(|r: common::CountRow| r.n)
    .unwrap();
    assert_eq!(audited, 1);
}

#[tenantry::test(migrations = MIGRATIONS)]
async fn failed_work_rolls_back_and_is_retried_until_the_job_is_failed(t: TestDb) {
    let id =
        t.db.tx(&t.acme.as_partner(), async |conn| {
            conn.enqueue("flaky", &json!({})).await
        })
        .await
        .unwrap();
    t.admin()
        .await
        .batch_execute("UPDATE tenantry.tenantry_jobs SET max_attempts = 2")
        .await
        .unwrap();
    let queue = t.jobs.queue(["flaky"]);
    let fail = async |conn: &mut TenantConn<'_>, _: &serde_json::Value| {
        // Written, then rolled back with the run.
        Project::insert(
            conn,
            NewProject {
                name: "half done".into(),
            },
        )
        .execute(conn)
        .await
        .map_err(|e| e.to_string())?;
        Err::<(), _>("the mail server said no".to_owned())
    };

    let outcome = queue
        .next()
        .await
        .unwrap()
        .unwrap()
        .run(fail)
        .await
        .unwrap();
    assert_eq!(
        outcome,
        Outcome::Retrying {
            error: "the mail server said no".into()
        }
    );
    let (state, attempts, error) = row(&t, id).await;
    assert_eq!((state.as_str(), attempts), ("queued", 1));
    assert_eq!(error.as_deref(), Some("the mail server said no"));
    assert!(
        queue.next().await.unwrap().is_none(),
        "not due before its backoff"
    );

    due_now(&t).await;
    let outcome = queue
        .next()
        .await
        .unwrap()
        .unwrap()
        .run(fail)
        .await
        .unwrap();
    assert!(matches!(outcome, Outcome::Failed { .. }), "{outcome:?}");
    assert_eq!(row(&t, id).await.0, "failed");
    due_now(&t).await;
    assert!(
        queue.next().await.unwrap().is_none(),
        "a failed job stays failed"
    );
    let projects = acme_projects(&t).await;
    assert_eq!(projects, 0, "failed runs committed nothing");
    let failed =
        t.db.tx(&t.acme.as_viewer(), async |conn| conn.queued_jobs().await)
            .await
            .unwrap();
    assert_eq!(failed[0].state, "failed");
    assert_eq!(
        failed[0].last_error.as_deref(),
        Some("the mail server said no")
    );
}

#[tenantry::test(migrations = MIGRATIONS)]
async fn a_job_whose_runner_died_is_claimed_again_and_a_run_past_its_lease_commits_nothing(
    t: TestDb,
) {
    let id =
        t.db.tx(&t.acme.as_partner(), async |conn| {
            conn.enqueue("import", &json!({})).await
        })
        .await
        .unwrap();
    // A runner with a long lease holds the job: no other runner takes it meanwhile.
    let holding = t.jobs.queue(["import"]);
    let held = holding.next().await.unwrap().unwrap();
    assert!(t.jobs.queue(["import"]).next().await.unwrap().is_none());
    drop(held); // the runner died mid-job: the job stays `running` until its lease ends

    // Its lease ended (a zero lease here, rather than waiting five minutes).
    t.admin()
        .await
        .batch_execute("UPDATE tenantry.tenantry_jobs SET locked_until = now() - interval '1 s'")
        .await
        .unwrap();
    let first = t.jobs.queue(["import"]).lease(Duration::ZERO);
    let stale = first.next().await.unwrap().expect("claimed again");
    assert_eq!((stale.id(), stale.attempt()), (id, 2));
    // Its zero lease ends at once, and a second runner claims the job while the first still
    // holds it: the first run's work is rolled back, the second's commits.
    let second = t.jobs.queue(["import"]);
    let fresh = second
        .next()
        .await
        .unwrap()
        .expect("claimed past the lease");
    assert_eq!(fresh.attempt(), 3);
    let insert = async |conn: &mut TenantConn<'_>, _: &serde_json::Value| {
        Project::insert(
            conn,
            NewProject {
                name: "imported".into(),
            },
        )
        .execute(conn)
        .await?;
        Ok::<_, DbError>(())
    };
    let lost = stale.run(insert).await.unwrap_err();
    assert!(matches!(lost, DbError::JobLeaseLost { .. }), "{lost}");
    assert_eq!(fresh.run(insert).await.unwrap(), Outcome::Done);
    let projects = acme_projects(&t).await;
    assert_eq!(projects, 1, "the work committed once");
    assert_eq!(row(&t, id).await.0, "done");
}

#[tenantry::test(migrations = MIGRATIONS)]
async fn the_app_role_cannot_queue_into_another_tenant_or_see_its_jobs(t: TestDb) {
    t.db.tx(&t.globex.as_partner(), async |conn| {
        conn.enqueue("secret", &json!({ "token": "globex's" }))
            .await
    })
    .await
    .unwrap();
    // The attack: raw SQL as the app role, inside acme, naming globex.
    let mut conn: AsyncPgConnection = t.app_conn().await;
    t.begin_tenant(&mut conn, t.acme.id).await.unwrap();
    let forged = conn
        .batch_execute(&format!(
            "INSERT INTO tenantry.tenantry_jobs (tenant_id, name, payload) VALUES ('{}', 'x', '{{}}')",
            t.globex.id
        ))
        .await
        .unwrap_err();
    assert!(
        forged.to_string().contains("row-level security"),
        "{forged}"
    );
    drop(conn);
    let mut conn: AsyncPgConnection = t.app_conn().await;
    t.begin_tenant(&mut conn, t.acme.id).await.unwrap();
    let seen: i64 = diesel_async::RunQueryDsl::get_result(
        diesel::sql_query("SELECT count(*) AS n FROM tenantry.tenantry_jobs"),
        &mut conn,
    )
    .await
    .map(|r: common::CountRow| r.n)
    .unwrap();
    assert_eq!(seen, 0, "acme sees none of globex's jobs");
    // A viewer's connection has no `enqueue` at all: tests/ui/viewer_enqueue.rs.
}
