//! The dev mode: every request is the user of `TENANTRY_DEV_USER_EMAIL`, on a developer's
//! machine only (the settings refuse `TENANTRY_ENV=production` and a non-loopback bind), loudly:
//! a warning at start, and [`mark_dev_mode`] marks every response.

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;

use crate::auth::Identity;

/// The identity of every request in dev mode.
pub(crate) fn identity(email: &str) -> Identity {
    Identity::User {
        email: email.to_owned(),
        sub: None,
    }
}

/// The warning logged when an authenticator in dev mode is made.
pub(crate) fn warn(email: &str) {
    tracing::warn!(
        user = %email,
        "DEV AUTH MODE: every request is {email}; never use this outside a developer machine"
    );
}

/// axum middleware marking every response of a dev-mode server with `X-Tenantry-Auth-Mode: dev`.
pub async fn mark_dev_mode(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    response.headers_mut().insert(
        "x-tenantry-auth-mode",
        axum::http::HeaderValue::from_static("dev"),
    );
    response
}
