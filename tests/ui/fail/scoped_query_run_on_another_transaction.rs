#![allow(unused_imports)]
#[path = "../support/schema.rs"]
mod schema;

use schema::*;
use tenantry::prelude::*;
use tenantry::DbError;

// A query of tenant A's transaction run on tenant B's connection.
async fn mix(db: &Db, a: &TenantCtx<'_>, b: &TenantCtx<'_>) -> Result<Vec<Invoice>, DbError> {
    db.tx(a, async |conn_a| {
        let of_a = Invoice::scoped(conn_a);
        db.tx(b, async |conn_b| Ok::<_, DbError>(of_a.load(conn_b).await?)).await
    })
    .await
}

fn main() {}
