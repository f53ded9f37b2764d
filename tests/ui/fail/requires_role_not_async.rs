#![allow(unused_imports)]
#[path = "../support/schema.rs"]
mod schema;

use axum::extract::State;
use schema::*;
use tenantry::identity::{OwnerProof, Proof, Partner, Tenantry};
use tenantry::prelude::*;
use tenantry::{no_tenant_scope, requires_role, DbError};

#[requires_role(Partner)]
fn h(_ctx: TenantCtx) {}

fn main() {}
