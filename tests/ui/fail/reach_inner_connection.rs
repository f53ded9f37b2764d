#![allow(unused_imports)]
#[path = "../support/schema.rs"]
mod schema;

use schema::*;
use tenantry::prelude::*;
use tenantry::DbError;

async fn handler(db: &Db, ctx: &TenantCtx<'_>) -> Result<(), DbError> {
    db.tx(ctx, async |conn| {
        let _raw: &mut diesel_async::AsyncPgConnection = &mut *conn;
        Ok(())
    })
    .await
}

fn main() {}
