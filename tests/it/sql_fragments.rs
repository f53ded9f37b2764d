//! SQL fragments in tenant queries (as `tenantry_app`): SQL text built at run time
//! (`diesel::dsl::sql`) is refused before anything is sent, wherever it sits in a filter,
//! selection, order or update value; `tenantry::sql!` literals run in each of those places, each
//! call site with its own prepared statement; the safe forms without a static query id (`eq_any`
//! over a list, boxed scoped subqueries) still run.

use crate::common;

use common::schema::{invoices, projects, Invoice, NewInvoice, NewProject, Project};
use common::{ctx, Route, TestDb};
use diesel::sql_types::{BigInt, Bool, Nullable, Text};
use tenantry::bounds::{FragmentPlace, RuntimeSqlFragment};
use tenantry::prelude::*;
use tenantry::testing::on_both_routes;
use tenantry::DbError;
use uuid::Uuid;

on_both_routes!(
    runtime_fragments_in_reads_are_refused_before_anything_is_sent,
    runtime_fragments_in_writes_are_refused_and_change_nothing,
    literal_fragments_run_in_every_place,
    two_literal_fragments_keep_their_own_prepared_statements,
    safe_forms_without_a_static_query_id_still_run,
);

struct World {
    t: TestDb,
    acme: Uuid,
    globex: Uuid,
}

/// Tenants `acme` (invoices INV-1..3 of 100, 200, 300 cents) and `globex` (1100, 1200, 1300),
/// one project each, reached by `route` through a pool of `size`.
async fn world(route: Route, size: usize) -> World {
    let t = TestDb::through(route, size).await;
    let acme = t.tenant("acme").await;
    let globex = t.tenant("globex").await;
    for (tenant, offset) in [(acme, 0), (globex, 1000)] {
        t.db.tx(&ctx(tenant), async |conn| {
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
            Ok::<_, DbError>(())
        })
        .await
        .expect("seed");
    }
    World { t, acme, globex }
}

/// The refusal inside `result`'s error, failing the test if it is anything else.
fn refusal<T: std::fmt::Debug>(result: Result<T, diesel::result::Error>) -> RuntimeSqlFragment {
    match result {
        Err(diesel::result::Error::QueryBuilderError(e)) => match e.downcast_ref() {
            Some(refused) => *refused,
            None => panic!("another query builder error: {e}"),
        },
        other => panic!("expected a refused fragment, got {other:?}"),
    }
}

/// Asserts that `refused` was taken at `place` in this file, and that its message names it and
/// the fix.
fn assert_refused(refused: RuntimeSqlFragment, place: FragmentPlace) {
    assert_eq!(refused.place(), place, "{refused}");
    assert!(
        refused.location().file().ends_with("sql_fragments.rs"),
        "the refusal names the caller's line: {refused}"
    );
    let message = refused.to_string();
    for needle in [
        "refused this query before sending it",
        "tenantry::sql!",
        ".bind(..)",
        "no_tenant_scope!",
        "sql_fragments.rs:",
    ] {
        assert!(message.contains(needle), "{needle:?} in {message}");
    }
}

// What a handler gets from a request: text an attacker chose, which closes the quote.
const ATTACK: &str = "x' OR 'a' = 'a";
// A divisor of zero: SQL that reaches PostgreSQL with it fails and aborts the transaction, so a
// transaction that still works afterwards proves that nothing was sent.
const ZERO: i64 = 0;

