//! One tenant cannot starve the others (issue 19's table, as events and counts): tenant A
//! (`acme`) floods the example app with large lists and creates, then holds row locks on its own
//! rows with PATCHes; tenant B (`globex`, 4 steady clients) is answered throughout with no error,
//! never waits behind A, and A's excess is refused with 429 and the error JSON.
//!
//! Nothing here measures time: B's requests complete while A's PATCHes are still blocked on
//! their locks (which are released only after), and the counts come from the server's own
//! per-tenant load and `/metrics`. Every wait is bounded by a generous timeout that fails the
//! test, never by a sleep.

use crate::common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{admin, assert_error, App, PARTNER};
use diesel_async::SimpleAsyncConnection;
use futures_util::future::join_all;
use reqwest::Method;
use serde_json::json;
use tenantry::fairness::TenantLoad;

const A: &str = "acme";
const B: &str = "globex";
/// Pool of 8: each tenant's share (50%) is 4 connections; 4 more of A's may wait.
const POOL: &str = "8";
const QUEUE: usize = 4;
const SHARE: usize = 4;
/// Nothing may time out by itself within a test: a refusal is the queue's bound, never a wait.
const LONG: &str = "60s";

async fn start() -> App {
    let app = App::start_with(&[
        ("TENANTRY_AUTH_MODE", "trusted_header"),
        ("TENANTRY_TRUSTED_PROXIES", "127.0.0.1/32"),
        ("TENANTRY_DB_POOL_SIZE", POOL),
        ("TENANTRY_TENANT_QUEUE", "4"),
        ("TENANTRY_DB_POOL_TIMEOUT", LONG),
        ("TENANTRY_DB_LOCK_TIMEOUT", LONG),
        ("TENANTRY_DB_STATEMENT_TIMEOUT", LONG),
        ("TENANTRY_DB_IDLE_IN_TRANSACTION_TIMEOUT", LONG),
        ("TENANTRY_HTTP_REQUEST_TIMEOUT", LONG),
        ("TENANTRY_HTTP_IDLE_TIMEOUT", "120s"),
        ("TENANTRY_METRICS_BIND", "127.0.0.1:0"),
    ])
    .await;
    // A's large lists: 2,000 invoices.
    admin(&app.db)
        .await
        .batch_execute(&format!(
            "INSERT INTO invoices (tenant_id, project_id, number, amount_cents, currency, status)
             SELECT '{}', '{}', 'BULK-' || i, i, 'EUR', 'sent' FROM generate_series(1, 2000) i",
            app.tenants[A], app.projects[A]
        ))
        .await
        .expect("A's invoices");
    app
}

fn load_of(app: &App, slug: &str) -> TenantLoad {
    app.handle
        .tenant_load(Duration::from_secs(300))
        .tenants
        .into_iter()
        .find(|t| t.name.as_deref() == Some(slug))
        .unwrap_or_else(|| panic!("{slug} has no load yet"))
}

/// One request; its status and body, with `Retry-After` when refused.
async fn call(
    app: &App,
    method: Method,
    path: &str,
    tenant: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value, Option<String>) {
    let mut r = app.req(method, path, Some(PARTNER), Some(tenant));
    if let Some(body) = body {
        r = r.json(&body);
    }
    let r = r.send().await.expect("an answer");
    let status = r.status().as_u16();
    let retry = r
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, r.json().await.unwrap_or_default(), retry)
}

/// B's steady work: `clients` clients, each `rounds` times a list, a create and a PATCH of its
/// own new invoice. Returns every status.
async fn steady_b(app: &App, phase: &str, clients: usize, rounds: usize) -> Vec<u16> {
    let runs = (0..clients).map(|c| async move {
        let mut statuses = vec![];
        for i in 0..rounds {
            let (s, _, _) = call(app, Method::GET, "/api/invoices?limit=50", B, None).await;
            statuses.push(s);
            let (s, created, _) = call(
                app,
                Method::POST,
                "/api/invoices",
                B,
                Some(
                    json!({"project_id": app.projects[B], "number": format!("{phase}-{c}-{i}"),
                            "amount_cents": 100, "currency": "EUR"}),
                ),
            )
            .await;
            statuses.push(s);
            if let Some(id) = created["id"].as_str() {
                let (s, _, _) = call(
                    app,
                    Method::PATCH,
                    &format!("/api/invoices/{id}"),
                    B,
                    Some(json!({"status": "sent"})),
                )
                .await;
                statuses.push(s);
            }
        }
        statuses
    });
    join_all(runs).await.into_iter().flatten().collect()
}

