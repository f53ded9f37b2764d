//! The example app when the database misbehaves, through `tenantry::testing::FaultProxy` and
//! real row locks: every request answers within a bound, and abandoned requests do not pile
//! up server backends.

use crate::common;

use std::time::{Duration, Instant};

use common::{assert_error, backends, pg_upstream, App, OWNER, PARTNER};
use diesel_async::SimpleAsyncConnection;
use tenantry::testing::FaultProxy;

/// The app with its request path (app and bypass pools) through `proxy`.
async fn through(proxy: &FaultProxy, vars: &[(&str, &str)]) -> App {
    let mut all = vec![
        ("TENANTRY_AUTH_MODE", "trusted_header"),
        ("TENANTRY_TRUSTED_PROXIES", "127.0.0.1/32"),
    ];
    all.extend_from_slice(vars);
    App::start_custom(&all, |scratch| {
        vec![
            (
                "TENANTRY_APP_DATABASE_URL".into(),
                proxy.url(&scratch.url(Some("tenantry_app"))),
            ),
            (
                "TENANTRY_BYPASS_DATABASE_URL".into(),
                proxy.url(&scratch.url(Some("tenantry_bypass"))),
            ),
        ]
    })
    .await
}

async fn timed_get(
    app: &App,
    path: &str,
    tenant: Option<&str>,
) -> (u16, serde_json::Value, Duration, Option<String>) {
    let started = Instant::now();
    let r = app
        .req(reqwest::Method::GET, path, Some(PARTNER), tenant)
        .send()
        .await
        .expect("an answer, not a dropped connection");
    let status = r.status().as_u16();
    let retry = r
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = r.json().await.unwrap_or_default();
    (status, body, started.elapsed(), retry)
}

