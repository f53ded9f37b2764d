#![allow(unused_imports)]
#[path = "../support/schema.rs"]
mod schema;

use schema::*;
use tenantry::prelude::*;
use tenantry::DbError;

use axum::extract::State;
use tenantry::identity::Tenantry;
use tenantry::requires_role;

// Work that goes on after the response, in the request's tenant.
#[requires_role(Partner)]
async fn later(ctx: TenantCtx, State(t): State<Tenantry>) -> &'static str {
    tokio::spawn(async move {
        let _ = t.db.tx(&ctx, async |conn| Ok::<_, DbError>(Invoice::scoped(conn).count().get_result::<i64>(conn).await?)).await;
    });
    "accepted"
}

fn main() {}
