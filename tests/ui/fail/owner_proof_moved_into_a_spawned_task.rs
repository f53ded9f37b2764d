#![allow(unused_imports)]
#[path = "../support/schema.rs"]
mod schema;

use axum::extract::State;
use schema::*;
use tenantry::identity::{OwnerProof, Tenantry};
use tenantry::prelude::*;
use tenantry::{no_tenant_scope, requires_role, DbError};

// A cross-tenant report that goes on after the response, in the Owner's name.
#[requires_role(Owner)]
async fn report(owner: OwnerProof, State(t): State<Tenantry>) -> &'static str {
    tokio::spawn(async move {
        let _ = t
            .db
            .bypass(no_tenant_scope!(&owner, "nightly report"), async |conn| {
                Ok::<_, DbError>(conn.get_result::<i64, _>(invoices::table.count()).await?)
            })
            .await;
    });
    "accepted"
}

fn main() {}
