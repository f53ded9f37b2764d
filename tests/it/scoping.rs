//! Each scoped operation returns or touches only the active tenant's rows (as `tenantry_app`).

use crate::common;

use common::schema::{
    currencies, invoices, projects, Currency, Invoice, NewInvoice, NewProject, Project,
};
use common::{ctx, Route, TestDb};
use tenantry::testing::on_both_routes;

use tenantry::prelude::*;
use tenantry::DbError;
use uuid::Uuid;

// Every case runs twice: straight to PostgreSQL and through PgBouncer in transaction mode
// (`direct::..`, `pgbouncer::..`).
on_both_routes!(
    reads_see_only_the_active_tenant,
    or_inside_filter_stays_inside_the_tenant,
    boxed_dynamic_filters_stay_scoped,
    subqueries_are_scoped,
    joins_scope_the_joined_tenant_table_in_both_directions,
    join_sql_puts_the_tenant_condition_in_the_on_clause,
    inserts_take_tenant_from_context,
    cross_tenant_update_and_delete_touch_nothing,
    own_update_and_delete_work,
    global_tables_read_without_ceremony,
    a_failed_transaction_rolls_back,
    a_scoped_upsert_updates_or_inserts_inside_its_tenant_only,
);

struct World {
    t: TestDb,
    acme: Uuid,
    globex: Uuid,
    acme_project: Uuid,
    globex_project: Uuid,
}

/// Two tenants, each with one project and three invoices (amounts 100, 200, 300 + offset),
/// their pools reaching the database by `route`.
async fn world(route: Route) -> World {
    let t = TestDb::through(route, 4).await;
    let acme = t.tenant("acme").await;
    let globex = t.tenant("globex").await;
    let mut projects = Vec::new();
    for (tenant, offset) in [(acme, 0), (globex, 1000)] {
        let c = ctx(tenant);
        let project: Project =
            t.db.tx(&c, async |conn| {
                let p: Project = Project::insert(
                    conn,
                    NewProject {
                        name: format!("p{offset}"),
                    },
                )
                .get_result(conn)
                .await?;
                let rows = (1..=3).map(|i| NewInvoice {
                    project_id: p.id,
                    number: format!("INV-{i}"),
                    amount_cents: offset + i * 100,
                    currency: "EUR".into(),
                    status: "draft".into(),
                });
                Invoice::insert_many(conn, rows).execute(conn).await?;
                Ok::<_, DbError>(p)
            })
            .await
            .expect("seed");
        projects.push(project.id);
    }
    World {
        t,
        acme,
        globex,
        acme_project: projects[0],
        globex_project: projects[1],
    }
}

async fn reads_see_only_the_active_tenant(route: Route) {
    let w = world(route).await;
    let c = ctx(w.acme);
    let (all, big, count, page, numbers, distinct) =
        w.t.db
            .tx(&c, async |conn| {
                let all: Vec<Invoice> = Invoice::scoped(conn).load(conn).await?;
                let big: Vec<Invoice> = Invoice::scoped(conn)
                    .filter(invoices::amount_cents.gt(100))
                    .order(invoices::amount_cents.desc())
                    .limit(50)
                    .load(conn)
                    .await?;
                let count: i64 = Invoice::scoped(conn).count().get_result(conn).await?;
                let page: Vec<Invoice> = Invoice::scoped(conn)
                    .order(invoices::number.asc())
                    .then_order_by(invoices::id.asc())
                    .offset(1)
                    .limit(1)
                    .load(conn)
                    .await?;
                let numbers: Vec<String> = Invoice::scoped(conn)
                    .select(invoices::number)
                    .order(invoices::number.asc())
                    .load(conn)
                    .await?;
                let distinct: Vec<String> = Invoice::scoped(conn)
                    .select(invoices::currency)
                    .distinct()
                    .load(conn)
                    .await?;
                Ok::<_, DbError>((all, big, count, page, numbers, distinct))
            })
            .await
            .unwrap();
    assert_eq!(all.len(), 3);
    assert!(all.iter().all(|i| i.tenant_id == w.acme));
    assert_eq!(
        big.iter().map(|i| i.amount_cents).collect::<Vec<_>>(),
        vec![300, 200]
    );
    assert_eq!(count, 3);
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].number, "INV-2");
    assert_eq!(numbers, vec!["INV-1", "INV-2", "INV-3"]);
    assert_eq!(distinct, vec!["EUR"]);
}

