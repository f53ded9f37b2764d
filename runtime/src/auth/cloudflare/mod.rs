//! Cloudflare Access: verifies the RS256 application token that Access puts in front of every
//! request, against keys fetched from the team's certs endpoint.
//!
//! ```no_run
//! use tenantry_runtime::auth::cloudflare::{CloudflareConfig, CloudflareVerifier};
//!
//! # async fn run(headers: http::HeaderMap) -> Result<(), Box<dyn std::error::Error>> {
//! let config = CloudflareConfig::new("acme.cloudflareaccess.com", "4714c1358e65fe4b408ad6d432a5f878")?;
//! let verifier = CloudflareVerifier::new(config)?;
//! let identity = verifier.authenticate(&headers).await?; // 401 `AuthError` when it does not verify
//! println!("request by {}", identity.email());
//! # Ok(()) }
//! ```
//!
//! What is checked, in order: the token's size, shape and header (RS256 only, a `kid`, no
//! `jku`/`x5u`/`jwk`/`x5c`/`crit`) before any network; then the signature with the cached key
//! for that `kid`; `iss` equal to `https://<team domain>`; `aud` containing the audience tag;
//! `exp` (required) and `nbf` (when present) within the leeway, both integers; `type == "app"`;
//! and either a non-empty `email` (a user) or `sub == ""` with a `common_name` (a service token).
//! The unsigned `Cf-Access-Authenticated-User-Email` header is never read.
//!
//! Signatures are checked with ring ([`install_crypto_provider`]).

mod config;
mod crypto;
mod extract;
mod fetch;
mod jwks;
mod token;

use std::sync::Arc;

use jsonwebtoken::Validation;
use serde_json::{Map, Value};

pub use config::{CloudflareConfig, CloudflareConfigError};
pub use crypto::{install_crypto_provider, RING_PROVIDER};
pub use extract::{token_from_headers, ASSERTION_HEADER, AUTHORIZATION_COOKIE};

use crate::auth::{AuthError, Identity};
use jwks::KeyCache;

/// Verifies Cloudflare Access tokens for one team and application. Cheap to clone (shared cache).
#[derive(Debug, Clone)]
pub struct CloudflareVerifier {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: CloudflareConfig,
    issuer: String,
    validation: Validation,
    keys: Arc<KeyCache>,
}

impl CloudflareVerifier {
    /// A verifier for `config` (checked again here). No network until the first token or
    /// [`CloudflareVerifier::prefetch`].
    ///
    /// Installs tenantry's ring provider as jsonwebtoken's crypto provider unless one is
    /// installed already (see [`install_crypto_provider`]).
    pub fn new(config: CloudflareConfig) -> Result<Self, CloudflareConfigError> {
        config.validate()?;
        install_crypto_provider();
        let keys = Arc::new(KeyCache::new(&config)?);
        Ok(CloudflareVerifier {
            inner: Arc::new(Inner {
                issuer: config.issuer(),
                validation: token::validation(&config),
                keys,
                config,
            }),
        })
    }

    /// The settings this verifier was built with.
    pub fn config(&self) -> &CloudflareConfig {
        &self.inner.config
    }

    /// Verifies `token` (the bare JWT, no `Bearer ` prefix). Every failure is
    /// [`AuthError::Unauthenticated`] with a short reason; so is every token while no key set
    /// has ever been fetched.
    pub async fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        let kid = token::precheck(token)?;
        let key = self.inner.keys.key(&kid).await?;
        let decoded =
            jsonwebtoken::decode::<Map<String, Value>>(token, &key, &self.inner.validation)
                .map_err(|e| token::reason(&e))?;
        token::identity(&decoded.claims, &self.inner.issuer)
    }

    /// Finds the token in `headers` (see [`token_from_headers`]) and verifies it; no token is
    /// 401 "no Cloudflare Access token".
    pub async fn authenticate(&self, headers: &http::HeaderMap) -> Result<Identity, AuthError> {
        match token_from_headers(headers)? {
            Some(token) => self.verify(token).await,
            None => Err(AuthError::Unauthenticated(
                "no Cloudflare Access token".to_owned(),
            )),
        }
    }

    /// Fetches the key set now (e.g. at start-up) unless a fetch ended less than a cooldown ago.
    /// An error means no key set is available yet: every token would be refused.
    pub async fn prefetch(&self) -> Result<(), AuthError> {
        self.inner.keys.refresh().await;
        if self.inner.keys.has_keys() {
            Ok(())
        } else {
            Err(AuthError::Unavailable(format!(
                "could not fetch Cloudflare Access keys from {}",
                self.inner.config.certs_url()
            )))
        }
    }

    /// How many fetches of the certs document were started (for tests and benchmarks).
    pub fn fetch_count(&self) -> u64 {
        self.inner.keys.fetch_count()
    }

    /// The key ids currently cached, sorted.
    pub fn known_kids(&self) -> Vec<String> {
        self.inner.keys.known_kids()
    }
}
