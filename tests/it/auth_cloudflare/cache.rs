//! The verified-token cache: a token seen again skips the signature check (counted with
//! `verification_count`, never timed), and is refused as soon as its `exp` plus the leeway has
//! passed or its key has left the key set; a token differing in one byte never hits it; the
//! cache never holds more than its capacity.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::json;
use tenantry::auth::Identity;
use tenantry::testing::TestKey;

use super::{bounded, Env};

/// The clock the verifier reads (Unix seconds).
fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

/// `token` with one byte of its RSA signature changed.
fn with_one_signature_byte_changed(token: &str) -> String {
    let (input, signature) = token.rsplit_once('.').expect("three segments");
    let mut bytes = URL_SAFE_NO_PAD.decode(signature).expect("base64url");
    bytes[100] ^= 0x01;
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(bytes))
}

#[tokio::test]
async fn a_repeated_token_is_accepted_without_verifying_it_again() {
    let env = Env::new().await;
    let user = env.ada().claim("sub", "s-1").sign();
    let service = env.minter.service("ci.access").sign();
    let expected = Identity::User {
        email: "ada@example.com".into(),
        sub: Some("s-1".into()),
    };
    assert_eq!(env.verify(&user).await.unwrap(), expected);
    env.accepted(&service).await;
    assert_eq!(env.verifier.verification_count(), 2);
    for _ in 0..5 {
        assert_eq!(env.verify(&user).await.unwrap(), expected);
        assert_eq!(env.accepted(&service).await, "ci.access");
    }
    assert_eq!(
        env.verifier.verification_count(),
        2,
        "the repeats came from the cache"
    );
    assert_eq!(env.verifier.cached_token_count(), 2);
    // Forgotten: verified in full once more, then cached again.
    env.verifier.forget_verified_tokens();
    assert_eq!(env.verifier.cached_token_count(), 0);
    env.accepted(&user).await;
    env.accepted(&user).await;
    assert_eq!(env.verifier.verification_count(), 3);
}

#[tokio::test]
async fn a_token_differing_in_one_signature_byte_misses_the_cache_and_fails() {
    let env = Env::new().await;
    let token = env.ada().sign();
    env.accepted(&token).await;
    let forged = with_one_signature_byte_changed(&token);
    for round in 1..=3 {
        let reason = env.refused(&forged).await;
        assert!(reason.contains("signature"), "{reason}");
        // Every attempt went through the signature check: it neither hit nor got cached.
        assert_eq!(env.verifier.verification_count(), 1 + round);
        assert_eq!(env.verifier.cached_token_count(), 1);
    }
    env.accepted(&token).await;
    assert_eq!(
        env.verifier.verification_count(),
        4,
        "the genuine token still hits"
    );
}

#[tokio::test]
async fn refused_tokens_are_never_cached() {
    let env = Env::new().await;
    let refused = [
        env.ada().expires_in(-3600).sign(),
        env.ada().not_before_in(3600).sign(),
        env.ada().claim("aud", "another-app").sign(),
        env.ada().claim("type", "org").sign(),
    ];
    for round in 1..=2 {
        for token in &refused {
            env.refused(token).await;
        }
        assert_eq!(env.verifier.verification_count(), 4 * round);
    }
    assert_eq!(env.verifier.cached_token_count(), 0);
}

