#![allow(unused_imports)]
#[path = "../support/schema.rs"]
mod schema;

use schema::*;
use tenantry::prelude::*;
use tenantry::DbError;

fn widen(conn: &TenantConn<'_>) {
    let _ = Invoice::scoped(conn)
        .into_boxed()
        .filter(invoices::status.eq("draft"))
        .or_filter(invoices::status.eq("paid"));
}

fn main() {}
