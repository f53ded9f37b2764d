#![allow(unused_imports)]
#[path = "../support/schema.rs"]
mod schema;

use schema::*;
use tenantry::prelude::*;
use tenantry::DbError;

// A query built in one tenant's transaction, kept to run elsewhere.
async fn keep(db: &Db, ctx: &TenantCtx<'_>) -> Result<(), DbError> {
    let _query = db.tx(ctx, async |conn| Ok::<_, DbError>(Invoice::scoped(conn).filter(invoices::status.eq("paid")))).await?;
    Ok(())
}

fn main() {}
