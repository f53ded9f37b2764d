#![allow(unused_imports)]
#[path = "../support/schema.rs"]
mod schema;

use schema::*;
use tenantry::prelude::*;
use tenantry::DbError;

async fn handler(db: &Db, ctx: &TenantCtx<'_>) -> Result<Vec<Invoice>, DbError> {
    db.tx(ctx, async |conn| {
        Ok(diesel_async::RunQueryDsl::load(Invoice::scoped(conn), conn).await?)
    })
    .await
}

fn main() {}
