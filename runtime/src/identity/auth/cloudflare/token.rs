//! The token itself: cheap checks that run before any network, and the claim checks that turn a
//! signature-verified token into an [`Identity`].

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::{Map, Value};

use super::CloudflareConfig;
use crate::identity::auth::{AuthError, Identity};

/// Largest token accepted, in bytes. Cloudflare's tokens are around 1 KiB.
pub(crate) const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// Longest `kid` accepted; longer ones are refused before they reach the key cache.
const MAX_KID_BYTES: usize = 256;

/// Header parameters that point at, embed or constrain keys; Cloudflare never sends them and we
/// never honour them, so their presence alone refuses the token.
const FORBIDDEN_HEADER_PARAMS: [&str; 5] = ["jku", "x5u", "jwk", "x5c", "crit"];

/// Checks what can be checked without a key and returns the token's `kid`: size, three
/// base64url segments, a JSON header with `alg` RS256, a `kid`, and no key-carrying parameters.
pub(crate) fn precheck(token: &str) -> Result<String, AuthError> {
    if token.is_empty() {
        return Err(AuthError::unauthenticated("empty token"));
    }
    if token.len() > MAX_TOKEN_BYTES {
        return Err(AuthError::unauthenticated("token too large"));
    }
    if token.starts_with("Bearer ") || token.starts_with("bearer ") {
        return Err(AuthError::unauthenticated(
            "a `Bearer ` prefix is not accepted",
        ));
    }
    let segments: Vec<&str> = token.split('.').collect();
    if segments.len() != 3 {
        return Err(AuthError::unauthenticated("token must have three segments"));
    }
    let is_b64url = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if segments.iter().any(|s| s.is_empty() || !is_b64url(s)) {
        return Err(AuthError::unauthenticated(
            "token segments must be non-empty unpadded base64url",
        ));
    }
    let header_bytes = URL_SAFE_NO_PAD
        .decode(segments[0])
        .map_err(|_| AuthError::unauthenticated("token header is not base64url"))?;
    let header: Map<String, Value> = serde_json::from_slice(&header_bytes)
        .map_err(|_| AuthError::unauthenticated("token header is not a JSON object"))?;
    if let Some(param) = FORBIDDEN_HEADER_PARAMS
        .iter()
        .find(|p| header.contains_key(**p))
    {
        return Err(AuthError::unauthenticated(format!(
            "token header parameter `{param}` is not accepted"
        )));
    }
    match header.get("alg") {
        Some(Value::String(alg)) if alg == "RS256" => {}
        Some(Value::String(alg)) => {
            return Err(AuthError::unauthenticated(format!(
                "algorithm `{alg}` is not accepted"
            )))
        }
        _ => return Err(AuthError::unauthenticated("token header has no algorithm")),
    }
    match header.get("kid") {
        Some(Value::String(kid)) if !kid.is_empty() && kid.len() <= MAX_KID_BYTES => {
            Ok(kid.clone())
        }
        Some(Value::String(kid)) if !kid.is_empty() => {
            Err(AuthError::unauthenticated("token key id too long"))
        }
        _ => Err(AuthError::unauthenticated("token header has no key id")),
    }
}

/// The `jsonwebtoken` validation for `config`: RS256 only, pinned issuer and audience, `exp`
/// required and checked with the leeway, `nbf` checked when present.
pub(crate) fn validation(config: &CloudflareConfig) -> Validation {
    let mut validation = Validation::new(Algorithm::RS256);
    validation.leeway = config.leeway.as_secs();
    validation.validate_exp = true;
    validation.validate_nbf = true;
    validation.validate_aud = true;
    validation.set_issuer(&[config.issuer()]);
    validation.set_audience(&[config.audience.as_str()]);
    validation.set_required_spec_claims(&["exp", "iss", "aud"]);
    validation
}

