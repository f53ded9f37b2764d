//! The database path under faults, through `tenantry::testing::FaultProxy` and real row locks:
//! every wait is bounded, and abandoned statements never leave the server with more backends
//! than the pool has slots.

use crate::common;

use std::time::{Duration, Instant};

use common::schema::{invoices, Invoice};
use common::{count, ctx, TestDb};
use diesel_async::SimpleAsyncConnection;
use tenantry::prelude::*;
use tenantry::testing::{server_url, FaultProxy};
use tenantry::{DbConfig, DbError};

fn upstream() -> String {
    let url = url::Url::parse(&server_url()).expect("TENANTRY_TEST_DATABASE_URL is a URL");
    format!(
        "{}:{}",
        url.host_str().unwrap_or("127.0.0.1"),
        url.port().unwrap_or(5432)
    )
}

/// A pool of `size` app connections to `t`'s database through `proxy`.
async fn db_through(
    t: &TestDb,
    proxy: &FaultProxy,
    size: usize,
    statement: Duration,
) -> tenantry::Db {
    let mut config = DbConfig::new(proxy.url(&t.app_url()), None);
    config.max_connections = size;
    config.statement_timeout = statement;
    config.lock_timeout = statement;
    config.connect_timeout = Duration::from_secs(2);
    tenantry::Db::connect(config)
        .await
        .expect("pool through the proxy")
}

async fn touch(db: &tenantry::Db, tenant: uuid::Uuid) -> Result<i64, DbError> {
    db.tx(&ctx(tenant), async |conn| {
        Ok::<_, DbError>(Invoice::scoped(conn).count().get_result(conn).await?)
    })
    .await
}

#[tokio::test]
async fn a_frozen_network_fails_transactions_and_pings_within_their_timeouts() {
    let t = TestDb::new().await;
    let acme = t.tenant("acme").await;
    t.seed(acme, "p", 2).await;
    let proxy = FaultProxy::start(upstream()).await.expect("proxy");
    let statement = Duration::from_secs(1);
    let db = db_through(&t, &proxy, 2, statement).await;
    assert_eq!(touch(&db, acme).await.expect("before the freeze"), 2);

    proxy.freeze();
    let started = Instant::now();
    let e = touch(&db, acme)
        .await
        .expect_err("a frozen database cannot answer");
    assert!(e.is_unavailable(), "{e:?}");
    // The reply deadline is the statement timeout plus one second.
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );

    let started = Instant::now();
    let e = db.ping().await.expect_err("ping while frozen");
    assert!(e.is_unavailable(), "{e:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );

    proxy.pass();
    let mut recovered = false;
    for _ in 0..50 {
        if touch(&db, acme).await.is_ok() {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(recovered, "the pool serves again once the network does");
}

#[tokio::test]
async fn a_cut_connection_is_unavailable_not_a_query_error() {
    let t = TestDb::new().await;
    let acme = t.tenant("acme").await;
    let proxy = FaultProxy::start(upstream()).await.expect("proxy");
    let db = db_through(&t, &proxy, 2, Duration::from_secs(5)).await;
    touch(&db, acme).await.expect("before the cut");
    proxy.cut();
    let e = touch(&db, acme).await.expect_err("cut");
    assert!(e.is_unavailable(), "{e:?}");
}

async fn app_backends(t: &TestDb) -> i64 {
    let mut admin = t.admin().await;
    count(
        &mut admin,
        &format!(
            "SELECT count(*) AS n FROM pg_stat_activity WHERE usename = 'tenantry_app' AND datname = '{}'",
            t.name
        ),
    )
    .await
}

#[tokio::test]
async fn abandoned_lock_waits_are_cancelled_and_backends_never_exceed_the_pool() {
    const POOL: usize = 4;
    let t = TestDb::new().await;
    let acme = t.tenant("acme").await;
    t.seed(acme, "p", 1).await;
    // Long server-side timeouts: only the cancel request can end an abandoned wait here.
    let mut config = DbConfig::new(t.app_url(), None);
    config.max_connections = POOL;
    config.statement_timeout = Duration::from_secs(60);
    config.lock_timeout = Duration::from_secs(60);
    let db = tenantry::Db::connect(config).await.expect("pool");

    let mut locker = t.admin().await;
    locker
        .batch_execute("BEGIN; LOCK TABLE invoices IN ACCESS EXCLUSIVE MODE")
        .await
        .expect("lock");

    let mut most = 0;
    for _wave in 0..4 {
        let mut wave = Vec::new();
        for _ in 0..POOL * 2 {
            let db = db.clone();
            wave.push(tokio::spawn(async move {
                // The client gives up after 300 ms: the future is dropped mid-statement.
                let ctx = ctx(acme);
                let work = db.tx(&ctx, async |conn| {
                    diesel::update(Invoice::scoped(conn))
                        .set(invoices::amount_cents.to(1))
                        .execute(conn)
                        .await?;
                    Ok::<_, DbError>(())
                });
                tokio::time::timeout(Duration::from_millis(300), work).await
            }));
        }
        for task in wave {
            let outcome = task.await.expect("task");
            assert!(
                !matches!(outcome, Ok(Ok(()))),
                "nothing can update a locked table"
            );
        }
        // Samples of a bound that must hold at every moment, spaced out: nothing marks the
        // moment a leaked connection would show, so the pauses only add chances to see one;
        // the test never waits on them to pass.
        for _ in 0..5 {
            most = most.max(app_backends(&t).await);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    assert!(
        most <= POOL as i64,
        "{most} backends of tenantry_app for a pool of {POOL}"
    );
    // Every abandoned statement was cancelled: nothing still waits for the lock.
    let mut admin = t.admin().await;
    let waiting_since = Instant::now();
    loop {
        let waiting = count(
            &mut admin,
            &format!(
                "SELECT count(*) AS n FROM pg_stat_activity WHERE usename = 'tenantry_app' AND datname = '{}' AND wait_event_type = 'Lock'",
                t.name
            ),
        )
        .await;
        if waiting == 0 {
            break;
        }
        assert!(
            waiting_since.elapsed() < Duration::from_secs(5),
            "{waiting} abandoned statements still wait for the lock"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    locker.batch_execute("ROLLBACK").await.expect("unlock");
    assert_eq!(touch(&db, acme).await.expect("the pool still serves"), 1);
}
