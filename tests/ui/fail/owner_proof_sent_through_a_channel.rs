#![allow(unused_imports)]
#[path = "../support/schema.rs"]
mod schema;

use axum::extract::{FromRef, State};
use schema::*;
use tenantry::identity::{OwnerProof, Tenantry};
use tenantry::prelude::*;
use tenantry::{requires_role, DbError};
use tokio::sync::mpsc::UnboundedSender;

#[derive(Clone)]
struct AppState {
    tenantry: Tenantry,
    owners: UnboundedSender<OwnerProof<'static>>,
}

impl FromRef<AppState> for Tenantry {
    fn from_ref(s: &AppState) -> Tenantry {
        s.tenantry.clone()
    }
}

#[requires_role(Owner)]
async fn delegate(owner: OwnerProof, State(app): State<AppState>) -> &'static str {
    let _ = app.owners.send(owner);
    "ok"
}

fn main() {}