fn tally(statuses: &[u16]) -> BTreeMap<u16, usize> {
    let mut t = BTreeMap::new();
    for s in statuses {
        *t.entry(*s).or_default() += 1;
    }
    t
}

async fn metrics(app: &App) -> String {
    let addr = app.metrics.expect("TENANTRY_METRICS_BIND is set");
    let r = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .expect("the metrics endpoint answers");
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/openmetrics-text"));
    r.text().await.unwrap()
}

/// The value of the series `line_start` (name and labels) in an OpenMetrics text.
fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no series {series} in:\n{text}"))
        .parse()
        .unwrap()
}

#[tokio::test]
async fn a_flooding_tenant_is_held_to_its_share_and_the_steady_one_never_waits() {
    let app = start().await;
    let baseline = steady_b(&app, "base", 4, 5).await;
    assert!(
        baseline.iter().all(|s| (200..300).contains(s)),
        "{:?}",
        tally(&baseline)
    );

    // A floods: 32 clients of large lists (500 rows) and creates, while B runs its 4 clients.
    let flood = (0..32).map(|c| {
        let app = &app;
        async move {
            let mut statuses = vec![];
            for i in 0..6 {
                statuses.push(
                    call(app, Method::GET, "/api/invoices?limit=500", A, None)
                        .await
                        .0,
                );
                let (s, body, retry) = call(
                    app,
                    Method::POST,
                    "/api/invoices",
                    A,
                    Some(
                        json!({"project_id": app.projects[A], "number": format!("F-{c}-{i}"),
                                "amount_cents": 1, "currency": "EUR"}),
                    ),
                )
                .await;
                if s == 429 {
                    assert_error(&body, "too_many_requests");
                    assert_eq!(retry.as_deref(), Some("1"));
                }
                statuses.push(s);
            }
            statuses
        }
    });
    let (a, b) = tokio::time::timeout(
        Duration::from_secs(120),
        futures_util::future::join(join_all(flood), steady_b(&app, "flood", 4, 8)),
    )
    .await
    .expect("both sides are answered");
    let a: Vec<u16> = a.into_iter().flatten().collect();
    let (a_tally, b_tally) = (tally(&a), tally(&b));
    eprintln!("flood: A {a_tally:?}, B {b_tally:?}");
    assert!(
        b.iter().all(|s| (200..300).contains(s)),
        "B got an error: {b_tally:?}"
    );
    assert!(
        a.iter().all(|s| [200, 201, 429].contains(s)),
        "A is answered or refused with 429, never 503: {a_tally:?}"
    );
    let (a_load, b_load) = (load_of(&app, A), load_of(&app, B));
    assert!(
        a_load.max_connections <= SHARE,
        "A held {} connections at once, more than its share {SHARE}",
        a_load.max_connections
    );
    assert_eq!(b_load.queued, 0, "B never waited for a turn: {b_load:?}");
    assert_eq!(b_load.shed_pool + b_load.shed_http, 0, "{b_load:?}");
    assert_eq!(
        a_tally.get(&429).copied().unwrap_or(0) as u64,
        a_load.shed_pool + a_load.shed_http,
        "every 429 A got is counted as its shed"
    );
}

