#![allow(unused_imports)]
#[path = "../support/schema.rs"]
mod schema;

use schema::*;
use tenantry::prelude::*;
use tenantry::DbError;

// Each currency with the number of an invoice in it: of any tenant.
async fn sample(db: &Db, ctx: &TenantCtx<'_>) -> Result<Vec<(String, Option<String>)>, DbError> {
    db.tx(ctx, async |conn| {
        Ok(currencies::table
            .select((
                currencies::code,
                invoices::table
                    .filter(invoices::currency.eq(currencies::code))
                    .select(invoices::number)
                    .single_value(),
            ))
            .load(conn)
            .await?)
    })
    .await
}

fn main() {}
