//! The contract's error body, `{"error": "<code>", "message": "..."}`, for every error the HTTP
//! layer emits itself: the one table from status to code, the middleware that gives a JSON
//! body to error responses that have none (axum's 405, a timeout, ...), and the same body for
//! the responses hyper writes on its own (400, 414, 431; see `client_io.rs`).

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;

/// The stable JSON code of an error `status`.
pub fn error_code(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "unauthenticated",
        403 => "forbidden",
        404 => "not_found",
        405 => "method_not_allowed",
        408 => "timeout",
        409 => "conflict",
        413 | 414 | 431 => "too_large",
        415 | 422 => "invalid",
        429 => "too_many_requests",
        502..=504 => "unavailable",
        500..=599 => "internal",
        _ => "bad_request",
    }
}

/// A human message for an error `status` that came without one.
pub fn error_message(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "the request is malformed",
        405 => "this route does not accept this method",
        408 => "the request was not received in time",
        413 => "the request body is too large",
        414 => "the request URI is too long",
        431 => "the request headers are too large",
        429 => "too many requests of this tenant at once; retry shortly",
        503 => "the service is temporarily unavailable; retry shortly",
        _ => status.canonical_reason().unwrap_or("error"),
    }
}

/// The error body for `status` with `message`, as bytes.
pub fn error_json(status: StatusCode, message: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "error": error_code(status),
        "message": message,
    }))
    .unwrap_or_default()
}

/// Seconds a client is asked to wait before retrying a 503 or a 429 (`Retry-After`).
pub const RETRY_AFTER_SECS: u32 = 1;

