//! Roles against every kind of route, tenant selection, and the request guards.

use crate::common;

use common::{assert_error, App, Route, EMAIL_HEADER, LONELY, OWNER, PARTNER, VIEWER};
use reqwest::Method;
use serde_json::json;
use tenantry::testing::on_both_routes;

// The cases of roles and tenants run twice: the request path straight to PostgreSQL and through
// PgBouncer in transaction mode (`direct::..`, `pgbouncer::..`).
on_both_routes!(
    each_role_against_each_kind_of_route,
    a_partner_of_two_tenants_switches_with_x_tenant,
    an_owner_acts_in_any_tenant_but_not_an_unknown_one,
    identities_unknown_missing_or_lonely,
);

async fn each_role_against_each_kind_of_route(route: Route) {
    let app = App::start_through(route).await;
    let p = app.projects["acme"];
    let id = app.invoice_of("acme").await;
    // (who, read, write, admin)
    for (who, read, write, admin) in [
        (OWNER, 200, 201, 200),
        (PARTNER, 200, 201, 403),
        (VIEWER, 200, 403, 403),
    ] {
        let (s, _) = app.get("/api/invoices", who, Some("acme")).await;
        assert_eq!(s, read, "{who} read");
        let (s, b) = app
            .send_json(Method::POST, "/api/invoices", who, Some("acme"),
                json!({"project_id": p, "number": format!("R-{who}"), "amount_cents": 1, "currency": "EUR"}))
            .await;
        assert_eq!(s, write, "{who} write: {b}");
        if write == 403 {
            assert_error(&b, "forbidden");
            let (s, _) = app
                .send_json(
                    Method::PATCH,
                    &format!("/api/invoices/{id}"),
                    who,
                    Some("acme"),
                    json!({"status": "paid"}),
                )
                .await;
            assert_eq!(s, 403);
            let r = app
                .req(
                    Method::DELETE,
                    &format!("/api/invoices/{id}"),
                    Some(who),
                    Some("acme"),
                )
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 403);
            let (s, _) = app
                .send_json(
                    Method::POST,
                    "/api/projects",
                    who,
                    Some("acme"),
                    json!({"name": "x"}),
                )
                .await;
            assert_eq!(s, 403);
        }
        let (s, _) = app.get("/api/admin/tenants", who, None).await;
        assert_eq!(s, admin, "{who} admin");
    }
    assert_eq!(
        app.count("SELECT count(*) AS n FROM invoices WHERE number LIKE 'R-viewer%'")
            .await,
        0
    );
}

async fn a_partner_of_two_tenants_switches_with_x_tenant(route: Route) {
    let app = App::start_through(route).await;
    for slug in ["acme", "globex"] {
        let (s, b) = app.get("/api/invoices", PARTNER, Some(slug)).await;
        assert_eq!(s, 200);
        assert!(b
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["tenant_id"] == app.tenants[slug].to_string()));
        // by id as well as by slug
        let (s, b) = app
            .get(
                "/api/projects",
                PARTNER,
                Some(&app.tenants[slug].to_string()),
            )
            .await;
        assert_eq!(s, 200);
        assert_eq!(b[0]["tenant_id"], app.tenants[slug].to_string());
    }
    let (s, b) = app.get("/api/invoices", PARTNER, None).await;
    assert_eq!(s, 400);
    assert_error(&b, "tenant_required");
    for other in [
        "initech",
        "no-such-tenant",
        &uuid::Uuid::new_v4().to_string(),
    ] {
        let (s, b) = app.get("/api/invoices", PARTNER, Some(other)).await;
        assert_eq!(s, 403, "{other}");
        assert_error(&b, "forbidden");
    }
}

async fn an_owner_acts_in_any_tenant_but_not_an_unknown_one(route: Route) {
    let app = App::start_through(route).await;
    let (s, b) = app.get("/api/invoices", OWNER, Some("initech")).await;
    assert_eq!(s, 200);
    assert!(b
        .as_array()
        .unwrap()
        .iter()
        .all(|i| i["tenant_id"] == app.tenants["initech"].to_string()));
    let (s, b) = app
        .send_json(
            Method::POST,
            "/api/projects",
            OWNER,
            Some("initech"),
            json!({"name": "owner made"}),
        )
        .await;
    assert_eq!(s, 201);
    assert_eq!(b["tenant_id"], app.tenants["initech"].to_string());
    let (s, b) = app.get("/api/invoices", OWNER, Some("nope")).await;
    assert_eq!(s, 403);
    assert_error(&b, "forbidden");
    let (s, b) = app.get("/api/invoices", OWNER, None).await;
    assert_eq!(s, 400, "an owner without memberships must name the tenant");
    assert_error(&b, "tenant_required");
}

