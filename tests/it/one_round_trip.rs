//! `Db::query`: a one-statement tenant transaction sent in one round trip. It returns the right
//! rows, rolls back a failing statement, keeps tenants apart on a reused connection, and sends
//! the tenant's entry, the statement and the tenant's assertion before one `Sync`, as one
//! implicit transaction, before reading any reply.

use crate::common;
mod wire;

use std::time::Duration;

use common::schema::{invoices, projects, Invoice, NewInvoice, Project};
use common::{ctx, viewer_ctx, TestDb};
use tenantry::prelude::*;
use tenantry::schema::tenants;
use tenantry::{Db, DbConfig, DbError};
use uuid::Uuid;
use wire::Wire;

struct World {
    t: TestDb,
    acme: Uuid,
    globex: Uuid,
    acme_project: Uuid,
}

/// Tenants `acme` (3 invoices) and `globex` (5 invoices), a pool of one connection.
async fn world() -> World {
    let t = TestDb::with_pool_size(1).await;
    let acme = t.tenant("acme").await;
    let globex = t.tenant("globex").await;
    let acme_project = t.seed(acme, "website", 3).await;
    t.seed(globex, "app", 5).await;
    World {
        t,
        acme,
        globex,
        acme_project,
    }
}

/// A one-connection `Db` of `t`'s app role whose connection goes through a [`Wire`].
async fn db_through(t: &TestDb) -> (Db, Wire) {
    let app_url = t.app_url();
    let upstream = url::Url::parse(&app_url).expect("URL");
    let wire = Wire::start(&format!(
        "{}:{}",
        upstream.host_str().expect("host"),
        upstream.port().unwrap_or(5432)
    ))
    .await;
    let mut config = DbConfig::new(wire.url(&app_url), None);
    config.max_connections = 1;
    (Db::connect(config).await.expect("pool"), wire)
}

async fn amounts(t: &TestDb, tenant: Uuid) -> Vec<i64> {
    let mut admin = t.admin().await;
    let query = invoices::table
        .filter(invoices::tenant_id.eq(tenant))
        .select(invoices::amount_cents)
        .order(invoices::number);
    diesel_async::RunQueryDsl::load(query, &mut admin)
        .await
        .expect("amounts")
}

#[tokio::test]
async fn reads_and_writes_return_the_tenants_rows() {
    let w = world().await;
    let db = &w.t.db;
    let acme = ctx(w.acme);
    let rows: Vec<Invoice> = db
        .query(&acme, |conn| {
            Invoice::scoped(conn)
                .order(invoices::number.asc())
                .load(conn)
        })
        .await
        .expect("list");
    let numbers: Vec<&str> = rows.iter().map(|i| i.number.as_str()).collect();
    assert_eq!(numbers, ["INV-1", "INV-2", "INV-3"]);
    assert!(rows.iter().all(|i| i.tenant_id == w.acme));

    // Another tenant's invoice is not there.
    let globex_id: Uuid = db
        .query(&ctx(w.globex), |conn| {
            Invoice::scoped(conn).select(invoices::id).first(conn)
        })
        .await
        .expect("a globex invoice");
    let found: Option<Invoice> = db
        .query(&acme, |conn| {
            Invoice::scoped(conn)
                .filter(invoices::id.eq(globex_id))
                .first(conn)
                .optional()
        })
        .await
        .expect("show");
    assert_eq!(found, None);

    // Insert, update and delete, each one statement.
    let new: Invoice = db
        .query(&acme, |conn| {
            Invoice::insert(
                conn,
                NewInvoice {
                    project_id: w.acme_project,
                    number: "INV-4".into(),
                    amount_cents: 400,
                    currency: "EUR".into(),
                    status: "draft".into(),
                },
            )
            .get_result(conn)
        })
        .await
        .expect("insert");
    assert_eq!(new.tenant_id, w.acme);
    let updated = db
        .query(&acme, |conn| {
            diesel::update(Invoice::scoped(conn).filter(invoices::id.eq(new.id)))
                .set(invoices::amount_cents.to(450))
                .execute(conn)
        })
        .await
        .expect("update");
    assert_eq!(updated, 1);
    assert_eq!(amounts(&w.t, w.acme).await, [100, 100, 100, 450]);
    let untouched = db
        .query(&acme, |conn| {
            diesel::delete(Invoice::scoped(conn).filter(invoices::id.eq(globex_id))).execute(conn)
        })
        .await
        .expect("delete of another tenant's id");
    assert_eq!(untouched, 0);
    assert_eq!(amounts(&w.t, w.globex).await.len(), 5);
    let deleted = db
        .query(&acme, |conn| {
            diesel::delete(Invoice::scoped(conn).filter(invoices::id.eq(new.id))).execute(conn)
        })
        .await
        .expect("delete");
    assert_eq!(deleted, 1);
    assert_eq!(amounts(&w.t, w.acme).await, [100, 100, 100]);
}