/// A complete error response for `status`.
pub fn error_response(status: StatusCode, message: &str) -> Response {
    let mut response = Response::new(Body::from(error_json(status, message)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    add_retry_after(&mut response);
    response
}

/// A handler may return `DbError` (or `?` it into its own error) and the client gets a status
/// and the JSON error body `{"error": code, "message": ..}`: 429 with `Retry-After` for a
/// tenant's own excess ([`DbError::TenantBusy`](crate::error::DbError::TenantBusy)), 503 with `Retry-After` while the database is
/// unavailable, 404 for a row that is not there (another tenant's row is not there either), 409
/// for a unique key taken, 422 for a check or a reference that fails, 403 for a write in a
/// read-only transaction, and 500 for the rest. A 500 says only "internal error": the cause is
/// logged (one `ERROR` line), never sent to the client.
impl axum::response::IntoResponse for crate::error::DbError {
    fn into_response(self) -> axum::response::Response {
        use crate::error::DbError;
        use axum::http::StatusCode;
        use diesel::result::{DatabaseErrorKind as Kind, Error};
        let (status, message) = match &self {
            DbError::TenantBusy(_) => (StatusCode::TOO_MANY_REQUESTS, self.to_string()),
            e if e.is_unavailable() => {
                tracing::debug!(error = %e, "database unavailable");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the service is temporarily unavailable; retry shortly".to_owned(),
                )
            }
            DbError::Query(Error::NotFound) => (StatusCode::NOT_FOUND, "not found".to_owned()),
            DbError::Query(Error::DatabaseError(kind, info)) => match kind {
                Kind::UniqueViolation => (
                    StatusCode::CONFLICT,
                    format!(
                        "already exists ({})",
                        info.constraint_name().unwrap_or("unique")
                    ),
                ),
                Kind::CheckViolation | Kind::ForeignKeyViolation | Kind::NotNullViolation => (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!(
                        "rejected by {}",
                        info.constraint_name().unwrap_or("a constraint")
                    ),
                ),
                Kind::ReadOnlyTransaction => {
                    (StatusCode::FORBIDDEN, "this role is read-only".to_owned())
                }
                _ => internal(&self),
            },
            _ => internal(&self),
        };
        error_response(status, &message)
    }
}

fn internal(e: &crate::error::DbError) -> (axum::http::StatusCode, String) {
    tracing::error!(error = %e, "database error");
    (
        axum::http::StatusCode::INTERNAL_SERVER_ERROR,
        "internal error".to_owned(),
    )
}

fn add_retry_after(response: &mut Response) {
    let status = response.status();
    if (status == StatusCode::SERVICE_UNAVAILABLE || status == StatusCode::TOO_MANY_REQUESTS)
        && !response.headers().contains_key(header::RETRY_AFTER)
    {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
    }
}

/// Middleware: an error response (4xx, 5xx) that is not JSON gets the contract's error body;
/// every 503 and 429 gets a `Retry-After`.
pub async fn json_errors(request: Request, next: Next) -> Response {
    json_error_body(next.run(request).await)
}

/// What [`json_errors`] makes of a response.
pub(crate) fn json_error_body(mut response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !is_json {
        let (mut parts, _) = response.into_parts();
        parts.headers.remove(header::CONTENT_LENGTH);
        parts.headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        response =
            Response::from_parts(parts, Body::from(error_json(status, error_message(status))));
    }
    add_retry_after(&mut response);
    response
}

/// HTML is never framed by another page (clickjacking an Owner's dashboard): every `text/html`
/// response gets `X-Frame-Options: DENY` and `frame-ancestors 'none'` in its
/// `Content-Security-Policy` (added to a policy the handler set, unless it names its own
/// `frame-ancestors`).
pub async fn no_framing(request: Request, next: Next) -> Response {
    framing_denied(next.run(request).await)
}

/// What [`no_framing`] makes of a response.
pub(crate) fn framing_denied(mut response: Response) -> Response {
    let html = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("text/html"));
    if !html {
        return response;
    }
    let headers = response.headers_mut();
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    let csp = headers
        .get(header::CONTENT_SECURITY_POLICY)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let policy = match csp {
        None => "frame-ancestors 'none'".to_owned(),
        Some(p) if p.to_ascii_lowercase().contains("frame-ancestors") => p,
        Some(p) => format!("{}; frame-ancestors 'none'", p.trim_end_matches([';', ' '])),
    };
    if let Ok(value) = HeaderValue::from_str(&policy) {
        headers.insert(header::CONTENT_SECURITY_POLICY, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `DbError`'s answer: status, `Retry-After` and the JSON body, never the cause of a 500.
    #[tokio::test]
    async fn a_db_error_answers_with_its_status_and_the_json_body() {
        use crate::error::DbError;
        use diesel::result::{DatabaseErrorKind as Kind, Error};
        let db = |kind| DbError::Query(Error::DatabaseError(kind, Box::new("x".to_owned())));
        for (error, status, code) in [
            (
                DbError::TenantBusy("share spent".into()),
                429,
                "too_many_requests",
            ),
            (DbError::Pool("timed out".into()), 503, "unavailable"),
            (DbError::Query(Error::NotFound), 404, "not_found"),
            (db(Kind::UniqueViolation), 409, "conflict"),
            (db(Kind::CheckViolation), 422, "invalid"),
            (db(Kind::ForeignKeyViolation), 422, "invalid"),
            (db(Kind::ReadOnlyTransaction), 403, "forbidden"),
            (DbError::Config("secret detail".into()), 500, "internal"),
        ] {
            let response = axum::response::IntoResponse::into_response(error);
            assert_eq!(response.status().as_u16(), status, "{code}");
            assert_eq!(
                response.headers().contains_key(header::RETRY_AFTER),
                status == 429 || status == 503
            );
            let bytes = axum::body::to_bytes(response.into_body(), 4096)
                .await
                .unwrap();
            let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(body["error"], code);
            assert!(!body.to_string().contains("secret detail"), "{body}");
        }
    }

    #[test]
    fn every_status_the_server_emits_has_a_code() {
        for (status, code) in [
            (400, "bad_request"),
            (405, "method_not_allowed"),
            (408, "timeout"),
            (413, "too_large"),
            (429, "too_many_requests"),
            (414, "too_large"),
            (431, "too_large"),
            (503, "unavailable"),
            (500, "internal"),
        ] {
            assert_eq!(error_code(StatusCode::from_u16(status).unwrap()), code);
        }
    }
}
