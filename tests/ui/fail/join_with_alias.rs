#![allow(unused_imports)]
#[path = "../support/schema.rs"]
mod schema;

use schema::*;
use tenantry::prelude::*;

// An alias of a tenant table joins with an ON clause tenantry cannot scope.
fn join(conn: &TenantConn<'_>) {
    let other = diesel::alias!(projects as other_projects);
    let _ = Invoice::scoped(conn).inner_join(other);
}

fn main() {}
