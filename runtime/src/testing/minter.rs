//! [`TokenMinter`] and [`TestToken`]: Cloudflare-shaped Access tokens signed with a [`TestKey`],
//! with every claim and header parameter overridable.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::signature::{self as sig, RsaEncoding};
use serde_json::{json, Map, Value};

use super::TestKey;
use crate::identity::auth::cloudflare::CloudflareConfig;

/// Mints tokens as one Cloudflare Access team and application would.
///
/// ```
/// use tenantry_runtime::testing::{TestKey, TokenMinter};
///
/// let minter = TokenMinter::new("acme.cloudflareaccess.com", "aud-tag", &TestKey::A);
/// let good = minter.user("ada@example.com").sign();
/// let expired = minter.user("ada@example.com").expires_in(-3600).sign();
/// let org = minter.user("ada@example.com").claim("type", "org").sign();
/// let service = minter.service("ci.access").sign();
/// assert_eq!(good.split('.').count(), 3);
/// # let _ = (expired, org, service);
/// ```
#[derive(Debug, Clone)]
pub struct TokenMinter {
    issuer: String,
    audience: String,
    key: &'static TestKey,
}

impl TokenMinter {
    /// A minter for `team_domain` (issuer `https://<team_domain>`) and the AUD tag `audience`,
    /// signing with `key`.
    pub fn new(team_domain: &str, audience: &str, key: &'static TestKey) -> Self {
        TokenMinter {
            issuer: format!("https://{team_domain}"),
            audience: audience.to_owned(),
            key,
        }
    }

    /// A minter matching `config`'s issuer and audience.
    pub fn for_config(config: &CloudflareConfig, key: &'static TestKey) -> Self {
        TokenMinter {
            issuer: config.issuer(),
            audience: config.audience.clone(),
            key,
        }
    }

    /// The same minter signing with another key (and naming its `kid`).
    pub fn with_key(&self, key: &'static TestKey) -> Self {
        TokenMinter {
            key,
            ..self.clone()
        }
    }

    /// A user's identity token: `aud` (array), `email`, `exp` (in 5 minutes), `iat`, `nbf`,
    /// `iss`, `type: app`, `identity_nonce`, `sub` (derived from the email), `country`.
    pub fn user(&self, email: &str) -> TestToken {
        let now = now();
        self.token(json!({
            "aud": [self.audience],
            "email": email,
            "exp": now + 300,
            "iat": now,
            "nbf": now,
            "iss": self.issuer,
            "type": "app",
            "identity_nonce": "tenantry-test-nonce",
            "sub": sub_for(email),
            "country": "XX",
        }))
    }

    /// A service token: `type: app`, `aud`, `exp`, `iss`, `iat`, `common_name`, `sub: ""`, and
    /// no `email` or `nbf`, as Cloudflare sends it.
    pub fn service(&self, common_name: &str) -> TestToken {
        let now = now();
        self.token(json!({
            "type": "app",
            "aud": [self.audience],
            "exp": now + 300,
            "iss": self.issuer,
            "iat": now,
            "common_name": common_name,
            "sub": "",
        }))
    }

    fn token(&self, claims: Value) -> TestToken {
        TestToken {
            header: as_map(json!({"alg": "RS256", "kid": self.key.kid(), "typ": "JWT"})),
            claims: as_map(claims),
            key: self.key,
        }
    }
}

/// A token being built: change its claims or header, then [`sign`](TestToken::sign) it.
#[derive(Debug, Clone)]
pub struct TestToken {
    header: Map<String, Value>,
    claims: Map<String, Value>,
    key: &'static TestKey,
}

impl TestToken {
    /// Sets claim `name` (e.g. `.claim("aud", "other")`, `.claim("exp", json!("1700000000"))`).
    pub fn claim(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.claims.insert(name.to_owned(), value.into());
        self
    }

    /// Removes claim `name`.
    pub fn without_claim(mut self, name: &str) -> Self {
        self.claims.remove(name);
        self
    }

    /// Sets `exp` to now plus `seconds` (negative: in the past).
    pub fn expires_in(self, seconds: i64) -> Self {
        let exp = now() + seconds;
        self.claim("exp", exp)
    }

