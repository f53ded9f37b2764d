//! Cloudflare Access: verifies the RS256 application token that Access puts in front of every
//! request, against keys fetched from the team's certs endpoint.
//!
//! ```no_run
//! use tenantry_runtime::identity::auth::cloudflare::{CloudflareConfig, CloudflareVerifier};
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
//! Signatures are checked with ring ([`install_crypto_provider`]). A token that passed every
//! check is remembered by a keyed hash of its exact bytes (SipHash-2-4-128 under a random key
//! per verifier: `cache.rs` says why that is safe), so the same token sent again (a
//! browser sends one per session) skips the signature and claim checks: its `exp` and `nbf` are
//! checked again with the leeway, and its key is looked up as for a new token and must still be
//! the key that verified it. A token differing in any byte is verified in full. At most
//! [`CloudflareConfig::token_cache_capacity`] tokens are remembered.

mod cache;
mod config;
mod crypto;
mod extract;
mod fetch;
mod jwks;
mod token;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use jsonwebtoken::Validation;
use serde_json::{Map, Value};

pub use config::{CloudflareConfig, CloudflareConfigError, DEFAULT_TOKEN_CACHE_CAPACITY};
pub use crypto::{install_crypto_provider, RING_PROVIDER};
pub use extract::{token_from_headers, ASSERTION_HEADER, AUTHORIZATION_COOKIE};

use crate::clock::Clock;
#[cfg(feature = "testing")]
use crate::clock::TestClock;
use crate::identity::auth::{AuthError, Identity};
use cache::{Lookup, TokenCache, Verified};
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
    tokens: TokenCache,
    /// Tokens that reached the signature check.
    verifications: AtomicU64,
}

impl CloudflareVerifier {
    /// A verifier for `config` (checked again here). No network until the first token or
    /// [`CloudflareVerifier::prefetch`].
    ///
    /// Installs tenantry's ring provider as jsonwebtoken's crypto provider unless one is
    /// installed already (see [`install_crypto_provider`]).
    pub fn new(config: CloudflareConfig) -> Result<Self, CloudflareConfigError> {
        Self::with(config, Clock::System)
    }

    /// Like [`CloudflareVerifier::new`], with a key cache that ages its key set by `clock`
    /// instead of the system's clock: a test moves past the cache TTL, the refetch cooldown or
    /// the staleness limit with [`TestClock::advance`] instead of sleeping. Only the key cache
    /// reads it; `exp` and `nbf` are checked against the system's time as always.
    #[cfg(feature = "testing")]
    pub fn with_clock(
        config: CloudflareConfig,
        clock: TestClock,
    ) -> Result<Self, CloudflareConfigError> {
        Self::with(config, Clock::Test(clock))
    }

    fn with(config: CloudflareConfig, clock: Clock) -> Result<Self, CloudflareConfigError> {
        config.validate()?;
        install_crypto_provider();
        let keys = Arc::new(KeyCache::new(&config, clock)?);
        Ok(CloudflareVerifier {
            inner: Arc::new(Inner {
                issuer: config.issuer(),
                validation: token::validation(&config),
                keys,
                tokens: TokenCache::new(config.token_cache_capacity, config.leeway),
                verifications: AtomicU64::new(0),
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
    ///
    /// A token verified before (the same bytes) is accepted from the cache while its `exp` and
    /// `nbf` hold with the leeway and the key set still holds the key that verified it; the key
    /// is looked up exactly as for a new token, so a stale key set or a retired key refuses it.
    pub async fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        let inner = &*self.inner;
        // Only what the pre-checks could accept is hashed: never an oversized token.
        let digest = (inner.tokens.is_enabled()
            && !token.is_empty()
            && token.len() <= token::MAX_TOKEN_BYTES)
            .then(|| inner.tokens.digest(token));
        if let Some(digest) = &digest {
            match inner
                .tokens
                .lookup(digest, jsonwebtoken::get_current_timestamp())
            {
                Lookup::Miss => {}
                Lookup::Refused(error) => return Err(error),
                Lookup::Hit(entry) => match inner.keys.key(&entry.kid).await {
                    Ok(key) if cache::same_key(&key, &entry.key) => {
                        return Ok(entry.identity.clone())
                    }
                    // The kid now names another key: verify the token against that one.
                    Ok(_) => inner.tokens.remove(digest),
                    Err(error) => {
                        inner.tokens.remove(digest);
                        return Err(error);
                    }
                },
            }
        }
        let verified = self.verify_uncached(token).await?;
        let identity = verified.identity.clone();
        if let Some(digest) = digest {
            inner.tokens.insert(digest, verified);
        }
        Ok(identity)
    }

    /// Every check, from the pre-checks to the identity; what the cache keeps of a success.
    async fn verify_uncached(&self, token: &str) -> Result<Verified, AuthError> {
        let kid = token::precheck(token)?;
        let key = self.inner.keys.key(&kid).await?;
        self.inner.verifications.fetch_add(1, Ordering::Relaxed);
        let decoded =
            jsonwebtoken::decode::<Map<String, Value>>(token, &key, &self.inner.validation)
                .map_err(|e| token::reason(&e))?;
        let identity = token::identity(&decoded.claims, &self.inner.issuer)?;
        // `identity` checked that `exp` (required by the validation) and `nbf` are integers.
        let exp = decoded.claims.get("exp").and_then(Value::as_u64);
        let exp = exp.ok_or_else(|| AuthError::unauthenticated("token has no `exp` claim"))?;
        Ok(Verified {
            identity,
            kid,
            key,
            exp,
            nbf: decoded.claims.get("nbf").and_then(Value::as_u64),
        })
    }

    /// Finds the token in `headers` (see [`token_from_headers`]) and verifies it; no token is
    /// 401 "no Cloudflare Access token".
    pub async fn authenticate(&self, headers: &http::HeaderMap) -> Result<Identity, AuthError> {
        match token_from_headers(headers)? {
            Some(token) => self.verify(token).await,
            None => Err(AuthError::unauthenticated("no Cloudflare Access token")),
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

    /// Waits until `n` fetches of the certs document have ended, the keys of each (if it got
    /// any) in place: what a test waits on after a refresh it caused (with a bound of its own).
    pub async fn fetches_ended(&self, n: u64) {
        self.inner.keys.fetches_ended(n).await
    }

    /// The key ids currently cached, sorted.
    pub fn known_kids(&self) -> Vec<String> {
        self.inner.keys.known_kids()
    }

    /// How many tokens reached the signature check: every verification that was not answered
    /// from the verified-token cache and got past the pre-checks and the key lookup (for tests
    /// and benchmarks).
    pub fn verification_count(&self) -> u64 {
        self.inner.verifications.load(Ordering::Relaxed)
    }

    /// How many verified tokens are cached now (never more than
    /// [`CloudflareConfig::token_cache_capacity`]).
    pub fn cached_token_count(&self) -> usize {
        self.inner.tokens.len()
    }

    /// Forgets every verified token: each is verified in full on its next use (for benchmarks
    /// of the cold path, or to drop every cached identity at once).
    pub fn forget_verified_tokens(&self) {
        self.inner.tokens.clear();
    }
}
