//! [`Authenticator`]: authentication by mode, Cloudflare Access (`cloudflare/`), dev
//! (`dev.rs`) or trusted header (`trusted_header.rs`). `settings/` makes it from the settings
//! (`Authenticator::from_settings`).

use axum::http::request::Parts;
use ipnet::IpNet;

use crate::identity::auth::cloudflare::CloudflareVerifier;
use crate::identity::auth::{dev, trusted_header, AuthError, Identity};

/// Turns a request into an [`Identity`] according to the configured mode.
#[derive(Debug)]
pub enum Authenticator {
    /// Cloudflare Access tokens, verified against the team's keys.
    Cloudflare(CloudflareVerifier),
    /// Every request is this user (loopback, non-production only; enforced by [`Settings`](crate::settings::Settings)).
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
    /// Authenticates the request.
    pub async fn authenticate(&self, parts: &Parts) -> Result<Identity, AuthError> {
        match self {
            Authenticator::Cloudflare(verifier) => verifier.authenticate(&parts.headers).await,
            Authenticator::Dev { email } => dev::identity(email, &parts.headers),
            Authenticator::TrustedHeader { proxies } => trusted_header::identity(proxies, parts),
        }
    }
}
