#![allow(unused_imports)]
#[path = "../support/schema.rs"]
mod schema;

use axum::extract::State;
use schema::*;
use tenantry::identity::{OwnerProof, Proof, Partner, Tenantry};
use tenantry::prelude::*;
use tenantry::{no_tenant_scope, requires_role, DbError};

#[requires_role(ClientViewer)]
async fn touch(ctx: TenantCtx, State(t): State<Tenantry>, id: axum::extract::Path<uuid::Uuid>) -> Result<(), DbError> {
    let id = id.0;
    t.db.tx(&ctx, async |conn| {
        Project::insert(conn, NewProject { name: "x".into() }).execute(conn).await?;
        diesel::update(Invoice::scoped(conn).filter(invoices::id.eq(id)))
            .set(invoices::status.to("void"))
            .execute(conn)
            .await?;
        diesel::delete(Invoice::scoped(conn).filter(invoices::id.eq(id))).execute(conn).await?;
        Ok(())
    })
    .await
}

fn main() {}
