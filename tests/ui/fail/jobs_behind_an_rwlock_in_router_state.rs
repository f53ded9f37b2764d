#![allow(unused_imports)]
#[path = "../support/schema.rs"]
mod schema;

use std::sync::{Arc, RwLock};

use axum::extract::{FromRef, State};
use schema::*;
use tenantry::identity::Tenantry;
use tenantry::prelude::*;
use tenantry::{requires_role, Jobs};

// What rustc suggested for `Arc<Jobs>`: a lock around it.
#[derive(Clone)]
struct AppState {
    tenantry: Tenantry,
    jobs: Arc<RwLock<Jobs>>,
}

impl FromRef<AppState> for Tenantry {
    fn from_ref(s: &AppState) -> Tenantry {
        s.tenantry.clone()
    }
}

fn router(state: AppState) -> axum::Router {
    axum::Router::new().with_state(state)
}

fn main() {}
