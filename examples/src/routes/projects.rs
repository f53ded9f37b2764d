//! `GET /api/projects` and `POST /api/projects`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use tenantry::prelude::*;
use tenantry::requires_role;

use crate::app::AppState;
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::models::{NewProject, Project};
use crate::schema::projects;

/// Project JSON.
#[derive(Serialize)]
pub struct ProjectJson {
    id: uuid::Uuid,
    tenant_id: uuid::Uuid,
    name: String,
    created_at: chrono::DateTime<chrono::Utc>,
}

impl From<Project> for ProjectJson {
    fn from(p: Project) -> Self {
        ProjectJson {
            id: p.id,
            tenant_id: p.tenant_id,
            name: p.name,
            created_at: p.created_at,
        }
    }
}

/// The active tenant's projects, by name.
#[requires_role(ClientViewer)]
pub async fn list(
    ctx: TenantCtx,
    State(app): State<AppState>,
) -> Result<Json<Vec<ProjectJson>>, ApiError> {
    let rows: Vec<Project> = app
        .tenantry
        .db
        .query(&ctx, |conn| {
            Project::scoped(conn).order(projects::name.asc()).load(conn)
        })
        .await?;
    Ok(Json(rows.into_iter().map(Into::into).collect()))
}

/// `{"name"}`.
#[derive(Deserialize)]
pub struct CreateProject {
    name: String,
}

/// Creates a project in the active tenant (201).
#[requires_role(Partner)]
pub async fn create(
    ctx: TenantCtx,
    State(app): State<AppState>,
    ApiJson(body): ApiJson<CreateProject>,
) -> Result<(StatusCode, Json<ProjectJson>), ApiError> {
    let name = body.name.trim().to_owned();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(ApiError::invalid("name", "must be 1 to 200 characters"));
    }
    let project: Project = app
        .tenantry
        .db
        .query(&ctx, |conn| {
            Project::insert(conn, NewProject { name }).get_result(conn)
        })
        .await?;
    Ok((StatusCode::CREATED, Json(project.into())))
}