async fn identities_unknown_missing_or_lonely(route: Route) {
    let app = App::start_through(route).await;
    let (s, b) = app
        .get("/api/invoices", "stranger@example.com", Some("acme"))
        .await;
    assert_eq!(s, 403);
    assert_error(&b, "not_provisioned");
    let r = app
        .req(Method::GET, "/api/me", None, None)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_error(&r.json().await.unwrap(), "unauthenticated");
    let r = app
        .client
        .get(app.url("/api/me"))
        .header(EMAIL_HEADER, PARTNER)
        .header(EMAIL_HEADER, OWNER)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "the identity header twice");
    let (s, b) = app.get("/api/invoices", LONELY, None).await;
    assert_eq!(s, 400);
    assert_error(&b, "tenant_required");
    let r = app
        .client
        .get(app.url("/api/invoices"))
        .header(EMAIL_HEADER, PARTNER)
        .header("x-tenant", "acme")
        .header("x-tenant", "globex")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "X-Tenant twice");
}

#[tokio::test]
async fn trusted_header_from_an_untrusted_peer_is_401() {
    let app = App::start_with(&[
        ("TENANTRY_AUTH_MODE", "trusted_header"),
        ("TENANTRY_TRUSTED_PROXIES", "10.0.0.0/8"),
    ])
    .await;
    let (s, b) = app.get("/api/me", OWNER, None).await;
    assert_eq!(s, 401);
    assert_error(&b, "unauthenticated");
}

#[tokio::test]
async fn cross_site_writes_are_refused() {
    let app = App::start().await;
    let post = |origin: Option<&str>, site: Option<&str>| {
        let mut r = app
            .req(Method::POST, "/api/projects", Some(PARTNER), Some("acme"))
            .json(&json!({"name": "csrf"}));
        if let Some(o) = origin {
            r = r.header("origin", o);
        }
        if let Some(s) = site {
            r = r.header("sec-fetch-site", s);
        }
        r.send()
    };
    assert_eq!(
        post(Some("https://evil.example"), None)
            .await
            .unwrap()
            .status(),
        403
    );
    assert_eq!(post(None, Some("cross-site")).await.unwrap().status(), 403);
    let own = format!("http://{}", app.addr);
    assert_eq!(
        post(Some(&own), Some("same-origin"))
            .await
            .unwrap()
            .status(),
        201
    );
    assert_eq!(
        post(None, None).await.unwrap().status(),
        201,
        "non-browser clients send neither"
    );
    // GET is never refused
    let r = app
        .req(Method::GET, "/api/projects", Some(PARTNER), Some("acme"))
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        app.count("SELECT count(*) AS n FROM projects WHERE name = 'csrf'")
            .await,
        2
    );
}

#[tokio::test]
async fn dev_mode_marks_responses_and_seeds() {
    let app = App::start_with(&[
        ("TENANTRY_AUTH_MODE", "dev"),
        ("TENANTRY_DEV_USER_EMAIL", "dev@example.com"),
    ])
    .await;
    let r = app.client.get(app.url("/api/me")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-tenantry-auth-mode"], "dev");
    let me: serde_json::Value = r.json().await.unwrap();
    assert_eq!(me["user"]["email"], "dev@example.com");
    assert_eq!(me["is_owner"], true);
    let r = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(
        r.headers()["x-tenantry-auth-mode"],
        "dev",
        "every response is marked"
    );
    // the unsigned identity header is ignored in dev mode
    let r = app
        .client
        .get(app.url("/api/me"))
        .header(EMAIL_HEADER, PARTNER)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["user"]["email"],
        "dev@example.com"
    );
    let (s, inv) = app
        .get("/api/invoices", "ignored@example.com", Some("acme-corp"))
        .await;
    assert_eq!(s, 200);
    assert!(inv.as_array().unwrap().len() >= 3, "dev seed: {inv}");
}