#[tokio::test]
async fn a_tenant_blocked_on_its_own_row_locks_keeps_its_share_and_the_other_is_served() {
    let app = start().await;
    let invoice = app.invoice_of(A).await;
    // A's own long transaction (an import, say) holds its rows.
    let mut locker = admin(&app.db).await;
    locker
        .batch_execute(&format!(
            "BEGIN; SELECT 1 FROM invoices WHERE tenant_id = '{}' FOR UPDATE",
            app.tenants[A]
        ))
        .await
        .unwrap();

    // 24 PATCHes of A's row: 4 hold A's share blocked on the lock, 4 wait in A's queue, and
    // the other 16 are refused at once.
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
    let base = app.base.clone();
    for _ in 0..24 {
        let done = done_tx.clone();
        let r = app
            .client
            .patch(format!("{base}/api/invoices/{invoice}"))
            .header(common::EMAIL_HEADER, PARTNER)
            .header("x-tenant", A)
            .json(&json!({"status": "paid"}));
        tokio::spawn(async move {
            let r = r.send().await.expect("an answer");
            let status = r.status().as_u16();
            let retry = r
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_owned());
            let body: serde_json::Value = r.json().await.unwrap_or_default();
            let _ = done.send((status, retry, body));
        });
    }
    let refused = 24 - SHARE - QUEUE;
    for _ in 0..refused {
        let (status, retry, body) = tokio::time::timeout(Duration::from_secs(30), done_rx.recv())
            .await
            .expect("A's excess is refused at once, not held")
            .unwrap();
        assert_eq!(status, 429, "{body}");
        assert_error(&body, "too_many_requests");
        assert_eq!(retry.as_deref(), Some("1"));
    }
    let a_now = load_of(&app, A);
    assert_eq!(
        (a_now.connections, a_now.waiting),
        (SHARE, QUEUE),
        "{a_now:?}"
    );

    // B, meanwhile: all of it answered while A's PATCHes are still blocked.
    let b = tokio::time::timeout(Duration::from_secs(60), steady_b(&app, "locks", 4, 5))
        .await
        .expect("B is not held behind A's locked transactions");
    assert!(b.iter().all(|s| (200..300).contains(s)), "{:?}", tally(&b));
    assert!(
        done_rx.try_recv().is_err(),
        "no PATCH of A finished before B's requests: they were still blocked"
    );
    let b_load = load_of(&app, B);
    assert_eq!(b_load.queued, 0, "{b_load:?}");

    // A's transaction ends: A's held and queued PATCHes complete.
    locker.batch_execute("ROLLBACK").await.unwrap();
    for _ in 0..SHARE + QUEUE {
        let (status, _, body) = tokio::time::timeout(Duration::from_secs(30), done_rx.recv())
            .await
            .expect("A's waiting PATCHes finish once its lock is gone")
            .unwrap();
        assert_eq!(status, 200, "{body}");
    }
    let a_load = load_of(&app, A);
    assert_eq!(a_load.queued, QUEUE as u64, "{a_load:?}");
    assert_eq!(a_load.max_connections, SHARE);

    // The same in the metrics: A's sheds by layer, requests by route and status.
    let text = metrics(&app).await;
    assert_eq!(
        value(
            &text,
            "tenantry_tenant_shed_total{tenant=\"acme\",layer=\"pool\"}"
        ),
        refused as f64
    );
    assert_eq!(
        value(
            &text,
            "tenantry_tenant_requests_total{tenant=\"acme\",route=\"/api/invoices/{id}\",status=\"429\"}"
        ),
        refused as f64
    );
    assert_eq!(
        value(
            &text,
            "tenantry_tenant_requests_total{tenant=\"globex\",route=\"/api/invoices\",status=\"201\"}"
        ),
        20.0
    );
    assert_eq!(
        value(&text, "tenantry_tenant_queued_total{tenant=\"globex\"}"),
        0.0
    );
    assert!(value(&text, "tenantry_tenant_db_seconds_total{tenant=\"acme\"}") > 0.0);
    assert!(value(&text, "tenantry_tenant_rows_total{tenant=\"globex\"}") >= 20.0);
}