/// Each place and nesting a run-time fragment can hide in: every query is refused, and the
/// transaction still works afterwards (the fragments dividing by zero would have aborted it, had
/// they been sent).
#[allow(
    clippy::disallowed_methods,
    reason = "the attack under test: SQL text built at run time with `diesel::dsl::sql`"
)]
async fn runtime_fragments_in_reads_are_refused_before_anything_is_sent(route: Route) {
    use diesel::dsl::sql;
    let w = world(route, 2).await;
    let injected = format!("number = '{ATTACK}'");
    let divide = format!("amount_cents / {ZERO}");
    let refusals =
        w.t.db
            .tx(&ctx(w.acme), async |conn| {
                let mut refusals = vec![
                    // the fragment is the whole predicate
                    (
                        refusal(
                            Invoice::scoped(conn)
                                .filter(sql::<Bool>(&injected))
                                .load::<Invoice>(conn)
                                .await,
                        ),
                        FragmentPlace::Filter,
                    ),
                    // inside `.eq(..)`, `.and(..)`, `.nullable()`, after `.bind(..)`, with `.sql(..)`
                    (
                        refusal(
                            Invoice::scoped(conn)
                                .filter(invoices::number.eq(sql::<Text>(&format!("'{ATTACK}'"))))
                                .load::<Invoice>(conn)
                                .await,
                        ),
                        FragmentPlace::Filter,
                    ),
                    (
                        refusal(
                            Invoice::scoped(conn)
                                .filter(invoices::amount_cents.gt(0).and(sql::<Bool>(&injected)))
                                .count()
                                .get_result::<i64>(conn)
                                .await,
                        ),
                        FragmentPlace::Filter,
                    ),
                    (
                        refusal(
                            Invoice::scoped(conn)
                                .filter(
                                    invoices::amount_cents
                                        .nullable()
                                        .eq(sql::<Nullable<BigInt>>(&divide)),
                                )
                                .load::<Invoice>(conn)
                                .await,
                        ),
                        FragmentPlace::Filter,
                    ),
                    (
                        refusal(
                            Invoice::scoped(conn)
                                .filter(
                                    sql::<Bool>(&format!("amount_cents / {ZERO} > "))
                                        .bind::<BigInt, _>(0_i64)
                                        .sql(" AND TRUE"),
                                )
                                .load::<Invoice>(conn)
                                .await,
                        ),
                        FragmentPlace::Filter,
                    ),
                    // in a scoped subquery (`exists`) of the filter
                    (
                        refusal(
                            Invoice::scoped(conn)
                                .filter(
                                    Project::scoped(conn)
                                        .filter(sql::<Bool>(&injected))
                                        .exists(),
                                )
                                .load::<Invoice>(conn)
                                .await,
                        ),
                        FragmentPlace::Filter,
                    ),
                    // a boxed (dynamic) query
                    (
                        refusal(
                            Invoice::scoped(conn)
                                .into_boxed()
                                .filter(sql::<Bool>(&injected))
                                .load::<Invoice>(conn)
                                .await,
                        ),
                        FragmentPlace::Filter,
                    ),
                    // the selection, alone and in a tuple
                    (
                        refusal(
                            Invoice::scoped(conn)
                                .select(sql::<BigInt>(&divide))
                                .load::<i64>(conn)
                                .await,
                        ),
                        FragmentPlace::Selection,
                    ),
                    (
                        refusal(
                            Invoice::scoped(conn)
                                .select((invoices::number, sql::<BigInt>(&divide)))
                                .first::<(String, i64)>(conn)
                                .await,
                        ),
                        FragmentPlace::Selection,
                    ),
                    // the order, each way of giving one
                    (
                        refusal(
                            Invoice::scoped(conn)
                                .order(sql::<BigInt>(&divide))
                                .load::<Invoice>(conn)
                                .await,
                        ),
                        FragmentPlace::Order,
                    ),
                    (
                        refusal(
                            Invoice::scoped(conn)
                                .order_by(invoices::number.asc())
                                .then_order_by(sql::<BigInt>(&divide).desc())
                                .load::<Invoice>(conn)
                                .await,
                        ),
                        FragmentPlace::Order,
                    ),
                ];
                // the refusal stays with the query through later narrowing
                refusals.push((
                    refusal(
                        Invoice::scoped(conn)
                            .order_by(sql::<BigInt>(&divide))
                            .filter(invoices::amount_cents.gt(0))
                            .limit(1)
                            .load::<Invoice>(conn)
                            .await,
                    ),
                    FragmentPlace::Order,
                ));
                // nothing was sent: the transaction is not aborted
                let still: i64 = Invoice::scoped(conn).count().get_result(conn).await?;
                assert_eq!(still, 3);
                Ok::<_, DbError>(refusals)
            })
            .await
            .expect("the transaction survives every refusal");
    assert_eq!(refusals.len(), 12);
    for (refused, place) in refusals {
        assert_refused(refused, place);
    }
    // `db.query` (one round trip) refuses it too, and its connection stays usable
    let refused =
        w.t.db
            .query(&ctx(w.acme), |conn| {
                Invoice::scoped(conn)
                    .filter(sql::<Bool>(&injected))
                    .load::<Invoice>(conn)
            })
            .await;
    match refused {
        Err(DbError::Query(e)) => assert_refused(refusal::<()>(Err(e)), FragmentPlace::Filter),
        other => panic!("expected a refusal, got {other:?}"),
    }
    let n: i64 =
        w.t.db
            .query(&ctx(w.acme), |conn| {
                Invoice::scoped(conn).count().get_result(conn)
            })
            .await
            .expect("the connection is usable after a refusal");
    assert_eq!(n, 3);
}

