#![allow(unused_imports)]
#[path = "../support/schema.rs"]
mod schema;

use schema::*;
use tenantry::prelude::*;
use tenantry::DbError;

struct AllInvoices;

impl<'tx> tenantry::bounds::TenantQuery<'tx, tenantry::ReadWrite> for AllInvoices {
    type Inner = invoices::table;
    fn into_inner(self) -> invoices::table {
        invoices::table
    }
}

fn main() {}
