//! The list's pages come from one index scan: `GET /api/invoices` (newest first, with or without
//! a status) needs no sort in PostgreSQL's generic plan (the one a prepared statement settles on,
//! with the tenant and the limit as parameters), so a page costs its rows, not the tenant's.

#![allow(
    clippy::disallowed_methods,
    reason = "the superuser reads plans, outside any tenant"
)]

use diesel::sql_types::Text;
use diesel::QueryableByName;
use diesel_async::{RunQueryDsl, SimpleAsyncConnection};
use tenantry::testing::TestDb;
use tenantry_example::models::MIGRATIONS;

/// The columns the route selects (an `Invoice`): not all in the index, as in the route.
const COLUMNS: &str =
    "id, tenant_id, project_id, number, amount_cents, currency, status, created_at";

#[derive(QueryableByName)]
struct PlanLine {
    #[diesel(sql_type = Text)]
    #[diesel(column_name = "QUERY PLAN")]
    line: String,
}

#[tenantry::test(migrations = MIGRATIONS)]
async fn a_page_of_the_newest_invoices_is_one_index_scan_without_a_sort(t: TestDb) {
    let mut c = t.admin().await;
    // A tenant with enough invoices that the planner's choice matters, then its statistics.
    c.batch_execute(&format!(
        "INSERT INTO projects (tenant_id, name) VALUES ('{acme}', 'P'); \
         INSERT INTO invoices (tenant_id, project_id, number, amount_cents, currency, status, created_at) \
         SELECT '{acme}', p.id, 'INV-' || g, 100, 'EUR', (ARRAY['draft','sent','paid','void'])[1 + g % 4], \
                now() - make_interval(mins => g) \
         FROM generate_series(1, 5000) g, (SELECT id FROM projects) p; \
         ANALYZE invoices",
        acme = t.acme.id
    ))
    .await
    .unwrap();
    // The route's two statements, in the order and shape Diesel sends them.
    c.batch_execute(&format!(
        "SET plan_cache_mode = force_generic_plan; \
         PREPARE newest (uuid, int8) AS SELECT {COLUMNS} FROM invoices WHERE tenant_id = $1 \
         ORDER BY created_at DESC, id DESC LIMIT $2; \
         PREPARE newest_by_status (uuid, text, int8) AS SELECT {COLUMNS} FROM invoices \
         WHERE tenant_id = $1 AND status = $2 ORDER BY created_at DESC, id DESC LIMIT $3"
    ))
    .await
    .unwrap();
    for execute in [
        format!("EXPLAIN EXECUTE newest ('{}', 50)", t.acme.id),
        format!(
            "EXPLAIN EXECUTE newest_by_status ('{}', 'sent', 50)",
            t.acme.id
        ),
    ] {
        let plan: Vec<PlanLine> = diesel::sql_query(&execute).load(&mut c).await.unwrap();
        let plan: Vec<&str> = plan.iter().map(|l| l.line.as_str()).collect();
        let text = plan.join("\n");
        assert!(!text.contains("Sort"), "{execute}: the plan sorts\n{text}");
        assert!(
            text.contains("Index Scan using invoices_tenant_"),
            "{execute}: not one index scan\n{text}"
        );
    }
}
