//! Keys: the cache against a real local certs server that rotates, goes down, hangs or breaks.

use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::json;
use tenantry::auth::cloudflare::CloudflareVerifier;
use tenantry::auth::AuthError;
use tenantry::testing::{certs_document, CertsBehaviour, CertsServer, TestKey, TokenMinter};

use super::{bounded, fast_config, Env};

#[tokio::test]
async fn known_kid_is_served_from_the_cache() {
    let env = Env::new().await;
    let token = env.ada().sign();
    for _ in 0..5 {
        env.accepted(&token).await;
    }
    assert_eq!(env.verifier.fetch_count(), 1);
    assert_eq!(env.server.request_count(), 1);
    assert_eq!(env.verifier.known_kids(), [TestKey::A.kid()]);
}

#[tokio::test]
async fn unknown_kid_causes_one_fetch_then_a_cooldown() {
    // A cooldown far longer than ten refusals take, even on a loaded machine: the test says no
    // refetch happens within it.
    let env = Env::with(|c| c.refetch_cooldown = Duration::from_secs(1)).await;
    env.accepted(&env.ada().sign()).await;
    env.after_cooldown();
    let stranger = env
        .minter
        .with_key(&TestKey::C)
        .user("eve@example.com")
        .sign();
    let reason = env.refused(&stranger).await;
    assert!(reason.contains("unknown"), "{reason}");
    assert_eq!(
        env.server.request_count(),
        2,
        "one refetch for the unknown kid"
    );
    for _ in 0..10 {
        env.refused(&stranger).await;
    }
    assert_eq!(
        env.server.request_count(),
        2,
        "no refetch during the cooldown"
    );
    env.after_cooldown();
    env.refused(&stranger).await;
    assert_eq!(env.server.request_count(), 3, "one more after the cooldown");
}

#[tokio::test]
async fn thousand_concurrent_unknown_kids_cause_at_most_one_fetch_per_cooldown() {
    let env = Env::with(|c| c.refetch_cooldown = Duration::from_millis(1500)).await;
    let token = env.minter.user("eve@example.com").sign();
    let (_, rest) = token.split_once('.').unwrap();
    let forged = |i: usize| {
        let header = json!({"alg": "RS256", "kid": format!("invented-{i}"), "typ": "JWT"});
        format!("{}.{rest}", b64url(&header.to_string()))
    };
    // Round 0: nothing cached yet. Round 1: right after it. Round 2: after the cooldown.
    let mut rounds = Vec::new();
    for round in 0..3 {
        if round == 2 {
            env.after_cooldown();
        }
        let started = Instant::now();
        let before = env.server.request_count();
        let tasks: Vec<_> = (0..1000)
            .map(|i| {
                let verifier = env.verifier.clone();
                let token = forged(round * 1000 + i);
                tokio::spawn(async move { verifier.verify(&token).await })
            })
            .collect();
        for task in tasks {
            let result = bounded(task).await.unwrap();
            assert!(
                matches!(result, Err(AuthError::Unauthenticated(_))),
                "{result:?}"
            );
        }
        let fetches = env.server.request_count() - before;
        let elapsed = started.elapsed();
        let allowed = 1 + (elapsed.as_millis() / env.config.refetch_cooldown.as_millis()) as u64;
        assert!(
            fetches <= allowed,
            "round {round}: {fetches} fetches in {elapsed:?}"
        );
        rounds.push(fetches);
    }
    assert!(
        rounds[0] >= 1 && rounds[2] >= 1,
        "unknown kids do cause a refetch: {rounds:?}"
    );
    assert_eq!(env.verifier.fetch_count(), env.server.request_count());
    assert_eq!(env.verifier.known_kids(), [TestKey::A.kid()]);
}