/// A short reason for a `jsonwebtoken` failure.
pub(crate) fn reason(error: &jsonwebtoken::errors::Error) -> AuthError {
    let reason = match error.kind() {
        ErrorKind::ExpiredSignature => "token expired".to_owned(),
        ErrorKind::ImmatureSignature => "token not yet valid (nbf)".to_owned(),
        ErrorKind::InvalidAudience => "token audience does not match".to_owned(),
        ErrorKind::InvalidIssuer => "token issuer does not match".to_owned(),
        ErrorKind::InvalidSignature => "token signature does not verify".to_owned(),
        ErrorKind::InvalidAlgorithm => "algorithm is not accepted".to_owned(),
        ErrorKind::MissingRequiredClaim(claim) => format!("token has no `{claim}` claim"),
        ErrorKind::InvalidClaimFormat(claim) => format!("claim `{claim}` must be a number"),
        ErrorKind::Json(_) | ErrorKind::Utf8(_) | ErrorKind::Base64(_) => {
            "token is malformed".to_owned()
        }
        _ => "token does not verify".to_owned(),
    };
    AuthError::unauthenticated(reason)
}

/// The checks that follow a successful `jsonwebtoken::decode`: claim types it tolerates (float
/// or array forms), then `type == "app"` and the user or service-token identity.
pub(crate) fn identity(claims: &Map<String, Value>, issuer: &str) -> Result<Identity, AuthError> {
    // jsonwebtoken 11 rounds float `exp`/`nbf` and accepts an `iss` array: be strict here.
    for name in ["exp", "nbf"] {
        match claims.get(name) {
            None => {}
            Some(Value::Number(n)) if n.is_u64() => {}
            Some(_) => {
                return Err(AuthError::unauthenticated(format!(
                    "claim `{name}` must be an integer"
                )))
            }
        }
    }
    if claims.get("iss").and_then(Value::as_str) != Some(issuer) {
        return Err(AuthError::unauthenticated("token issuer does not match"));
    }
    match optional_str(claims, "type")? {
        Some("app") => {}
        Some("org") => {
            return Err(AuthError::unauthenticated(
                "an organization token (`type: org`) is not accepted",
            ))
        }
        Some(_) => return Err(AuthError::unauthenticated("token type is not `app`")),
        None => return Err(AuthError::unauthenticated("token has no `type` claim")),
    }
    let email = optional_str(claims, "email")?.filter(|e| !e.trim().is_empty());
    let sub = optional_str(claims, "sub")?;
    // A control character (NUL above all: PostgreSQL text cannot hold it) names no one.
    for (name, value) in [("email", email), ("sub", sub)] {
        if value.is_some_and(|v| v.contains(char::is_control)) {
            return Err(AuthError::unauthenticated(format!(
                "claim `{name}` contains a control character"
            )));
        }
    }
    if let Some(email) = email {
        return Ok(Identity::User {
            email: email.to_owned(),
            sub: sub.filter(|s| !s.is_empty()).map(str::to_owned),
        });
    }
    let common_name = optional_str(claims, "common_name")?.filter(|c| !c.trim().is_empty());
    if common_name.is_some_and(|c| c.contains(char::is_control)) {
        return Err(AuthError::unauthenticated(
            "claim `common_name` contains a control character",
        ));
    }
    match (sub, common_name) {
        (Some(""), Some(common_name)) => Ok(Identity::Service {
            common_name: common_name.to_owned(),
        }),
        _ => Err(AuthError::unauthenticated(
            "token names neither a user email nor a service token",
        )),
    }
}

