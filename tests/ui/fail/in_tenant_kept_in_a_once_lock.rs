#![allow(unused_imports)]
#[path = "../support/schema.rs"]
mod schema;

use std::sync::OnceLock;

use axum::extract::State;
use schema::*;
use tenantry::identity::{InTenant, Partner, Tenantry};
use tenantry::prelude::*;
use tenantry::DbError;

// The first request's extractor, kept for every later request (of any user).
static FIRST: OnceLock<InTenant<Partner>> = OnceLock::new();

async fn list(request: InTenant<Partner>, State(t): State<Tenantry>) -> &'static str {
    let request = FIRST.get_or_init(|| request);
    let _ = t.db.tx(&request.ctx(), async |conn| {
        Invoice::scoped(conn).load::<Invoice>(conn).await?;
        Ok::<_, DbError>(())
    })
    .await;
    "ok"
}

fn assert_extractor<T: axum::extract::FromRequestParts<Tenantry>>() {}

fn main() {
    // What axum checks for each handler argument:
    assert_extractor::<InTenant<Partner>>();
    let _ = axum::Router::<Tenantry>::new().route("/invoices", axum::routing::get(list));
}
