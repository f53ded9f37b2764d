//! The principal cache of `Db`: what a directory change does to it while its listener is up,
//! and its fallback while the listener is down (the cache emptied, entries living at most the
//! TTL).

use crate::common;

use std::time::{Duration, Instant};

use common::TestDb;
use diesel_async::SimpleAsyncConnection;
use tenantry::auth::{AuthError, Identity};
use tenantry::identity::{load_principal, PrincipalCacheStatus};
use tenantry::testing::FaultProxy;
use tenantry::{Db, DbConfig};

const ADA: &str = "ada@example.com";

/// The deadline for a notification the test causes to be heard. A deadline, not a pause: the
/// test goes on as soon as it is heard; the bound only turns a lost notification into a
/// failure. Notifications arrive in milliseconds; the bound is for a machine loaded by other
/// builds.
const NOTIFIED_WITHIN: Duration = Duration::from_secs(5);

/// `host:port` of the test server, for a `FaultProxy`.
fn pg_upstream() -> String {
    let url = url::Url::parse(&tenantry::testing::server_url()).expect("a URL");
    format!(
        "{}:{}",
        url.host_str().unwrap_or("127.0.0.1"),
        url.port().unwrap_or(5432)
    )
}

fn ada() -> Identity {
    Identity::User {
        email: ADA.into(),
        sub: None,
    }
}

/// The tenants `ada` may act in, by slug (`Err` when she is not provisioned).
async fn tenants_of(db: &Db, who: &Identity) -> Result<Vec<String>, AuthError> {
    let principal = load_principal(db, who).await?;
    Ok(principal
        .memberships()
        .iter()
        .map(|m| m.slug.clone())
        .collect())
}