#[tokio::test]
async fn a_tenant_over_its_concurrent_requests_is_refused_by_the_server_before_any_work() {
    let app = App::start_with(&[
        ("TENANTRY_AUTH_MODE", "trusted_header"),
        ("TENANTRY_TRUSTED_PROXIES", "127.0.0.1/32"),
        ("TENANTRY_HTTP_MAX_REQUESTS_PER_TENANT", "2"),
        ("TENANTRY_DB_LOCK_TIMEOUT", LONG),
        ("TENANTRY_DB_STATEMENT_TIMEOUT", LONG),
    ])
    .await;
    let invoice = app.invoice_of(A).await;
    let mut locker = admin(&app.db).await;
    locker
        .batch_execute(&format!(
            "BEGIN; SELECT 1 FROM invoices WHERE id = '{invoice}' FOR UPDATE"
        ))
        .await
        .unwrap();
    let path = format!("/api/invoices/{invoice}");
    let blocked: Vec<_> = (0..2)
        .map(|_| {
            let r = app
                .req(Method::PATCH, &path, Some(PARTNER), Some(A))
                .json(&json!({"status": "paid"}));
            tokio::spawn(async move { r.send().await.expect("an answer").status().as_u16() })
        })
        .collect();
    // Both of A's places are taken once the database shows two of its updates waiting.
    let mut waiting = 0;
    for _ in 0..600 {
        waiting = app
            .count(
                "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() \
                 AND wait_event_type = 'Lock' AND query LIKE 'UPDATE%invoices%'",
            )
            .await;
        if waiting == 2 {
            break;
        }
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(waiting, 2, "two of A's PATCHes wait on the lock");
    let (s, body, retry) = call(&app, Method::GET, "/api/invoices", A, None).await;
    assert_eq!(s, 429, "{body}");
    assert_error(&body, "too_many_requests");
    assert_eq!(retry.as_deref(), Some("1"));
    let (s, _, _) = call(&app, Method::GET, "/api/invoices", B, None).await;
    assert_eq!(s, 200, "another tenant is not refused");
    locker.batch_execute("ROLLBACK").await.unwrap();
    for b in blocked {
        assert_eq!(b.await.unwrap(), 200);
    }
    assert_eq!(load_of(&app, A).shed_http, 1);
}

#[tokio::test]
async fn the_metrics_endpoint_is_off_by_default_and_never_on_the_public_bind() {
    let app = App::start().await;
    assert!(app.metrics.is_none());
    let (status, body) = app.get("/metrics", PARTNER, None).await;
    assert_eq!(status, 404, "{body}");
    // The request id is kept when well formed, and echoed.
    let r = app
        .req(Method::GET, "/api/invoices", Some(PARTNER), Some(A))
        .header("x-request-id", "trace-me-123")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "trace-me-123");
}

#[tokio::test]
async fn metrics_name_the_busiest_tenants_and_count_the_rest_as_other() {
    let app = App::start_with(&[
        ("TENANTRY_AUTH_MODE", "trusted_header"),
        ("TENANTRY_TRUSTED_PROXIES", "127.0.0.1/32"),
        ("TENANTRY_METRICS_BIND", "127.0.0.1:0"),
        ("TENANTRY_METRICS_TENANTS", "1"),
    ])
    .await;
    for tenant in [A, B] {
        let (s, _, _) = call(&app, Method::GET, "/api/invoices", tenant, None).await;
        assert_eq!(s, 200);
    }
    let text = metrics(&app).await;
    // One tenant has the one label (the first seen, or the busier at a ranking); the other
    // counts as `_other`.
    let named: Vec<&str> = [A, B]
        .into_iter()
        .filter(|t| text.contains(&format!("tenant=\"{t}\"")))
        .collect();
    assert_eq!(named.len(), 1, "{text}");
    let series = format!(
        "tenantry_tenant_transactions_total{{tenant=\"{}\"}}",
        named[0]
    );
    assert_eq!(value(&text, &series), 1.0);
    assert_eq!(
        value(
            &text,
            "tenantry_tenant_transactions_total{tenant=\"_other\"}"
        ),
        1.0
    );
}
