#![allow(unused_imports)]
#[path = "../support/schema.rs"]
mod schema;

use schema::*;
use tenantry::prelude::*;
use tenantry::DbError;

// A subquery of one transaction, kept for another's filter.
async fn keep(db: &Db, ctx: &TenantCtx<'_>) -> Result<(), DbError> {
    let _ids = db.tx(ctx, async |conn| Ok::<_, DbError>(Project::scoped(conn).select(projects::id).subquery())).await?;
    Ok(())
}

fn main() {}
