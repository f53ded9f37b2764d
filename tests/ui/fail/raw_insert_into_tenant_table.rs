#![allow(unused_imports)]
#[path = "../support/schema.rs"]
mod schema;

use schema::*;
use tenantry::prelude::*;
use tenantry::DbError;

async fn handler(db: &Db, ctx: &TenantCtx<'_>, other: uuid::Uuid) -> Result<usize, DbError> {
    db.tx(ctx, async |conn| {
        Ok(diesel::insert_into(invoices::table)
            .values((invoices::tenant_id.eq(other), invoices::number.eq("X-1")))
            .execute(conn)
            .await?)
    })
    .await
}

fn main() {}
