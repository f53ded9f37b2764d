//! Generated isolation checks (`tenantry::testing::assert_isolated!`) for each of the example's
//! tenant tables: every scoped form from one tenant sees and touches its own rows only, the app
//! role sees nothing without a tenant, and row-level security is enabled and forced.

use tenantry::prelude::*;
use tenantry::testing::{assert_isolated, TestDb};
use tenantry::DbError;
use tenantry_example::models::{Invoice, NewInvoice, NewProject, Project, MIGRATIONS};
use tenantry_example::schema::{invoices, projects};
use uuid::Uuid;

async fn new_project(conn: &mut TenantConn<'_>) -> Result<Project, DbError> {
    let name = format!("project {}", Uuid::new_v4());
    Ok(Project::insert(conn, NewProject { name })
        .get_result(conn)
        .await?)
}

#[tenantry::test(migrations = MIGRATIONS)]
async fn projects_are_isolated(t: TestDb) {
    assert_isolated!(t, Project, key: projects::id => Uuid, rows: async |conn| {
        for _ in 0..2 {
            new_project(conn).await?;
        }
        Ok(())
    });
}

// The README's "Testing your app", as written there.
#[rustfmt::skip]
#[tenantry::test(migrations = MIGRATIONS)]
async fn invoices_are_isolated(t: TestDb) {
    assert_isolated!(t, Invoice, key: invoices::id => Uuid, joins: [projects::table],
        rows: async |conn| seed::project_with_invoices(conn).await);
}

mod seed {
    use super::*;

    /// A project of the transaction's tenant with three invoices.
    pub(crate) async fn project_with_invoices(conn: &mut TenantConn<'_>) -> Result<(), DbError> {
        let project = new_project(conn).await?;
        let rows = (1..=3).map(|i| NewInvoice {
            project_id: project.id,
            number: format!("INV-{i}"),
            amount_cents: 100 * i,
            currency: "EUR".into(),
            status: "draft".into(),
        });
        Invoice::insert_many(conn, rows).execute(conn).await?;
        Ok(())
    }
}