    /// Sets `nbf` to now plus `seconds` (positive: in the future).
    pub fn not_before_in(self, seconds: i64) -> Self {
        let nbf = now() + seconds;
        self.claim("nbf", nbf)
    }

    /// Sets header parameter `name` (e.g. `.header("alg", "RS384")`, `.header("jku", url)`).
    pub fn header(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.header.insert(name.to_owned(), value.into());
        self
    }

    /// Removes header parameter `name`.
    pub fn without_header(mut self, name: &str) -> Self {
        self.header.remove(name);
        self
    }

    /// Signs with `key` but keeps the header's `kid` (a "right kid, other key" forgery).
    pub fn signed_by(mut self, key: &'static TestKey) -> Self {
        self.key = key;
        self
    }

    /// The claims as they will be encoded.
    pub fn claims(&self) -> &Map<String, Value> {
        &self.claims
    }

    /// The header as it will be encoded.
    pub fn header_params(&self) -> &Map<String, Value> {
        &self.header
    }

    /// The signed token. The RSA algorithm named by the header's `alg` is used (RS256/384/512,
    /// PS256/384/512); for any other `alg` the signature is RS256, so a token whose header
    /// was tampered with still carries a real signature.
    pub fn sign(&self) -> String {
        let padding: &'static dyn RsaEncoding = match self.header.get("alg").and_then(Value::as_str)
        {
            Some("RS384") => &sig::RSA_PKCS1_SHA384,
            Some("RS512") => &sig::RSA_PKCS1_SHA512,
            Some("PS256") => &sig::RSA_PSS_SHA256,
            Some("PS384") => &sig::RSA_PSS_SHA384,
            Some("PS512") => &sig::RSA_PSS_SHA512,
            _ => &sig::RSA_PKCS1_SHA256,
        };
        let pair = self.key.key_pair();
        self.signed(|input| {
            let mut signature = vec![0; pair.public().modulus_len()];
            pair.sign(
                padding,
                &ring::rand::SystemRandom::new(),
                input,
                &mut signature,
            )
            .expect("test keys can sign");
            signature
        })
    }

    /// Signed with HMAC-SHA256 under `secret`, header `alg` set to `HS256` (e.g. the
    /// algorithm-confusion attack with [`TestKey::public_key_pem`] as the secret).
    pub fn sign_hs256(&self, secret: &[u8]) -> String {
        let token = self.clone().header("alg", "HS256");
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
        token.signed(|input| ring::hmac::sign(&key, input).as_ref().to_vec())
    }

    /// No signature: header `alg` set to `none` and an empty third segment.
    pub fn unsigned(&self) -> String {
        let token = self.clone().header("alg", "none");
        format!("{}.", token.signing_input())
    }

    fn signing_input(&self) -> String {
        let encode = |map: &Map<String, Value>| {
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(map).expect("JSON maps serialize"))
        };
        format!("{}.{}", encode(&self.header), encode(&self.claims))
    }

    /// The token with the signature `sign` makes of its signing input (the test kit signs with
    /// ring: tenantry's jsonwebtoken provider only verifies).
    fn signed(&self, sign: impl FnOnce(&[u8]) -> Vec<u8>) -> String {
        let input = self.signing_input();
        let signature = URL_SAFE_NO_PAD.encode(sign(input.as_bytes()));
        format!("{input}.{signature}")
    }
}

fn as_map(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => unreachable!("built from json!({{...}})"),
    }
}

fn now() -> i64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_secs()).unwrap_or(i64::MAX)
}

/// A stable UUID-shaped `sub` for `email` (FNV-1a), so the same email always has the same `sub`.
fn sub_for(email: &str) -> String {
    let fnv = |seed: u64| {
        email.bytes().fold(seed, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        })
    };
    let bits =
        (u128::from(fnv(0xcbf2_9ce4_8422_2325)) << 64) | u128::from(fnv(0x8422_2325_cbf2_9ce4));
    uuid::Uuid::from_u128(bits).to_string()
}
