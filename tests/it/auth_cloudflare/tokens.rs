//! Tokens: every claim and header check, each against a token that is valid but for that one thing.

use serde_json::json;
use tenantry::auth::Identity;
use tenantry::testing::{CertsServer, TestKey};

use super::{Env, AUD, TEAM};

#[tokio::test]
async fn valid_user_token_is_accepted() {
    let env = Env::new().await;
    let token = env
        .ada()
        .claim("sub", "7335d417-61da-459d-899c-0a01c76a2b3b");
    let identity = env.verify(&token.sign()).await.unwrap();
    assert_eq!(
        identity,
        Identity::User {
            email: "ada@example.com".into(),
            sub: Some("7335d417-61da-459d-899c-0a01c76a2b3b".into()),
        }
    );
}

#[tokio::test]
async fn valid_service_token_without_nbf_is_accepted() {
    let env = Env::new().await;
    let token = env.minter.service("b1d5a4c2.access");
    assert!(!token.claims().contains_key("nbf") && !token.claims().contains_key("email"));
    let identity = env.verify(&token.sign()).await.unwrap();
    assert_eq!(
        identity,
        Identity::Service {
            common_name: "b1d5a4c2.access".into()
        }
    );
}

#[tokio::test]
async fn organization_token_is_refused() {
    let env = Env::new().await;
    let reason = env.refused(&env.ada().claim("type", "org").sign()).await;
    assert!(reason.contains("org"), "{reason}");
    env.refused(&env.ada().without_claim("type").sign()).await;
}

#[tokio::test]
async fn token_without_a_principal_is_refused() {
    let env = Env::new().await;
    env.refused(&env.minter.user("").sign()).await;
    // A service token whose `sub` is not empty is not a service token.
    env.refused(
        &env.minter
            .service("ci.access")
            .claim("sub", "someone")
            .sign(),
    )
    .await;
    env.refused(&env.minter.service("").sign()).await;
}

#[tokio::test]
async fn alg_none_is_refused() {
    let env = Env::new().await;
    let user = env.ada();
    let reason = env.refused(&user.unsigned()).await;
    assert!(reason.contains("segments"), "{reason}");
    // Even with a real RSA signature attached, `alg: none` is refused.
    let reason = env
        .refused(&user.clone().header("alg", "none").sign())
        .await;
    assert!(reason.contains("`none`"), "{reason}");
}

#[tokio::test]
async fn hs256_signed_with_the_public_key_is_refused() {
    let env = Env::new().await;
    let user = env.ada();
    let jwk = TestKey::A.jwk();
    let modulus = jwk["n"].as_str().unwrap();
    for secret in [TestKey::A.public_key_pem(), modulus] {
        let reason = env.refused(&user.sign_hs256(secret.as_bytes())).await;
        assert!(reason.contains("HS256"), "{reason}");
    }
}

#[tokio::test]
async fn other_algorithms_are_refused() {
    let env = Env::new().await;
    for alg in ["RS384", "RS512", "PS256", "ES256", "EdDSA", "rs256"] {
        let token = env.ada().header("alg", alg).sign();
        let reason = env.refused(&token).await;
        assert!(reason.contains(alg), "{alg}: {reason}");
    }
    env.refused(&env.ada().without_header("alg").sign()).await;
}

#[tokio::test]
async fn missing_kid_is_refused() {
    let env = Env::new().await;
    let reason = env.refused(&env.ada().without_header("kid").sign()).await;
    assert!(reason.contains("key id"), "{reason}");
    env.refused(&env.ada().header("kid", "").sign()).await;
    assert_eq!(env.verifier.fetch_count(), 0, "refused before any network");
}

#[tokio::test]
async fn right_kid_signed_by_another_key_is_refused() {
    let env = Env::new().await;
    let forged = env.ada().signed_by(&TestKey::C).sign();
    let reason = env.refused(&forged).await;
    assert!(reason.contains("signature"), "{reason}");
}

#[tokio::test]
async fn key_carrying_header_parameters_are_refused() {
    let env = Env::new().await;
    let attacker = CertsServer::start(&[&TestKey::C]).await.unwrap();
    let attacker_minter = env.minter.with_key(&TestKey::C);
    let user = || attacker_minter.user("ada@example.com");
    let cases = [
        ("jku", user().header("jku", attacker.url()).sign()),
        ("x5u", user().header("x5u", attacker.url()).sign()),
        ("jwk", user().header("jwk", TestKey::C.jwk()).sign()),
        (
            "x5c",
            user().header("x5c", json!([TestKey::C.cert_pem()])).sign(),
        ),
        ("crit", env.ada().header("crit", json!(["exp"])).sign()),
    ];
    for (param, token) in cases {
        let reason = env.refused(&token).await;
        assert!(reason.contains(param), "{param}: {reason}");
    }
    assert_eq!(
        attacker.request_count(),
        0,
        "a token never chooses where keys come from"
    );
    assert_eq!(env.verifier.fetch_count(), 0, "refused before any network");
}

