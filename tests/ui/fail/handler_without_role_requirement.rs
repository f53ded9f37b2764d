#![allow(unused_imports)]
#[path = "../support/schema.rs"]
mod schema;

use axum::extract::State;
use schema::*;
use tenantry::identity::{OwnerProof, Proof, Partner, Tenantry};
use tenantry::prelude::*;
use tenantry::{no_tenant_scope, requires_role, DbError};

async fn list(ctx: TenantCtx<'_>, State(t): State<Tenantry>) -> Result<(), DbError> {
    t.db.tx(&ctx, async |conn| {
        Invoice::scoped(conn).load::<Invoice>(conn).await?;
        Ok(())
    })
    .await
}

fn assert_extractor<T: axum::extract::FromRequestParts<Tenantry>>() {}

fn main() {
    // What axum checks for each handler argument:
    assert_extractor::<TenantCtx<'static>>();
    let _ = axum::Router::<Tenantry>::new().route("/invoices", axum::routing::get(list));
}
