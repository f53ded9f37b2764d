#![allow(unused_imports)]
#[path = "../support/schema.rs"]
mod schema;

use schema::*;
use tenantry::prelude::*;
use tenantry::DbError;

// A viewer's handler asks for background work in its tenant: a write, refused like any other.
async fn handler(db: &Db, ctx: &TenantCtx<'_, ReadOnly>) -> Result<uuid::Uuid, DbError> {
    db.tx(ctx, async |conn| conn.enqueue("export", &serde_json::json!({})).await)
        .await
}

fn main() {}
