#![allow(unused_imports)]
#[path = "../support/schema.rs"]
mod schema;

use schema::*;
use tenantry::prelude::*;
use tenantry::DbError;

fn open(jobs: &tenantry::Jobs) {
    let job = jobs.job("report");
    let _bypass = tenantry::no_tenant_scope!(&job, "  ");
}

fn main() {}
