//! Cross-site request protection, part of tenantry's extractors (so no route can forget it).
//!
//! The Cloudflare Access cookie may be `SameSite=None`, so a page on another site could make a
//! browser send it. For every method other than GET, HEAD and OPTIONS, every extractor
//! ([`CurrentUser`](super::CurrentUser), [`InTenant`](super::InTenant),
//! [`AsOwner`](super::AsOwner)) refuses (403 `forbidden`) a request whose `Sec-Fetch-Site` is
//! `cross-site` or `same-site`, or whose `Origin` is neither the request's own origin (its
//! `Host`) nor one of the allowed origins (`TENANTRY_ALLOWED_ORIGINS`). Owner routes refuse such
//! a request whatever its method: their GETs write audit rows, and a page elsewhere must not be
//! able to make an Owner's browser write them. Requests without either header (curl,
//! server-to-server) pass: browsers send `Sec-Fetch-Site` on every request, and `Origin` on
//! cross-origin non-GET requests.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::identity::auth::AuthError;

/// Origins allowed to send state-changing requests besides the request's own.
#[derive(Debug, Clone, Default)]
pub struct CsrfPolicy {
    allowed: Arc<Vec<String>>,
}

impl CsrfPolicy {
    /// A policy allowing the request's own origin and `allowed` (`https://host[:port]`).
    pub fn new(allowed: Vec<String>) -> Self {
        Self {
            allowed: Arc::new(allowed),
        }
    }

    /// Whether a request with `method` and `headers` may proceed: GET, HEAD and OPTIONS always
    /// may; other methods only from the same site (see the module docs).
    pub fn check(&self, method: &Method, headers: &HeaderMap) -> Result<(), AuthError> {
        if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
            return Ok(());
        }
        self.same_site(headers)
    }

    /// Whether a request to an Owner route may proceed, whatever its method: only from the same
    /// site.
    pub fn check_owner(&self, headers: &HeaderMap) -> Result<(), AuthError> {
        self.same_site(headers)
    }

    fn same_site(&self, headers: &HeaderMap) -> Result<(), AuthError> {
        let refuse = |why: &str| {
            Err(AuthError::Forbidden(format!(
                "cross-site request refused: {why}"
            )))
        };
        if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
            if !matches!(site, "same-origin" | "none") {
                return refuse("Sec-Fetch-Site is not same-origin");
            }
        }
        if let Some(origin) = headers.get("origin") {
            let Ok(origin) = origin.to_str() else {
                return refuse("malformed Origin");
            };
            let host = headers
                .get("host")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            let same = origin
                .split_once("://")
                .is_some_and(|(_, rest)| !host.is_empty() && rest == host);
            if !same && !self.allowed.iter().any(|a| a == origin) {
                return refuse("Origin is not allowed");
            }
        }
        Ok(())
    }
}

/// axum middleware applying [`CsrfPolicy`] to routes that use none of tenantry's extractors
/// (those check it themselves): `.layer(middleware::from_fn_with_state(policy, csrf))`.
pub async fn csrf(State(policy): State<CsrfPolicy>, request: Request, next: Next) -> Response {
    match policy.check(request.method(), request.headers()) {
        Ok(()) => next.run(request).await,
        Err(e) => e.into_response(),
    }
}
