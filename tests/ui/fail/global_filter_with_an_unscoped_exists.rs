#![allow(unused_imports)]
#[path = "../support/schema.rs"]
mod schema;

use schema::*;
use tenantry::prelude::*;
use tenantry::DbError;

// Currencies that some invoice (of any tenant) uses.
async fn used(db: &Db, ctx: &TenantCtx<'_>) -> Result<Vec<Currency>, DbError> {
    db.tx(ctx, async |conn| {
        Ok(currencies::table
            .filter(diesel::dsl::exists(
                invoices::table.filter(invoices::currency.eq(currencies::code)),
            ))
            .load(conn)
            .await?)
    })
    .await
}

fn main() {}
