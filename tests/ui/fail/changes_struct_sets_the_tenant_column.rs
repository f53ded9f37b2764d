#![allow(unused_imports)]
#[path = "../support/schema.rs"]
mod schema;

use schema::*;
use tenantry::prelude::*;
use tenantry::DbError;

// A struct of changes that carries the tenant column.
#[derive(AsChangeset)]
#[diesel(table_name = invoices)]
struct InvoiceChanges {
    status: Option<String>,
    tenant_id: Option<uuid::Uuid>,
}

fn main() {}