/// Updates, deletes and upserts with a run-time fragment in a value or in the filter fail before
/// they are sent: no row of either tenant changes.
#[allow(
    clippy::disallowed_methods,
    reason = "the attack under test: SQL text built at run time with `diesel::dsl::sql`"
)]
async fn runtime_fragments_in_writes_are_refused_and_change_nothing(route: Route) {
    use diesel::dsl::sql;
    let w = world(route, 2).await;
    let mut admin = w.t.admin().await;
    let snapshot = "SELECT count(*) AS n FROM invoices \
                    WHERE status = 'draft' AND number LIKE 'INV-_' AND amount_cents % 100 = 0";
    assert_eq!(common::count(&mut admin, snapshot).await, 6);
    let everything = format!("number = '{ATTACK}'");
    let copied =
        format!("(SELECT string_agg(number, ',') FROM invoices WHERE number <> '{ATTACK}')");
    let refusals = w
        .t
        .db
        .tx(&ctx(w.acme), async |conn| {
            let refusals = vec![
                (
                    refusal(
                        diesel::update(Invoice::scoped(conn).filter(invoices::number.eq("INV-1")))
                            .set(invoices::number.to(sql::<Text>(&copied)))
                            .execute(conn)
                            .await,
                    ),
                    FragmentPlace::UpdateValue,
                ),
                (
                    refusal(
                        diesel::update(Invoice::scoped(conn).filter(invoices::number.eq("INV-1")))
                            .set((
                                invoices::status.to("sent"),
                                invoices::amount_cents
                                    .to(sql::<BigInt>(&format!("amount_cents / {ZERO}"))),
                            ))
                            .get_result::<Invoice>(conn)
                            .await,
                    ),
                    FragmentPlace::UpdateValue,
                ),
                (
                    refusal(
                        diesel::update(Invoice::scoped(conn).filter(sql::<Bool>(&everything)))
                            .set(invoices::status.to("void"))
                            .execute(conn)
                            .await,
                    ),
                    FragmentPlace::Filter,
                ),
                (
                    refusal(
                        diesel::delete(Invoice::scoped(conn).filter(sql::<Bool>(&everything)))
                            .execute(conn)
                            .await,
                    ),
                    FragmentPlace::Filter,
                ),
                (
                    refusal(
                        Invoice::insert(
                            conn,
                            NewInvoice {
                                project_id: Uuid::nil(),
                                number: "INV-1".into(),
                                amount_cents: 1,
                                currency: "EUR".into(),
                                status: "draft".into(),
                            },
                        )
                        .on_conflict((invoices::tenant_id, invoices::number))
                        .do_update()
                        .set(invoices::number.to(sql::<Text>(&copied)))
                        .execute(conn)
                        .await,
                    ),
                    FragmentPlace::UpdateValue,
                ),
            ];
            let still: i64 = Invoice::scoped(conn).count().get_result(conn).await?;
            assert_eq!(still, 3, "the transaction is not aborted");
            Ok::<_, DbError>(refusals)
        })
        .await
        .expect("the transaction survives every refusal");
    assert_eq!(refusals.len(), 5);
    for (refused, place) in refusals {
        assert_refused(refused, place);
    }
    assert_eq!(
        common::count(&mut admin, snapshot).await,
        6,
        "no invoice of either tenant changed"
    );
}

