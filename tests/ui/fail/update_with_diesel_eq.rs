#![allow(unused_imports)]
#[path = "../support/schema.rs"]
mod schema;

use schema::*;
use tenantry::prelude::*;
use tenantry::DbError;

// Diesel's own assignment: tenantry cannot see which column it sets.
async fn void(db: &Db, ctx: &TenantCtx<'_>, id: uuid::Uuid) -> Result<usize, DbError> {
    db.tx(ctx, async |conn| {
        Ok(diesel::update(Invoice::scoped(conn).filter(invoices::id.eq(id)))
            .set(invoices::tenant_id.eq(id))
            .execute(conn)
            .await?)
    })
    .await
}

fn main() {}