async fn or_inside_filter_stays_inside_the_tenant(route: Route) {
    let w = world(route).await;
    let c = ctx(w.acme);
    let rows: Vec<Invoice> =
        w.t.db
            .tx(&c, async |conn| {
                Invoice::scoped(conn)
                    .filter(
                        invoices::amount_cents
                            .eq(1100)
                            .or(invoices::amount_cents.eq(100)),
                    )
                    .load(conn)
                    .await
                    .map_err(DbError::from)
            })
            .await
            .unwrap();
    assert_eq!(rows.len(), 1, "globex's 1100 must not appear");
    assert_eq!(rows[0].amount_cents, 100);
}

async fn boxed_dynamic_filters_stay_scoped(route: Route) {
    let w = world(route).await;
    let c = ctx(w.globex);
    for (status, expected) in [(None, 3), (Some("draft"), 3), (Some("paid"), 0)] {
        let rows: Vec<Invoice> =
            w.t.db
                .tx(&c, async |conn| {
                    let mut q = Invoice::scoped(conn).into_boxed();
                    if let Some(s) = status {
                        q = q.filter(invoices::status.eq(s));
                    }
                    q.order(invoices::created_at.desc())
                        .load(conn)
                        .await
                        .map_err(DbError::from)
                })
                .await
                .unwrap();
        assert_eq!(rows.len(), expected, "status {status:?}");
        assert!(rows.iter().all(|i| i.tenant_id == w.globex));
    }
}

async fn subqueries_are_scoped(route: Route) {
    let w = world(route).await;
    let c = ctx(w.acme);
    let rows: Vec<Invoice> =
        w.t.db
            .tx(&c, async |conn| {
                // Projects of *any* tenant named like globex's: the scoped subquery sees none.
                let globex_named = Project::scoped(conn)
                    .filter(projects::name.eq("p1000"))
                    .select(projects::id)
                    .subquery();
                let none: Vec<Invoice> = Invoice::scoped(conn)
                    .filter(invoices::project_id.eq_any(globex_named))
                    .load(conn)
                    .await?;
                assert!(none.is_empty());
                let mine = Project::scoped(conn).select(projects::id).subquery();
                Invoice::scoped(conn)
                    .filter(invoices::project_id.eq_any(mine))
                    .load(conn)
                    .await
                    .map_err(DbError::from)
            })
            .await
            .unwrap();
    assert_eq!(rows.len(), 3);
}

async fn joins_scope_the_joined_tenant_table_in_both_directions(route: Route) {
    let w = world(route).await;
    // A project in acme with no invoices, to exercise the left join's NULL side.
    let c = ctx(w.acme);
    let (inner, left, with_currency) =
        w.t.db
            .tx(&c, async |conn| {
                Project::insert(
                    conn,
                    NewProject {
                        name: "empty".into(),
                    },
                )
                .execute(conn)
                .await?;
                let inner: Vec<(Invoice, Project)> = Invoice::scoped(conn)
                    .inner_join(projects::table)
                    .load(conn)
                    .await?;
                let left: Vec<(Invoice, Option<Project>)> = Invoice::scoped(conn)
                    .left_join(projects::table)
                    .load(conn)
                    .await?;
                let with_currency: Vec<(Invoice, Currency)> = Invoice::scoped(conn)
                    .inner_join(currencies::table)
                    .load(conn)
                    .await?;
                Ok::<_, DbError>((inner, left, with_currency))
            })
            .await
            .unwrap();
    assert_eq!(inner.len(), 3);
    assert!(inner
        .iter()
        .all(|(i, p)| i.tenant_id == w.acme && p.tenant_id == w.acme));
    assert_eq!(left.len(), 3);
    assert!(left
        .iter()
        .all(|(_, p)| p.as_ref().is_some_and(|p| p.id == w.acme_project)));
    assert_eq!(with_currency.len(), 3);
    assert!(with_currency.iter().all(|(_, cur)| cur.code == "EUR"));
}

