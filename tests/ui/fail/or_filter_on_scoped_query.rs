#![allow(unused_imports)]
#[path = "../support/schema.rs"]
mod schema;

use schema::*;
use tenantry::prelude::*;
use tenantry::DbError;

fn widen(ctx: &TenantCtx) {
    let _ = Invoice::scoped(ctx)
        .filter(invoices::status.eq("draft"))
        .or_filter(invoices::status.eq("paid"));
}

fn main() {}
