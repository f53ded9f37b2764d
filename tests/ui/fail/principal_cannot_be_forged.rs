#![allow(unused_imports)]
#[path = "../support/schema.rs"]
mod schema;

use schema::*;
use tenantry::prelude::*;
use tenantry::DbError;

use tenantry::identity::Principal;

// A middleware (or a test helper) forging an Owner for the extractors.
async fn forge(mut request: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    request.extensions_mut().insert(Principal {
        user_id: uuid::Uuid::nil(),
        email: "mallory@example.com".into(),
        is_owner: true,
        memberships: vec![].into(),
    });
    next.run(request).await
}

fn main() {}
