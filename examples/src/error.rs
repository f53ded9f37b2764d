//! The API's errors: one enum, each variant one status and one stable JSON code.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use tenantry::auth::AuthError;
use tenantry::DbError;

/// An error answered as `{"error": "<code>", "message": "<text>"}`.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("the service is temporarily unavailable")]
    Unavailable,
    /// This tenant's own excess (over its share of the database): 429 with `Retry-After`.
    #[error("{0}")]
    TooBusy(String),
    #[error("internal error")]
    Internal,
}

impl ApiError {
    pub fn invalid(field: &str, problem: &str) -> Self {
        ApiError::Invalid(format!("{field}: {problem}"))
    }

    pub fn not_found(what: &str) -> Self {
        ApiError::NotFound(format!("{what} not found"))
    }
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::TenantBusy(message) => ApiError::TooBusy(message),
            // Logged once per outage by the pools, not once per request.
            e if e.is_unavailable() => {
                tracing::debug!(error = %e, "database unavailable");
                ApiError::Unavailable
            }
            DbError::Query(q) => q.into(),
            other => {
                tracing::error!(error = %other, "database error");
                ApiError::Internal
            }
        }
    }
}

impl From<DieselError> for ApiError {
    fn from(e: DieselError) -> Self {
        match &e {
            e if DbError::is_unavailable_query(e) => {
                tracing::debug!(error = %e, "database unavailable");
                ApiError::Unavailable
            }
            DieselError::NotFound => ApiError::not_found("resource"),
            DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, info) => {
                ApiError::Conflict(format!(
                    "already exists ({})",
                    info.constraint_name().unwrap_or("unique")
                ))
            }
            DieselError::DatabaseError(DatabaseErrorKind::CheckViolation, info) => {
                ApiError::Invalid(format!(
                    "rejected by {}",
                    info.constraint_name().unwrap_or("a check")
                ))
            }
            DieselError::DatabaseError(DatabaseErrorKind::ForeignKeyViolation, _) => {
                ApiError::not_found("referenced resource")
            }
            DieselError::DatabaseError(DatabaseErrorKind::ReadOnlyTransaction, _) => {
                ApiError::Auth(AuthError::Forbidden("this role is read-only".into()))
            }
            _ => {
                tracing::error!(error = %e, "query failed");
                ApiError::Internal
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = match &self {
            ApiError::Auth(e) => return e.clone().into_response(),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Invalid(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid"),
            ApiError::UnsupportedMediaType(_) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "invalid"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            ApiError::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::TooBusy(_) => (StatusCode::TOO_MANY_REQUESTS, "too_many_requests"),
            ApiError::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        let body = Json(serde_json::json!({ "error": code, "message": self.to_string() }));
        match status {
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS => (
                status,
                [(
                    axum::http::header::RETRY_AFTER,
                    tenantry::serve::RETRY_AFTER_SECS.to_string(),
                )],
                body,
            )
                .into_response(),
            _ => (status, body).into_response(),
        }
    }
}