/// A token accepted within the leeway after its `exp` is cached, and refused from the cache (no
/// signature check) once `exp + leeway` has passed; the entry is gone after that.
#[tokio::test]
async fn a_cached_token_is_refused_once_exp_plus_the_leeway_has_passed() {
    let env = Env::new().await;
    let leeway = env.config.leeway.as_secs();
    assert_eq!(leeway, 30, "the default leeway");
    // Expired 29 s ago: accepted until `exp + 30`, i.e. for one more second at most. A slow
    // machine may cross that second before the first verification: then try again.
    let (token, exp) = bounded(async {
        loop {
            let exp = now() - (leeway - 1);
            let token = env.ada().claim("exp", exp).sign();
            if env.verify(&token).await.is_ok() {
                return (token, exp);
            }
        }
    })
    .await;
    let verified = env.verifier.verification_count();
    assert_eq!(env.verifier.cached_token_count(), 1);
    bounded(async {
        while now() <= exp + leeway {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert_eq!(env.refused(&token).await, "token expired");
    assert_eq!(
        env.verifier.verification_count(),
        verified,
        "refused by the cache itself"
    );
    assert_eq!(env.verifier.cached_token_count(), 0, "the entry died");
    assert_eq!(env.refused(&token).await, "token expired");
    assert_eq!(env.verifier.verification_count(), verified + 1);
}

#[tokio::test]
async fn a_cached_token_whose_key_rotated_out_is_refused() {
    let env = Env::new().await;
    let old = env.ada().sign();
    let new = env
        .minter
        .with_key(&TestKey::B)
        .user("ada@example.com")
        .sign();
    env.accepted(&old).await;
    env.accepted(&old).await;
    assert_eq!(env.verifier.verification_count(), 1);
    // Key A retired: the first token of key B makes the verifier fetch the new set.
    env.server.serve_keys(&[&TestKey::B]);
    env.after_cooldown();
    env.accepted(&new).await;
    assert_eq!(env.verifier.known_kids(), [TestKey::B.kid()]);
    let reason = env.refused(&old).await;
    assert!(reason.contains("unknown signing key"), "{reason}");
    assert_eq!(
        env.verifier.verification_count(),
        2,
        "refused at the key lookup, before any signature check"
    );
    assert_eq!(env.verifier.cached_token_count(), 1, "only key B's token");
}

/// The same `kid` republished with other key material: tokens that the old key verified are
/// verified again against the new key, and fail.
#[tokio::test]
async fn a_cached_token_whose_kid_now_names_another_key_is_verified_again() {
    let ttl = Duration::from_millis(5);
    let env = Env::with(|c| c.cache_ttl = ttl).await;
    let token = env.ada().sign();
    env.accepted(&token).await;
    env.server
        .serve_document(json!({"keys": [TestKey::B.jwk_with_kid(TestKey::A.kid())]}));
    // The clock passes the key set's TTL and the refetch cooldown (whichever is later), after
    // which a lookup refreshes in the background.
    env.pass(ttl.max(env.config.refetch_cooldown));
    // Past the TTL the known key still answers while a refresh runs in the background.
    env.accepted(&token).await;
    // The refresh it started has ended, its keys in place. `fetches_ended` counts failed
    // fetches too, and a failed one keeps key A, which still verifies the cached token: that was
    // this test's flake, a refetch outrunning a 500 ms timeout on a loaded machine. The timeout
    // is now far above what the local server takes (`fast_config`).
    bounded(env.verifier.fetches_ended(2)).await;
    assert_eq!(env.server.request_count(), 2, "one background refresh");
    assert_eq!(env.verifier.verification_count(), 1);
    let reason = env.refused(&token).await;
    assert!(reason.contains("signature"), "{reason}");
    assert_eq!(env.verifier.verification_count(), 2);
    assert_eq!(env.verifier.cached_token_count(), 0);
}

#[tokio::test]
async fn the_cache_never_holds_more_than_its_capacity() {
    let env = Env::with(|c| c.token_cache_capacity = 8).await;
    let tokens: Vec<String> = (0..40)
        .map(|i| env.minter.user(&format!("user{i}@example.com")).sign())
        .collect();
    for token in &tokens {
        env.accepted(token).await;
        assert!(env.verifier.cached_token_count() <= 8);
    }
    assert_eq!(env.verifier.verification_count(), 40);
    assert!(env.verifier.cached_token_count() >= 4, "it does cache");
    // The newest token survived the evictions; an evicted one is verified again.
    env.accepted(&tokens[39]).await;
    assert_eq!(env.verifier.verification_count(), 40);
}

#[tokio::test]
async fn capacity_zero_verifies_every_token() {
    let env = Env::with(|c| c.token_cache_capacity = 0).await;
    let token = env.ada().sign();
    for _ in 0..3 {
        env.accepted(&token).await;
    }
    assert_eq!(env.verifier.verification_count(), 3);
    assert_eq!(env.verifier.cached_token_count(), 0);
}
