#![allow(unused_imports)]
#[path = "../support/schema.rs"]
mod schema;

use schema::*;
use tenantry::prelude::*;
use tenantry::DbError;

fn widen(ctx: &TenantCtx<'_>) {
    let _ = Invoice::scoped(conn)
        .filter(invoices::status.eq("draft"))
        .or_filter(invoices::status.eq("paid"));
}

fn main() {}
