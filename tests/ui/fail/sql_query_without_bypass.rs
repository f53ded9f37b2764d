#![allow(unused_imports)]
#[path = "../support/schema.rs"]
mod schema;

use schema::*;
use tenantry::prelude::*;
use tenantry::DbError;

async fn handler(db: &Db, ctx: &TenantCtx<'_>) -> Result<usize, DbError> {
    db.tx(ctx, async |conn| {
        Ok(diesel::sql_query("DELETE FROM invoices").execute(conn).await?)
    })
    .await
}

fn main() {}