/// `tenantry::sql!` literals run in a filter (alone, inside `.eq(..)` with a bound value, in a
/// boxed query), a selection, an order and an update's value, and stay inside the tenant.
async fn literal_fragments_run_in_every_place(route: Route) {
    let w = world(route, 2).await;
    let status = "DRAFT".to_owned();
    let (odd, lowered, upper, ordered, boxed, updated, after) = w
        .t
        .db
        .tx(&ctx(w.globex), async |conn| {
            let odd: Vec<i64> = Invoice::scoped(conn)
                .filter(tenantry::sql!("amount_cents % 200 = 100"))
                .select(invoices::amount_cents)
                .order(invoices::amount_cents.asc())
                .load(conn)
                .await?;
            let lowered: i64 = Invoice::scoped(conn)
                .filter(tenantry::sql!(Text, "upper(status)").eq(&status))
                .count()
                .get_result(conn)
                .await?;
            let upper: Vec<String> = Invoice::scoped(conn)
                .select(tenantry::sql!(Text, "lower(number)"))
                .order(invoices::number.asc())
                .load(conn)
                .await?;
            let ordered: Vec<String> = Invoice::scoped(conn)
                .select(invoices::number)
                .order(tenantry::sql!(BigInt, "amount_cents % 1200").asc())
                .then_order_by(tenantry::sql!(Text, "number").desc())
                .load(conn)
                .await?;
            let boxed: Vec<String> = Invoice::scoped(conn)
                .select(invoices::number)
                .into_boxed()
                .filter(tenantry::sql!("amount_cents > 1150"))
                .order(invoices::number.asc())
                .load(conn)
                .await?;
            let updated =
                diesel::update(Invoice::scoped(conn).filter(tenantry::sql!("number = 'INV-2'")))
                    .set(invoices::number.to(tenantry::sql!(Text, "lower(number) || '-b'")))
                    .execute(conn)
                    .await?;
            let after: Vec<String> = Invoice::scoped(conn)
                .select(invoices::number)
                .order(invoices::amount_cents.asc())
                .load(conn)
                .await?;
            Ok::<_, DbError>((odd, lowered, upper, ordered, boxed, updated, after))
        })
        .await
        .expect("literal fragments run");
    assert_eq!(odd, vec![1100, 1300], "globex's only");
    assert_eq!(lowered, 3);
    assert_eq!(upper, vec!["inv-1", "inv-2", "inv-3"]);
    // 1100 % 1200 = 1100, 1200 % 1200 = 0, 1300 % 1200 = 100
    assert_eq!(ordered, vec!["INV-2", "INV-3", "INV-1"]);
    assert_eq!(boxed, vec!["INV-2", "INV-3"]);
    assert_eq!(updated, 1, "one row, of globex");
    assert_eq!(after, vec!["INV-1", "inv-2-b", "INV-3"]);
    let mut admin = w.t.admin().await;
    let acme_untouched = format!(
        "SELECT count(*) AS n FROM invoices WHERE tenant_id = '{}' AND number LIKE 'INV-_'",
        w.acme
    );
    assert_eq!(common::count(&mut admin, &acme_untouched).await, 3);
}

fn query_id<T: diesel::query_builder::QueryId>(_: &T) -> Option<std::any::TypeId> {
    T::query_id()
}

/// Two fragments in the same place of the same query have types of their own, so each keeps its
/// own prepared statement on one connection: in one transaction, and through `db.query` on a
/// pool of one connection (which remembers statements by type), each returns its own rows, again
/// and again.
async fn two_literal_fragments_keep_their_own_prepared_statements(route: Route) {
    let w = world(route, 1).await;
    let counts =
        w.t.db
            .tx(&ctx(w.acme), async |conn| {
                let mut counts = Vec::new();
                for _ in 0..3 {
                    for which in [true, false] {
                        let n: i64 = if which {
                            Invoice::scoped(conn)
                                .filter(tenantry::sql!("amount_cents > 150"))
                                .count()
                                .get_result(conn)
                                .await?
                        } else {
                            Invoice::scoped(conn)
                                .filter(tenantry::sql!("amount_cents < 150"))
                                .count()
                                .get_result(conn)
                                .await?
                        };
                        counts.push(n);
                    }
                }
                Ok::<_, DbError>(counts)
            })
            .await
            .unwrap();
    assert_eq!(counts, vec![2, 1, 2, 1, 2, 1]);
    let mut counts = Vec::new();
    for _ in 0..3 {
        counts.push(
            w.t.db
                .query(&ctx(w.acme), |conn| {
                    Invoice::scoped(conn)
                        .filter(tenantry::sql!("amount_cents > 150"))
                        .count()
                        .get_result::<i64>(conn)
                })
                .await
                .unwrap(),
        );
        counts.push(
            w.t.db
                .query(&ctx(w.acme), |conn| {
                    Invoice::scoped(conn)
                        .filter(tenantry::sql!("amount_cents < 150"))
                        .count()
                        .get_result::<i64>(conn)
                })
                .await
                .unwrap(),
        );
    }
    assert_eq!(counts, vec![2, 1, 2, 1, 2, 1]);
    // what the statement caches key on
    let above = tenantry::sql!("amount_cents > 150");
    let below = tenantry::sql!("amount_cents < 150");
    let (a, b) = (query_id(&above), query_id(&below));
    assert!(a.is_some() && b.is_some(), "static query ids");
    assert_ne!(a, b, "one type per call site");
}

