#![allow(unused_imports)]
#[path = "../support/schema.rs"]
mod schema;

use axum::extract::State;
use schema::*;
use tenantry::identity::{OwnerProof, Proof, Partner, Tenantry};
use tenantry::prelude::*;
use tenantry::{no_tenant_scope, requires_role, DbError};

#[requires_role(Partner)]
async fn everything(proof: Proof<Partner>, State(t): State<Tenantry>) -> Result<(), DbError> {
    let bypass = no_tenant_scope!(&proof, "partners may not do this");
    t.db.bypass(bypass, async |_conn| Ok::<_, DbError>(())).await
}

fn main() {}