#[tokio::test]
async fn a_read_only_context_runs_in_a_read_only_transaction() {
    let w = world().await;
    let viewer = viewer_ctx(w.acme);
    let read_only: String =
        w.t.db
            .query(&viewer, |conn| {
                tenants::table
                    .select(tenantry::sql!(
                        diesel::sql_types::Text,
                        "current_setting('transaction_read_only')"
                    ))
                    .first(conn)
            })
            .await
            .expect("a read");
    assert_eq!(read_only, "on");
}

#[tokio::test]
async fn the_transaction_is_sent_whole_before_any_reply_is_read() {
    let w = world().await;
    let (db, wire) = db_through(&w.t).await;
    let acme = ctx(w.acme);
    let id: Uuid = db
        .query(&acme, |conn| {
            Invoice::scoped(conn).select(invoices::id).first(conn)
        })
        .await
        .expect("an id");
    let show = |db: Db, acme: tenantry::TenantCtx<'static>| async move {
        db.query(&acme, |conn| {
            Invoice::scoped(conn)
                .filter(invoices::id.eq(id))
                .first::<Invoice>(conn)
        })
        .await
    };

    // First run on this connection: the explicit transaction of `Db::tx`. `BEGIN` (`Q`) and the
    // tenant's entry (`B E S`, spliced in by the socket) go out with the statement's `Parse`;
    // its `Bind`/`Execute` wait for the reply, and so do the assertion and `COMMIT`.
    wire.hold_replies();
    let mark = wire.mark();
    let first = tokio::spawn(show(db.clone(), acme.clone()));
    wire.wait_for(mark, "Q B E S P D S").await;
    wire.release_replies().await;
    assert_eq!(first.await.unwrap().expect("first run").id, id);
    assert_eq!(
        wire.sent_since(mark),
        "Q B E S P D S | B E S B E S Q",
        "nothing more before the reply"
    );

    // Second run: sent without a `Parse`, pipelined with `BEGIN` and the entry; then the
    // assertion and `COMMIT` after its reply. The connection now knows the statement is
    // prepared on it.
    wire.hold_replies();
    let mark = wire.mark();
    let second = tokio::spawn(show(db.clone(), acme.clone()));
    wire.wait_for(mark, "Q B E S B E S").await;
    wire.release_replies().await;
    assert_eq!(second.await.unwrap().expect("second run").id, id);
    assert_eq!(
        wire.sent_since(mark),
        "Q B E S B E S | B E S Q",
        "the second run"
    );

    // From then on: the entry, the statement and the assertion, then one `Sync`, all out while
    // no reply has reached the client: one round trip, one implicit transaction, no `BEGIN` or
    // `COMMIT`. On Citus, whose workers get the seal inside a transaction block only, `BEGIN`
    // (`P B E`) first and `COMMIT` last, still before the one `Sync`: one round trip too.
    let one_trip = one_round_trip().await;
    for run in ["third", "fourth", "fifth"] {
        wire.hold_replies();
        let mark = wire.mark();
        let task = tokio::spawn(show(db.clone(), acme.clone()));
        wire.wait_for(mark, one_trip).await;
        assert!(!task.is_finished(), "{run} run: no reply was read");
        wire.release_replies().await;
        let row = task.await.unwrap().expect(run);
        assert_eq!((row.id, row.tenant_id), (id, w.acme), "{run} run");
        assert_eq!(wire.sent_since(mark), format!("{one_trip} |"), "{run} run");
    }

    // `Db::tx` for comparison: its assertion and `COMMIT` wait for the statement's reply.
    wire.hold_replies();
    let mark = wire.mark();
    let tx = tokio::spawn({
        let db = db.clone();
        async move {
            db.tx(&acme, async |conn| {
                Invoice::scoped(conn)
                    .filter(invoices::id.eq(id))
                    .first::<Invoice>(conn)
                    .await
                    .map_err(DbError::from)
            })
            .await
        }
    });
    wire.wait_for(mark, "Q B E S B E S").await;
    wire.release_replies().await;
    assert_eq!(tx.await.unwrap().expect("tx").id, id);
    assert_eq!(
        wire.sent_since(mark),
        "Q B E S B E S | B E S Q",
        "Db::tx waits for the reply"
    );
    // Not one warning or notice from the server (on Citus neither: no "there is already a
    // transaction in progress" from a worker).
    assert_eq!(wire.notices(), 0, "the server sent notices");
}