#[tokio::test]
async fn rotation_overlap_keeps_both_keys_valid() {
    let env = Env::new().await;
    let old = env.minter.clone();
    let new = env.minter.with_key(&TestKey::B);
    env.accepted(&old.user("ada@example.com").sign()).await;
    env.server.serve_keys(&[&TestKey::A, &TestKey::B]);
    env.after_cooldown();
    // The first token signed by the new key triggers exactly one refetch...
    env.accepted(&new.user("ada@example.com").sign()).await;
    assert_eq!(env.server.request_count(), 2);
    // ...after which both keys verify, with no further fetch.
    let (old_token, new_token) = (
        old.user("ada@example.com").sign(),
        new.user("bob@example.com").sign(),
    );
    for _ in 0..3 {
        env.accepted(&old_token).await;
        env.accepted(&new_token).await;
    }
    assert_eq!(env.server.request_count(), 2);
    assert_eq!(
        env.verifier.known_kids(),
        [TestKey::A.kid(), TestKey::B.kid()]
    );
}

#[tokio::test]
async fn retired_key_stops_working_once_the_set_is_refreshed() {
    let env = Env::with(|c| c.cache_ttl = Duration::from_millis(400)).await;
    env.accepted(&env.ada().sign()).await;
    env.server.serve_keys(&[&TestKey::B]);
    env.pass(Duration::from_millis(400));
    // Past the TTL, the known key still answers at once while a refresh runs in the background.
    env.accepted(&env.ada().sign()).await;
    wait_for(|| env.verifier.known_kids() == [TestKey::B.kid()]).await;
    env.refused(&env.ada().sign()).await;
    env.accepted(
        &env.minter
            .with_key(&TestKey::B)
            .user("ada@example.com")
            .sign(),
    )
    .await;
}

/// The certs endpoint breaks as `behaviour` while it lists a new key B: the known key A keeps
/// working, B fails closed (proving a broken answer is never used), nothing hangs, and once the
/// endpoint recovers B is fetched.
async fn known_keys_survive(behaviour: CertsBehaviour) {
    let env = Env::new().await;
    let a = env.ada().sign();
    let b = env
        .minter
        .with_key(&TestKey::B)
        .user("bob@example.com")
        .sign();
    env.accepted(&a).await;
    env.server.serve_keys(&[&TestKey::A, &TestKey::B]);
    env.server.set_behaviour(behaviour.clone());
    env.after_cooldown();

    let started = Instant::now();
    let reason = env.refused(&b).await;
    let limit = env.config.fetch_timeout + Duration::from_millis(500);
    assert!(
        started.elapsed() < limit,
        "{behaviour:?}: took {:?}",
        started.elapsed()
    );
    assert!(reason.contains("unknown"), "{behaviour:?}: {reason}");
    assert_eq!(
        env.server.request_count(),
        2,
        "{behaviour:?}: the endpoint was asked"
    );
    env.accepted(&a).await;
    assert_eq!(
        env.verifier.known_kids(),
        [TestKey::A.kid()],
        "{behaviour:?}"
    );

    env.server.set_behaviour(CertsBehaviour::Serve);
    env.after_cooldown();
    env.accepted(&b).await;
}

#[tokio::test]
async fn endpoint_down_keeps_known_keys() {
    known_keys_survive(CertsBehaviour::Down).await;
}

#[tokio::test]
async fn endpoint_unavailable_keeps_known_keys() {
    known_keys_survive(CertsBehaviour::Unavailable).await;
}

#[tokio::test]
async fn endpoint_slow_keeps_known_keys_and_nothing_hangs() {
    known_keys_survive(CertsBehaviour::Slow(Duration::from_secs(30))).await;
}

#[tokio::test]
async fn endpoint_500_keeps_known_keys() {
    known_keys_survive(CertsBehaviour::ServerError).await;
}

#[tokio::test]
async fn endpoint_bad_json_keeps_known_keys() {
    known_keys_survive(CertsBehaviour::BadJson).await;
}

#[tokio::test]
async fn endpoint_oversized_keeps_known_keys() {
    known_keys_survive(CertsBehaviour::Oversized(200 * 1024)).await;
    known_keys_survive(CertsBehaviour::OversizedChunked(200 * 1024)).await;
}

#[tokio::test]
async fn known_keys_expire_at_the_staleness_limit() {
    let env = Env::with(|c| {
        c.cache_ttl = Duration::from_millis(200);
        c.max_staleness = Duration::from_millis(1200);
        c.refetch_cooldown = Duration::from_millis(100);
    })
    .await;
    let token = env.ada().sign();
    env.accepted(&token).await;
    env.server.set_behaviour(CertsBehaviour::Down);
    env.pass(Duration::from_millis(500));
    env.accepted(&token).await; // stale but within the limit
    env.pass(Duration::from_millis(900));
    let reason = env.refused(&token).await;
    assert!(reason.contains("too old"), "{reason}");
    env.server.set_behaviour(CertsBehaviour::Serve);
    env.after_cooldown();
    env.accepted(&token).await;
}

