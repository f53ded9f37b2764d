//! The audit log can be neither forged nor jammed by tenantry's roles, and it is tamper-evident:
//! each attack is the SQL an attacker sends, as `tenantry_app`, as `tenantry_bypass`, or as a
//! superuser who disables the triggers (which `tenantry::audit_chain::verify` then names).

#![allow(
    clippy::disallowed_methods,
    reason = "tampering with the log is raw SQL on purpose"
)]

use crate::common;

use common::schema::MIGRATIONS;
use common::{count, ctx, CountRow, Route, TestDb};
use diesel::migration::MigrationSource;
use diesel::pg::Pg;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::{AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use diesel_migrations::MigrationHarness;
use tenantry::audit_chain::{verify, ChainBreak, Verification};
use tenantry::testing::on_both_routes;
use tenantry::{no_tenant_scope, DbError, ScopeError};
use tokio::sync::Notify;

on_both_routes!(
    two_concurrent_bypasses_both_commit_and_chain_in_commit_order,
    bypasses_jobs_and_raw_sql_each_write_one_linked_row,
    a_read_only_job_commits_its_audit_row_before_it_reads,
);

/// A job's error: the database's or a blank reason.
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

/// The database's error message (panics on success or on any other error).
fn refused(result: Result<usize, diesel::result::Error>, sql: &str) -> String {
    match result {
        Err(diesel::result::Error::DatabaseError(_, info)) => info.message().to_owned(),
        other => panic!("{sql}: expected a database error, got {other:?}"),
    }
}

async fn exec(conn: &mut AsyncPgConnection, sql: &str) -> Result<usize, diesel::result::Error> {
    diesel::sql_query(sql).execute(conn).await
}

async fn connect(url: &str) -> AsyncPgConnection {
    tenantry::tls::establish(url)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {url}: {e}"))
}

/// One bypass writing one audit row with `reason`.
async fn bypass(t: &TestDb, reason: &str) {
    t.db.bypass(
        tenantry::no_tenant_scope(&t.jobs.job("audit-test"), reason.to_owned()).unwrap(),
        async |_conn| Ok::<_, DbError>(()),
    )
    .await
    .unwrap_or_else(|e| panic!("bypass {reason:?}: {e}"));
}

async fn verified(conn: &AsyncPgConnection) -> Verification {
    verify(conn).await.expect("verify reads the chain")
}

async fn intact(conn: &AsyncPgConnection, rows: i64) {
    let v = verified(conn).await;
    assert!(v.is_intact(), "{:#?}", v.breaks);
    assert_eq!(v.head.rows, rows, "{v:?}");
}

/// The row id of each link, in chain order.
async fn chain_order(conn: &mut AsyncPgConnection) -> Vec<(i64, String)> {
    #[derive(diesel::QueryableByName)]
    struct Link {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        id: i64,
        #[diesel(sql_type = diesel::sql_types::Text)]
        reason: String,
    }
    diesel::sql_query(
        "SELECT a.id, a.reason FROM tenantry.audit_log_chain c JOIN tenantry.audit_log a ON a.id = c.audit_id \
         ORDER BY c.seq",
    )
    .load::<Link>(conn)
    .await
    .expect("the chain")
    .into_iter()
    .map(|l| (l.id, l.reason))
    .collect()
}

async fn audit_ids(conn: &mut AsyncPgConnection) -> Vec<i64> {
    #[derive(diesel::QueryableByName)]
    struct Id {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        id: i64,
    }
    diesel::sql_query("SELECT id FROM tenantry.audit_log ORDER BY id")
        .load::<Id>(conn)
        .await
        .expect("ids")
        .into_iter()
        .map(|r| r.id)
        .collect()
}

// ---- tenantry's roles cannot forge or jam the log ----

#[tokio::test]
async fn neither_role_can_insert_a_row_choose_an_id_or_move_the_sequence() {
    let t = TestDb::new().await;
    bypass(&t, "a first row").await;
    let mut admin = t.admin().await;
    for role in ["tenantry_app", "tenantry_bypass"] {
        let url = match role {
            "tenantry_app" => TestDb::app_url_of(&t.name),
            _ => TestDb::bypass_url_of(&t.name),
        };
        let mut conn = connect(&url).await;
        for sql in [
            // A forged actor, a backdated time, an id far ahead of the sequence.
            "INSERT INTO tenantry.audit_log (id, at, actor_email, action, reason) \
             VALUES (1000000, now() - interval '1 year', 'owner@example.com', 'x', 'forged')",
            "INSERT INTO tenantry.audit_log (actor_email, action, reason) VALUES ('x@example.com', 'x', 'y')",
            "SELECT setval('tenantry.audit_log_id_seq', 1000000)",
            "SELECT nextval('tenantry.audit_log_id_seq')",
            "ALTER SEQUENCE tenantry.audit_log_id_seq RESTART WITH 1000000",
            "INSERT INTO tenantry.audit_log_chain (seq, audit_id, prev_hash, hash) \
             VALUES (99, 99, decode(repeat('00', 32), 'hex'), decode(repeat('00', 32), 'hex'))",
            "UPDATE tenantry.audit_log_chain_head SET seq = 0",
            "DELETE FROM tenantry.audit_log_chain",
            "TRUNCATE tenantry.audit_log_chain_head",
            // Holding the head's lock would stall every commit that writes an audit row.
            "SELECT * FROM tenantry.audit_log_chain_head FOR UPDATE",
        ] {
            let message = refused(exec(&mut conn, sql).await, sql);
            assert!(
                message.contains("permission denied") || message.contains("must be owner"),
                "{role}: {sql}: {message}"
            );
        }
        for lock in [
            "LOCK TABLE tenantry.audit_log IN EXCLUSIVE MODE",
            "LOCK TABLE tenantry.audit_log_chain_head IN SHARE MODE",
        ] {
            let err = conn
                .batch_execute(&format!("BEGIN; {lock}"))
                .await
                .expect_err(lock);
            assert!(
                err.to_string().contains("permission denied"),
                "{role}: {lock}: {err}"
            );
            conn.batch_execute("ROLLBACK").await.unwrap();
        }
        // The function takes no id and no time: there is nothing to choose them with.
        for sql in [
            "SELECT tenantry.tenantry_audit_write(1000000, now(), NULL, 'x@example.com', 'x', 'forged', \
             NULL, NULL, NULL)",
            "SELECT tenantry.tenantry_audit_write(p_id => 1000000, p_actor_user_id => NULL, \
             p_actor_email => 'x', p_action => 'x', p_reason => 'forged', p_tenant_id => NULL, \
             p_request_id => NULL, p_location => NULL)",
            "SELECT tenantry.tenantry_audit_write(p_at => now() - interval '1 year', \
             p_actor_user_id => NULL, p_actor_email => 'x', p_action => 'x', \
             p_reason => 'forged', p_tenant_id => NULL, p_request_id => NULL, p_location => NULL)",
        ] {
            let message = refused(exec(&mut conn, sql).await, sql);
            assert!(
                message.contains("does not exist"),
                "{role}: {sql}: {message}"
            );
        }
        // The owner of the functions and of the chain cannot be become.
        let owner = owner_of_the_chain(&mut admin).await;
        for sql in [
            format!("SET ROLE \"{owner}\""),
            format!("SET SESSION AUTHORIZATION \"{owner}\""),
        ] {
            let message = refused(exec(&mut conn, &sql).await, &sql);
            assert!(
                message.contains("permission denied"),
                "{role}: {sql}: {message}"
            );
        }
    }
    assert_eq!(
        count(&mut admin, "SELECT count(*) AS n FROM tenantry.audit_log").await,
        1
    );
    // Nothing was jammed: the next bypass and job write the next ids.
    bypass(&t, "after the attacks").await;
    let tenant = t.tenant("acme").await;
    t.jobs
        .job("nightly")
        .tx(tenant, "after the attacks", async |_conn| {
            Ok::<_, JobError>(())
        })
        .await
        .unwrap();
    let ids = audit_ids(&mut admin).await;
    assert_eq!(ids.len(), 3, "{ids:?}");
    assert!(ids.iter().all(|id| *id < 1000), "{ids:?}");
    intact(&admin, 3).await;
}

async fn owner_of_the_chain(admin: &mut AsyncPgConnection) -> String {
    #[derive(diesel::QueryableByName)]
    struct Owner {
        #[diesel(sql_type = diesel::sql_types::Text)]
        name: String,
    }
    let owners: Vec<Owner> = diesel::sql_query(
        "SELECT DISTINCT pg_get_userbyid(proowner)::text AS name FROM pg_proc \
         WHERE proname IN ('tenantry_audit_write', 'tenantry_audit_link') \
         UNION SELECT pg_get_userbyid(relowner)::text FROM pg_class \
         WHERE relname IN ('audit_log', 'audit_log_chain', 'audit_log_chain_head')",
    )
    .load(admin)
    .await
    .expect("owners");
    assert_eq!(owners.len(), 1, "one owner of functions and tables");
    let name = owners.into_iter().next().unwrap().name;
    assert!(!name.starts_with("tenantry_"), "{name}");
    name
}

#[tokio::test]
async fn the_server_assigns_id_and_time_even_to_the_owners_insert() {
    let t = TestDb::new().await;
    let mut admin = t.admin().await;
    // The owner (a superuser here) sends an id far ahead and a backdated time: both replaced.
    exec(
        &mut admin,
        "INSERT INTO tenantry.audit_log (id, at, actor_email, action, reason) \
         VALUES (1000000, '2001-01-01', 'owner@example.com', 'manual', 'by hand')",
    )
    .await
    .unwrap();
    let sql = "SELECT count(*) AS n FROM tenantry.audit_log WHERE id < 1000 \
               AND at > now() - interval '5 minutes'";
    assert_eq!(count(&mut admin, sql).await, 1);
    // So the sequence never reaches a chosen id: later rows are written.
    bypass(&t, "after a manual row").await;
    assert_eq!(audit_ids(&mut admin).await.len(), 2);
    intact(&admin, 2).await;
}

// ---- concurrency: linked at commit, in commit order ----

async fn two_concurrent_bypasses_both_commit_and_chain_in_commit_order(route: Route) {
    let t = TestDb::through(route, 2).await;
    let first_wrote = Notify::new();
    let second_committed = Notify::new();
    // The first bypass writes its audit row, then waits, inside its transaction, until the
    // second has written its own row and committed. Were the chain locked from the insert to
    // the commit, the second commit would wait for the first (lock_timeout) and fail.
    let first_job = t.jobs.job("first");
    let first = t.db.bypass(
        no_tenant_scope!(&first_job, "first: long work"),
        async |_conn| {
            first_wrote.notify_one();
            second_committed.notified().await;
            Ok::<_, DbError>(())
        },
    );
    let second = async {
        first_wrote.notified().await;
        let done =
            t.db.bypass(
                no_tenant_scope!(&t.jobs.job("second"), "second: short work"),
                async |_conn| Ok::<_, DbError>(()),
            )
            .await;
        second_committed.notify_one();
        done
    };
    let (first, second) = futures_util::join!(first, second);
    first.expect("the first bypass commits");
    second.expect("the second bypass commits while the first is open");

    let mut admin = t.admin().await;
    let order = chain_order(&mut admin).await;
    assert_eq!(order.len(), 2, "{order:?}");
    assert_eq!(
        order[0].1, "second: short work",
        "committed first: {order:?}"
    );
    assert_eq!(order[1].1, "first: long work", "{order:?}");
    assert!(order[0].0 > order[1].0, "ids in insert order: {order:?}");
    intact(&admin, 2).await;
}

async fn bypasses_jobs_and_raw_sql_each_write_one_linked_row(route: Route) {
    let t = TestDb::through(route, 2).await;
    let tenant = t.tenant("acme").await;
    let mut admin = t.admin().await;
    let rows = || async {
        count(
            &mut t.admin().await,
            "SELECT count(*) AS n FROM tenantry.audit_log",
        )
        .await
    };

    bypass(&t, "one bypass").await;
    assert_eq!(rows().await, 1);
    t.jobs
        .job("nightly")
        .tx(tenant, "one job", async |_conn| Ok::<_, JobError>(()))
        .await
        .unwrap();
    assert_eq!(rows().await, 2);
    // Two raw statements in one tenant transaction: two rows, linked in the order written.
    t.db.tx(&ctx(tenant), async |conn| {
        for reason in ["raw one", "raw two"] {
            conn.raw_load::<CountRow>(
                tenantry::no_tenant_scope(&t.jobs.job("raw"), reason).unwrap(),
                diesel::sql_query("SELECT count(*) AS n FROM invoices"),
            )
            .await?;
        }
        Ok::<_, DbError>(())
    })
    .await
    .unwrap();
    assert_eq!(rows().await, 4);
    // A failed bypass leaves neither row nor link.
    let failed =
        t.db.bypass(
            no_tenant_scope!(&t.jobs.job("audit-test"), "fails"),
            async |_conn| Err::<(), _>(DbError::Config("boom".into())),
        )
        .await;
    assert!(failed.is_err());
    assert_eq!(rows().await, 4);

    let order = chain_order(&mut admin).await;
    let reasons: Vec<&str> = order.iter().map(|(_, r)| r.as_str()).collect();
    assert_eq!(reasons, ["one bypass", "one job", "raw one", "raw two"]);
    let v = verified(&admin).await;
    assert!(v.is_intact(), "{:#?}", v.breaks);
    assert_eq!(v.head.rows, 4);
    assert_eq!(v.head.audit_id, Some(order[3].0));
    let head = tenantry::audit_chain::head(&admin).await.unwrap().unwrap();
    assert_eq!(head, v.head, "the recorded head is the recomputed one");
}

async fn a_read_only_job_commits_its_audit_row_before_it_reads(route: Route) {
    let t = TestDb::through(route, 2).await;
    let tenant = t.tenant("acme").await;
    t.seed(tenant, "p", 2).await;
    let job = t.jobs.job("export");
    let err = job
        .read_only_tx(tenant, "export invoices", async |conn| {
            // Raw SQL writes an audit row of its own: refused, the transaction is read-only.
            conn.raw_load::<CountRow>(
                no_tenant_scope!(&t.jobs.job("export"), "a write in a read-only job"),
                diesel::sql_query("SELECT count(*) AS n FROM invoices"),
            )
            .await
            .map_err(JobError::Db)
        })
        .await
        .unwrap_err();
    assert!(
        matches!(&err, JobError::Db(e) if e.to_string().contains("read-only transaction")),
        "{err:?}"
    );
    let mut admin = t.admin().await;
    let sql = "SELECT count(*) AS n FROM tenantry.audit_log WHERE reason = 'export invoices' \
               AND action = 'job' AND actor_email = 'job:export'";
    assert_eq!(count(&mut admin, sql).await, 1, "committed before the work");
    let sql =
        "SELECT count(*) AS n FROM tenantry.audit_log WHERE reason = 'a write in a read-only job'";
    assert_eq!(count(&mut admin, sql).await, 0);

    // A job that reads and succeeds: one more row; one whose work fails keeps its row too.
    let read = job
        .read_only_tx(tenant, "read again", async |conn| {
            Ok::<_, JobError>(conn.tenant_id())
        })
        .await
        .unwrap();
    assert_eq!(read, tenant);
    let failed = job
        .read_only_tx(tenant, "read, then fail", async |_conn| {
            Err::<(), _>(JobError::Db(DbError::Config("boom".into())))
        })
        .await;
    assert!(matches!(failed, Err(JobError::Db(DbError::Config(_)))));
    assert_eq!(
        count(&mut admin, "SELECT count(*) AS n FROM tenantry.audit_log").await,
        3
    );
    intact(&admin, 3).await;
}

// ---- a superuser who disables the triggers is named by verify ----

/// Three rows written by bypasses (ids 1, 2, 3), then `tamper` run by a superuser with the
/// triggers off; returns what verify finds.
async fn tampered(tamper: &str) -> Verification {
    let t = TestDb::new().await;
    for reason in ["first", "second", "third"] {
        bypass(&t, reason).await;
    }
    let mut admin = t.admin().await;
    assert_eq!(audit_ids(&mut admin).await, [1, 2, 3]);
    intact(&admin, 3).await;
    admin
        .batch_execute(&format!(
            "BEGIN; SET LOCAL session_replication_role = replica; {tamper}; COMMIT"
        ))
        .await
        .unwrap_or_else(|e| panic!("{tamper}: {e}"));
    let v = verified(&admin).await;
    assert!(!v.is_intact(), "{tamper}: still verifies");
    v
}

#[tokio::test]
async fn an_edited_row_is_named() {
    let v =
        tampered("UPDATE tenantry.audit_log SET reason = 'nothing happened' WHERE id = 2").await;
    assert_eq!(v.breaks, [ChainBreak::ContentChanged { id: 2, seq: 2 }]);
    assert!(v.breaks[0]
        .to_string()
        .starts_with("row 2 (chain position 2): content changed"));
}

#[tokio::test]
async fn a_backdated_row_is_named() {
    let v =
        tampered("UPDATE tenantry.audit_log SET at = at - interval '1 microsecond' WHERE id = 3")
            .await;
    assert_eq!(v.breaks, [ChainBreak::ContentChanged { id: 3, seq: 3 }]);
}

#[tokio::test]
async fn a_deleted_row_is_named() {
    let v = tampered("DELETE FROM tenantry.audit_log WHERE id = 2").await;
    assert_eq!(v.breaks, [ChainBreak::RowDeleted { id: 2, seq: 2 }]);
}

#[tokio::test]
async fn a_row_deleted_with_its_link_is_named() {
    let v = tampered(
        "DELETE FROM tenantry.audit_log WHERE id = 2; DELETE FROM tenantry.audit_log_chain WHERE audit_id = 2",
    )
    .await;
    assert_eq!(
        v.breaks,
        [ChainBreak::LinksMissing {
            id: 3,
            from: 2,
            to: 2
        }]
    );
}

#[tokio::test]
async fn a_row_inserted_out_of_chain_is_named() {
    let v = tampered(
        "INSERT INTO tenantry.audit_log (id, at, actor_email, action, reason) \
         VALUES (1000000, now() - interval '1 year', 'owner@example.com', 'x', 'forged')",
    )
    .await;
    assert_eq!(v.breaks, [ChainBreak::OutOfChain { id: 1000000 }]);
}

#[tokio::test]
async fn an_edited_row_with_a_recomputed_link_is_named_at_the_next_row() {
    // The attacker recomputes the edited row's hash with tenantry's own function: the next
    // link no longer follows it.
    let v = tampered(
        "UPDATE tenantry.audit_log SET reason = 'nothing happened' WHERE id = 2;
         UPDATE tenantry.audit_log_chain c SET hash = tenantry.tenantry_audit_hash(c.prev_hash, a.id, a.at,
             a.actor_user_id, a.actor_email, a.action, a.reason, a.tenant_id, a.request_id,
             a.location)
         FROM tenantry.audit_log a WHERE a.id = c.audit_id AND c.audit_id = 2",
    )
    .await;
    assert_eq!(
        v.breaks,
        [ChainBreak::LinkRewritten {
            id: 3,
            seq: 3,
            previous_id: 2
        }]
    );
}

#[tokio::test]
async fn rows_cut_from_the_end_are_named_by_the_head() {
    let v = tampered(
        "DELETE FROM tenantry.audit_log WHERE id = 3; DELETE FROM tenantry.audit_log_chain WHERE audit_id = 3",
    )
    .await;
    assert_eq!(
        v.breaks,
        [ChainBreak::HeadMismatch {
            head: Some((3, Some(3))),
            last: (2, Some(2))
        }]
    );
}

#[tokio::test]
async fn even_the_owner_cannot_rewrite_the_chain_with_the_triggers_on() {
    let t = TestDb::new().await;
    bypass(&t, "first").await;
    bypass(&t, "second").await;
    let mut admin = t.admin().await;
    for (sql, expected) in [
        (
            "UPDATE tenantry.audit_log_chain SET hash = prev_hash",
            "audit_log_chain is append-only: UPDATE",
        ),
        (
            "DELETE FROM tenantry.audit_log_chain",
            "audit_log_chain is append-only: DELETE",
        ),
        (
            "TRUNCATE tenantry.audit_log_chain",
            "audit_log_chain is append-only: TRUNCATE",
        ),
        (
            "DELETE FROM tenantry.audit_log_chain_head",
            "audit_log_chain_head is append-only: DELETE",
        ),
        (
            "UPDATE tenantry.audit_log_chain_head SET seq = 1, audit_id = 1, hash = \
          (SELECT hash FROM tenantry.audit_log_chain WHERE seq = 1)",
            "only moves to the next link",
        ),
        (
            "UPDATE tenantry.audit_log_chain_head SET seq = seq + 1",
            "only moves to the next link",
        ),
    ] {
        let message = refused(exec(&mut admin, sql).await, sql);
        assert!(message.contains(expected), "{sql}: {message}");
    }
    intact(&admin, 2).await;
}

// ---- rows written before the migration ----

#[tokio::test]
async fn rows_written_before_the_migration_are_chained_in_id_order() {
    let db = common::EmptyDb::new().await;
    let mut conn = db.admin().await;
    conn.batch_execute(include_str!("../../runtime/migrations/roles.sql"))
        .await
        .expect("roles");
    conn.batch_execute(diesel::migration::CREATE_MIGRATIONS_TABLE)
        .await
        .expect("Diesel's table");
    // tenantry's migrations before the chain, as a database in the field ran them.
    let mut wrapper = AsyncConnectionWrapper::<AsyncPgConnection>::from(conn);
    let wrapper = tokio::task::spawn_blocking(move || {
        let migrations =
            MigrationSource::<Pg>::migrations(&tenantry::migrations::FRAMEWORK_MIGRATIONS)
                .expect("tenantry's migrations");
        for m in &migrations {
            if m.name().version().to_string().as_str() < "00000000000007" {
                wrapper.run_migration(&**m).expect("an earlier migration");
            }
        }
        wrapper
    })
    .await
    .unwrap();
    let mut conn = wrapper.into_inner();
    conn.batch_execute(
        "INSERT INTO tenantry.audit_log (actor_email, action, reason) VALUES
             ('a@example.com', 'admin.tenants', 'before the chain'),
             ('job:nightly', 'job', E'two\\nlines');
         INSERT INTO tenantry.audit_log (at, actor_email, action, reason, request_id, location)
             VALUES (now() - interval '1 day', 'b@example.com', 'admin.audit', 'older',
                     'req-1', 'src/x.rs:1:1')",
    )
    .await
    .expect("rows of the earlier version");
    let migrated = tenantry::migrate_with(conn, MIGRATIONS)
        .await
        .expect("migrates");
    assert!(
        migrated
            .applied
            .iter()
            .any(|m| m == "00000000000007_audit_chain"),
        "{:?}",
        migrated.applied
    );
    let mut conn = migrated.conn;
    let order = chain_order(&mut conn).await;
    let ids: Vec<i64> = order.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, [1, 2, 3], "chained in id order");
    let v = verified(&conn).await;
    assert!(v.is_intact(), "{:#?}", v.breaks);
    assert_eq!((v.head.rows, v.head.audit_id), (3, Some(3)));
    // And the next row continues the chain.
    conn.batch_execute(
        "SELECT tenantry.tenantry_audit_write(NULL, 'job:x', 'job', 'after the migration', NULL, NULL, NULL)",
    )
    .await
    .unwrap();
    intact(&conn, 4).await;
}
