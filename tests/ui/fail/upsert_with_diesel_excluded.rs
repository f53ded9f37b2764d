#![allow(unused_imports)]
#[path = "../support/schema.rs"]
mod schema;

use schema::*;
use tenantry::prelude::*;
use tenantry::DbError;

// Diesel's `excluded` is not an expression over the updated row that tenantry can see.
async fn upsert(db: &Db, ctx: &TenantCtx<'_>, new: NewInvoice) -> Result<usize, DbError> {
    db.tx(ctx, async |conn| {
        Ok(Invoice::insert(conn, new)
            .on_conflict((invoices::tenant_id, invoices::number))
            .do_update()
            .set(invoices::amount_cents.to(diesel::upsert::excluded(invoices::amount_cents)))
            .execute(conn)
            .await?)
    })
    .await
}

fn main() {}
