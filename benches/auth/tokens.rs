//! (d) Token verification with cached keys, on one thread: `CloudflareVerifier::verify` on valid,
//! forged and malformed tokens, against plain `jsonwebtoken::decode` with the same key and the
//! RSA signature check alone.

use futures_util::FutureExt;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};
use tenantry::auth::cloudflare::CloudflareVerifier;
use tenantry::auth::{AuthError, Identity};
use tenantry::testing::{TestKey, TokenMinter};

use crate::measure::secs;
use crate::micro::{print_micro, run_micro, Micro};
use crate::{AUD, ROUNDS, TEAM, VIEWER};

/// The reason of a 401, or a panic.
fn refused_reason(result: Option<Result<Identity, AuthError>>) -> String {
    match result.expect("with cached keys `verify` never waits") {
        Err(AuthError::Unauthenticated(reason)) => reason,
        other => panic!("expected a 401, got {other:?}"),
    }
}

pub fn token_verification(verifier: &CloudflareVerifier, minter: &TokenMinter) {
    let valid = minter.user(VIEWER).sign();
    let forged = minter.user(VIEWER).signed_by(&TestKey::C).sign();
    let bad_alg = minter.user(VIEWER).header("alg", "RS384").sign();
    let no_kid = minter.user(VIEWER).without_header("kid").sign();

    // The same key the verifier caches (it builds it from the JWK's `n` and `e`).
    let jwk = TestKey::A.jwk();
    let key = DecodingKey::from_rsa_components(
        jwk["n"].as_str().expect("n"),
        jwk["e"].as_str().expect("e"),
    )
    .expect("RSA key");
    // Minimal: the RS256 signature and `exp`.
    let mut minimal = Validation::new(Algorithm::RS256);
    minimal.validate_aud = false;
    // What the verifier configures (runtime/src/auth/cloudflare/token.rs).
    let mut full = Validation::new(Algorithm::RS256);
    full.leeway = 30;
    full.validate_nbf = true;
    full.set_issuer(&[format!("https://{TEAM}")]);
    full.set_audience(&[AUD]);
    full.set_required_spec_claims(&["exp", "iss", "aud"]);
    let (message, signature) = valid.rsplit_once('.').expect("three segments");
    let b64 = |s: &str| {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s)
            .expect("base64url")
    };
    let signature_bytes = b64(signature);
    let ring_key = ring::signature::RsaPublicKeyComponents {
        n: b64(jwk["n"].as_str().expect("n")),
        e: b64(jwk["e"].as_str().expect("e")),
    };

    // Each call's outcome is checked once here, and cheaply again inside the loops.
    let verify = |token: &str| verifier.verify(token).now_or_never();
    assert_eq!(
        verify(&valid)
            .expect("no wait")
            .expect("valid token")
            .email(),
        VIEWER
    );
    assert!(refused_reason(verify(&forged)).contains("signature"));
    assert!(refused_reason(verify(&bad_alg)).contains("algorithm"));
    assert!(refused_reason(verify(&no_kid)).contains("key id"));
    let decode = |v: &Validation| jsonwebtoken::decode::<Map<String, Value>>(&valid, &key, v);
    assert!(decode(&minimal).is_ok() && decode(&full).is_ok());
    assert!(
        jsonwebtoken::crypto::verify(signature, message.as_bytes(), &key, Algorithm::RS256)
            .expect("verify")
    );

    let mut micros = vec![
        Micro::new(
            "jsonwebtoken::decode, minimal Validation (RS256, exp)",
            || {
                let d = decode(&minimal).expect("decodes");
                std::hint::black_box(d);
            },
        ),
        Micro::new(
            "jsonwebtoken::decode, the verifier's Validation (iss, aud, nbf)",
            || {
                let d = decode(&full).expect("decodes");
                std::hint::black_box(d);
            },
        ),
        Micro::new(
            "jsonwebtoken::crypto::verify: the RS256 signature alone",
            || {
                let ok = jsonwebtoken::crypto::verify(
                    std::hint::black_box(signature),
                    message.as_bytes(),
                    &key,
                    Algorithm::RS256,
                );
                assert!(matches!(ok, Ok(true)));
            },
        ),
        Micro::new(
            "reference: ring's RSA verify, same key and signature",
            || {
                let ok = ring_key.verify(
                    &ring::signature::RSA_PKCS1_2048_8192_SHA256,
                    std::hint::black_box(message.as_bytes()),
                    &signature_bytes,
                );
                assert!(ok.is_ok());
            },
        ),
        Micro::new("CloudflareVerifier::verify, valid user token -> Ok", || {
            let r = verify(&valid);
            assert!(matches!(r, Some(Ok(_))));
            std::hint::black_box(r);
        }),
        Micro::new(
            "verify, forged signature (kid A, signed by C) -> 401",
            || {
                let r = verify(&forged);
                assert!(matches!(r, Some(Err(_))));
                std::hint::black_box(r);
            },
        ),
        Micro::new("verify, `alg: RS384` -> 401 in the pre-checks", || {
            let r = verify(&bad_alg);
            assert!(matches!(r, Some(Err(_))));
            std::hint::black_box(r);
        }),
        Micro::new("verify, no `kid` -> 401 in the pre-checks", || {
            let r = verify(&no_kid);
            assert!(matches!(r, Some(Err(_))));
            std::hint::black_box(r);
        }),
    ];
    run_micro(&mut micros, ROUNDS * 2, secs(0.025));
    println!(
        "\n(d) token verification, keys cached, one thread; {} rotated rounds of {:.0} ms per call; \
         µs/call = median over rounds, ratio vs the first row, fastest = fastest round, CPU = thread CPU / calls",
        ROUNDS * 2,
        secs(0.025).as_secs_f64() * 1e3
    );
    println!(
        "    token: {} bytes, RS256, 2048-bit key (e = 65537)",
        valid.len()
    );
    print_micro(&mut micros, &[(0, "ratio")]);
}
