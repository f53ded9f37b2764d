#![allow(unused_imports)]
#[path = "../support/schema.rs"]
mod schema;

use schema::*;
use tenantry::prelude::*;
use tenantry::DbError;

// A global query is not scoped, so it may not read a tenant table even through a scoped
// subquery: the join from the scoped query says the same thing and stays scoped.
async fn used(db: &Db, ctx: &TenantCtx<'_>) -> Result<Vec<Currency>, DbError> {
    db.tx(ctx, async |conn| {
        let mine = Invoice::scoped(conn).select(invoices::currency).subquery();
        Ok(currencies::table.filter(currencies::code.eq_any(mine)).load(conn).await?)
    })
    .await
}

fn main() {}
