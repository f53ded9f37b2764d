#![allow(unused_imports)]
#[path = "../support/schema.rs"]
mod schema;

// Both preludes in one module: Diesel's `RunQueryDsl` and tenantry's run methods both apply to a
// Diesel table, so `.load` is ambiguous (scoped queries still resolve to tenantry's).
use diesel::prelude::*;
use schema::*;
use tenantry::prelude::*;
use tenantry::{Db, DbError, TenantCtx};

async fn handler(db: &Db, ctx: &TenantCtx<'_>) -> Result<Vec<Currency>, DbError> {
    db.tx(ctx, async |conn| {
        let _: Vec<Invoice> = Invoice::scoped(conn).load(conn).await?;
        Ok(currencies::table.load(conn).await?)
    })
    .await
}

fn main() {}
