#![allow(unused_imports)]
#[path = "../support/schema.rs"]
mod schema;

use schema::*;
use tenantry::prelude::*;
use tenantry::DbError;

fn forge(id: uuid::Uuid) -> TenantCtx<'static> {
    TenantCtx::new(id)
}

fn main() {}
