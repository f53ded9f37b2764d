#![allow(unused_imports)]
#[path = "../support/schema.rs"]
mod schema;

use schema::*;
use tenantry::prelude::*;
use tenantry::DbError;

// Diesel's `or_filter` called by its trait's path, past the scoped query's own method.
fn widen(conn: &TenantConn<'_>) {
    let q = Invoice::scoped(conn).into_boxed();
    let _ = QueryDsl::or_filter(q, invoices::status.eq("paid"));
}

fn main() {}
