//! Every route of the contract over real HTTP: isolation, status codes and the error shape.

use crate::common;

use common::{assert_error, App, Route, LONELY, OWNER, PARTNER, VIEWER};
use reqwest::Method;
use serde_json::json;
use tenantry::testing::on_both_routes;

// Every case runs twice: the request path straight to PostgreSQL and through PgBouncer in
// transaction mode (`direct::..`, `pgbouncer::..`).
on_both_routes!(
    lists_show_only_the_active_tenant,
    another_tenants_invoice_is_404_and_unchanged,
    create_invoice_rules,
    bad_input_is_4xx_with_the_error_json,
    healthz_and_unknown_routes,
    me_describes_the_user,
    admin_routes_are_owner_only_and_audited,
    dashboard_escapes_tenant_names,
    audit_rows_carry_the_request_id,
);

async fn lists_show_only_the_active_tenant(route: Route) {
    let app = App::start_through(route).await;
    for slug in ["acme", "globex"] {
        let (s, invoices) = app.get("/api/invoices", PARTNER, Some(slug)).await;
        assert_eq!(s, 200, "{invoices}");
        let list = invoices.as_array().unwrap();
        assert_eq!(list.len(), 3);
        assert!(list
            .iter()
            .all(|i| i["tenant_id"] == app.tenants[slug].to_string()));
        let (s, projects) = app.get("/api/projects", PARTNER, Some(slug)).await;
        assert_eq!(s, 200);
        let list = projects.as_array().unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0]["tenant_id"], app.tenants[slug].to_string());
        assert_eq!(list[0]["name"], format!("{slug} project"));
    }
    // newest first, status filter, limit
    let (_, drafts) = app
        .get("/api/invoices?status=draft&limit=1", PARTNER, Some("acme"))
        .await;
    assert_eq!(drafts.as_array().unwrap().len(), 1);
    assert_eq!(drafts[0]["status"], "draft");
}

