#![allow(unused_imports)]
#[path = "../support/schema.rs"]
mod schema;

use schema::*;
use tenantry::prelude::*;
use tenantry::DbError;

async fn handler(db: &Db, ctx: &TenantCtx<'_>) -> Result<Vec<Invoice>, DbError> {
    let tenant = ctx.tenant_id();
    db.tx(ctx, async |conn| {
        Ok(invoices::table
            .filter(invoices::tenant_id.eq(tenant))
            .load::<Invoice>(conn)
            .await?)
    })
    .await
}

fn main() {}
