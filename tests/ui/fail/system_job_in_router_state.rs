#![allow(unused_imports)]
#[path = "../support/schema.rs"]
mod schema;

use schema::*;
use tenantry::prelude::*;
use tenantry::DbError;

use axum::extract::State;
use tenantry::identity::Tenantry;
use tenantry::{Jobs, SystemJob};

// A job named in `main` and kept for the handlers.
#[derive(Clone)]
struct AppState {
    tenantry: Tenantry,
    job: std::sync::Arc<SystemJob<'static>>,
}

fn state(tenantry: Tenantry, jobs: &Jobs) -> AppState {
    AppState { tenantry, job: std::sync::Arc::new(jobs.job("report")) }
}

fn main() {}
