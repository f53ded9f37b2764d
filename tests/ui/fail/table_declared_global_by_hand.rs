#![allow(unused_imports)]
#[path = "../support/schema.rs"]
mod schema;

use schema::*;

diesel::table! {
    notes (id) {
        id -> Int4,
        tenant_id -> Uuid,
    }
}

// Declaring a tenant table global through the public trait, without the attribute.
impl tenantry::bounds::Declared for notes::table {
    type Kind = tenantry::bounds::IsGlobal;
    const DECL: tenantry::TableDecl = tenantry::TableDecl::global("notes");
}

fn main() {}
