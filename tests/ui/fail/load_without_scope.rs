#![allow(unused_imports)]
#[path = "../support/schema.rs"]
mod schema;

use schema::*;
use tenantry::prelude::*;
use tenantry::DbError;

async fn handler(db: &Db, ctx: &TenantCtx<'_>) -> Result<Vec<Invoice>, DbError> {
    db.tx(ctx, async |conn| {
        // forgot the scope
        Ok(invoices::table.load::<Invoice>(conn).await?)
    })
    .await
}

fn main() {}