async fn another_tenants_invoice_is_404_and_unchanged(route: Route) {
    let app = App::start_through(route).await;
    let id = app.invoice_of("globex").await;
    let before = app.invoice_row(id).await;
    let path = format!("/api/invoices/{id}");
    let (s, b) = app.get(&path, PARTNER, Some("acme")).await;
    assert_eq!(s, 404);
    assert_error(&b, "not_found");
    let (s, b) = app
        .send_json(
            Method::PATCH,
            &path,
            PARTNER,
            Some("acme"),
            json!({"status": "void"}),
        )
        .await;
    assert_eq!(s, 404);
    assert_error(&b, "not_found");
    let r = app
        .req(Method::DELETE, &path, Some(PARTNER), Some("acme"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(app.invoice_row(id).await, before, "the row is unchanged");
    // the same id in its own tenant works
    let (s, b) = app.get(&path, PARTNER, Some("globex")).await;
    assert_eq!(s, 200, "{b}");
}

async fn create_invoice_rules(route: Route) {
    let app = App::start_through(route).await;
    let acme_project = app.projects["acme"];
    let globex_project = app.projects["globex"];
    let body = |project: uuid::Uuid, number: &str| {
        json!({"project_id": project, "number": number, "amount_cents": 500, "currency": "GBP",
               "tenant_id": app.tenants["globex"]})
    };
    let (s, created) = app
        .send_json(
            Method::POST,
            "/api/invoices",
            PARTNER,
            Some("acme"),
            body(acme_project, "N-1"),
        )
        .await;
    assert_eq!(s, 201, "{created}");
    assert_eq!(created["status"], "draft");
    assert_eq!(
        created["tenant_id"],
        app.tenants["acme"].to_string(),
        "tenant_id in the body is ignored"
    );
    // another tenant's project
    let (s, b) = app
        .send_json(
            Method::POST,
            "/api/invoices",
            PARTNER,
            Some("acme"),
            body(globex_project, "N-2"),
        )
        .await;
    assert_eq!(s, 404);
    assert_error(&b, "not_found");
    // duplicate number in the same tenant, fine in another
    let (s, b) = app
        .send_json(
            Method::POST,
            "/api/invoices",
            PARTNER,
            Some("acme"),
            body(acme_project, "N-1"),
        )
        .await;
    assert_eq!(s, 409);
    assert_error(&b, "conflict");
    let (s, _) = app
        .send_json(
            Method::POST,
            "/api/invoices",
            PARTNER,
            Some("globex"),
            body(globex_project, "N-1"),
        )
        .await;
    assert_eq!(s, 201);
    assert_eq!(
        app.count("SELECT count(*) AS n FROM invoices WHERE number = 'N-1'")
            .await,
        2
    );
}

async fn bad_input_is_4xx_with_the_error_json(route: Route) {
    let app = App::start_through(route).await;
    let p = app.projects["acme"];
    let cases = [
        (
            json!({"project_id": p, "number": "X", "amount_cents": -1, "currency": "EUR"}),
            422,
        ),
        (
            json!({"project_id": p, "number": "X", "amount_cents": 1, "currency": "XXX"}),
            422,
        ),
        (
            json!({"project_id": p, "number": "X", "amount_cents": "1", "currency": "EUR"}),
            422,
        ),
        (
            json!({"project_id": "not-a-uuid", "number": "X", "amount_cents": 1, "currency": "EUR"}),
            422,
        ),
        (
            json!({"project_id": p, "number": "", "amount_cents": 1, "currency": "EUR"}),
            422,
        ),
        (json!({"number": "X"}), 422),
        (json!([1, 2]), 422),
    ];
    for (body, status) in cases {
        let (s, b) = app
            .send_json(
                Method::POST,
                "/api/invoices",
                PARTNER,
                Some("acme"),
                body.clone(),
            )
            .await;
        assert_eq!(s, status, "{body} → {b}");
        assert_error(&b, "invalid");
    }
    // a key given twice, at the top or nested, in every body the app reads: 422 naming it
    let some_id = "00000000-0000-0000-0000-000000000000";
    for (method, path, body, key) in [
        (
            Method::POST,
            "/api/projects".to_owned(),
            r#"{"name":"a","name":"b"}"#.to_owned(),
            "name",
        ),
        (
            Method::POST,
            "/api/invoices".to_owned(),
            format!(
                r#"{{"project_id":"{some_id}","number":"D-1","amount_cents":1,"amount_cents":2,"currency":"EUR"}}"#
            ),
            "amount_cents",
        ),
        (
            Method::PATCH,
            format!("/api/invoices/{some_id}"),
            r#"{"status":"paid","status":"void"}"#.to_owned(),
            "status",
        ),
        (
            Method::POST,
            "/api/projects".to_owned(),
            r#"{"name":"a","x":[{"y":1,"y":2}]}"#.to_owned(),
            "y",
        ),
    ] {
        let r = app
            .req(method.clone(), &path, Some(PARTNER), Some("acme"))
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 422, "{method} {path} {body}");
        let b: serde_json::Value = r.json().await.unwrap();
        assert_error(&b, "invalid");
        let message = b["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(&format!("{key}: given twice")),
            "{body}: {message}"
        );
    }
    // malformed JSON and missing content type
    let r = app
        .req(Method::POST, "/api/projects", Some(PARTNER), Some("acme"))
        .header("content-type", "application/json")
        .body("{\"name\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    assert_error(&r.json().await.unwrap(), "invalid");
    let r = app
        .req(Method::POST, "/api/projects", Some(PARTNER), Some("acme"))
        .body("name=x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    assert_error(&r.json().await.unwrap(), "invalid");
    // ids, limits, statuses
    let (s, b) = app
        .get("/api/invoices/not-a-uuid", PARTNER, Some("acme"))
        .await;
    assert_eq!(s, 404);
    assert_error(&b, "not_found");
    for q in ["limit=0", "limit=501", "limit=abc", "status=lost"] {
        let (s, b) = app
            .get(&format!("/api/invoices?{q}"), PARTNER, Some("acme"))
            .await;
        assert_eq!(s, 422, "{q}");
        assert_error(&b, "invalid");
    }
    let (s, _) = app
        .get("/api/invoices?limit=500", PARTNER, Some("acme"))
        .await;
    assert_eq!(s, 200);
    let id = app.invoice_of("acme").await;
    for patch in [
        json!({"status": "lost"}),
        json!({"amount_cents": -5}),
        json!({}),
    ] {
        let (s, b) = app
            .send_json(
                Method::PATCH,
                &format!("/api/invoices/{id}"),
                PARTNER,
                Some("acme"),
                patch.clone(),
            )
            .await;
        assert_eq!(s, 422, "{patch}");
        assert_error(&b, "invalid");
    }
    let (s, b) = app
        .send_json(
            Method::PATCH,
            &format!("/api/invoices/{id}"),
            PARTNER,
            Some("acme"),
            json!({"status": "paid", "amount_cents": 7}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        (b["status"].as_str(), b["amount_cents"].as_i64()),
        (Some("paid"), Some(7))
    );
    let r = app
        .req(
            Method::DELETE,
            &format!("/api/invoices/{id}"),
            Some(PARTNER),
            Some("acme"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let (s, _) = app
        .get(&format!("/api/invoices/{id}"), PARTNER, Some("acme"))
        .await;
    assert_eq!(s, 404);
}

async fn healthz_and_unknown_routes(route: Route) {
    let app = App::start_through(route).await;
    let r = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap(),
        json!({"status": "ok"})
    );
    let (s, b) = app.get("/api/nothing-here", PARTNER, Some("acme")).await;
    assert_eq!(s, 404);
    assert_error(&b, "not_found");
}

async fn me_describes_the_user(route: Route) {
    let app = App::start_through(route).await;
    let (s, me) = app.get("/api/me", PARTNER, None).await;
    assert_eq!(s, 200, "{me}");
    assert_eq!(me["user"]["email"], PARTNER);
    assert_eq!(me["is_owner"], false);
    assert_eq!(me["tenants"].as_array().unwrap().len(), 2);
    assert!(
        me["active_tenant"].is_null(),
        "two memberships, no header: {me}"
    );
    let (_, me) = app.get("/api/me", PARTNER, Some("globex")).await;
    assert_eq!(me["active_tenant"]["slug"], "globex");
    let (_, me) = app.get("/api/me", VIEWER, None).await;
    assert_eq!(
        me["active_tenant"]["slug"], "acme",
        "one membership implies the tenant"
    );
    assert_eq!(me["tenants"][0]["role"], "client_viewer");
    let (s, b) = app.get("/api/me", PARTNER, Some("initech")).await;
    assert_eq!(s, 403);
    assert_error(&b, "forbidden");
    let (s, me) = app.get("/api/me", LONELY, None).await;
    assert_eq!(s, 200);
    assert_eq!(me["tenants"], json!([]));
    let (_, me) = app
        .get("/api/me", "OWNER@Example.COM", Some("initech"))
        .await;
    assert_eq!(me["is_owner"], true, "email is case-insensitive");
    assert_eq!(me["active_tenant"]["slug"], "initech");
}

async fn admin_routes_are_owner_only_and_audited(route: Route) {
    let app = App::start_through(route).await;
    let audits = || app.count("SELECT count(*) AS n FROM tenantry.audit_log");
    let before = audits().await;
    let (s, tenants) = app.get("/api/admin/tenants", OWNER, None).await;
    assert_eq!(s, 200, "{tenants}");
    assert_eq!(audits().await, before + 1, "one audit row per call");
    let list = tenants.as_array().unwrap();
    assert_eq!(
        list.iter()
            .map(|t| t["slug"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["acme", "globex", "initech"]
    );
    // 3 invoices each (100, 200 void, 300 USD): EUR 100, USD 300
    assert_eq!(list[0]["invoice_count"], 3);
    assert_eq!(list[0]["totals"], json!({"EUR": 100, "USD": 300}));
    let (s, audit) = app.get("/api/admin/audit?limit=5", OWNER, None).await;
    assert_eq!(s, 200);
    assert_eq!(audits().await, before + 2);
    let rows = audit.as_array().unwrap();
    assert_eq!(
        rows[0]["action"], "admin.audit",
        "newest first, including this call"
    );
    assert_eq!(rows[0]["actor_email"], OWNER);
    assert!(rows
        .iter()
        .all(|r| !r["reason"].as_str().unwrap().is_empty()));
    let (s, b) = app.get("/api/admin/audit?limit=0", OWNER, None).await;
    assert_eq!(s, 422);
    assert_error(&b, "invalid");

    // The chain's head, as it was before this call (whose own row links when it commits).
    let (s, head) = app.get("/api/admin/audit/head", OWNER, None).await;
    assert_eq!(s, 200, "{head}");
    assert_eq!(audits().await, before + 3);
    assert_eq!(head["rows"], before + 2, "{head}");
    assert_eq!(
        head["id"], rows[0]["id"],
        "the admin.audit call's row: {head}"
    );
    let verified = tenantry::audit_chain::verify(&common::admin(&app.db).await)
        .await
        .unwrap();
    assert!(verified.is_intact(), "{:?}", verified.breaks);
    assert_eq!(verified.head.rows, before + 3, "this call's row is linked");
    let recorded = app
        .count(&format!(
            "SELECT count(*) AS n FROM tenantry.audit_log_chain WHERE seq = {} AND encode(hash, 'hex') = '{}'",
            before + 2,
            head["hash"].as_str().unwrap()
        ))
        .await;
    assert_eq!(recorded, 1, "the hash of the head it named: {head}");

    for who in [PARTNER, VIEWER, LONELY] {
        for path in [
            "/api/admin/tenants",
            "/api/admin/audit",
            "/api/admin/audit/head",
            "/admin",
        ] {
            let r = app
                .req(Method::GET, path, Some(who), Some("acme"))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 403, "{who} {path}");
        }
    }
    assert_eq!(audits().await, before + 3, "refused calls write nothing");
}

#[allow(
    clippy::disallowed_methods,
    reason = "reads the audit chain as the superuser to compare with the page"
)]
async fn dashboard_escapes_tenant_names(route: Route) {
    let app = App::start_through(route).await;
    let mut c = common::admin(&app.db).await;
    diesel_async::SimpleAsyncConnection::batch_execute(
        &mut c,
        "INSERT INTO tenantry.tenants (slug, name) VALUES ('evil', '<script>alert(1)</script>')",
    )
    .await
    .unwrap();
    // One linked row before the page, so that the chain has a head to show.
    let (s, _) = app.get("/api/admin/tenants", OWNER, None).await;
    assert_eq!(s, 200);
    let before = app
        .count("SELECT count(*) AS n FROM tenantry.audit_log")
        .await;
    let r = app
        .req(Method::GET, "/admin", Some(OWNER), None)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let html = r.text().await.unwrap();
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(!html.contains("<script>"));
    assert!(html.contains("acme inc") && html.contains("admin.dashboard"));
    assert_eq!(
        app.count("SELECT count(*) AS n FROM tenantry.audit_log")
            .await,
        before + 1
    );
    // The chain's head before the page's own row (which links when it commits): the row of the
    // call above and the start of its hash.
    let mut c = common::admin(&app.db).await;
    let verified = tenantry::audit_chain::verify(&c).await.unwrap();
    assert!(verified.is_intact(), "{:?}", verified.breaks);
    #[derive(diesel::QueryableByName)]
    struct Link {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        audit_id: i64,
        #[diesel(sql_type = diesel::sql_types::Text)]
        hash: String,
    }
    let shown: Link = diesel_async::RunQueryDsl::get_result(
        diesel::sql_query(
            "SELECT audit_id, encode(hash, 'hex') AS hash FROM tenantry.audit_log_chain WHERE seq = $1",
        )
        .bind::<diesel::sql_types::BigInt, _>(verified.head.rows - 1),
        &mut c,
    )
    .await
    .unwrap();
    assert!(
        html.contains(&format!("<b id=\"chain-head-row\">{}</b>", shown.audit_id)),
        "{html}"
    );
    assert!(
        html.contains(&format!(
            "title=\"{}\">{}</code>",
            shown.hash,
            &shown.hash[..12]
        )),
        "{html}"
    );
}

async fn audit_rows_carry_the_request_id(route: Route) {
    let app = App::start_through(route).await;
    let r = app
        .req(Method::GET, "/api/admin/tenants", Some(OWNER), None)
        .header("x-request-id", "req-7f3a")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        app.count("SELECT count(*) AS n FROM tenantry.audit_log WHERE request_id = 'req-7f3a' AND action = 'admin.tenants'")
            .await,
        1
    );
    // a malformed id is replaced by a fresh one, never stored as sent
    let r = app
        .req(Method::GET, "/api/admin/tenants", Some(OWNER), None)
        .header("x-request-id", "bad id; DROP TABLE")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        app.count("SELECT count(*) AS n FROM tenantry.audit_log WHERE request_id LIKE 'bad id%'")
            .await,
        0
    );
    assert_eq!(
        app.count("SELECT count(*) AS n FROM tenantry.audit_log WHERE request_id IS NULL")
            .await,
        0
    );
}
