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
            Authenticator::Cloudflare(verifier) => {
                dev::refuse_dev_header(&parts.headers)?;
                verifier.authenticate(&parts.headers).await
            }
            Authenticator::Dev { email } => dev::identity(email, &parts.headers),
            Authenticator::TrustedHeader { proxies } => {
                dev::refuse_dev_header(&parts.headers)?;
                trusted_header::identity(proxies, parts)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use axum::extract::ConnectInfo;
    use axum::http::Request;

    use super::*;
    use crate::identity::auth::dev::DEV_USER_HEADER;
    use crate::identity::auth::TRUSTED_EMAIL_HEADER;

    #[tokio::test]
    async fn a_trusted_header_request_that_picks_a_dev_user_is_refused() {
        let auth = Authenticator::TrustedHeader {
            proxies: vec!["127.0.0.1/32".parse().unwrap()],
        };
        let request = |dev_user: Option<&str>| {
            let mut r = Request::builder().header(TRUSTED_EMAIL_HEADER, "partner@acme.test");
            if let Some(u) = dev_user {
                r = r.header(DEV_USER_HEADER, u);
            }
            let (mut parts, ()) = r.body(()).unwrap().into_parts();
            let peer: SocketAddr = "127.0.0.1:5000".parse().unwrap();
            parts.extensions.insert(ConnectInfo(peer));
            parts
        };
        assert!(auth.authenticate(&request(None)).await.is_ok());
        let refused = auth.authenticate(&request(Some("owner@acme.test"))).await;
        assert!(
            matches!(&refused, Err(AuthError::Forbidden(m)) if m.contains("only in dev mode")),
            "{refused:?}"
        );
    }
}
