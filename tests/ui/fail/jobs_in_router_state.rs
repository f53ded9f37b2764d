#![allow(unused_imports)]
#[path = "../support/schema.rs"]
mod schema;

use schema::*;
use tenantry::prelude::*;
use tenantry::DbError;

use std::sync::Arc;
use axum::extract::State;
use tenantry::identity::Tenantry;
use tenantry::{requires_role, Jobs};

// Sharing the job capability with request handlers through the router's state.
#[derive(Clone)]
struct AppState {
    tenantry: Tenantry,
    jobs: Arc<Jobs>,
}

impl axum::extract::FromRef<AppState> for Tenantry {
    fn from_ref(s: &AppState) -> Tenantry {
        s.tenantry.clone()
    }
}

#[requires_role(ClientViewer)]
async fn list(ctx: TenantCtx, State(app): State<AppState>) -> &'static str {
    let _ = (&ctx, &app.jobs);
    "ok"
}

fn router(state: AppState) -> axum::Router {
    axum::Router::new().route("/", axum::routing::get(list)).with_state(state)
}

fn main() {}
