#![allow(unused_imports)]
#[path = "../support/schema.rs"]
mod schema;

use schema::*;
use tenantry::prelude::*;
use tenantry::DbError;

async fn insert_once(db: &Db, ctx: &TenantCtx<'_>, new: NewProject) -> Result<usize, DbError> {
    db.tx(ctx, async |conn| Ok(Project::insert(conn, new).on_conflict_do_nothing().execute(conn).await?))
        .await
}

fn main() {}
