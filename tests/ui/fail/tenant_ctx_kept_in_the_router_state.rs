#![allow(unused_imports)]
#[path = "../support/schema.rs"]
mod schema;

use std::sync::{Arc, Mutex};

use axum::extract::{FromRef, State};
use schema::*;
use tenantry::identity::Tenantry;
use tenantry::prelude::*;
use tenantry::{requires_role, DbError};

// A "last context" cache in the router's state.
#[derive(Clone)]
struct AppState {
    tenantry: Tenantry,
    last: Arc<Mutex<Option<TenantCtx<'static>>>>,
}

impl FromRef<AppState> for Tenantry {
    fn from_ref(s: &AppState) -> Tenantry {
        s.tenantry.clone()
    }
}

#[requires_role(Partner)]
async fn remember(ctx: TenantCtx, State(app): State<AppState>) -> &'static str {
    *app.last.lock().unwrap() = Some(ctx);
    "ok"
}

fn main() {}
