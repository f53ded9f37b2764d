//! (d) Token verification with cached keys, on one thread: ring's raw RSA check as the reference,
//! jsonwebtoken on tenantry's ring provider, and `CloudflareVerifier::verify` cold (cache off), on
//! a cache miss, on a hit, and refusing forged or malformed tokens.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use futures_util::FutureExt;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};
use tenantry::auth::cloudflare::CloudflareVerifier;
use tenantry::auth::{AuthError, Identity};
use tenantry::testing::{TestKey, TokenMinter};

use crate::measure::secs;
use crate::micro::{print_micro, run_micro, Micro, WARMUP};
use crate::{AUD, ROUNDS, TEAM, VIEWER};

/// Three verifiers of the same team and key set, fetched once each before the run.
pub struct Verifiers {
    /// The app's, read from settings: the default cache of verified tokens.
    pub app: CloudflareVerifier,
    /// `token_cache_capacity = 0`: every call verifies the signature and the claims.
    pub cold: CloudflareVerifier,
    /// The default cache, emptied before each call of the "cache miss" row.
    pub miss: CloudflareVerifier,
}

/// The reason of a 401, or a panic.
fn refused_reason(result: Option<Result<Identity, AuthError>>) -> String {
    match result.expect("with cached keys `verify` never waits") {
        Err(AuthError::Unauthenticated(reason)) => reason,
        other => panic!("expected a 401, got {other:?}"),
    }
}

/// `token` with one byte of its signature changed.
fn one_signature_byte_changed(token: &str) -> String {
    let (input, signature) = token.rsplit_once('.').expect("three segments");
    let mut bytes = URL_SAFE_NO_PAD.decode(signature).expect("base64url");
    bytes[100] ^= 0x01;
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(bytes))
}