/// The messages of a one-statement transaction in one round trip: on Citus inside `BEGIN` and
/// `COMMIT` (each an unnamed `Parse`, `Bind`, `Execute`).
async fn one_round_trip() -> &'static str {
    if tenantry::testing::on_citus().await {
        "P B E B E B E B E P B E S"
    } else {
        "B E B E B E S"
    }
}

#[tokio::test]
async fn a_failing_statement_rolls_back_and_the_connection_stays_usable() {
    let w = world().await;
    // A second acme project, without invoices: deleting every acme project deletes it, then
    // fails on the first one, which invoices reference.
    let empty = w.t.seed(w.acme, "empty", 0).await;
    let (db, wire) = db_through(&w.t).await;
    let acme = ctx(w.acme);
    let projects = || {
        let db = db.clone();
        let acme = acme.clone();
        async move {
            let mut ids: Vec<Uuid> = db
                .query(&acme, |conn| {
                    Project::scoped(conn).select(projects::id).load(conn)
                })
                .await
                .expect("projects");
            ids.sort();
            ids
        }
    };
    let delete = |keep: Uuid| {
        let db = db.clone();
        let acme = acme.clone();
        async move {
            db.query(&acme, |conn| {
                diesel::delete(Project::scoped(conn).filter(projects::id.ne(keep))).execute(conn)
            })
            .await
        }
    };
    let mut both = vec![w.acme_project, empty];
    both.sort();
    assert_eq!(projects().await, both);
    // Prepares the statement and lets the connection see it sent without a `Parse` (deletes
    // nothing), so that the failing run below is one implicit transaction.
    for _ in 0..2 {
        assert_eq!(delete(Uuid::nil()).await.ok(), None, "fails the same way");
        assert_eq!(projects().await, both);
    }

    let mark = wire.mark();
    let failed = delete(Uuid::nil())
        .await
        .expect_err("invoices reference a project");
    assert!(
        failed.to_string().contains("foreign key"),
        "the foreign key's error: {failed}"
    );
    // One implicit transaction: the server skipped the assertion and rolled back at the Sync.
    // On Citus, a transaction block: the server skipped the assertion and `COMMIT`, and the
    // block, left aborted, is rolled back (`Q`) in a second round trip, on failure only.
    let expected = match tenantry::testing::on_citus().await {
        false => one_round_trip().await.to_owned(),
        true => format!("{} Q", one_round_trip().await),
    };
    assert_eq!(wire.sent_since(mark), expected);
    assert_eq!(wire.notices(), 0, "the server sent notices");
    assert_eq!(
        projects().await,
        both,
        "the empty project's deletion rolled back"
    );

    // The pool's only connection is back, outside any transaction.
    assert_eq!(delete(w.acme_project).await.expect("the next statement"), 1);
    assert_eq!(projects().await, [w.acme_project]);
}

