#![allow(unused_imports)]
#[path = "../support/schema.rs"]
mod schema;

use schema::*;
use tenantry::prelude::*;
use tenantry::DbError;

fn ambient() -> TenantCtx<'static> {
    TenantCtx::default()
}

fn main() {}
