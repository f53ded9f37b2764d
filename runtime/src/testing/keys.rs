//! [`TestKey`]: fixed RSA key pairs for tests, and the Cloudflare-shaped certs document built
//! from them.
//!
//! The PEM files beside this module were made once with `openssl genrsa 2048` by
//! `keys/regenerate.sh`, which also wrote each modulus as base64url, so no test ever generates
//! or parses an RSA key to build a key set. THEY ARE PUBLIC: never trust them outside tests.

use serde_json::{json, Value};

/// One fixed, public, TEST-ONLY RSA key pair (2048 bits, exponent 65537).
#[derive(Debug, PartialEq, Eq)]
pub struct TestKey {
    kid: &'static str,
    private_pem: &'static str,
    public_pem: &'static str,
    cert_pem: &'static str,
    modulus: &'static str,
}

macro_rules! test_key {
    ($kid:literal, $file:literal) => {
        TestKey {
            kid: $kid,
            private_pem: include_str!(concat!("keys/test_key_", $file, ".pem")),
            public_pem: include_str!(concat!("keys/test_pub_", $file, ".pem")),
            cert_pem: include_str!(concat!("keys/test_cert_", $file, ".pem")),
            modulus: include_str!(concat!("keys/test_key_", $file, ".n")),
        }
    };
}

impl TestKey {
    /// The first test key (kid `tenantry-test-key-a`): what a certs server serves by default.
    pub const A: TestKey = test_key!("tenantry-test-key-a", "a");
    /// The second test key (kid `tenantry-test-key-b`): the "rotated to" key.
    pub const B: TestKey = test_key!("tenantry-test-key-b", "b");
    /// The third test key (kid `tenantry-test-key-c`): a key no certs server knows, to sign forgeries.
    pub const C: TestKey = test_key!("tenantry-test-key-c", "c");

    /// The key id (`kid`) this key is published under.
    pub fn kid(&self) -> &'static str {
        self.kid
    }

    /// The private key, PKCS#8 PEM.
    pub fn private_key_pem(&self) -> &'static str {
        self.private_pem
    }

    /// The public key, SPKI PEM (what an algorithm-confusion attacker would use as an HMAC secret).
    pub fn public_key_pem(&self) -> &'static str {
        self.public_pem
    }

    /// A self-signed certificate of the key, PEM (Cloudflare's `public_cert`).
    pub fn cert_pem(&self) -> &'static str {
        self.cert_pem
    }

    /// The key as Cloudflare publishes it: `{"kid","kty":"RSA","alg":"RS256","use":"sig","e","n"}`.
    pub fn jwk(&self) -> Value {
        json!({
            "kid": self.kid,
            "kty": "RSA",
            "alg": "RS256",
            "use": "sig",
            "e": "AQAB",
            "n": self.modulus.trim(),
        })
    }

    /// The same key published under another `kid` (for tests that need a key id mismatch).
    pub fn jwk_with_kid(&self, kid: &str) -> Value {
        let mut jwk = self.jwk();
        jwk["kid"] = Value::from(kid);
        jwk
    }

    /// The private key, for the minter's signatures.
    pub(crate) fn key_pair(&self) -> ring::signature::RsaKeyPair {
        use base64::Engine as _;
        let body: String = self
            .private_pem
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(body)
            .expect("the bundled test key is base64");
        ring::signature::RsaKeyPair::from_pkcs8(&der).expect("the bundled test key is PKCS#8")
    }
}

/// A certs document in Cloudflare's shape: `keys` (the JWKs), `public_cert` (the first key's
/// certificate) and `public_certs` (all of them).
pub fn certs_document(keys: &[&TestKey]) -> Value {
    let certs: Vec<Value> = keys
        .iter()
        .map(|key| json!({"kid": key.kid, "cert": key.cert_pem}))
        .collect();
    json!({
        "keys": keys.iter().map(|key| key.jwk()).collect::<Vec<_>>(),
        "public_cert": certs.first().cloned().unwrap_or(Value::Null),
        "public_certs": certs,
    })
}
