#![allow(unused_imports)]
#[path = "../support/schema.rs"]
mod schema;

use schema::*;
use tenantry::prelude::*;
use tenantry::DbError;

// `exists` over an unscoped query of a tenant table.
async fn if_any_project(db: &Db, ctx: &TenantCtx<'_>) -> Result<Vec<Invoice>, DbError> {
    db.tx(ctx, async |conn| {
        let any = diesel::dsl::exists(projects::table.filter(projects::name.eq("Website")));
        Ok(Invoice::scoped(conn).filter(any).load(conn).await?)
    })
    .await
}

fn main() {}
