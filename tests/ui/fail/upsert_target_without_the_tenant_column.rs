#![allow(unused_imports)]
#[path = "../support/schema.rs"]
mod schema;

use schema::*;
use tenantry::prelude::*;
use tenantry::DbError;

// `number` alone is unique across tenants here: the conflicting row could be another tenant's.
async fn upsert(db: &Db, ctx: &TenantCtx<'_>, new: NewProject) -> Result<usize, DbError> {
    db.tx(ctx, async |conn| {
        Ok(Project::insert(conn, new)
            .on_conflict(projects::name)
            .do_update()
            .set(projects::name.to("renamed"))
            .execute(conn)
            .await?)
    })
    .await
}

fn main() {}