#[tokio::test]
async fn a_frozen_database_path_answers_503_within_the_timeouts() {
    let proxy = FaultProxy::start(pg_upstream()).await.expect("proxy");
    let app = through(&proxy, &[("TENANTRY_DB_STATEMENT_TIMEOUT", "1s")]).await;
    let (s, _, _, _) = timed_get(&app, "/api/projects", Some("acme")).await;
    assert_eq!(s, 200);

    proxy.freeze();
    let (s, body, took, _) = timed_get(&app, "/healthz", None).await;
    assert_eq!(
        (s, body),
        (503, serde_json::json!({"status": "unavailable"}))
    );
    assert!(took < Duration::from_secs(3), "/healthz took {took:?}");

    // The client gives up on a silent server one second after the statement timeout.
    let (s, body, took, retry) = timed_get(&app, "/api/projects", Some("acme")).await;
    assert_eq!(s, 503, "{body}");
    assert_error(&body, "unavailable");
    assert_eq!(retry.as_deref(), Some("1"));
    assert!(took < Duration::from_secs(4), "/api/projects took {took:?}");

    proxy.pass();
    let mut healthy = false;
    for _ in 0..50 {
        if timed_get(&app, "/healthz", None).await.0 == 200 {
            healthy = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(healthy, "/healthz recovers with the network");
    assert_eq!(timed_get(&app, "/api/projects", Some("acme")).await.0, 200);
}

#[tokio::test]
async fn a_connection_cut_mid_query_is_503_not_500() {
    let proxy = FaultProxy::start(pg_upstream()).await.expect("proxy");
    let app = through(&proxy, &[("TENANTRY_DB_LOCK_TIMEOUT", "10s")]).await;
    let mut locker = common::admin(&app.db).await;
    locker
        .batch_execute("BEGIN; LOCK TABLE invoices IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let waiting = {
        let request = app
            .req(
                reqwest::Method::GET,
                "/api/invoices",
                Some(PARTNER),
                Some("acme"),
            )
            .send();
        tokio::spawn(request)
    };
    // Mid-query: its transaction waits for the lock.
    common::until_waiting_for_a_lock(&app.db, "tenantry_app", 1).await;
    proxy.cut();
    let r = waiting.await.unwrap().expect("an answer");
    assert_eq!(r.status(), 503);
    assert_error(&r.json().await.unwrap(), "unavailable");
    locker.batch_execute("ROLLBACK").await.unwrap();
}

#[tokio::test]
async fn a_locked_table_leaves_other_routes_answering() {
    let app = App::start().await;
    let mut locker = common::admin(&app.db).await;
    locker
        .batch_execute("BEGIN; LOCK TABLE invoices IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    // More requests on the locked table than the pool (16) has connections.
    let mut blocked = Vec::new();
    for _ in 0..24 {
        let r = app
            .req(
                reqwest::Method::GET,
                "/api/invoices",
                Some(PARTNER),
                Some("acme"),
            )
            .send();
        blocked.push(tokio::spawn(r));
    }
    // acme's share of the pool (8 of 16) waits for the lock; the rest queue for it.
    common::until_waiting_for_a_lock(&app.db, "tenantry_app", 8).await;
    for (path, tenant) in [
        ("/healthz", None),
        ("/api/me", None),
        ("/api/projects", Some("globex")),
    ] {
        let (s, body, took, retry) = timed_get(&app, path, tenant).await;
        assert!(took < Duration::from_secs(3), "{path} took {took:?}");
        match s {
            200 => {}
            503 => assert_eq!(retry.as_deref(), Some("1"), "{path}: {body}"),
            other => panic!("{path}: {other} {body}"),
        }
    }
    // The blocked requests end: those holding acme's share of the pool (8 of 16) with the lock
    // timeout (2 s), 503; those waiting in acme's queue when the pool timeout (1 s) passes, 429
    // (acme's own excess). Both with the error JSON and `Retry-After`.
    let mut statuses = std::collections::BTreeMap::new();
    for r in blocked {
        let r = r.await.unwrap().expect("an answer");
        let status = r.status().as_u16();
        assert_eq!(r.headers()["retry-after"], "1");
        let code = match status {
            503 => "unavailable",
            429 => "too_many_requests",
            other => panic!("a blocked request answered {other}"),
        };
        assert_error(&r.json().await.unwrap(), code);
        *statuses.entry(status).or_insert(0) += 1;
    }
    assert_eq!(statuses.get(&503), Some(&8), "acme's share: {statuses:?}");
    locker.batch_execute("ROLLBACK").await.unwrap();
    for (path, tenant) in [("/api/invoices", Some("acme")), ("/api/me", None)] {
        assert_eq!(timed_get(&app, path, tenant).await.0, 200, "{path}");
    }
}

#[tokio::test]
async fn a_saturated_pool_answers_503_with_retry_after_quickly() {
    let app = App::start_with(&[
        ("TENANTRY_AUTH_MODE", "trusted_header"),
        ("TENANTRY_TRUSTED_PROXIES", "127.0.0.1/32"),
        ("TENANTRY_DB_POOL_SIZE", "2"),
        ("TENANTRY_DB_LOCK_TIMEOUT", "10s"),
        ("TENANTRY_DB_STATEMENT_TIMEOUT", "10s"),
    ])
    .await;
    let mut locker = common::admin(&app.db).await;
    locker
        .batch_execute("BEGIN; LOCK TABLE invoices IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    // Two tenants each hold their share (1 of 2): the pool is saturated by tenants within
    // their shares, so a third tenant's request is the service's 503, not its own 429.
    let mut holders = Vec::new();
    for tenant in ["acme", "initech"] {
        let r = app
            .req(
                reqwest::Method::GET,
                "/api/invoices",
                Some(OWNER),
                Some(tenant),
            )
            .send();
        holders.push(tokio::spawn(r));
    }
    common::until_waiting_for_a_lock(&app.db, "tenantry_app", 2).await;
    let (s, body, took, retry) = timed_get(&app, "/api/projects", Some("globex")).await;
    assert_eq!(s, 503, "{body}");
    assert_error(&body, "unavailable");
    assert_eq!(retry.as_deref(), Some("1"));
    // The pool wait is 1 s.
    assert!(took < Duration::from_secs(3), "took {took:?}");
    locker.batch_execute("ROLLBACK").await.unwrap();
    for r in holders {
        assert_eq!(r.await.unwrap().expect("an answer").status(), 200);
    }
}

#[tokio::test]
async fn abandoned_requests_never_hold_more_backends_than_the_pool() {
    const POOL: i64 = 4;
    let app = App::start_with(&[
        ("TENANTRY_AUTH_MODE", "trusted_header"),
        ("TENANTRY_TRUSTED_PROXIES", "127.0.0.1/32"),
        ("TENANTRY_DB_POOL_SIZE", "4"),
        // Only the cancel request can end an abandoned lock wait here.
        ("TENANTRY_DB_LOCK_TIMEOUT", "60s"),
        ("TENANTRY_DB_STATEMENT_TIMEOUT", "60s"),
        ("TENANTRY_HTTP_REQUEST_TIMEOUT", "60s"),
        ("TENANTRY_HTTP_IDLE_TIMEOUT", "2m"),
    ])
    .await;
    // Warm the pool's principal lookups before the lock.
    assert_eq!(timed_get(&app, "/api/projects", Some("acme")).await.0, 200);
    let mut locker = common::admin(&app.db).await;
    locker
        .batch_execute("BEGIN; LOCK TABLE invoices IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(400))
        .build()
        .unwrap();
    let mut most = 0;
    for _wave in 0..4 {
        let mut wave = Vec::new();
        for _ in 0..8 {
            let r = impatient
                .get(app.url("/api/invoices"))
                .header(common::EMAIL_HEADER, PARTNER)
                .header("x-tenant", "acme")
                .send();
            wave.push(tokio::spawn(r));
        }
        for r in wave {
            assert!(r.await.unwrap().is_err(), "the client gives up first");
        }
        // Samples of a bound that must hold at every moment, spaced out: nothing marks the
        // moment a leaked connection would show, so the pauses only add chances to see one;
        // the test never waits on them to pass.
        for _ in 0..5 {
            most = most.max(backends(&app.db, "tenantry_app").await);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    assert!(most <= POOL, "{most} app backends for a pool of {POOL}");
    locker.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(timed_get(&app, "/api/invoices", Some("acme")).await.0, 200);
}
