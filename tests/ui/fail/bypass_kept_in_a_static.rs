#![allow(unused_imports)]
#[path = "../support/schema.rs"]
mod schema;

use std::sync::Mutex;

use axum::extract::State;
use schema::*;
use tenantry::identity::{OwnerProof, Tenantry};
use tenantry::prelude::*;
use tenantry::{no_tenant_scope, requires_role, AuditedBypass, DbError};

// An opened bypass, kept for later.
static OPEN: Mutex<Option<AuditedBypass<'static>>> = Mutex::new(None);

#[requires_role(Owner)]
async fn open(owner: OwnerProof, State(_t): State<Tenantry>) -> &'static str {
    *OPEN.lock().unwrap() = Some(no_tenant_scope!(&owner, "later"));
    "ok"
}

fn main() {}
