#![allow(unused_imports)]
#[path = "../support/schema.rs"]
mod schema;

use axum::extract::{FromRef, State};
use schema::*;
use tenantry::identity::Tenantry;
use tenantry::prelude::*;
use tenantry::{requires_role, DbError};
use tokio::sync::mpsc::UnboundedSender;

// Work handed to a background task through a channel, with the request's context.
#[derive(Clone)]
struct AppState {
    tenantry: Tenantry,
    work: UnboundedSender<TenantCtx<'static>>,
}

impl FromRef<AppState> for Tenantry {
    fn from_ref(s: &AppState) -> Tenantry {
        s.tenantry.clone()
    }
}

#[requires_role(Partner)]
async fn later(ctx: TenantCtx, State(app): State<AppState>) -> &'static str {
    let _ = app.work.send(ctx);
    "accepted"
}

fn main() {}
