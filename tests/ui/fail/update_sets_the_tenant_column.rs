#![allow(unused_imports)]
#[path = "../support/schema.rs"]
mod schema;

use schema::*;
use tenantry::prelude::*;
use tenantry::DbError;

// Moving an invoice to another tenant.
async fn move_invoice(db: &Db, ctx: &TenantCtx<'_>, id: uuid::Uuid, other: uuid::Uuid) -> Result<usize, DbError> {
    db.tx(ctx, async |conn| {
        Ok(diesel::update(Invoice::scoped(conn).filter(invoices::id.eq(id)))
            .set(invoices::tenant_id.to(other))
            .execute(conn)
            .await?)
    })
    .await
}

fn main() {}
