#![allow(unused_imports)]
#[path = "../support/schema.rs"]
mod schema;

use axum::extract::State;
use schema::*;
use tenantry::identity::Tenantry;
use tenantry::prelude::*;
use tenantry::{requires_role, DbError};

type Ctx<'r> = TenantCtx<'r>;

#[requires_role(Partner)]
async fn list(ctx: Ctx<'_>, State(t): State<Tenantry>) -> Result<(), DbError> {
    t.db.tx(&ctx, async |conn| {
        Invoice::scoped(conn).load::<Invoice>(conn).await?;
        Ok(())
    })
    .await
}

fn main() {}