pub fn token_verification(v: &Verifiers, minter: &TokenMinter) {
    let valid = minter.user(VIEWER).sign();
    let one_byte = one_signature_byte_changed(&valid);
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
    // What the verifier configures (runtime/src/auth/cloudflare/token.rs).
    let mut full = Validation::new(Algorithm::RS256);
    full.leeway = 30;
    full.validate_nbf = true;
    full.set_issuer(&[format!("https://{TEAM}")]);
    full.set_audience(&[AUD]);
    full.set_required_spec_claims(&["exp", "iss", "aud"]);
    let (message, signature) = valid.rsplit_once('.').expect("three segments");
    let b64 = |s: &str| URL_SAFE_NO_PAD.decode(s).expect("base64url");
    let signature_bytes = b64(signature);
    let ring_key = ring::signature::RsaPublicKeyComponents {
        n: b64(jwk["n"].as_str().expect("n")),
        e: b64(jwk["e"].as_str().expect("e")),
    };

    // Each call's outcome is checked once here, and again inside the loops.
    let verify = |verifier: &CloudflareVerifier, token: &str| verifier.verify(token).now_or_never();
    let expected = verify(&v.cold, &valid)
        .expect("no wait")
        .expect("valid token");
    assert!(matches!(&expected, Identity::User { email, sub: Some(_) } if email == VIEWER));
    for verifier in [&v.app, &v.miss] {
        assert_eq!(verify(verifier, &valid), Some(Ok(expected.clone())));
    }
    assert!(refused_reason(verify(&v.app, &one_byte)).contains("signature"));
    assert!(refused_reason(verify(&v.app, &forged)).contains("signature"));
    assert!(refused_reason(verify(&v.app, &bad_alg)).contains("algorithm"));
    assert!(refused_reason(verify(&v.app, &no_kid)).contains("key id"));
    let decode = || jsonwebtoken::decode::<Map<String, Value>>(&valid, &key, &full);
    assert_eq!(decode().expect("decodes").claims["email"], VIEWER);
    assert!(
        jsonwebtoken::crypto::verify(signature, message.as_bytes(), &key, Algorithm::RS256)
            .expect("verify")
    );
    let ok = |r: Option<Result<Identity, AuthError>>| {
        assert_eq!(r.as_ref(), Some(&Ok(expected.clone())));
        std::hint::black_box(r);
    };
    let refused = |r: Option<Result<Identity, AuthError>>| {
        assert!(matches!(r, Some(Err(AuthError::Unauthenticated(_)))));
        std::hint::black_box(r);
    };
    let counts = |v: &Verifiers| {
        [
            v.app.verification_count(),
            v.cold.verification_count(),
            v.miss.verification_count(),
        ]
    };
    let before = counts(v);

    let mut micros = vec![
        Micro::new(
            "reference: ring's RSA PKCS#1 SHA-256 verify, same key and signature",
            || {
                let r = ring_key.verify(
                    &ring::signature::RSA_PKCS1_2048_8192_SHA256,
                    std::hint::black_box(message.as_bytes()),
                    &signature_bytes,
                );
                assert!(r.is_ok());
            },
        ),
        Micro::new(
            "jsonwebtoken::crypto::verify on tenantry's ring provider: RS256 alone",
            || {
                let r = jsonwebtoken::crypto::verify(
                    std::hint::black_box(signature),
                    message.as_bytes(),
                    &key,
                    Algorithm::RS256,
                );
                assert!(matches!(r, Ok(true)));
            },
        ),
        Micro::new(
            "jsonwebtoken::decode, the verifier's Validation (iss, aud, nbf)",
            || {
                let d = decode().expect("decodes");
                assert_eq!(d.claims["email"], VIEWER);
                std::hint::black_box(d);
            },
        ),
        Micro::new("SHA-256 of the token (former cache key)", || {
            let d = ring::digest::digest(&ring::digest::SHA256, valid.as_bytes());
            std::hint::black_box(d);
        }),
        Micro::new("verify, cache off (cold): valid token -> Ok", || {
            ok(verify(&v.cold, &valid))
        }),
        Micro::new(
            "verify, cache miss: cache emptied, then valid token -> Ok",
            || {
                v.miss.forget_verified_tokens();
                ok(verify(&v.miss, &valid))
            },
        ),
        Micro::new(
            "forget_verified_tokens alone (part of the row above)",
            || {
                v.miss.forget_verified_tokens();
            },
        ),
        Micro::new("verify, cached: the same token again -> Ok", || {
            ok(verify(&v.app, &valid))
        }),
        Micro::new(
            "verify, one signature byte changed -> 401 (misses the cache)",
            || refused(verify(&v.app, &one_byte)),
        ),
        Micro::new(
            "verify, forged (kid A, signed by C) -> 401 after RSA",
            || refused(verify(&v.app, &forged)),
        ),
        Micro::new("verify, `alg: RS384` -> 401 in the pre-checks", || {
            refused(verify(&v.app, &bad_alg))
        }),
        Micro::new("verify, no `kid` -> 401 in the pre-checks", || {
            refused(verify(&v.app, &no_kid))
        }),
    ];
    let batch = secs(0.025);
    run_micro(&mut micros, ROUNDS * 2, batch);

    // Every cold and miss call verified; the hits did not; the refused copies never got cached.
    let calls = |label: &str| {
        let m = micros.iter().find(|m| m.label.starts_with(label));
        m.expect("row").calls + WARMUP
    };
    let after = counts(v);
    assert_eq!(
        after[0] - before[0],
        calls("verify, one signature") + calls("verify, forged"),
        "the app verifier's only signature checks are the two forgeries: every valid call hit"
    );
    assert_eq!(after[1] - before[1], calls("verify, cache off"));
    assert_eq!(after[2] - before[2], calls("verify, cache miss"));
    assert_eq!(v.app.cached_token_count(), 1);

    println!(
        "\n(d) token verification, keys cached, one thread; {} rotated rounds of {:.0} ms per call; \
         µs/call = median over rounds, x ring / x cold = ratio to the first row / to the cold verify, \
         fastest = fastest round, CPU = thread CPU / calls",
        ROUNDS * 2,
        batch.as_secs_f64() * 1e3
    );
    println!(
        "    token: {} bytes, RS256, 2048-bit key (e = 65537); signature checks counted by the \
         verifiers: every cold and miss call, no hit",
        valid.len()
    );
    print_micro(&mut micros, &[(0, "x ring"), (4, "x cold")]);
}