#[tokio::test]
async fn one_connection_alternating_tenants_never_leaks() {
    let w = world().await;
    let db = &w.t.db;
    let expected = [(w.acme, 3usize), (w.globex, 5usize)];
    let ids: Vec<Uuid> = db
        .query(&ctx(w.globex), |conn| {
            Invoice::scoped(conn).select(invoices::id).load(conn)
        })
        .await
        .expect("globex ids");
    for round in 0..300 {
        let (tenant, count) = expected[round % 2];
        let c = ctx(tenant);
        // The directory's `tenants` is read with no tenant filter in the query: row-level
        // security alone decides what the transaction sees.
        let visible: Vec<Uuid> = db
            .query(&c, |conn| tenants::table.select(tenants::id).load(conn))
            .await
            .expect("tenants");
        assert_eq!(visible, [tenant], "round {round}: only the active tenant");
        match round % 5 {
            0 => {
                let rows: Vec<Invoice> = db
                    .query(&c, |conn| Invoice::scoped(conn).load(conn))
                    .await
                    .expect("invoices");
                assert_eq!(rows.len(), count, "round {round}");
                assert!(rows.iter().all(|i| i.tenant_id == tenant), "round {round}");
            }
            1 => {
                let viewer = viewer_ctx(tenant);
                let n: i64 = db
                    .query(&viewer, |conn| {
                        Invoice::scoped(conn).count().get_result(conn)
                    })
                    .await
                    .expect("count");
                assert_eq!(n as usize, count, "round {round}");
            }
            2 => {
                // A failing statement between two tenants' transactions.
                let e = db
                    .query(&c, |conn| {
                        diesel::update(Invoice::scoped(conn))
                            .set(invoices::amount_cents.to(-1))
                            .execute(conn)
                    })
                    .await
                    .expect_err("check violation");
                assert!(!e.is_unavailable(), "round {round}: {e}");
            }
            3 => {
                let id = ids[round % ids.len()];
                let found: Option<Invoice> = db
                    .query(&c, |conn| {
                        Invoice::scoped(conn)
                            .filter(invoices::id.eq(id))
                            .first(conn)
                            .optional()
                    })
                    .await
                    .expect("show");
                assert_eq!(found.is_some(), tenant == w.globex, "round {round}");
            }
            _ => {
                let n: i64 = db
                    .tx(&c, async |conn| {
                        Invoice::scoped(conn)
                            .count()
                            .get_result(conn)
                            .await
                            .map_err(DbError::from)
                    })
                    .await
                    .expect("Db::tx between them");
                assert_eq!(n as usize, count, "round {round}");
            }
        }
    }
    assert_eq!(db.pool_status().0, 1, "one connection served every round");
    assert_eq!(amounts(&w.t, w.acme).await, [100, 100, 100]);
}

#[tokio::test]
async fn a_dropped_query_future_is_cancelled_not_committed() {
    use diesel_async::SimpleAsyncConnection;
    let w = world().await;
    let db = &w.t.db;
    let acme = ctx(w.acme);
    let set_status = |status: &'static str| {
        db.query(&acme, move |conn| {
            diesel::update(Invoice::scoped(conn))
                .set(invoices::status.to(status))
                .execute(conn)
        })
    };
    // Hold a lock on acme's invoices, so that the update waits; then give up on it. (Filtered by
    // the tenant: on Citus `FOR UPDATE` runs on one shard only.)
    let mut admin = w.t.admin().await;
    admin
        .batch_execute(&format!(
            "BEGIN; SELECT * FROM invoices WHERE tenant_id = '{}' FOR UPDATE",
            w.acme
        ))
        .await
        .expect("lock");
    let gave_up = tokio::time::timeout(Duration::from_millis(300), set_status("void")).await;
    assert!(gave_up.is_err(), "the update waits for the lock");
    admin.batch_execute("ROLLBACK").await.expect("unlock");

    // The pool's only slot is free again once the abandoned statement is cancelled: it was not
    // committed.
    let statuses = || {
        db.query(&acme, |conn| {
            Invoice::scoped(conn)
                .select(invoices::status)
                .load::<String>(conn)
        })
    };
    assert_eq!(statuses().await.expect("statuses"), ["draft"; 3]);
    assert_eq!(set_status("sent").await.expect("the next statement"), 3);
    assert_eq!(statuses().await.expect("statuses"), ["sent"; 3]);
}