/// DNS rebinding: a page on evil.example rebinds its name to 127.0.0.1 and calls the developer's
/// server; its requests carry `Host: evil.example`. Dev mode answers loopback names only.
#[tokio::test]
async fn dev_mode_answers_only_loopback_host_names() {
    let app = App::start_with(&[
        ("TENANTRY_AUTH_MODE", "dev"),
        ("TENANTRY_DEV_USER_EMAIL", "dev@example.com"),
    ])
    .await;
    let port = app.addr.port();
    for (host, status) in [
        (format!("evil.example:{port}"), 403),
        (format!("127.0.0.1.evil.example:{port}"), 403),
        (format!("localhost:{port}"), 200),
        (format!("127.0.0.1:{port}"), 200),
    ] {
        let r = app
            .client
            .get(app.url("/api/me"))
            .header("host", &host)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status, "Host: {host}");
        if status == 403 {
            let b: serde_json::Value = r.json().await.unwrap();
            assert_error(&b, "forbidden");
            assert!(b["message"].as_str().unwrap().contains("loopback"), "{b}");
        }
    }
    // Origin equal to the rebinding Host would have passed the CSRF check: it is refused before.
    let r = app
        .client
        .post(app.url("/api/projects"))
        .header("host", format!("evil.example:{port}"))
        .header("origin", format!("http://evil.example:{port}"))
        .header("x-tenant", "acme-corp")
        .json(&json!({"name": "rebound"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(
        app.count("SELECT count(*) AS n FROM projects WHERE name = 'rebound'")
            .await,
        0
    );
}

/// An Owner route's GET writes an audit row: a page elsewhere must not make an Owner's browser
/// call it. Refused whatever the method, before any row is written.
#[tokio::test]
async fn owner_routes_refuse_cross_site_requests_of_any_method() {
    let app = App::start().await;
    let audit_rows =
        || app.count("SELECT count(*) AS n FROM tenantry.audit_log WHERE action LIKE 'admin.%'");
    let before = audit_rows().await;
    for (name, value) in [
        ("sec-fetch-site", "cross-site"),
        ("sec-fetch-site", "same-site"),
        ("origin", "https://evil.example"),
    ] {
        for path in ["/api/admin/tenants", "/api/admin/audit", "/admin"] {
            let r = app
                .req(Method::GET, path, Some(OWNER), None)
                .header(name, value)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 403, "{path} with {name}: {value}");
        }
    }
    assert_eq!(
        audit_rows().await,
        before,
        "no audit row for a refused request"
    );
    // From the app's own pages, and from clients that send neither header: one row per call.
    let own = format!("http://{}", app.addr);
    for r in [
        app.req(Method::GET, "/api/admin/tenants", Some(OWNER), None)
            .header("sec-fetch-site", "same-origin")
            .header("origin", &own),
        app.req(Method::GET, "/api/admin/tenants", Some(OWNER), None),
    ] {
        assert_eq!(r.send().await.unwrap().status(), 200);
    }
    assert_eq!(audit_rows().await, before + 2);
}

#[tokio::test]
async fn html_cannot_be_framed() {
    let app = App::start().await;
    let r = app
        .req(Method::GET, "/admin", Some(OWNER), None)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-frame-options"], "DENY");
    let csp = r.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
}

/// An Owner may act inside any tenant, each use audited: one row per request that enters a
/// tenant where the Owner has no membership, written in the request's first tenant transaction
/// (so it commits with the work, and vanishes with it when the work rolls back).
#[tokio::test]
async fn an_owner_entering_a_tenant_without_membership_is_audited_once() {
    let app = App::start().await;
    let entries = |request: String| {
        let sql = format!(
            "SELECT count(*) AS n FROM tenantry.audit_log a JOIN tenantry.users u ON u.id = a.actor_user_id
             WHERE a.action = 'owner.enter' AND u.email = '{OWNER}' AND a.actor_email = '{OWNER}'
               AND a.tenant_id = '{}' AND a.request_id = '{request}' AND a.at IS NOT NULL",
            app.tenants["initech"]
        );
        let app = &app;
        async move { app.count(&sql).await }
    };
    let all_entries =
        || app.count("SELECT count(*) AS n FROM tenantry.audit_log WHERE action = 'owner.enter'");
    // A write (read-write transaction), a read (read-only: the row is committed first), a list
    // that runs several statements: one row each, naming the request.
    let cases: [(Method, &str, Option<serde_json::Value>, u16); 3] = [
        (
            Method::POST,
            "/api/projects",
            Some(json!({"name": "audited"})),
            201,
        ),
        (Method::GET, "/api/invoices", None, 200),
        (Method::GET, "/api/projects", None, 200),
    ];
    for (i, (method, path, body, status)) in cases.into_iter().enumerate() {
        let request = format!("owner-entry-{i}");
        let mut r = app
            .req(method.clone(), path, Some(OWNER), Some("initech"))
            .header("x-request-id", &request);
        if let Some(body) = body {
            r = r.json(&body);
        }
        let r = r.send().await.unwrap();
        assert_eq!(r.status(), status, "{method} {path}");
        assert_eq!(entries(request).await, 1, "{method} {path}");
    }
    assert_eq!(all_entries().await, 3);
    // Work that rolls back takes its entry with it (an invoice of another tenant's project).
    let (s, _) = app
        .send_json(
            Method::POST,
            "/api/invoices",
            OWNER,
            Some("initech"),
            json!({"project_id": app.projects["acme"], "number": "X-1", "amount_cents": 1, "currency": "EUR"}),
        )
        .await;
    assert!((400..500).contains(&s), "{s}");
    assert_eq!(
        all_entries().await,
        3,
        "the entry rolled back with the work"
    );
    // A member acting in its tenant, and the Owner-only routes, write no entry; an Owner route
    // keeps exactly one row per call.
    let (s, _) = app.get("/api/projects", PARTNER, Some("acme")).await;
    assert_eq!(s, 200);
    let admin_rows =
        || app.count("SELECT count(*) AS n FROM tenantry.audit_log WHERE action LIKE 'admin.%'");
    let before = admin_rows().await;
    let (s, _) = app.get("/api/admin/tenants", OWNER, None).await;
    assert_eq!(s, 200);
    assert_eq!(admin_rows().await, before + 1);
    assert_eq!(all_entries().await, 3);
}