#[tokio::test]
async fn audience_must_contain_the_tag() {
    let env = Env::new().await;
    let user = || env.ada();
    for aud in [
        json!("other-aud"),
        json!(["other-aud"]),
        json!(""),
        json!([]),
        json!([""]),
        json!(42),
    ] {
        let reason = env.refused(&user().claim("aud", aud.clone()).sign()).await;
        assert!(reason.contains("aud"), "{aud}: {reason}");
    }
    let reason = env.refused(&user().without_claim("aud").sign()).await;
    assert!(reason.contains("`aud`"), "{reason}");
    // Accepted: the bare string form, and an array holding the tag among others.
    env.accepted(&user().claim("aud", AUD).sign()).await;
    env.accepted(
        &user()
            .claim("aud", json!(["other-app", AUD, "third"]))
            .sign(),
    )
    .await;
}

#[tokio::test]
async fn issuer_must_match_exactly() {
    let env = Env::new().await;
    let user = || env.ada();
    for iss in [
        json!("https://evil.cloudflareaccess.com"),
        json!(format!("https://{TEAM}/")),
        json!(format!("http://{TEAM}")),
        json!(format!("https://{}", TEAM.to_uppercase())),
        json!(TEAM),
        json!([format!("https://{TEAM}")]),
        json!(""),
    ] {
        let reason = env.refused(&user().claim("iss", iss.clone()).sign()).await;
        assert!(reason.contains("issuer"), "{iss}: {reason}");
    }
    let reason = env.refused(&user().without_claim("iss").sign()).await;
    assert!(reason.contains("`iss`"), "{reason}");
    env.accepted(&user().claim("iss", format!("https://{TEAM}")).sign())
        .await;
}

#[tokio::test]
async fn expiry_is_checked_with_the_leeway() {
    let env = Env::new().await; // leeway 30 s
    let user = || env.ada();
    let reason = env.refused(&user().expires_in(-120).sign()).await;
    assert!(reason.contains("expired"), "{reason}");
    env.refused(&user().expires_in(-40).sign()).await;
    env.accepted(&user().expires_in(-10).sign()).await;
    let reason = env.refused(&user().without_claim("exp").sign()).await;
    assert!(reason.contains("`exp`"), "{reason}");
}

#[tokio::test]
async fn not_before_in_the_future_is_refused() {
    let env = Env::new().await;
    let user = || env.ada();
    let reason = env.refused(&user().not_before_in(120).sign()).await;
    assert!(reason.contains("nbf"), "{reason}");
    env.accepted(&user().not_before_in(10).sign()).await;
    env.accepted(&user().without_claim("nbf").sign()).await;
}

#[tokio::test]
async fn exp_and_nbf_must_be_integers() {
    let env = Env::new().await;
    let now = env.minter.user("x@example.com").claims()["iat"]
        .as_i64()
        .unwrap();
    let user = || env.ada();
    let future = now + 300;
    for (name, value) in [
        ("exp", json!(future.to_string())),
        ("exp", json!(future as f64)),
        ("exp", json!(future as f64 + 0.5)),
        ("exp", json!(null)),
        ("exp", json!(-1)),
        ("nbf", json!(now.to_string())),
        ("nbf", json!(now as f64)),
        ("nbf", json!(null)),
    ] {
        let reason = env.refused(&user().claim(name, value.clone()).sign()).await;
        assert!(
            reason.contains(name) || reason.contains("expired"),
            "{name}={value}: {reason}"
        );
    }
}

#[tokio::test]
async fn malformed_tokens_are_refused() {
    let env = Env::new().await;
    let good = env.ada().sign();
    let parts: Vec<&str> = good.split('.').collect();
    let (h, p, s) = (parts[0], parts[1], parts[2]);
    let padded = |seg: &str| format!("{seg}{}", "=".repeat(((4 - seg.len() % 4) % 4).max(1)));
    let cases = [
        ("two segments", format!("{h}.{p}")),
        ("four segments", format!("{good}.{s}")),
        ("empty signature", format!("{h}.{p}.")),
        ("padded header", format!("{}.{p}.{s}", padded(h))),
        ("padded signature", format!("{h}.{p}.{}", padded(s))),
        (
            "standard base64",
            format!("{}.{p}.{s}", h.replace('_', "/").replace('-', "+") + "+"),
        ),
        ("bad base64", format!("{h}!.{p}.{s}")),
        ("header not JSON", format!("bm90IGpzb24.{p}.{s}")),
        ("payload not JSON", format!("{h}.bm90IGpzb24.{s}")),
        ("Bearer prefix", format!("Bearer {good}")),
        ("leading space", format!(" {good}")),
        ("empty", String::new()),
    ];
    for (what, token) in cases {
        match env.verify(&token).await {
            Err(tenantry::auth::AuthError::Unauthenticated(_)) => {}
            other => panic!("{what}: expected 401, got {other:?}"),
        }
    }
    env.accepted(&good).await;
}

#[tokio::test]
async fn oversized_token_is_refused() {
    let env = Env::new().await;
    let big = env.ada().claim("padding", "x".repeat(9 * 1024)).sign();
    let reason = env.refused(&big).await;
    assert!(reason.contains("too large"), "{reason}");
    // A generous but ordinary token still passes.
    env.accepted(&env.ada().claim("padding", "x".repeat(2048)).sign())
        .await;
}
