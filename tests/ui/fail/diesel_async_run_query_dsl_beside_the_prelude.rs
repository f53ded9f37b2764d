#![allow(unused_imports)]
#[path = "../support/schema.rs"]
mod schema;

// diesel-async's `RunQueryDsl` beside the prelude: scoped queries and inserts resolve to
// tenantry's run methods, but a Diesel query (a global table's) finds both `load`s.
use diesel_async::RunQueryDsl;
use schema::*;
use tenantry::prelude::*;
use tenantry::DbError;

async fn list(db: &Db, ctx: &TenantCtx<'_>) -> Result<Vec<Currency>, DbError> {
    db.tx(ctx, async |conn| {
        let _: Vec<Invoice> = Invoice::scoped(conn).load(conn).await?;
        Ok(currencies::table.load(conn).await?)
    })
    .await
}

fn main() {}
