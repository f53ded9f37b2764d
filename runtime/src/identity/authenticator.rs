//! Authentication by mode: Cloudflare Access, dev, or trusted header.

use std::net::SocketAddr;

use axum::extract::ConnectInfo;
use axum::http::request::Parts;
use ipnet::IpNet;

use crate::auth::cloudflare::CloudflareVerifier;
use crate::auth::{AuthError, Identity};
use crate::settings::{AuthMode, Settings};

/// The unsigned header a trusted proxy sets (never read in other modes): a person's email, or a
/// service token's common name (`<client id>.access`).
pub const TRUSTED_EMAIL_HEADER: &str = "cf-access-authenticated-user-email";

/// Turns a request into an [`Identity`] according to the configured mode.
#[derive(Debug)]
pub enum Authenticator {
    /// Cloudflare Access tokens, verified against the team's keys.
    Cloudflare(CloudflareVerifier),
    /// Every request is this user (loopback, non-production only; enforced by [`Settings`]).
    Dev {
        /// The dev user's email.
        email: String,
    },
    /// The unsigned email header, believed only from these peers.
    TrustedHeader {
        /// Proxies allowed to assert identities.
        proxies: Vec<IpNet>,
    },
}

impl Authenticator {
    /// The authenticator `settings` ask for. Dev mode logs a loud warning.
    pub fn from_settings(settings: &Settings) -> Result<Self, crate::settings::SettingsError> {
        Ok(match &settings.auth {
            AuthMode::Cloudflare(config) => {
                Authenticator::Cloudflare(CloudflareVerifier::new(config.clone()).map_err(|e| {
                    crate::settings::SettingsError {
                        variable: "TENANTRY_CF_TEAM_DOMAIN",
                        problem: e.to_string(),
                    }
                })?)
            }
            AuthMode::Dev { user_email } => {
                tracing::warn!(
                    user = %user_email,
                    "DEV AUTH MODE: every request is {user_email}; never use this outside a developer machine"
                );
                Authenticator::Dev {
                    email: user_email.clone(),
                }
            }
            AuthMode::TrustedHeader { proxies } => Authenticator::TrustedHeader {
                proxies: proxies.clone(),
            },
        })
    }

    /// Authenticates the request.
    pub async fn authenticate(&self, parts: &Parts) -> Result<Identity, AuthError> {
        match self {
            Authenticator::Cloudflare(verifier) => verifier.authenticate(&parts.headers).await,
            Authenticator::Dev { email } => Ok(Identity::User {
                email: email.clone(),
                sub: None,
            }),
            Authenticator::TrustedHeader { proxies } => trusted_header(proxies, parts),
        }
    }
}

fn trusted_header(proxies: &[IpNet], parts: &Parts) -> Result<Identity, AuthError> {
    // The peer address comes from the socket, never from X-Forwarded-For.
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip())
        .ok_or_else(|| AuthError::Unauthenticated("the peer address is unknown".into()))?;
    let peer = match peer {
        std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map(Into::into).unwrap_or(peer),
        v4 => v4,
    };
    if !proxies.iter().any(|net| net.contains(&peer)) {
        return Err(AuthError::Unauthenticated(
            "identity headers are only accepted from trusted proxies".into(),
        ));
    }
    let mut values = parts.headers.get_all(TRUSTED_EMAIL_HEADER).iter();
    let value = values
        .next()
        .ok_or_else(|| AuthError::Unauthenticated("no identity header from the proxy".into()))?;
    if values.next().is_some() {
        return Err(AuthError::Unauthenticated(
            "the identity header was sent twice".into(),
        ));
    }
    let value = value.to_str().ok().map(str::trim).unwrap_or_default();
    // A service token has no email: a proxy that passes one on names its common name instead.
    if crate::auth::is_service_common_name(value) {
        return Ok(Identity::Service {
            common_name: value.to_owned(),
        });
    }
    if !(value.contains('@') && !value.contains(char::is_whitespace) && value.len() <= 320) {
        return Err(AuthError::Unauthenticated(
            "the identity header is neither an email nor a service token's common name".into(),
        ));
    }
    Ok(Identity::User {
        email: value.to_owned(),
        sub: None,
    })
}