async fn join_sql_puts_the_tenant_condition_in_the_on_clause(route: Route) {
    let w = world(route).await;
    let c = ctx(w.acme);
    let (left_sql, global_sql) = w
        .t
        .db
        .tx(&c, async |conn| {
            let q = Invoice::scoped(conn).left_join(projects::table);
            let left = diesel::debug_query::<diesel::pg::Pg, _>(&q.subquery()).to_string();
            let global = Invoice::scoped(conn).inner_join(currencies::table);
            let global = diesel::debug_query::<diesel::pg::Pg, _>(&global.subquery()).to_string();
            Ok::<_, DbError>((left, global))
        })
        .await
        .unwrap();
    let sql = left_sql;
    let on = sql.split(" ON ").nth(1).expect("an ON clause");
    let on = on.split(" WHERE ").next().unwrap();
    assert!(on.contains("\"projects\".\"tenant_id\" = $1"), "{sql}");
    let wh = sql.split(" WHERE ").nth(1).expect("a WHERE clause");
    assert!(wh.contains("\"invoices\".\"tenant_id\" = $2"), "{sql}");
    let sql = global_sql;
    assert_eq!(
        sql.matches("\"tenant_id\" = ").count(),
        1,
        "global join adds nothing: {sql}"
    );
}

async fn inserts_take_tenant_from_context(route: Route) {
    let w = world(route).await;
    let c = ctx(w.globex);
    let inv: Invoice =
        w.t.db
            .tx(&c, async |conn| {
                Invoice::insert(
                    conn,
                    NewInvoice {
                        project_id: w.globex_project,
                        number: "NEW-1".into(),
                        amount_cents: 5,
                        currency: "USD".into(),
                        status: "draft".into(),
                    },
                )
                .get_result(conn)
                .await
                .map_err(DbError::from)
            })
            .await
            .unwrap();
    assert_eq!(inv.tenant_id, w.globex);
    // Referencing another tenant's project is rejected by the composite foreign key.
    let err =
        w.t.db
            .tx(&c, async |conn| {
                Invoice::insert(
                    conn,
                    NewInvoice {
                        project_id: w.acme_project,
                        number: "NEW-2".into(),
                        amount_cents: 5,
                        currency: "USD".into(),
                        status: "draft".into(),
                    },
                )
                .execute(conn)
                .await
                .map_err(DbError::from)
            })
            .await
            .unwrap_err();
    assert!(
        matches!(
            err,
            DbError::Query(diesel::result::Error::DatabaseError(
                diesel::result::DatabaseErrorKind::ForeignKeyViolation,
                _
            ))
        ),
        "{err:?}"
    );
}

async fn cross_tenant_update_and_delete_touch_nothing(route: Route) {
    let w = world(route).await;
    let globex_invoice: Invoice =
        w.t.db
            .tx(&ctx(w.globex), async |conn| {
                Invoice::scoped(conn)
                    .first(conn)
                    .await
                    .map_err(DbError::from)
            })
            .await
            .unwrap();
    let id = globex_invoice.id;
    let c = ctx(w.acme);
    let (updated, deleted, found) =
        w.t.db
            .tx(&c, async |conn| {
                let updated = diesel::update(Invoice::scoped(conn).filter(invoices::id.eq(id)))
                    .set(invoices::status.to("void"))
                    .execute(conn)
                    .await?;
                let deleted = diesel::delete(Invoice::scoped(conn).filter(invoices::id.eq(id)))
                    .execute(conn)
                    .await?;
                let found = Invoice::scoped(conn)
                    .filter(invoices::id.eq(id))
                    .first::<Invoice>(conn)
                    .await
                    .optional()?;
                Ok::<_, DbError>((updated, deleted, found))
            })
            .await
            .unwrap();
    assert_eq!((updated, deleted), (0, 0));
    assert!(found.is_none());
    let after: Invoice =
        w.t.db
            .tx(&ctx(w.globex), async |conn| {
                Invoice::scoped(conn)
                    .filter(invoices::id.eq(id))
                    .first(conn)
                    .await
                    .map_err(DbError::from)
            })
            .await
            .unwrap();
    assert_eq!(after, globex_invoice, "the row is unchanged");
}

async fn own_update_and_delete_work(route: Route) {
    let w = world(route).await;
    let c = ctx(w.acme);
    let (updated, deleted, left) =
        w.t.db
            .tx(&c, async |conn| {
                let updated: Invoice =
                    diesel::update(Invoice::scoped(conn).filter(invoices::number.eq("INV-1")))
                        .set((invoices::status.to("paid"), invoices::amount_cents.to(7)))
                        .get_result(conn)
                        .await?;
                let deleted =
                    diesel::delete(Invoice::scoped(conn).filter(invoices::number.eq("INV-2")))
                        .execute(conn)
                        .await?;
                let left: i64 = Invoice::scoped(conn).count().get_result(conn).await?;
                Ok::<_, DbError>((updated, deleted, left))
            })
            .await
            .unwrap();
    assert_eq!((updated.status.as_str(), updated.amount_cents), ("paid", 7));
    assert_eq!(deleted, 1);
    assert_eq!(left, 2);
    let globex_left: i64 =
        w.t.db
            .tx(&ctx(w.globex), async |conn| {
                Invoice::scoped(conn)
                    .count()
                    .get_result(conn)
                    .await
                    .map_err(DbError::from)
            })
            .await
            .unwrap();
    assert_eq!(globex_left, 3);
}

