#![allow(unused_imports)]
#[path = "../support/schema.rs"]
mod schema;

use axum::extract::State;
use schema::*;
use tenantry::identity::{InTenant, Partner, Tenantry};
use tenantry::prelude::*;
use tenantry::{requires_role, DbError};

// The role checked by the attribute, and its extractor asked for once more to keep it.
#[requires_role(Partner)]
async fn list(ctx: TenantCtx, request: InTenant<Partner>, State(t): State<Tenantry>) -> &'static str {
    let _ = (ctx, request, t);
    "ok"
}

fn main() {}
