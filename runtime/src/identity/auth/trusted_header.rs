//! The trusted-header mode: a proxy in front of the app (Cloudflare Access, or any proxy the
//! operator trusts) authenticates the user and names them in the unsigned
//! [`TRUSTED_EMAIL_HEADER`], which is believed only from peers in `TENANTRY_TRUSTED_PROXIES`
//! (the socket's address, never `X-Forwarded-For`).

use std::net::SocketAddr;

use axum::extract::ConnectInfo;
use axum::http::request::Parts;
use ipnet::IpNet;

use crate::identity::auth::{AuthError, Identity};

/// The unsigned header a trusted proxy sets (never read in other modes): a person's email, or a
/// service token's common name (`<client id>.access`).
pub const TRUSTED_EMAIL_HEADER: &str = "cf-access-authenticated-user-email";

/// The identity a trusted proxy asserts: the socket's peer must be inside `proxies`, and
/// [`TRUSTED_EMAIL_HEADER`] must be present exactly once and hold an email or a service token's common name.
pub(crate) fn identity(proxies: &[IpNet], parts: &Parts) -> Result<Identity, AuthError> {
    // The peer address comes from the socket, never from X-Forwarded-For.
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip())
        .ok_or_else(|| AuthError::unauthenticated("the peer address is unknown"))?;
    let peer = match peer {
        std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map(Into::into).unwrap_or(peer),
        v4 => v4,
    };
    if !proxies.iter().any(|net| net.contains(&peer)) {
        return Err(AuthError::unauthenticated(
            "identity headers are only accepted from trusted proxies",
        ));
    }
    let mut values = parts.headers.get_all(TRUSTED_EMAIL_HEADER).iter();
    let value = values
        .next()
        .ok_or_else(|| AuthError::unauthenticated("no identity header from the proxy"))?;
    if values.next().is_some() {
        return Err(AuthError::unauthenticated(
            "the identity header was sent twice",
        ));
    }
    let value = value.to_str().ok().map(str::trim).unwrap_or_default();
    // A service token has no email: a proxy that passes one on names its common name instead.
    if crate::identity::auth::is_service_common_name(value) {
        return Ok(Identity::Service {
            common_name: value.to_owned(),
        });
    }
    if !(value.contains('@') && !value.contains(char::is_whitespace) && value.len() <= 320) {
        return Err(AuthError::unauthenticated(
            "the identity header is neither an email nor a service token's common name",
        ));
    }
    Ok(Identity::User {
        email: value.to_owned(),
        sub: None,
    })
}