async fn global_tables_read_without_ceremony(route: Route) {
    let w = world(route).await;
    let rows: Vec<Currency> =
        w.t.db
            .tx(&ctx(w.acme), async |conn| {
                let all: Vec<Currency> = currencies::table.load(conn).await?;
                assert_eq!(all.len(), 3);
                currencies::table
                    .filter(currencies::code.eq("GBP"))
                    .order(currencies::name.asc())
                    .load(conn)
                    .await
                    .map_err(DbError::from)
            })
            .await
            .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].name, "Pound sterling");
}

async fn a_failed_transaction_rolls_back(route: Route) {
    let w = world(route).await;
    let c = ctx(w.acme);
    let result: Result<(), DbError> =
        w.t.db
            .tx(&c, async |conn| {
                diesel::delete(Invoice::scoped(conn)).execute(conn).await?;
                Err(DbError::Config("boom".into()))
            })
            .await;
    assert!(result.is_err());
    let n: i64 =
        w.t.db
            .tx(&c, async |conn| {
                Invoice::scoped(conn)
                    .count()
                    .get_result(conn)
                    .await
                    .map_err(DbError::from)
            })
            .await
            .unwrap();
    assert_eq!(n, 3, "the delete was rolled back");
}

async fn a_scoped_upsert_updates_or_inserts_inside_its_tenant_only(route: Route) {
    let w = world(route).await;
    let c = ctx(w.acme);
    let new = |number: &str, amount_cents: i64| NewInvoice {
        project_id: w.acme_project,
        number: number.into(),
        amount_cents,
        currency: "EUR".into(),
        status: "draft".into(),
    };
    let (updated, inserted, untouched) =
        w.t.db
            .tx(&c, async |conn| {
                // INV-1 exists in both tenants: acme's takes the proposed amount.
                let updated: Invoice = Invoice::insert(conn, new("INV-1", 5))
                    .on_conflict((invoices::tenant_id, invoices::number))
                    .do_update()
                    .set(invoices::amount_cents.to(tenantry::excluded(invoices::amount_cents)))
                    .get_result(conn)
                    .await?;
                // INV-9 exists nowhere: inserted.
                let inserted: Invoice = Invoice::insert(conn, new("INV-9", 9))
                    .on_conflict((invoices::tenant_id, invoices::number))
                    .do_update()
                    .set(invoices::amount_cents.to(tenantry::excluded(invoices::amount_cents)))
                    .get_result(conn)
                    .await?;
                // DO NOTHING leaves INV-2 as it was.
                let untouched = Invoice::insert(conn, new("INV-2", 7))
                    .on_conflict((invoices::tenant_id, invoices::number))
                    .do_nothing()
                    .execute(conn)
                    .await?;
                Ok::<_, DbError>((updated, inserted, untouched))
            })
            .await
            .unwrap();
    assert_eq!(
        (
            updated.tenant_id,
            updated.number.as_str(),
            updated.amount_cents
        ),
        (w.acme, "INV-1", 5)
    );
    assert_eq!((inserted.tenant_id, inserted.amount_cents), (w.acme, 9));
    assert_eq!(untouched, 0);

    // globex's INV-1 and INV-2 are as they were, and it has no INV-9.
    let globex: Vec<(String, i64)> =
        w.t.db
            .tx(&ctx(w.globex), async |conn| {
                Ok::<_, DbError>(
                    Invoice::scoped(conn)
                        .select((invoices::number, invoices::amount_cents))
                        .order(invoices::number)
                        .load(conn)
                        .await?,
                )
            })
            .await
            .unwrap();
    assert_eq!(
        globex,
        [
            ("INV-1".into(), 1100),
            ("INV-2".into(), 1200),
            ("INV-3".into(), 1300)
        ]
    );
    let acme_inv2: i64 =
        w.t.db
            .tx(&c, async |conn| {
                Ok::<_, DbError>(
                    Invoice::scoped(conn)
                        .filter(invoices::number.eq("INV-2"))
                        .select(invoices::amount_cents)
                        .first(conn)
                        .await?,
                )
            })
            .await
            .unwrap();
    assert_eq!(acme_inv2, 200);
}
