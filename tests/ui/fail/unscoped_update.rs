#![allow(unused_imports)]
#[path = "../support/schema.rs"]
mod schema;

use schema::*;
use tenantry::prelude::*;
use tenantry::DbError;

async fn handler(db: &Db, ctx: &TenantCtx<'_>, id: uuid::Uuid) -> Result<usize, DbError> {
    db.tx(ctx, async |conn| {
        Ok(diesel::update(invoices::table.filter(invoices::id.eq(id)))
            .set(invoices::status.to("void"))
            .execute(conn)
            .await?)
    })
    .await
}

fn main() {}
