//! [`Authenticator`]: authentication by mode, Cloudflare Access (`cloudflare/`), dev
//! (`dev.rs`) or trusted header (`trusted_header.rs`), as the settings ask.

use axum::http::request::Parts;
use ipnet::IpNet;

use crate::identity::auth::cloudflare::CloudflareVerifier;
use crate::identity::auth::{dev, trusted_header, AuthError, Identity};
use crate::settings::{AuthMode, Settings};

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
                dev::warn(user_email);
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
            Authenticator::Dev { email } => dev::identity(email, &parts.headers),
            Authenticator::TrustedHeader { proxies } => trusted_header::identity(proxies, parts),
        }
    }
}