fn optional_str<'a>(
    claims: &'a Map<String, Value>,
    name: &str,
) -> Result<Option<&'a str>, AuthError> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(AuthError::unauthenticated(format!(
            "claim `{name}` must be a string"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::DecodingKey;
    use serde_json::json;

    fn b64(value: &Value) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap())
    }

    fn with_header(header: Value) -> String {
        format!("{}.{}.c2ln", b64(&header), b64(&json!({})))
    }

    fn reason_of(token: &str) -> String {
        match precheck(token).unwrap_err() {
            AuthError::Unauthenticated(reason) => reason,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn precheck_returns_the_kid() {
        let token = with_header(json!({"alg": "RS256", "kid": "k1", "typ": "JWT"}));
        assert_eq!(precheck(&token).unwrap(), "k1");
    }

    #[test]
    fn precheck_refuses_before_any_key_is_needed() {
        assert_eq!(reason_of(""), "empty token");
        assert_eq!(
            reason_of(&"a".repeat(MAX_TOKEN_BYTES + 1)),
            "token too large"
        );
        assert!(reason_of("a.b").contains("three segments"));
        assert!(reason_of(&with_header(json!({"alg": "none", "kid": "k"}))).contains("`none`"));
        assert!(reason_of(&with_header(json!({"alg": "RS256"}))).contains("no key id"));
        assert!(reason_of(&with_header(json!({"alg": "RS256", "kid": ""}))).contains("no key id"));
        assert!(reason_of(&with_header(json!({"alg": "RS256", "kid": 7}))).contains("no key id"));
        assert!(reason_of(&with_header(json!({"kid": "k"}))).contains("no algorithm"));
        let long_kid = "k".repeat(MAX_KID_BYTES + 1);
        assert!(
            reason_of(&with_header(json!({"alg": "RS256", "kid": long_kid}))).contains("too long")
        );
        for param in FORBIDDEN_HEADER_PARAMS {
            let token = with_header(json!({"alg": "RS256", "kid": "k", param: "x"}));
            assert!(reason_of(&token).contains(param), "{param}");
        }
    }

    /// Why [`identity`] re-checks `exp`: jsonwebtoken 11 alone accepts a float `exp`.
    #[test]
    fn jsonwebtoken_alone_accepts_a_float_exp() {
        crate::identity::auth::cloudflare::install_crypto_provider();
        let exp = jsonwebtoken::get_current_timestamp() as f64 + 600.5;
        let claims = json!({"exp": exp, "iss": "i", "aud": "a"});
        let input = format!(
            "{}.{}",
            b64(&json!({"alg": "RS256", "typ": "JWT"})),
            b64(&claims)
        );
        let signature = super::super::crypto::sign_rs256_with_key_a(input.as_bytes());
        let token = format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature));
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_issuer(&["i"]);
        validation.set_audience(&["a"]);
        let n = include_str!("../../../testing/keys/test_key_a.n").trim();
        let key = DecodingKey::from_rsa_components(n, "AQAB").unwrap();
        let decoded = jsonwebtoken::decode::<Map<String, Value>>(&token, &key, &validation);
        let decoded = decoded.expect("jsonwebtoken accepts a float exp");
        assert!(identity(&decoded.claims, "i").is_err());
    }

    #[test]
    fn identity_needs_type_app_and_a_principal() {
        let base = json!({"iss": "i", "exp": 1, "type": "app"});
        let with = |extra: Value| {
            let mut claims = base.as_object().unwrap().clone();
            claims.extend(extra.as_object().unwrap().clone());
            identity(&claims, "i")
        };
        assert_eq!(
            with(json!({"email": "a@b.c", "sub": "s"})).unwrap(),
            Identity::User {
                email: "a@b.c".into(),
                sub: Some("s".into())
            }
        );
        assert_eq!(
            with(json!({"sub": "", "common_name": "x.access"})).unwrap(),
            Identity::Service {
                common_name: "x.access".into()
            }
        );
        assert!(with(json!({"type": "org", "email": "a@b.c"})).is_err());
        assert!(with(json!({"email": ""})).is_err());
        assert!(with(json!({"sub": "u", "common_name": "x"})).is_err());
        assert!(with(json!({"sub": "", "common_name": ""})).is_err());
        assert!(with(json!({"email": 5})).is_err());
        assert!(with(json!({"iss": ["i"], "email": "a@b.c"})).is_err());
        assert!(with(json!({"nbf": "1", "email": "a@b.c"})).is_err());
        assert!(with(json!({"email": "a\0@b.c"})).is_err());
        assert!(with(json!({"sub": "", "common_name": "x\0.access"})).is_err());
    }
}