/// Waits (at most `within`) until `done` holds of the cache's status; panics naming `what`.
async fn until(db: &Db, within: Duration, what: &str, done: impl Fn(PrincipalCacheStatus) -> bool) {
    let deadline = Instant::now() + within;
    while !done(db.principal_cache_status()) {
        assert!(
            Instant::now() < deadline,
            "{what} within {within:?}: {:?}",
            db.principal_cache_status()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A database with tenants `acme` and `globex`; `ada` is a partner of both.
async fn directory() -> TestDb {
    let t = TestDb::new().await;
    t.tenant("acme").await;
    t.tenant("globex").await;
    t.admin()
        .await
        .batch_execute(&format!(
            "INSERT INTO tenantry.users (email) VALUES ('{ADA}');
             INSERT INTO tenantry.memberships (user_id, tenant_id, role)
               SELECT u.id, t.id, 'partner' FROM tenantry.users u, tenantry.tenants t WHERE u.email = '{ADA}'"
        ))
        .await
        .expect("ada");
    t
}

/// A `Db` of `t` whose listener connects through `proxy`, with a cache TTL of `ttl`.
async fn db_listening_through(t: &TestDb, proxy: &FaultProxy, ttl: Duration) -> Db {
    let mut config = DbConfig::new(t.app_url(), None);
    config.listen_url = Some(proxy.url(&t.app_url()));
    config.principal_cache_ttl = ttl;
    Db::connect(config).await.expect("pool")
}

/// Revokes `ada`'s membership of `globex` after her principal was cached in `db`, then checks
/// that `db` stops granting it within `ttl` of the caching.
async fn revoked_within(db: &Db, t: &TestDb, ttl: Duration) {
    let cached = Instant::now();
    revoke_globex(t).await;
    // Polled: the event is the clock passing the TTL. The age is taken when a request is made,
    // not when its answer arrives, which a loaded machine may delay past the TTL.
    loop {
        let age = cached.elapsed();
        let tenants = tenants_of(db, &ada()).await.unwrap();
        if tenants == ["acme"] {
            break;
        }
        assert!(
            age < ttl,
            "served {tenants:?} to a request made {age:?} after it was cached"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn revoke_globex(t: &TestDb) {
    t.admin()
        .await
        .batch_execute(
            "DELETE FROM tenantry.memberships WHERE tenant_id = (SELECT id FROM tenantry.tenants WHERE slug = 'globex')",
        )
        .await
        .expect("revoke");
}

#[tokio::test]
async fn a_change_empties_every_instances_cache_when_it_commits() {
    let t = directory().await;
    let mut config = DbConfig::new(t.app_url(), None);
    // A TTL and a maximum age far beyond the test: only the notifications can make the caches
    // see the change.
    config.principal_cache_ttl = Duration::from_secs(3600);
    config.principal_cache_max_age = Duration::from_secs(3600);
    let one = Db::connect(config.clone()).await.expect("pool");
    let two = Db::connect(config).await.expect("pool");
    for db in [&one, &two] {
        // The first lookup starts the listener, which empties the cache once it listens.
        assert_eq!(tenants_of(db, &ada()).await.unwrap(), ["acme", "globex"]);
        until(db, Duration::from_secs(5), "listening", |s| s.listening).await;
        assert_eq!(tenants_of(db, &ada()).await.unwrap(), ["acme", "globex"]);
        // Cached now: the next lookup is a hit.
        let hits = db.principal_cache_status().hits;
        assert_eq!(tenants_of(db, &ada()).await.unwrap(), ["acme", "globex"]);
        assert_eq!(db.principal_cache_status().hits, hits + 1);
    }

    let before = [&one, &two].map(|db| db.principal_cache_status().invalidations);
    let revoked = Instant::now();
    revoke_globex(&t).await;
    for (db, before) in [&one, &two].into_iter().zip(before) {
        until(db, NOTIFIED_WITHIN, "the revocation is notified", |s| {
            s.invalidations > before
        })
        .await;
        assert_eq!(tenants_of(db, &ada()).await.unwrap(), ["acme"]);
    }
    assert!(
        revoked.elapsed() < NOTIFIED_WITHIN,
        "{:?}",
        revoked.elapsed()
    );

    // Negative entries go too: an unknown user, then provisioned.
    let bob = Identity::User {
        email: "bob@example.com".into(),
        sub: None,
    };
    for db in [&one, &two] {
        for _ in 0..2 {
            assert!(matches!(
                tenants_of(db, &bob).await,
                Err(AuthError::NotProvisioned(_))
            ));
        }
    }
    let before = [&one, &two].map(|db| db.principal_cache_status().invalidations);
    t.admin()
        .await
        .batch_execute("INSERT INTO tenantry.users (email) VALUES ('bob@example.com')")
        .await
        .expect("bob");
    for (db, before) in [&one, &two].into_iter().zip(before) {
        until(db, NOTIFIED_WITHIN, "the insert is notified", |s| {
            s.invalidations > before
        })
        .await;
        assert_eq!(tenants_of(db, &bob).await.unwrap(), Vec::<String>::new());
    }
}

#[tokio::test]
async fn recording_a_new_sub_keeps_the_cache() {
    let t = directory().await;
    let mut config = DbConfig::new(t.app_url(), None);
    // Only a notification can refresh an entry within the test.
    config.principal_cache_ttl = Duration::from_secs(3600);
    config.principal_cache_max_age = Duration::from_secs(3600);
    let db = Db::connect(config).await.expect("pool");
    tenants_of(&db, &ada()).await.unwrap();
    until(&db, Duration::from_secs(5), "listening", |s| s.listening).await;
    let with_sub = |sub: &str| Identity::User {
        email: ADA.into(),
        sub: Some(sub.into()),
    };
    let stored = |sub: &'static str| {
        let t = &t;
        async move {
            let sql = format!("SELECT count(*) AS n FROM tenantry.users WHERE cf_sub = '{sub}'");
            common::count(&mut t.admin().await, &sql).await
        }
    };
    let before = db.principal_cache_status();
    // A miss that records the token's sub.
    tenants_of(&db, &with_sub("sub-1")).await.unwrap();
    assert_eq!(stored("sub-1").await, 1, "sub-1 recorded");
    let after = db.principal_cache_status();
    assert_eq!((after.hits, after.misses), (before.hits, before.misses + 1));
    // The cached entry knows the sub: the next request is a hit that writes nothing, and a
    // token with another sub is refused from the cache too.
    tenants_of(&db, &with_sub("sub-1")).await.unwrap();
    assert_eq!(db.principal_cache_status().hits, after.hits + 1);
    assert!(matches!(
        tenants_of(&db, &with_sub("sub-2")).await,
        Err(AuthError::SubjectChanged(_))
    ));
    assert_eq!(stored("sub-2").await, 0);
    // Recording the sub notified nothing: a change committed after it is the first
    // notification the listener hears (PostgreSQL delivers them in commit order). That change
    // is heard when a lookup shows it, since only a notification refreshes the entry here.
    t.admin()
        .await
        .batch_execute("UPDATE tenantry.users SET is_owner = true")
        .await
        .expect("an Owner");
    let deadline = Instant::now() + NOTIFIED_WITHIN;
    while !load_principal(&db, &with_sub("sub-1"))
        .await
        .unwrap()
        .is_owner()
    {
        assert!(Instant::now() < deadline, "the change is not heard");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        db.principal_cache_status().invalidations,
        before.invalidations + 1,
        "one notification (the later change): none for the recorded sub"
    );
}

#[tokio::test]
async fn without_its_listener_the_cache_is_emptied_and_entries_live_at_most_the_ttl() {
    const TTL: Duration = Duration::from_millis(800);
    let t = directory().await;
    let proxy = FaultProxy::start(pg_upstream()).await.expect("proxy");
    let db = db_listening_through(&t, &proxy, TTL).await;
    tenants_of(&db, &ada()).await.unwrap();
    until(&db, Duration::from_secs(5), "listening", |s| s.listening).await;
    tenants_of(&db, &ada()).await.unwrap();

    // The listener's connection is cut: the cache is emptied at once.
    let before = db.principal_cache_status();
    proxy.cut();
    until(
        &db,
        Duration::from_secs(2),
        "the listener is seen down",
        |s| !s.listening && s.invalidations > before.invalidations,
    )
    .await;
    let misses = db.principal_cache_status().misses;
    tenants_of(&db, &ada()).await.unwrap();
    assert_eq!(db.principal_cache_status().misses, misses + 1, "emptied");

    // While it is down, a change is not notified: the entry cached just now is served at most
    // the TTL, then the lookup sees the change.
    revoked_within(&db, &t, TTL).await;

    // Back: the listener reconnects, and changes are notified again.
    proxy.pass();
    until(&db, Duration::from_secs(10), "listening again", |s| {
        s.listening
    })
    .await;
    tenants_of(&db, &ada()).await.unwrap();
    let before = db.principal_cache_status().invalidations;
    t.admin()
        .await
        .batch_execute("UPDATE tenantry.users SET is_owner = true")
        .await
        .expect("an Owner");
    until(&db, NOTIFIED_WITHIN, "the change is notified", |s| {
        s.invalidations > before
    })
    .await;
    assert!(load_principal(&db, &ada()).await.unwrap().is_owner());
}

#[tokio::test]
async fn an_unreachable_listener_leaves_a_ttl_cache() {
    const TTL: Duration = Duration::from_millis(500);
    let t = directory().await;
    // A proxy that cuts every connection: the listener never starts.
    let proxy = FaultProxy::start(pg_upstream()).await.expect("proxy");
    proxy.cut();
    let db = db_listening_through(&t, &proxy, TTL).await;
    assert_eq!(tenants_of(&db, &ada()).await.unwrap(), ["acme", "globex"]);
    revoked_within(&db, &t, TTL).await;
    assert!(!db.principal_cache_status().listening);
}

/// A `DbConfig` of `t` through the shared PgBouncer in transaction mode.
async fn through_pgbouncer(t: &TestDb) -> (tenantry::testing::PgBouncer, DbConfig) {
    let bouncer = tenantry::testing::PgBouncer::shared().await;
    let mut config = DbConfig::new(bouncer.url(&t.name, "tenantry_app"), None);
    config.pooler = tenantry::pooler::Pooler::Transaction;
    (bouncer, config)
}

/// Behind a transaction pooler with no listener URL of its own, no `LISTEN` goes through the
/// pooler (where it would stop hearing at the next hand-over): there is no listener, and
/// entries live at most the TTL.
#[tokio::test]
async fn behind_a_transaction_pooler_without_a_listener_url_entries_live_at_most_the_ttl() {
    const TTL: Duration = Duration::from_millis(500);
    let t = directory().await;
    let (_bouncer, mut config) = through_pgbouncer(&t).await;
    config.principal_cache_ttl = TTL;
    let db = Db::connect(config).await.expect("pool");
    assert_eq!(tenants_of(&db, &ada()).await.unwrap(), ["acme", "globex"]);
    revoked_within(&db, &t, TTL).await;
    assert!(!db.principal_cache_status().listening);
    let listeners = common::count(
        &mut t.admin().await,
        &format!(
            "SELECT count(*) AS n FROM pg_stat_activity \
             WHERE application_name = 'tenantry listener' AND datname = '{}'",
            t.name
        ),
    )
    .await;
    assert_eq!(
        listeners, 0,
        "no listener session, through the pooler or not"
    );
}

/// A listener URL that leads to a transaction pooler stops the start, naming the setting.
#[tokio::test]
async fn a_listener_url_through_a_transaction_pooler_is_refused_at_start() {
    let t = directory().await;
    let (bouncer, mut config) = through_pgbouncer(&t).await;
    config.listen_url = Some(bouncer.url(&t.name, "tenantry_app"));
    let err = Db::connect(config).await.expect_err("refused");
    let text = err.to_string();
    assert!(matches!(err, tenantry::DbError::Pooler(_)), "{err:?}");
    assert!(
        text.contains("TENANTRY_LISTEN_DATABASE_URL") && text.contains("transaction pooler"),
        "{text}"
    );
}

/// A listener whose URL leads to another database answers every heartbeat and hears nothing:
/// it must not be trusted. Its probe, sent through the app pool, never comes back, so entries
/// live at most the TTL (here far shorter than the maximum age).
#[tokio::test]
async fn a_listener_on_another_database_is_not_trusted() {
    const TTL: Duration = Duration::from_millis(400);
    let logs = common::logs::Logs::global();
    let t = directory().await;
    let elsewhere = TestDb::new().await;
    let mut config = DbConfig::new(t.app_url(), None);
    config.listen_url = Some(elsewhere.app_url());
    config.principal_cache_ttl = TTL;
    config.principal_cache_max_age = Duration::from_secs(3600);
    let db = Db::connect(config).await.expect("pool");
    assert_eq!(tenants_of(&db, &ada()).await.unwrap(), ["acme", "globex"]);
    // The listener connects and LISTENs on the other database; before the probe it would have
    // been confirmed within milliseconds. It stays unconfirmed until its probe fails (the
    // event: its warning, which only this test's listener can log), and after.
    let deadline = Instant::now() + tenantry_probe_window();
    while logs
        .lines_with("the listener did not hear its own probe")
        .is_empty()
    {
        assert!(
            !db.principal_cache_status().listening,
            "a listener on another database was trusted"
        );
        assert!(Instant::now() < deadline, "the probe did not fail in time");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        !db.principal_cache_status().listening,
        "a listener on another database was trusted"
    );
    // So a revocation (notified on the app's database, unheard) is honoured within the TTL.
    tenants_of(&db, &ada()).await.unwrap();
    revoked_within(&db, &t, TTL + Duration::from_millis(200)).await;
}

/// How long the listener waits for its probe (`PROBE_WITHIN`), plus a margin for a loaded
/// machine (a deadline: the test goes on when the probe fails).
fn tenantry_probe_window() -> Duration {
    Duration::from_secs(15)
}

/// A change that fires no trigger (a restore, logical replication: `session_replication_role =
/// replica`) notifies nobody; with the listener up and confirmed, the entry still expires at the
/// maximum age.
#[tokio::test]
async fn a_trigger_less_revocation_is_honoured_within_the_maximum_age() {
    const MAX_AGE: Duration = Duration::from_millis(600);
    let t = directory().await;
    let mut config = DbConfig::new(t.app_url(), None);
    config.principal_cache_ttl = Duration::from_secs(3600);
    config.principal_cache_max_age = MAX_AGE;
    let db = Db::connect(config).await.expect("pool");
    assert_eq!(tenants_of(&db, &ada()).await.unwrap(), ["acme", "globex"]);
    until(&db, Duration::from_secs(10), "listening", |s| s.listening).await;
    assert_eq!(tenants_of(&db, &ada()).await.unwrap(), ["acme", "globex"]);
    let invalidations = db.principal_cache_status().invalidations;
    let cached = Instant::now();
    t.admin()
        .await
        .batch_execute(
            "SET session_replication_role = replica;
             DELETE FROM tenantry.memberships WHERE tenant_id = (SELECT id FROM tenantry.tenants WHERE slug = 'globex');
             RESET session_replication_role",
        )
        .await
        .expect("a trigger-less revocation");
    // Polled: the event is the clock passing the maximum age (taken when a request is made,
    // not when its answer arrives).
    loop {
        let age = cached.elapsed();
        let tenants = tenants_of(&db, &ada()).await.unwrap();
        if tenants == ["acme"] {
            break;
        }
        assert!(
            age < MAX_AGE + Duration::from_millis(300),
            "served {tenants:?} to a request made {age:?} after it was cached",
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        db.principal_cache_status().listening,
        "the listener stayed up"
    );
    assert_eq!(
        db.principal_cache_status().invalidations,
        invalidations,
        "nothing was notified: the maximum age alone expired the entry"
    );
}
