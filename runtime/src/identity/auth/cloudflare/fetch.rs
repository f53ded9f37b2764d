//! One fetch of the certs document: bounded in time and size, parsed into `kid → DecodingKey`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::DecodingKey;
use thiserror::Error;

use super::{CloudflareConfig, CloudflareConfigError};

/// The keys of one certs document, by `kid`.
pub(crate) type KeyMap = HashMap<String, Arc<DecodingKey>>;

/// Why a fetch of the certs document failed (logged, never shown to clients).
#[derive(Debug, Error)]
pub(crate) enum FetchError {
    #[error("request failed: {0}")]
    Request(#[from] reqwest::Error),
    #[error("timed out")]
    Timeout,
    #[error("answered with status {0}")]
    Status(reqwest::StatusCode),
    #[error("body larger than {0} bytes")]
    TooLarge(usize),
    #[error("body is not a JWK set: {0}")]
    Json(#[from] serde_json::Error),
    #[error("no usable RS256 signing key in the set")]
    NoKeys,
}

/// Fetches and parses the certs document.
#[derive(Debug)]
pub(crate) struct Fetcher {
    client: reqwest::Client,
    url: String,
    timeout: Duration,
    max_body: usize,
}

impl Fetcher {
    /// A fetcher for `config`'s certs URL, with the configured timeout and no redirects.
    pub(crate) fn new(config: &CloudflareConfig) -> Result<Self, CloudflareConfigError> {
        let mut builder = reqwest::Client::builder()
            .timeout(config.fetch_timeout)
            .connect_timeout(config.fetch_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("tenantry/", env!("CARGO_PKG_VERSION")));
        if config.certs_url_is_loopback() {
            builder = builder.no_proxy();
        }
        let client = builder
            .build()
            .map_err(|e| CloudflareConfigError::HttpClient(e.to_string()))?;
        Ok(Fetcher {
            client,
            url: config.certs_url(),
            timeout: config.fetch_timeout,
            max_body: config.max_body,
        })
    }

    /// The certs URL.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// One fetch, never longer than the fetch timeout and never reading more than `max_body`.
    pub(crate) async fn fetch(&self) -> Result<KeyMap, FetchError> {
        let body = tokio::time::timeout(self.timeout, self.fetch_body())
            .await
            .map_err(|_| FetchError::Timeout)??;
        let set: JwkSet = serde_json::from_slice(&body)?;
        let keys = usable_keys(&set);
        if keys.is_empty() {
            return Err(FetchError::NoKeys);
        }
        Ok(keys)
    }

    async fn fetch_body(&self) -> Result<Vec<u8>, FetchError> {
        let max = self.max_body;
        let mut response = self
            .client
            .get(&self.url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await?;
        if !response.status().is_success() {
            return Err(FetchError::Status(response.status()));
        }
        if response
            .content_length()
            .is_some_and(|len| len > max as u64)
        {
            return Err(FetchError::TooLarge(max));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await? {
            if body.len() + chunk.len() > max {
                return Err(FetchError::TooLarge(max));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

/// The RSA keys of `set` with a `kid`, `alg` RS256 (or absent) and `use` sig (or absent).
pub(crate) fn usable_keys(set: &JwkSet) -> KeyMap {
    set.keys
        .iter()
        .filter_map(|jwk| {
            let kid = jwk.common.key_id.as_ref().filter(|kid| !kid.is_empty())?;
            let alg_ok = matches!(jwk.common.key_algorithm, None | Some(KeyAlgorithm::RS256));
            let use_ok = matches!(
                jwk.common.public_key_use,
                None | Some(PublicKeyUse::Signature)
            );
            let AlgorithmParameters::RSA(rsa) = &jwk.algorithm else {
                return None;
            };
            if !alg_ok || !use_ok {
                return None;
            }
            let key = DecodingKey::from_rsa_components(&rsa.n, &rsa.e).ok()?;
            Some((kid.clone(), Arc::new(key)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keeps_only_rs256_signing_keys() {
        let rsa = |kid: &str, extra: serde_json::Value| {
            let mut key = json!({"kid": kid, "kty": "RSA", "n": "qg8q", "e": "AQAB"});
            key.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            key
        };
        let doc = json!({
            "keys": [
                rsa("good", json!({"alg": "RS256", "use": "sig"})),
                rsa("bare", json!({})),
                rsa("rs384", json!({"alg": "RS384"})),
                rsa("enc", json!({"use": "enc"})),
                {"kid": "ec", "kty": "EC", "crv": "P-256", "x": "AA", "y": "AA", "alg": "ES256"},
                {"kid": "hmac", "kty": "oct", "k": "c2VjcmV0"},
                {"kty": "RSA", "n": "qg8q", "e": "AQAB"},
            ],
            "public_cert": {"kid": "good", "cert": "-----BEGIN CERTIFICATE-----"},
            "public_certs": [{"kid": "good", "cert": "-----BEGIN CERTIFICATE-----"}],
        });
        let set: JwkSet = serde_json::from_value(doc).unwrap();
        let mut kids: Vec<_> = usable_keys(&set).into_keys().collect();
        kids.sort();
        assert_eq!(kids, ["bare", "good"]);
    }
}
