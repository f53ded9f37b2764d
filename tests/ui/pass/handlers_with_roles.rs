//! Role-checked handlers compile and mount on an axum router (so their futures are `Send`).
#[path = "../support/schema.rs"]
mod schema;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use schema::*;
use tenantry::identity::{OwnerProof, Principal, Tenantry};
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
    let rows: Vec<Invoice> = t.db.tx(&ctx, async |conn| Ok::<_, ApiError>(Invoice::scoped(conn.ctx()).load(conn).await.map_err(DbError::from)?)).await?;
    Ok(Json(rows.len()))
}

#[requires_role(Partner)]
async fn create(ctx: TenantCtx, principal: Principal, State(t): State<Tenantry>) -> Result<Json<String>, ApiError> {
    let p: Project = t
        .db
        .tx(&ctx, async |conn| {
            Ok::<_, ApiError>(Project::insert(conn.ctx(), NewProject { name: principal.email.clone() }).get_result(conn).await.map_err(DbError::from)?)
        })
        .await?;
    Ok(Json(p.name))
}

#[requires_role(Owner)]
async fn count_all(owner: OwnerProof, State(t): State<Tenantry>) -> Result<Json<i64>, ApiError> {
    let bypass = no_tenant_scope!(&owner, "count invoices across tenants");
    let n = t.db.bypass(bypass, async |conn| Ok::<_, ApiError>(conn.get_result(invoices::table.count()).await.map_err(DbError::from)?)).await?;
    Ok(Json(n))
}

#[allow(dead_code)]
fn router(state: Tenantry) -> Router {
    Router::new()
        .route("/invoices", get(list).post(create))
        .route("/admin/count", get(count_all))
        .with_state(state)
}

fn main() {}
