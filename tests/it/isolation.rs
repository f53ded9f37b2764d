//! `tenantry::testing::assert_isolated!` on the test schema: it passes on sound tables, and
//! fails, naming the table and what is wrong, when row-level security is weakened.

use crate::common;

use common::schema::{invoices, projects, Invoice, NewInvoice, NewProject, Project, MIGRATIONS};
use diesel_async::SimpleAsyncConnection;
use tenantry::prelude::*;
use tenantry::testing::{assert_isolated, TestDb};
use tenantry::DbError;
use uuid::Uuid;

async fn new_project(conn: &mut TenantConn<'_>) -> Result<Project, DbError> {
    Ok(Project::insert(conn, NewProject { name: "p".into() })
        .get_result(conn)
        .await?)
}

async fn weaken(t: &TestDb, sql: &str) {
    t.admin()
        .await
        .batch_execute(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

#[tenantry::test(migrations = MIGRATIONS)]
async fn invoices_and_projects_are_isolated(t: TestDb) {
    assert_isolated!(t, Project, key: projects::id => Uuid, rows: async |conn| {
        new_project(conn).await?;
        Ok(())
    });
    assert_isolated!(t, Invoice, key: invoices::id => Uuid, joins: [projects::table],
    rows: async |conn| {
        let p = new_project(conn).await?;
        let new = NewInvoice {
            project_id: p.id,
            number: format!("INV-{}", Uuid::new_v4()),
            amount_cents: 1,
            currency: "EUR".into(),
            status: "draft".into(),
        };
        Invoice::insert(conn, new).execute(conn).await?;
        Ok(())
    });
}

#[tenantry::test(migrations = MIGRATIONS)]
#[should_panic(expected = "row-level security is not forced on `projects`")]
async fn a_table_whose_rls_is_not_forced_fails(t: TestDb) {
    weaken(&t, "ALTER TABLE projects NO FORCE ROW LEVEL SECURITY").await;
    assert_isolated!(t, Project, key: projects::id => Uuid, rows: async |conn| {
        new_project(conn).await?;
        Ok(())
    });
}

#[tenantry::test(migrations = MIGRATIONS)]
#[should_panic(expected = "the app role sees 2 rows of `projects` with no tenant set")]
async fn a_policy_that_shows_rows_without_a_tenant_fails(t: TestDb) {
    weaken(
        &t,
        "CREATE POLICY everyone ON projects FOR SELECT USING (true)",
    )
    .await;
    assert_isolated!(t, Project, key: projects::id => Uuid, rows: async |conn| {
        new_project(conn).await?;
        Ok(())
    });
}

#[tenantry::test(migrations = MIGRATIONS)]
#[should_panic(expected = "the rows closure made no `projects` row in acme")]
async fn a_rows_closure_that_inserts_nothing_fails(t: TestDb) {
    assert_isolated!(t, Project, key: projects::id => Uuid, rows: async |_conn| Ok(()));
}