/// What has no static query id but holds no run-time text is not refused: `eq_any`/`ne_all` over
/// a list, scoped subqueries of boxed queries, and a boxed scoped subquery as an update's value.
async fn safe_forms_without_a_static_query_id_still_run(route: Route) {
    let w = world(route, 2).await;
    let wanted = vec!["INV-1".to_owned(), "INV-3".to_owned()];
    let (listed, excluded, in_boxed, exists_boxed, updated, numbers) =
        w.t.db
            .tx(&ctx(w.acme), async |conn| {
                let listed: Vec<String> = Invoice::scoped(conn)
                    .select(invoices::number)
                    .filter(invoices::number.eq_any(&wanted))
                    .filter(invoices::status.eq_any(["draft", "sent"]))
                    .order(invoices::number.asc())
                    .load(conn)
                    .await?;
                let excluded: i64 = Invoice::scoped(conn)
                    .filter(invoices::amount_cents.ne_all(vec![100_i64, 200]))
                    .count()
                    .get_result(conn)
                    .await?;
                let mine = Project::scoped(conn)
                    .select(projects::id)
                    .into_boxed()
                    .subquery();
                let in_boxed: i64 = Invoice::scoped(conn)
                    .filter(invoices::project_id.eq_any(mine))
                    .count()
                    .get_result(conn)
                    .await?;
                let named = Project::scoped(conn)
                    .into_boxed()
                    .filter(projects::name.eq("p1000"))
                    .exists();
                let exists_boxed: i64 = Invoice::scoped(conn)
                    .filter(named)
                    .count()
                    .get_result(conn)
                    .await?;
                let name = Project::scoped(conn)
                    .select(projects::name)
                    .into_boxed()
                    .single_value()
                    .assume_not_null();
                let updated =
                    diesel::update(Invoice::scoped(conn).filter(invoices::number.eq("INV-2")))
                        .set(invoices::number.to(name))
                        .execute(conn)
                        .await?;
                let numbers: Vec<String> = Invoice::scoped(conn)
                    .select(invoices::number)
                    .order(invoices::number.asc())
                    .load(conn)
                    .await?;
                Ok::<_, DbError>((listed, excluded, in_boxed, exists_boxed, updated, numbers))
            })
            .await
            .expect("the safe forms run");
    assert_eq!(listed, vec!["INV-1", "INV-3"]);
    assert_eq!(excluded, 1);
    assert_eq!(in_boxed, 3);
    assert_eq!(exists_boxed, 0, "globex's project is not acme's");
    assert_eq!(updated, 1);
    assert_eq!(numbers, vec!["INV-1", "INV-3", "p0"]);
}

fn has_static_query_id<T: diesel::query_builder::QueryId>(_: &T) -> bool {
    T::HAS_STATIC_QUERY_ID
}

/// Why the refusal is made at run time and not by the compiler: at compile time Diesel says the
/// same of a fragment as of `eq_any` over a list and of a boxed query (no static query id), so a
/// build-time check on it would refuse `eq_any(vec)`. Should Diesel give lists a static id, this
/// fails, and a compile-time check becomes possible.
#[test]
#[allow(
    clippy::disallowed_methods,
    reason = "the run-time fragment whose query id is compared"
)]
fn at_compile_time_diesel_tells_a_fragment_from_a_list_by_nothing() {
    let fragment = invoices::number.eq(diesel::dsl::sql::<Text>("'x'"));
    let list = invoices::number.eq_any(vec!["x".to_owned()]);
    let array = invoices::status.eq_any(["draft", "sent"]);
    let boxed = invoices::project_id.eq_any(
        projects::table
            .select(projects::id)
            .into_boxed::<diesel::pg::Pg>(),
    );
    let literal = invoices::number.eq(tenantry::sql!(Text, "'x'"));
    let bound = invoices::number.eq("x");
    assert!(!has_static_query_id(&fragment));
    assert!(!has_static_query_id(&list));
    assert!(!has_static_query_id(&array));
    assert!(!has_static_query_id(&boxed));
    assert!(has_static_query_id(&literal));
    assert!(has_static_query_id(&bound));
}
