#![allow(unused_imports)]
#[path = "../support/schema.rs"]
mod schema;

use schema::*;
use tenantry::prelude::*;
use tenantry::DbError;

// A context taken from the request body.
#[derive(serde::Deserialize)]
struct Body {
    ctx: TenantCtx<'static>,
}

fn main() {}
