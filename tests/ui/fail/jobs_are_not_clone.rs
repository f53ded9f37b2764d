#![allow(unused_imports)]
#[path = "../support/schema.rs"]
mod schema;

use schema::*;
use tenantry::prelude::*;
use tenantry::DbError;

fn share(jobs: &tenantry::Jobs) -> tenantry::Jobs {
    jobs.clone()
}

fn main() {}
