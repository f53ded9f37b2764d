#![allow(unused_imports)]
#[path = "../support/schema.rs"]
mod schema;

use axum::extract::State;
use schema::*;
use tenantry::identity::OwnerProof as AdminProof;
use tenantry::identity::Tenantry;
use tenantry::prelude::*;
use tenantry::{no_tenant_scope, requires_role, DbError};

#[requires_role(Owner)]
async fn count(admin: AdminProof<'_>, State(t): State<Tenantry>) -> Result<String, DbError> {
    t.db.bypass(no_tenant_scope!(&admin, "count"), async |conn| {
        Ok::<_, DbError>(conn.get_result::<i64, _>(invoices::table.count()).await?.to_string())
    })
    .await
}

fn main() {}
