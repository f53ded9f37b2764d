//! Role-checked handlers compile and mount on an axum router (so their futures are `Send`).
#![allow(
    dead_code,
    reason = "compiled, never called: these cases prove the forms type-check"
)]

use crate::common::schema::*;
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use tenantry::identity::{OwnerProof, Partner, Principal, Proof, Tenantry};
use tenantry::prelude::*;
use tenantry::{no_tenant_scope, requires_role, DbError};

#[derive(Debug)]
struct ApiError;
impl From<DbError> for ApiError {
    fn from(_: DbError) -> Self {
        ApiError
    }
}
impl axum::response::IntoResponse for ApiError {
    fn into_response(self) -> axum::response::Response {
        axum::http::StatusCode::INTERNAL_SERVER_ERROR.into_response()
    }
}

#[requires_role(ClientViewer)]
async fn list(ctx: TenantCtx, State(t): State<Tenantry>) -> Result<Json<usize>, ApiError> {
    let rows: Vec<Invoice> =
        t.db.tx(&ctx, async |conn| {
            Ok::<_, ApiError>(
                Invoice::scoped(conn)
                    .load(conn)
                    .await
                    .map_err(DbError::from)?,
            )
        })
        .await?;
    Ok(Json(rows.len()))
}

#[requires_role(Partner)]
async fn create(
    ctx: TenantCtx,
    principal: Principal,
    State(t): State<Tenantry>,
) -> Result<Json<String>, ApiError> {
    let p: Project =
        t.db.tx(&ctx, async |conn| {
            Ok::<_, ApiError>(
                Project::insert(
                    conn,
                    NewProject {
                        name: principal.email().to_owned(),
                    },
                )
                .get_result(conn)
                .await
                .map_err(DbError::from)?,
            )
        })
        .await?;
    Ok(Json(p.name))
}

#[requires_role(Owner)]
async fn count_all(owner: OwnerProof, State(t): State<Tenantry>) -> Result<Json<i64>, ApiError> {
    let bypass = no_tenant_scope!(&owner, "count invoices across tenants");
    let n =
        t.db.bypass(bypass, async |conn| {
            Ok::<_, ApiError>(
                conn.get_result(invoices::table.count())
                    .await
                    .map_err(DbError::from)?,
            )
        })
        .await?;
    Ok(Json(n))
}

/// A helper of handlers takes the context by reference (`TenantCtx<'_>`: it is the request's).
async fn count_projects(t: &Tenantry, ctx: &TenantCtx<'_, ReadOnly>) -> Result<i64, ApiError> {
    Ok(t.db
        .tx(ctx, async |conn| {
            Ok::<_, DbError>(Project::scoped(conn).count().get_result(conn).await?)
        })
        .await?)
}

/// A writing handler reads through a read-only view of its own context.
#[requires_role(Partner)]
async fn summary(
    ctx: TenantCtx,
    proof: Proof<Partner>,
    State(t): State<Tenantry>,
) -> Result<Json<(i64, String)>, ApiError> {
    let n = count_projects(&t, &ctx.read_only()).await?;
    Ok(Json((n, proof.actor().email().to_owned())))
}

#[allow(dead_code)]
fn router(state: Tenantry) -> Router {
    Router::new()
        .route("/invoices", get(list).post(create))
        .route("/summary", get(summary))
        .route("/admin/count", get(count_all))
        .with_state(state)
}
