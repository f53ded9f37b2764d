//! [`AuthError`]: every way a request can be refused before its handler runs, its HTTP status
//! and stable JSON code, and its response.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use thiserror::Error;

/// Why a request was refused. Each variant maps to one HTTP status and one stable JSON code
/// (see [`AuthError::status`] and [`AuthError::code`]); the message is safe to show.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum AuthError {
    /// No credential, or one that does not verify (401 `unauthenticated`).
    #[error("{0}")]
    Unauthenticated(String),
    /// A valid identity with no `users` row (403 `not_provisioned`).
    #[error("{0} is not provisioned in this application")]
    NotProvisioned(String),
    /// The token's identity-provider subject (`sub`) is not the one recorded for its email: the
    /// account was re-created or the address given to someone else (403 `not_provisioned`).
    #[error("{0} is provisioned for another identity-provider subject; an operator re-provisions it with `tenantry add-user --email {0} --reset-subject`")]
    SubjectChanged(String),
    /// The principal lacks the role, or names a tenant it may not act in (403 `forbidden`).
    #[error("{0}")]
    Forbidden(String),
    /// The request must name a tenant with `X-Tenant` (400 `tenant_required`).
    #[error("{0}")]
    TenantRequired(String),
    /// The identity provider or database could not be consulted (503 `unavailable`).
    #[error("{0}")]
    Unavailable(String),
    /// The tenant has too many requests in progress on this server (429 `too_many_requests`,
    /// with `Retry-After`); see `ServeConfig::max_requests_per_tenant`.
    #[error("{0}")]
    TooBusy(String),
}

impl AuthError {
    /// A 401: no credential, or one that does not verify, for `reason` (safe to show).
    pub(crate) fn unauthenticated(reason: impl Into<String>) -> Self {
        AuthError::Unauthenticated(reason.into())
    }

    /// The HTTP status code.
    pub fn status(&self) -> u16 {
        match self {
            AuthError::Unauthenticated(_) => 401,
            AuthError::NotProvisioned(_)
            | AuthError::SubjectChanged(_)
            | AuthError::Forbidden(_) => 403,
            AuthError::TenantRequired(_) => 400,
            AuthError::Unavailable(_) => 503,
            AuthError::TooBusy(_) => 429,
        }
    }

    /// The stable JSON error code.
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::Unauthenticated(_) => "unauthenticated",
            AuthError::NotProvisioned(_) | AuthError::SubjectChanged(_) => "not_provisioned",
            AuthError::Forbidden(_) => "forbidden",
            AuthError::TenantRequired(_) => "tenant_required",
            AuthError::Unavailable(_) => "unavailable",
            AuthError::TooBusy(_) => "too_many_requests",
        }
    }
}

/// The status of [`AuthError::status`] with the body `{"error": code, "message": ..}`; a 401
/// also carries `WWW-Authenticate: Cloudflare-Access`.
impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status()).unwrap_or(StatusCode::FORBIDDEN);
        let body = Json(serde_json::json!({ "error": self.code(), "message": self.to_string() }));
        if status == StatusCode::UNAUTHORIZED {
            return (status, [("www-authenticate", "Cloudflare-Access")], body).into_response();
        }
        (status, body).into_response()
    }
}
