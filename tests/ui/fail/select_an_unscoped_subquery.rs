#![allow(unused_imports)]
#[path = "../support/schema.rs"]
mod schema;

use schema::*;
use tenantry::prelude::*;
use tenantry::DbError;

// A selection that reads every tenant's projects beside this tenant's invoices.
async fn with_any_project(db: &Db, ctx: &TenantCtx<'_>) -> Result<Vec<(String, Option<String>)>, DbError> {
    db.tx(ctx, async |conn| {
        let any_name = projects::table.select(projects::name).single_value();
        Ok(Invoice::scoped(conn).select((invoices::number, any_name)).load(conn).await?)
    })
    .await
}

fn main() {}
