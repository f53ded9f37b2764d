#![allow(unused_imports)]
#[path = "../support/schema.rs"]
mod schema;

use schema::*;
use tenantry::prelude::*;
use tenantry::DbError;

async fn handler(db: &Db, ctx: &TenantCtx<'_, ReadOnly>) -> Result<usize, DbError> {
    db.tx(ctx, async |conn| Ok(diesel::delete(Invoice::scoped(conn)).execute(conn).await?))
        .await
}

fn main() {}
