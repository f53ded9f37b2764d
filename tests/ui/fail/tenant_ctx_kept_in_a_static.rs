#![allow(unused_imports)]
#[path = "../support/schema.rs"]
mod schema;

use schema::*;
use tenantry::prelude::*;
use tenantry::DbError;

use std::sync::Mutex;
use axum::extract::State;
use tenantry::identity::Tenantry;
use tenantry::requires_role;

// The ambient-tenant cache: the first request's tenant for every later request.
static LAST: Mutex<Option<TenantCtx<'static>>> = Mutex::new(None);

#[requires_role(Partner)]
async fn remember(ctx: TenantCtx, State(_t): State<Tenantry>) -> &'static str {
    *LAST.lock().unwrap() = Some(ctx);
    "ok"
}

fn main() {}
