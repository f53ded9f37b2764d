#![allow(unused_imports)]
#[path = "../support/schema.rs"]
mod schema;

use std::sync::OnceLock;

use schema::*;
use tenantry::prelude::*;
use tenantry::Jobs;

// The capability as a global, for any handler to reach.
static JOBS: OnceLock<Jobs> = OnceLock::new();

fn main() {}
