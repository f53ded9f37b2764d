#![allow(unused_imports)]
#[path = "../support/schema.rs"]
mod schema;

use schema::*;
use tenantry::prelude::*;
use tenantry::DbError;

// The projects subquery is not scoped: it would read every tenant's projects.
async fn in_named_projects(db: &Db, ctx: &TenantCtx<'_>) -> Result<Vec<Invoice>, DbError> {
    db.tx(ctx, async |conn| {
        let websites = projects::table.filter(projects::name.eq("Website")).select(projects::id);
        Ok(Invoice::scoped(conn).filter(invoices::project_id.eq_any(websites)).load(conn).await?)
    })
    .await
}

fn main() {}
