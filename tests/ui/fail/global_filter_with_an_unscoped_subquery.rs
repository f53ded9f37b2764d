#![allow(unused_imports)]
#[path = "../support/schema.rs"]
mod schema;

use schema::*;
use tenantry::prelude::*;
use tenantry::DbError;

// The currencies some invoices use: read through a subquery over every tenant's invoices.
async fn used(db: &Db, ctx: &TenantCtx<'_>) -> Result<Vec<Currency>, DbError> {
    db.tx(ctx, async |conn| {
        Ok(currencies::table
            .filter(currencies::code.eq_any(invoices::table.select(invoices::currency)))
            .load(conn)
            .await?)
    })
    .await
}

fn main() {}
