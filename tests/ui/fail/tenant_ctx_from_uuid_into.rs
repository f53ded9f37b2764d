#![allow(unused_imports)]
#[path = "../support/schema.rs"]
mod schema;

use schema::*;
use tenantry::prelude::*;
use tenantry::DbError;

fn from_path(id: uuid::Uuid) -> TenantCtx<'static> {
    id.into()
}

fn main() {}
