//! Extractors whose rejections use the contract's error JSON: a JSON body, query parameters,
//! and an id in the path (a non-UUID id is 404, like another tenant's id).

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::error::ApiError;

/// A JSON body; a missing content type is 415, a body over the limit 413, malformed or
/// mistyped JSON 422 naming the field, and so is a NUL character in any string (PostgreSQL
/// text cannot hold one).
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let value = match axum::Json::<serde_json::Value>::from_request(req, state).await {
            Ok(axum::Json(v)) => v,
            Err(e) => return Err(rejection(e)),
        };
        if let Some(field) = nul_in(&value, String::new()) {
            return Err(ApiError::invalid(
                &field,
                "must not contain a NUL character (\\u0000)",
            ));
        }
        // Deserialize the checked value as axum would, so errors name the field.
        let bytes = serde_json::to_vec(&value).map_err(|_| ApiError::Internal)?;
        axum::Json::<T>::from_bytes(&bytes)
            .map(|axum::Json(v)| ApiJson(v))
            .map_err(rejection)
    }
}

fn rejection(e: JsonRejection) -> ApiError {
    match e {
        JsonRejection::MissingJsonContentType(_) => ApiError::UnsupportedMediaType(
            "send a JSON body with Content-Type: application/json".into(),
        ),
        e if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::TooLarge("the request body is too large".into())
        }
        e => ApiError::Invalid(e.body_text()),
    }
}

/// The path (`name`, `items[2].label`) of the first string or key in `value` holding a NUL.
fn nul_in(value: &serde_json::Value, path: String) -> Option<String> {
    use serde_json::Value;
    let field = |path: &str, key: &str| {
        if path.is_empty() {
            key.to_owned()
        } else {
            format!("{path}.{key}")
        }
    };
    match value {
        Value::String(s) if s.contains('\0') => {
            Some(if path.is_empty() { "body".into() } else { path })
        }
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, v)| nul_in(v, format!("{path}[{i}]"))),
        Value::Object(map) => map.iter().find_map(|(k, v)| {
            if k.contains('\0') {
                Some(field(&path, &k.replace('\0', "\\u0000")))
            } else {
                nul_in(v, field(&path, k))
            }
        }),
        _ => None,
    }
}

/// Query parameters; malformed ones are 422.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(v)| ApiQuery(v))
            .map_err(|e: QueryRejection| ApiError::Invalid(e.body_text()))
    }
}

/// The `{id}` of the path; not a UUID → 404.
pub struct IdPath(pub Uuid);

impl<S: Send + Sync> FromRequestParts<S> for IdPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::not_found("resource"))?;
        Uuid::parse_str(&raw)
            .map(IdPath)
            .map_err(|_| ApiError::not_found("resource"))
    }
}

/// `limit` within `1..=max`, or `default` when absent.
pub fn limit(value: Option<i64>, default: i64, max: i64) -> Result<i64, ApiError> {
    match value {
        None => Ok(default),
        Some(n) if (1..=max).contains(&n) => Ok(n),
        Some(_) => Err(ApiError::invalid(
            "limit",
            &format!("must be between 1 and {max}"),
        )),
    }
}
