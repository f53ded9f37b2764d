//! Two instances of the app on one database, each caching principals: a revoked membership, a
//! removed Owner and a newly provisioned user take effect on both as soon as the change is
//! notified, within a second of its commit.

use crate::common;

use std::time::{Duration, Instant};

use common::{App, LONELY, OWNER, PARTNER};
use diesel_async::SimpleAsyncConnection;
use tenantry::identity::PrincipalCacheStatus;

/// Waits until `done` holds of `app`'s principal cache, at most `within`.
async fn until(
    app: &App,
    within: Duration,
    what: &str,
    done: impl Fn(PrincipalCacheStatus) -> bool,
) {
    let deadline = Instant::now() + within;
    while !done(app.handle.principal_cache_status()) {
        assert!(
            Instant::now() < deadline,
            "{what} within {within:?}: {:?}",
            app.handle.principal_cache_status()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Both instances listening, and `who`'s request on each answered `status` twice, the second
/// from the cache.
async fn cached(apps: [&App; 2], path: &str, who: &str, tenant: Option<&str>, status: u16) {
    for app in apps {
        app.get(path, who, tenant).await;
        until(app, Duration::from_secs(5), "listening", |s| s.listening).await;
        assert_eq!(app.get(path, who, tenant).await.0, status, "{who} {path}");
        let hits = app.handle.principal_cache_status().hits;
        assert_eq!(app.get(path, who, tenant).await.0, status, "{who} {path}");
        assert!(
            app.handle.principal_cache_status().hits > hits,
            "served from the cache"
        );
    }
}

/// Runs `sql` as the superuser, then waits until both instances have emptied their cache
/// (within a second of the commit), and returns when the change is visible to the next
/// request on each.
async fn change(apps: [&App; 2], sql: &str) {
    let before = apps.map(|a| a.handle.principal_cache_status().invalidations);
    common::admin(&apps[0].db)
        .await
        .batch_execute(sql)
        .await
        .expect("directory change");
    let committed = Instant::now();
    for (app, before) in apps.into_iter().zip(before) {
        until(app, Duration::from_secs(1), "the change is notified", |s| {
            s.invalidations > before
        })
        .await;
    }
    assert!(committed.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn a_revoked_membership_is_403_on_every_instance_after_the_notification() {
    let one = App::start().await;
    let two = one.another_instance().await;
    let apps = [&one, &two];
    cached(apps, "/api/invoices", PARTNER, Some("globex"), 200).await;
    change(
        apps,
        &format!(
            "DELETE FROM tenantry.memberships WHERE user_id = (SELECT id FROM tenantry.users WHERE email = '{PARTNER}')
             AND tenant_id = (SELECT id FROM tenantry.tenants WHERE slug = 'globex')"
        ),
    )
    .await;
    for app in apps {
        assert_eq!(
            app.get("/api/invoices", PARTNER, Some("globex")).await.0,
            403
        );
        assert_eq!(app.get("/api/invoices", PARTNER, Some("acme")).await.0, 200);
    }
}

#[tokio::test]
async fn a_removed_owner_is_403_on_every_instance_after_the_notification() {
    let one = App::start().await;
    let two = one.another_instance().await;
    let apps = [&one, &two];
    cached(apps, "/api/admin/tenants", OWNER, None, 200).await;
    change(
        apps,
        &format!("UPDATE tenantry.users SET is_owner = false WHERE email = '{OWNER}'"),
    )
    .await;
    for app in apps {
        assert_eq!(app.get("/api/admin/tenants", OWNER, None).await.0, 403);
    }
}

#[tokio::test]
async fn a_user_provisioned_later_is_let_in_on_every_instance_after_the_notification() {
    let one = App::start().await;
    let two = one.another_instance().await;
    let apps = [&one, &two];
    let newcomer = "newcomer@example.com";
    cached(apps, "/api/invoices", newcomer, Some("acme"), 403).await;
    change(
        apps,
        &format!(
            "INSERT INTO tenantry.users (email) VALUES ('{newcomer}');
             INSERT INTO tenantry.memberships (user_id, tenant_id, role)
               SELECT u.id, t.id, 'client_viewer' FROM tenantry.users u, tenantry.tenants t
               WHERE u.email = '{newcomer}' AND t.slug = 'acme'"
        ),
    )
    .await;
    for app in apps {
        assert_eq!(
            app.get("/api/invoices", newcomer, Some("acme")).await.0,
            200
        );
        // A user without memberships stays provisioned but tenant-less.
        assert_eq!(app.get("/api/invoices", LONELY, Some("acme")).await.0, 403);
    }
}
