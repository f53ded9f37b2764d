#![allow(unused_imports)]
#[path = "../support/schema.rs"]
mod schema;

use schema::*;
use tenantry::prelude::*;
use tenantry::DbError;

async fn handler(db: &Db, ctx: &TenantCtx<'_, ReadOnly>, project: uuid::Uuid) -> Result<usize, DbError> {
    db.tx(ctx, async |conn| {
        let new = NewProject { name: "x".into() };
        let _ = project;
        Ok(Project::insert(conn, new).execute(conn).await?)
    })
    .await
}

fn main() {}