#[tokio::test]
async fn expired_cache_does_not_wait_for_a_slow_endpoint() {
    let env = Env::with(|c| {
        c.cache_ttl = Duration::from_millis(200);
        c.fetch_timeout = Duration::from_secs(3);
    })
    .await;
    let token = env.ada().sign();
    env.accepted(&token).await;
    env.server
        .set_behaviour(CertsBehaviour::Slow(Duration::from_secs(30)));
    env.pass(Duration::from_millis(400));
    for _ in 0..3 {
        let started = Instant::now();
        env.accepted(&token).await;
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
    }
    wait_for(|| env.server.request_count() == 2).await;
    // A refresh is started inside `verify` (spawned), and counts itself before its first
    // await: once every task already spawned has been polled (a yield schedules them all
    // first), a refresh per request would show here, with no pause.
    tokio::task::yield_now().await;
    assert_eq!(
        env.verifier.fetch_count(),
        2,
        "one background refresh, not one per request"
    );
    assert_eq!(env.server.request_count(), 2);
}

#[tokio::test]
async fn never_fetched_means_every_token_is_401() {
    // Nothing listens on the port: connection refused.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let config = fast_config(&format!("http://127.0.0.1:{port}/cdn-cgi/access/certs"));
    let verifier = CloudflareVerifier::new(config.clone()).unwrap();
    let minter = TokenMinter::for_config(&config, &TestKey::A);
    let result = bounded(verifier.verify(&minter.user("ada@example.com").sign())).await;
    assert!(
        matches!(result, Err(AuthError::Unauthenticated(_))),
        "{result:?}"
    );
    let result = bounded(verifier.verify(&minter.service("ci.access").sign())).await;
    assert!(
        matches!(result, Err(AuthError::Unauthenticated(_))),
        "{result:?}"
    );
    assert!(matches!(
        bounded(verifier.prefetch()).await,
        Err(AuthError::Unavailable(_))
    ));
}

#[tokio::test]
async fn endpoint_down_from_the_start_then_recovering() {
    // A cooldown far longer than two refusals take, even on a loaded machine.
    let env = Env::with(|c| c.refetch_cooldown = Duration::from_secs(1)).await;
    env.server.set_behaviour(CertsBehaviour::Down);
    let token = env.ada().sign();
    let reason = env.refused(&token).await;
    assert!(reason.contains("no signing keys"), "{reason}");
    env.refused(&token).await;
    assert_eq!(
        env.server.request_count(),
        1,
        "failures are not retried within the cooldown"
    );
    env.server.set_behaviour(CertsBehaviour::Serve);
    env.after_cooldown();
    env.accepted(&token).await;
}

#[tokio::test]
async fn only_rs256_signing_keys_of_the_set_are_used() {
    let mut document = certs_document(&[&TestKey::A, &TestKey::B, &TestKey::C]);
    document["keys"][0]["use"] = json!("enc");
    document["keys"][1]["alg"] = json!("RS384");
    // `public_cert(s)` name key A with its real certificate: still never used.
    let server = CertsServer::start_with_document(document).await.unwrap();
    let config = fast_config(&server.url());
    let verifier = CloudflareVerifier::new(config.clone()).unwrap();
    let token = |key| {
        TokenMinter::for_config(&config, key)
            .user("a@example.com")
            .sign()
    };
    for key in [&TestKey::A, &TestKey::B] {
        let result = bounded(verifier.verify(&token(key))).await;
        assert!(
            matches!(result, Err(AuthError::Unauthenticated(_))),
            "{result:?}"
        );
    }
    let identity = bounded(verifier.verify(&token(&TestKey::C))).await.unwrap();
    assert_eq!(identity.email(), "a@example.com");
    assert_eq!(verifier.known_kids(), [TestKey::C.kid()]);
}

fn b64url(text: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
}

async fn wait_for(condition: impl Fn() -> bool) {
    bounded(async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}
