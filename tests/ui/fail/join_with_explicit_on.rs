#![allow(unused_imports)]
#[path = "../support/schema.rs"]
mod schema;

use schema::*;
use tenantry::prelude::*;
use tenantry::DbError;

fn join(conn: &TenantConn<'_>) {
    let _ = Invoice::scoped(conn).inner_join(projects::table.on(projects::id.eq(invoices::project_id)));
}

fn main() {}
