#![allow(unused_imports)]
#[path = "../support/schema.rs"]
mod schema;

use std::sync::OnceLock;

use axum::extract::State;
use schema::*;
use tenantry::identity::{AsOwner, Tenantry};
use tenantry::prelude::*;
use tenantry::{no_tenant_scope, DbError};

// The Owner's extractor, kept by the route the Owner calls...
static OWNER: OnceLock<AsOwner> = OnceLock::new();

async fn admin(owner: AsOwner) -> &'static str {
    let _ = OWNER.set(owner);
    "ok"
}

// ...and used by a route with no authentication at all.
async fn open(State(t): State<Tenantry>) -> String {
    let proof = OWNER.get().expect("an Owner called /admin").proof();
    let n = t.db.bypass(no_tenant_scope!(&proof, "count"), async |conn| {
        Ok::<_, DbError>(conn.get_result::<i64, _>(invoices::table.count()).await?)
    });
    format!("{:?}", n.await)
}

fn assert_extractor<T: axum::extract::FromRequestParts<Tenantry>>() {}

fn main() {
    assert_extractor::<AsOwner>();
    let _ = axum::Router::<Tenantry>::new()
        .route("/admin", axum::routing::get(admin))
        .route("/open", axum::routing::get(open));
}
