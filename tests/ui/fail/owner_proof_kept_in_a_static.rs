#![allow(unused_imports)]
#[path = "../support/schema.rs"]
mod schema;

use schema::*;
use tenantry::prelude::*;
use tenantry::DbError;

use std::sync::OnceLock;
use axum::extract::State;
use tenantry::identity::{OwnerProof, Tenantry};
use tenantry::requires_role;

// An Owner's proof kept for later requests (of anyone).
static OWNER: OnceLock<OwnerProof<'static>> = OnceLock::new();

#[requires_role(Owner)]
async fn keep(owner: OwnerProof, State(_t): State<Tenantry>) -> &'static str {
    let _ = OWNER.set(owner);
    "ok"
}

fn main() {}
